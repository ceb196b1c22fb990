// ws-panel.js — the WebSocket panel.
//
// The browser's WebSocket object does the opening handshake (GET with
// Upgrade: websocket), masks every frame we send, unmasks nothing (the
// server's frames are not masked), reassembles fragments, answers pings,
// and hands us whole messages. What it does NOT do is reconnect: when the
// connection closes, the object is finished (readyState CLOSED) and a new
// `new WebSocket(url)` is the only way back. So this file has its own
// reconnect loop, the way the article's client had: wait 1 s, 2 s, 4 s,
// 8 s, 16 s — at most 5 tries — then give up.
//
// readyState values of a WebSocket:
//   WebSocket.CONNECTING (0)  handshake in progress
//   WebSocket.OPEN       (1)  messages can flow both ways
//   WebSocket.CLOSING    (2)  close frames are being exchanged
//   WebSocket.CLOSED     (3)  over, for good

import { addMessage, setBadge, setStatusLine, readMessage, parseMessage, messageTime, describe } from "./ui.js";

/** How many times we try to reconnect before giving up. */
export const MAX_ATTEMPTS = 5;
/** The first wait; each further attempt waits twice as long. */
export const BASE_DELAY_MS = 1000;

// Close codes (RFC 6455 §7.4.1) this panel uses.
/** Normal closure: what we send when the user presses Disconnect. */
const CLOSE_NORMAL = 1000;
/** Never sent on the wire: the browser reports it when the connection
 *  ended without a close frame (server killed, network cut). */
const CLOSE_ABNORMAL = 1006;

/** The wait before attempt n (1-based): 1 s, 2 s, 4 s, 8 s, 16 s. */
export function backoffDelay(attempt) {
  return BASE_DELAY_MS * 2 ** (attempt - 1);
}

/** "attempt 2/5", as the badge and the messages say it. */
function attemptText(attempt) {
  return `attempt ${attempt}/${MAX_ATTEMPTS}`;
}

/**
 * Wires the panel's elements and returns { connect, disconnect, clientId }.
 *
 * el:    { badge, connect, disconnect, list, form, username, input, status }
 * hooks: { onClientId(id), onMessage(data), onSend(message) }
 *
 * Everything the panel remembers is in one object, `panel`; each function
 * below takes it first, so each can be read on its own.
 */
export function createWsPanel(el, hooks) {
  const panel = {
    el,
    hooks,
    url: socketUrl(),
    socket: null,      // the current WebSocket, if any
    wanted: false,     // true from Connect until Disconnect (or giving up)
    attempt: 0,        // reconnection attempts since the last success
    retryTimer: null,  // the pending setTimeout of the next attempt
    clientId: null,
  };

  el.connect.addEventListener("click", () => connect(panel));
  el.disconnect.addEventListener("click", () => disconnect(panel));
  el.form.addEventListener("submit", (event) => {
    event.preventDefault(); // stay on the page; Enter in either box sends
    send(panel);
  });
  updateButtons(panel);

  return {
    connect: () => connect(panel),
    disconnect: () => disconnect(panel),
    get clientId() { return panel.clientId; },
  };
}

// ws:// for a page served over http://, wss:// over https://, and
// location.host ("127.0.0.1:3000") so the page works on any port.
function socketUrl() {
  return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
}

function updateButtons(panel) {
  panel.el.connect.disabled = panel.wanted;
  panel.el.disconnect.disabled = !panel.wanted;
}

/** A line the page itself writes about the connection (not from the server). */
function note(panel, text, kind = "system") {
  addMessage(panel.el.list, { type: "connection", kind, text });
}

// ---------------------------------------------------------------------
// One connection: open it, and watch for the end
// ---------------------------------------------------------------------

function connect(panel) {
  if (panel.wanted) return;
  panel.wanted = true;
  panel.attempt = 0;
  open(panel);
  updateButtons(panel);
}

function open(panel) {
  panel.retryTimer = null;
  if (panel.attempt > 0) {
    setBadge(panel.el.badge, "reconnecting", `reconnecting (${attemptText(panel.attempt)})`);
  } else {
    setBadge(panel.el.badge, "connecting", "connecting…");
  }
  const ws = new WebSocket(panel.url);
  panel.socket = ws;

  ws.addEventListener("open", () => onOpen(panel));
  ws.addEventListener("message", (event) => onMessage(panel, event));
  // "error" carries no detail at all (on purpose: a page must not learn
  // why a connection to another host failed). "close" follows it.
  ws.addEventListener("close", (event) => onClose(panel, ws, event));
}

function onOpen(panel) {
  if (panel.attempt > 0) note(panel, `reconnected on ${attemptText(panel.attempt)}`);
  panel.attempt = 0;
  setBadge(panel.el.badge, "connected");
}

function onMessage(panel, event) {
  // event.data is the whole message, already unmasked and reassembled.
  const data = parseMessage(panel.el.list, event.data);
  if (data === undefined) return;
  if (data.type === "welcome") {
    panel.clientId = data.clientId;
    panel.hooks.onClientId(data.clientId);
  }
  addMessage(panel.el.list, {
    type: data.type,
    kind: data.type === "error" ? "error" : undefined,
    time: messageTime(data),
    text: data.type === "welcome" ? data.message : describe(data),
  });
  panel.hooks.onMessage(data);
}

function onClose(panel, ws, event) {
  if (panel.socket !== ws) return; // an old socket we already gave up on
  panel.socket = null;
  panel.clientId = null;
  const why = closeText(event);
  if (!panel.wanted) {
    setBadge(panel.el.badge, "disconnected");
    note(panel, why);
    return;
  }
  scheduleReconnect(panel, why);
}

/** "closed with code 1000 "reason"", and what a 1006 means. */
function closeText(event) {
  return `closed with code ${event.code}${event.reason ? ` "${event.reason}"` : ""}` +
    (event.code === CLOSE_ABNORMAL ? " (no close frame: the connection just dropped)" : "");
}

// ---------------------------------------------------------------------
// Our reconnect: the thing EventSource gives for free
// ---------------------------------------------------------------------

function scheduleReconnect(panel, why) {
  panel.attempt += 1;
  if (panel.attempt > MAX_ATTEMPTS) {
    giveUp(panel, why);
    return;
  }
  const delay = backoffDelay(panel.attempt);
  setBadge(panel.el.badge, "reconnecting", `reconnecting (${attemptText(panel.attempt)})`);
  note(panel, `${why}; ${attemptText(panel.attempt)} in ${delay / 1000} s`);
  panel.retryTimer = setTimeout(() => open(panel), delay);
}

function giveUp(panel, why) {
  panel.wanted = false;
  updateButtons(panel);
  setBadge(panel.el.badge, "disconnected", "disconnected (gave up)");
  note(panel, `${why}; gave up after ${MAX_ATTEMPTS} attempts. Press Connect to try again.`, "error");
}

function disconnect(panel) {
  if (!panel.wanted) return;
  panel.wanted = false;
  if (panel.retryTimer) clearTimeout(panel.retryTimer);
  panel.retryTimer = null;
  updateButtons(panel);
  if (panel.socket) {
    // The close event (above) updates the badge once the server has
    // answered with its own close frame.
    panel.socket.close(CLOSE_NORMAL, "the user pressed Disconnect");
  } else {
    setBadge(panel.el.badge, "disconnected");
  }
}

// ---------------------------------------------------------------------
// Sending a chat message
// ---------------------------------------------------------------------

function send(panel) {
  const { el, socket } = panel;
  const message = readMessage(el.input, el.status);
  if (message === null) return;
  const username = el.username.value.trim() || "Anonymous";
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    setStatusLine(el.status, "error", "not connected: press Connect first");
    return;
  }
  panel.hooks.onSend(message);
  // One text frame: the browser masks it with a fresh random key.
  socket.send(JSON.stringify({ type: "chat", message, username }));
  setStatusLine(el.status, "ok", `sent ${message.length} characters as one text frame`);
  el.input.value = "";
}
