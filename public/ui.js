// ui.js — small helpers both panels use: the status badge and the
// message list. Nothing protocol-specific lives here.

/** Messages kept per list; older ones are removed so a page left open for
 *  hours does not grow without bound. */
export const MAX_MESSAGES = 100;

/**
 * Sets a status badge. `state` is one of "connected", "disconnected",
 * "reconnecting" or "connecting"; it becomes the badge's class (its colour)
 * and its data-state attribute (what the browser test reads). `text` is
 * what a person reads, e.g. "reconnecting (attempt 2/5)".
 */
export function setBadge(badge, state, text = state) {
  badge.dataset.state = state;
  badge.className = `badge badge-${state}`;
  badge.textContent = text;
}

/** "14:03:27.512": local time with milliseconds, for messages that arrive
 *  faster than one per second. */
export function clockTime(date = new Date()) {
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/**
 * Adds one entry at the top of a message list (newest first).
 *
 *   type:  a short label ("chat", "notification", "welcome", "stream" …)
 *   text:  what the message says
 *   time:  a Date (when it happened) — defaults to now
 *   id:    the SSE event id, if the entry should show one
 *   flags: extra words shown as warnings ("seen twice!", "gap")
 *   kind:  "system" for lines the page writes itself (connection changes),
 *          "error" for problems, undefined for messages from the server
 *
 * Every piece of text goes in with textContent, never innerHTML: a chat
 * message is untrusted input and must not become markup.
 */
export function addMessage(list, { type, text, time = new Date(), id, flags = [], kind }) {
  const item = document.createElement("li");
  item.className = `msg${kind ? ` msg-${kind}` : ""}${flags.length ? " msg-flagged" : ""}`;
  item.dataset.type = type;
  item.dataset.text = text;
  if (id !== undefined && id !== null && id !== "") item.dataset.id = String(id);

  const head = document.createElement("div");
  head.className = "msg-head";

  const typeLabel = document.createElement("span");
  typeLabel.className = `msg-type type-${type.replace(/[^a-z_]/gi, "")}`;
  typeLabel.textContent = type;
  head.append(typeLabel);

  if (item.dataset.id !== undefined) {
    const idLabel = document.createElement("span");
    idLabel.className = "msg-id";
    idLabel.textContent = `id ${id}`;
    head.append(idLabel);
  }
  for (const flag of flags) {
    const flagLabel = document.createElement("strong");
    flagLabel.className = "msg-flag";
    flagLabel.textContent = flag;
    head.append(flagLabel);
  }

  const timeLabel = document.createElement("time");
  timeLabel.className = "msg-time";
  timeLabel.dateTime = time.toISOString();
  timeLabel.textContent = clockTime(time);
  head.append(timeLabel);

  const body = document.createElement("div");
  body.className = "msg-text";
  body.textContent = text;

  item.append(head, body);
  list.prepend(item);
  while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
  return item;
}

/** A server timestamp ("2026-11-24T00:50:33.744Z") as a Date, or now when
 *  the message has none (welcome messages do not). */
export function messageTime(data) {
  const parsed = data && data.timestamp ? new Date(data.timestamp) : null;
  return parsed && !Number.isNaN(parsed.getTime()) ? parsed : new Date();
}

/** How a broadcast message reads in a list, whichever protocol brought it. */
export function describe(data) {
  switch (data.type) {
    case "chat":
      return `${data.username}: ${data.message}`;
    default:
      return data.message !== undefined ? String(data.message) : JSON.stringify(data);
  }
}
