// sse-panel.js — the Server-Sent Events panel.
//
// Everything the browser does for us with SSE happens inside one object,
// EventSource:
//   - it opens GET /events and keeps reading the response body;
//   - it parses the text/event-stream format (id:, event:, data:, retry:,
//     blank lines) and fires one "message" event per complete event;
//   - it remembers the last id: it saw, and when the stream ends it waits
//     (the server's retry: value) and reconnects BY ITSELF, sending that id
//     in a Last-Event-ID header, so the server can send what we missed.
//
// So this file has no parser and no reconnect loop. It only watches
// EventSource's readyState to show what the browser is doing:
//   EventSource.CONNECTING (0)  opening, or waiting to reconnect
//   EventSource.OPEN       (1)  the stream is flowing
//   EventSource.CLOSED     (2)  given up (we called close(), or the server
//                               answered something other than a 200
//                               text/event-stream): no more reconnects
//
// The one thing we add is bookkeeping on event ids, to make resuming
// visible: each broadcast shows its id, and an id seen twice or a gap in
// the ids is flagged in red. With Last-Event-ID neither should happen.

import { addMessage, setBadge, setStatusLine, readMessage, parseMessage, messageTime, describe } from "./ui.js";

/**
 * Wires the panel's elements and returns { connect, disconnect, clientId }.
 *
 * el:    { badge, connect, disconnect, list, form, input, status }
 * hooks: { onClientId(id), onMessage(data, event), onReset(data),
 *          onTrigger(message) }   — app.js uses these for the inspector
 *                                   and the measured figures
 *
 * Everything the panel remembers is in one object, `panel`; each function
 * below takes it first, so each can be read on its own.
 */
export function createSsePanel(el, hooks) {
  const panel = {
    el,
    hooks,
    source: null,        // the EventSource, while we want one
    streamOpen: false,   // whether the last thing we saw was "open"
    browserRetries: 0,   // failed reconnection attempts in a row
    lastId: "",          // the last event id the browser told us about
    clientId: null,      // from this connection's welcome message
    // For flagging duplicates and gaps: ids of broadcasts seen since we
    // connected (or since a reset), and the highest of them.
    seen: new Set(),
    highest: null,
  };

  el.connect.addEventListener("click", () => connect(panel));
  el.disconnect.addEventListener("click", () => disconnect(panel));
  // A real <form>: Enter in the text box submits it.
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitTrigger(panel);
  });
  updateButtons(panel);

  return {
    connect: () => connect(panel),
    disconnect: () => disconnect(panel),
    get clientId() { return panel.clientId; },
  };
}

function updateButtons(panel) {
  panel.el.connect.disabled = panel.source !== null;
  panel.el.disconnect.disabled = panel.source === null;
}

/** A line the page itself writes about the stream (not from the server). */
function note(panel, text, kind = "system") {
  addMessage(panel.el.list, { type: "stream", kind, text });
}

// ---------------------------------------------------------------------
// The stream: open it, then only listen
// ---------------------------------------------------------------------

function connect(panel) {
  if (panel.source) return;
  // A fresh EventSource has no last event id: the server starts us at
  // the newest event (the welcome's id tells us which).
  forgetIds(panel, null);
  panel.lastId = "";
  const source = new EventSource("/events");
  panel.source = source;
  setBadge(panel.el.badge, "connecting", "connecting…");
  updateButtons(panel);

  source.addEventListener("open", () => onOpen(panel));
  source.addEventListener("error", () => onError(panel, source));
  // Unnamed events ("message" type: no event: line) — all of ours.
  source.addEventListener("message", (event) => onEvent(panel, event));
}

function onOpen(panel) {
  // After a reconnect the browser has just sent "Last-Event-ID: <lastId>"
  // in the request headers; the events we missed come next.
  if (panel.browserRetries > 0 || panel.lastId !== "") {
    note(panel, panel.lastId !== ""
      ? `reconnected by the browser, with Last-Event-ID: ${panel.lastId}: missed events follow`
      : "reconnected by the browser");
  }
  panel.streamOpen = true;
  panel.browserRetries = 0;
  setBadge(panel.el.badge, "connected");
}

function onError(panel, source) {
  // "error" fires when the stream ends or a reconnection fails. The
  // readyState tells which of the two situations we are in.
  if (source.readyState === EventSource.CONNECTING) {
    showBrowserReconnecting(panel);
  } else {
    // CLOSED: the answer was not a 200 text/event-stream (a 404, a 503
    // when the server is full …). EventSource never retries that.
    note(panel, "the server refused the stream; EventSource does not retry that. Press Connect to try again.", "error");
    stop(panel);
  }
}

/** The browser is waiting out the retry: delay, or a retry just failed. */
function showBrowserReconnecting(panel) {
  if (panel.streamOpen) {
    note(panel, `stream ended: the browser reconnects by itself after the server's retry: delay` +
      (panel.lastId !== "" ? ` and will send Last-Event-ID: ${panel.lastId}` : ""));
  } else {
    panel.browserRetries += 1;
  }
  panel.streamOpen = false;
  setBadge(panel.el.badge, "reconnecting", panel.browserRetries > 0
    ? `reconnecting (the browser's try ${panel.browserRetries + 1})`
    : "reconnecting");
}

/** Forgets the EventSource (close() stops all reconnecting). */
function stop(panel) {
  if (panel.source) panel.source.close();
  panel.source = null;
  panel.streamOpen = false;
  panel.browserRetries = 0;
  panel.clientId = null;
  setBadge(panel.el.badge, "disconnected");
  updateButtons(panel);
}

function disconnect(panel) {
  if (!panel.source) return;
  stop(panel);
  note(panel, "disconnected (EventSource.close(): the browser will not reconnect)");
}

// ---------------------------------------------------------------------
// The events
// ---------------------------------------------------------------------

function onEvent(panel, event) {
  const data = parseMessage(panel.el.list, event.data);
  if (data === undefined) return;
  // event.lastEventId is the browser's remembered id: the id: of this
  // event, or, if this event had no id: line, the last one before it.
  panel.lastId = event.lastEventId;
  const time = messageTime(data);

  switch (data.type) {
    case "welcome":
      showWelcome(panel, data, time);
      break;
    case "initial_data":
      // No id: line; the browser keeps the welcome's id, so we show none.
      addMessage(panel.el.list, { type: data.type, time, text: data.message });
      break;
    case "reset":
      showReset(panel, data, time);
      break;
    default:
      showBroadcast(panel, data, time);
  }
  panel.hooks.onMessage(data, event);
}

function showWelcome(panel, data, time) {
  // The welcome's id is this connection's resume point.
  panel.clientId = data.clientId;
  if (panel.highest === null) panel.highest = Number(panel.lastId);
  addMessage(panel.el.list, {
    type: "welcome",
    id: panel.lastId,
    time,
    text: `${data.message} (resume point: id ${panel.lastId})`,
  });
  panel.hooks.onClientId(data.clientId);
}

function showReset(panel, data, time) {
  // The server could not replay everything after our Last-Event-ID:
  // either it is older than the history holds, or (after a restart)
  // newer than anything this server process ever sent. Ids start
  // over from here.
  forgetIds(panel, Number(data.newestId));
  addMessage(panel.el.list, {
    type: "reset",
    kind: "error",
    flags: ["resume incomplete"],
    time,
    text: `${data.message}; the server's newest id is ${data.newestId}. Some events may have been missed.`,
  });
  panel.hooks.onReset(data);
}

function showBroadcast(panel, data, time) {
  // A broadcast carries an id: line, one more than the last.
  const id = Number(panel.lastId);
  const flags = idFlags(panel, id);
  rememberId(panel, id);
  addMessage(panel.el.list, { type: data.type, id: panel.lastId, time, text: describe(data), flags });
}

// ---------------------------------------------------------------------
// Event ids: making resuming visible
// ---------------------------------------------------------------------

/** Starts the bookkeeping over; `highest` is the id to count gaps from. */
function forgetIds(panel, highest) {
  panel.seen = new Set();
  panel.highest = highest;
}

/** What is wrong with this id, if anything: seen before, or ids skipped. */
function idFlags(panel, id) {
  if (panel.seen.has(id)) return ["seen twice!"];
  if (panel.highest !== null && id > panel.highest + 1) return [`gap: ids ${panel.highest + 1}–${id - 1} missed`];
  return [];
}

function rememberId(panel, id) {
  panel.seen.add(id);
  if (panel.highest === null || id > panel.highest) panel.highest = id;
}

// ---------------------------------------------------------------------
// POST /trigger-event
// ---------------------------------------------------------------------

async function submitTrigger(panel) {
  const message = readMessage(panel.el.input, panel.el.status);
  if (message === null) return;
  if (await trigger(panel, message)) panel.el.input.value = "";
}

// The page asks the server to broadcast. The answer comes back on this
// fetch; the event itself comes back on the stream (and to every
// WebSocket client). True when the server took the event.
async function trigger(panel, message) {
  panel.hooks.onTrigger(message);
  try {
    const response = await fetch("/trigger-event", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message }),
    });
    const answer = await response.json().catch(() => null);
    return showTriggerAnswer(panel, response, answer);
  } catch (error) {
    setStatusLine(panel.el.status, "error", `could not reach the server: ${error.message}`);
    return false;
  }
}

function showTriggerAnswer(panel, response, answer) {
  if (response.ok && answer) {
    setStatusLine(panel.el.status, "ok",
      `${response.status}: ${answer.message} (event id ${answer.id}, queued to ${answer.delivered} clients)`);
    return true;
  }
  setStatusLine(panel.el.status, "error",
    `${response.status}: ${answer && answer.error ? answer.error : response.statusText}`);
  return false;
}
