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
 */
export function createSsePanel(el, hooks) {
  let source = null;        // the EventSource, while we want one
  let streamOpen = false;   // whether the last thing we saw was "open"
  let browserRetries = 0;   // failed reconnection attempts in a row
  let lastId = "";          // the last event id the browser told us about
  let clientId = null;      // from this connection's welcome message

  // For flagging duplicates and gaps: ids of broadcasts seen since we
  // connected (or since a reset), and the highest of them.
  let seen = new Set();
  let highest = null;

  function updateButtons() {
    el.connect.disabled = source !== null;
    el.disconnect.disabled = source === null;
  }

  function connect() {
    if (source) return;
    // A fresh EventSource has no last event id: the server starts us at
    // the newest event (the welcome's id tells us which).
    seen = new Set();
    highest = null;
    lastId = "";
    source = new EventSource("/events");
    setBadge(el.badge, "connecting", "connecting…");
    updateButtons();

    source.addEventListener("open", () => {
      // After a reconnect the browser has just sent "Last-Event-ID: <lastId>"
      // in the request headers; the events we missed come next.
      if (browserRetries > 0 || lastId !== "") {
        addMessage(el.list, {
          type: "stream",
          kind: "system",
          text: lastId !== ""
            ? `reconnected by the browser, with Last-Event-ID: ${lastId}: missed events follow`
            : "reconnected by the browser",
        });
      }
      streamOpen = true;
      browserRetries = 0;
      setBadge(el.badge, "connected");
    });

    source.addEventListener("error", () => {
      // "error" fires when the stream ends or a reconnection fails. The
      // readyState tells which of the two situations we are in.
      if (source.readyState === EventSource.CONNECTING) {
        if (streamOpen) {
          addMessage(el.list, {
            type: "stream",
            kind: "system",
            text: `stream ended: the browser reconnects by itself after the server's retry: delay` +
              (lastId !== "" ? ` and will send Last-Event-ID: ${lastId}` : ""),
          });
        } else {
          browserRetries += 1;
        }
        streamOpen = false;
        setBadge(el.badge, "reconnecting",
          browserRetries > 0 ? `reconnecting (the browser's try ${browserRetries + 1})` : "reconnecting");
      } else {
        // CLOSED: the answer was not a 200 text/event-stream (a 404, a 503
        // when the server is full …). EventSource never retries that.
        addMessage(el.list, {
          type: "stream",
          kind: "error",
          text: "the server refused the stream; EventSource does not retry that. Press Connect to try again.",
        });
        stop();
      }
    });

    // Unnamed events ("message" type: no event: line) — all of ours.
    source.addEventListener("message", (event) => onEvent(event));
  }

  function onEvent(event) {
    const data = parseMessage(el.list, event.data);
    if (data === undefined) return;
    // event.lastEventId is the browser's remembered id: the id: of this
    // event, or, if this event had no id: line, the last one before it.
    lastId = event.lastEventId;
    const time = messageTime(data);

    switch (data.type) {
      case "welcome": {
        // The welcome's id is this connection's resume point.
        clientId = data.clientId;
        if (highest === null) highest = Number(lastId);
        addMessage(el.list, { type: "welcome", id: lastId, time, text: `${data.message} (resume point: id ${lastId})` });
        hooks.onClientId(data.clientId);
        break;
      }
      case "initial_data":
        // No id: line; the browser keeps the welcome's id, so we show none.
        addMessage(el.list, { type: data.type, time, text: data.message });
        break;
      case "reset": {
        // The server could not replay everything after our Last-Event-ID:
        // either it is older than the history holds, or (after a restart)
        // newer than anything this server process ever sent. Ids start
        // over from here.
        seen = new Set();
        highest = Number(data.newestId);
        addMessage(el.list, {
          type: "reset",
          kind: "error",
          flags: ["resume incomplete"],
          time,
          text: `${data.message}; the server's newest id is ${data.newestId}. Some events may have been missed.`,
        });
        hooks.onReset(data);
        break;
      }
      default: {
        // A broadcast: it carries an id: line, one more than the last.
        const id = Number(lastId);
        const flags = [];
        if (seen.has(id)) flags.push("seen twice!");
        else if (highest !== null && id > highest + 1) flags.push(`gap: ids ${highest + 1}–${id - 1} missed`);
        seen.add(id);
        if (highest === null || id > highest) highest = id;
        addMessage(el.list, { type: data.type, id: lastId, time, text: describe(data), flags });
      }
    }
    hooks.onMessage(data, event);
  }

  /** Forgets the EventSource (close() stops all reconnecting). */
  function stop() {
    if (source) source.close();
    source = null;
    streamOpen = false;
    browserRetries = 0;
    clientId = null;
    setBadge(el.badge, "disconnected");
    updateButtons();
  }

  function disconnect() {
    if (!source) return;
    stop();
    addMessage(el.list, { type: "stream", kind: "system", text: "disconnected (EventSource.close(): the browser will not reconnect)" });
  }

  // POST /trigger-event: the page asks the server to broadcast. The answer
  // comes back on this fetch; the event itself comes back on the stream
  // (and to every WebSocket client).
  async function trigger(message) {
    hooks.onTrigger(message);
    try {
      const response = await fetch("/trigger-event", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ message }),
      });
      const answer = await response.json().catch(() => null);
      if (response.ok && answer) {
        setStatusLine(el.status, "ok", `${response.status}: ${answer.message} (event id ${answer.id}, queued to ${answer.delivered} clients)`);
        return true;
      }
      setStatusLine(el.status, "error", `${response.status}: ${answer && answer.error ? answer.error : response.statusText}`);
    } catch (error) {
      setStatusLine(el.status, "error", `could not reach the server: ${error.message}`);
    }
    return false;
  }

  el.connect.addEventListener("click", connect);
  el.disconnect.addEventListener("click", disconnect);
  // A real <form>: Enter in the text box submits it.
  el.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = readMessage(el.input, el.status);
    if (message === null) return;
    if (await trigger(message)) el.input.value = "";
  });
  updateButtons();

  return { connect, disconnect, get clientId() { return clientId; } };
}
