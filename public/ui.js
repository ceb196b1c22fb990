// ui.js — small helpers every part of the page uses: new elements, the
// status badges, the status line under a form, and the message lists.
// Nothing protocol-specific lives here.

/** Messages kept per list; older ones are removed so a page left open for
 *  hours does not grow without bound. */
export const MAX_MESSAGES = 100;

/** A new element with a class and, if given, its text (textContent: never
 *  parsed as HTML, so untrusted text cannot become markup). */
export function element(tag, className, text) {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

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

/**
 * Sets the one-line status under a form. `state` is "ok" or "error"; it
 * becomes the line's class (green or red). The line has role="status", so
 * a screen reader reads the new text out.
 */
export function setStatusLine(line, state, text) {
  line.className = `form-status ${state}`;
  line.textContent = text;
}

/** The message typed in `input`, trimmed; if there is none, the status
 *  line asks for one, the box gets the focus back, and the answer is null. */
export function readMessage(input, status) {
  const message = input.value.trim();
  if (message) return message;
  setStatusLine(status, "error", "type a message first");
  input.focus();
  return null;
}

/**
 * A message's JSON. A message that is not JSON is shown in the list as an
 * error instead, and the answer is undefined (no JSON text parses to that).
 */
export function parseMessage(list, text) {
  try {
    return JSON.parse(text);
  } catch {
    addMessage(list, { type: "?", kind: "error", text: String(text) });
    return undefined;
  }
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
  const hasId = id !== undefined && id !== null && id !== "";
  if (hasId) item.dataset.id = String(id);

  item.append(messageHead(type, hasId ? id : undefined, flags, time), element("div", "msg-text", text));
  list.prepend(item);
  while (list.children.length > MAX_MESSAGES) list.lastElementChild.remove();
  return item;
}

/** The small line above a message: its type, its id, any flags, the time. */
function messageHead(type, id, flags, time) {
  const head = element("div", "msg-head");
  // The type is also a class (for its colour), so keep only safe letters.
  head.append(element("span", `msg-type type-${type.replace(/[^a-z_]/gi, "")}`, type));
  if (id !== undefined) head.append(element("span", "msg-id", `id ${id}`));
  for (const flag of flags) head.append(element("strong", "msg-flag", flag));
  const timeLabel = element("time", "msg-time", clockTime(time));
  timeLabel.dateTime = time.toISOString();
  head.append(timeLabel);
  return head;
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
