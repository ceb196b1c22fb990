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

/** The wait before attempt n (1-based): 1 s, 2 s, 4 s, 8 s, 16 s. */
export function backoffDelay(attempt) {
  return BASE_DELAY_MS * 2 ** (attempt - 1);
}

/**
 * Wires the panel's elements and returns { connect, disconnect, clientId }.
 *
 * el:    { badge, connect, disconnect, list, form, username, input, status }
 * hooks: { onClientId(id), onMessage(data), onSend(message) }
 */
export function createWsPanel(el, hooks) {
  let socket = null;      // the current WebSocket, if any
  let wanted = false;     // true from Connect until Disconnect (or giving up)
  let attempt = 0;        // reconnection attempts since the last success
  let retryTimer = null;  // the pending setTimeout of the next attempt
  let clientId = null;

  // ws:// for a page served over http://, wss:// over https://, and
  // location.host ("127.0.0.1:3000") so the page works on any port.
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;

  function updateButtons() {
    el.connect.disabled = wanted;
    el.disconnect.disabled = !wanted;
  }

  function connect() {
    if (wanted) return;
    wanted = true;
    attempt = 0;
    open();
    updateButtons();
  }

  function open() {
    retryTimer = null;
    setBadge(el.badge, attempt > 0 ? "reconnecting" : "connecting",
      attempt > 0 ? `reconnecting (attempt ${attempt}/${MAX_ATTEMPTS})` : "connecting…");
    const ws = new WebSocket(url);
    socket = ws;

    ws.addEventListener("open", () => {
      if (attempt > 0) {
        addMessage(el.list, { type: "connection", kind: "system", text: `reconnected on attempt ${attempt}/${MAX_ATTEMPTS}` });
      }
      attempt = 0;
      setBadge(el.badge, "connected");
    });

    ws.addEventListener("message", (event) => {
      // event.data is the whole message, already unmasked and reassembled.
      const data = parseMessage(el.list, event.data);
      if (data === undefined) return;
      if (data.type === "welcome") {
        clientId = data.clientId;
        hooks.onClientId(data.clientId);
      }
      addMessage(el.list, {
        type: data.type,
        kind: data.type === "error" ? "error" : undefined,
        time: messageTime(data),
        text: data.type === "welcome" ? data.message : describe(data),
      });
      hooks.onMessage(data);
    });

    // "error" carries no detail at all (on purpose: a page must not learn
    // why a connection to another host failed). "close" follows it.
    ws.addEventListener("close", (event) => {
      if (socket !== ws) return; // an old socket we already gave up on
      socket = null;
      clientId = null;
      // 1006 is never sent on the wire: the browser reports it when the
      // connection ended without a close frame (server killed, network cut).
      const why = `closed with code ${event.code}${event.reason ? ` "${event.reason}"` : ""}` +
        (event.code === 1006 ? " (no close frame: the connection just dropped)" : "");
      if (!wanted) {
        setBadge(el.badge, "disconnected");
        addMessage(el.list, { type: "connection", kind: "system", text: why });
        return;
      }
      scheduleReconnect(why);
    });
  }

  // Our reconnect: the thing EventSource gives for free.
  function scheduleReconnect(why) {
    attempt += 1;
    if (attempt > MAX_ATTEMPTS) {
      wanted = false;
      updateButtons();
      setBadge(el.badge, "disconnected", "disconnected (gave up)");
      addMessage(el.list, { type: "connection", kind: "error", text: `${why}; gave up after ${MAX_ATTEMPTS} attempts. Press Connect to try again.` });
      return;
    }
    const delay = backoffDelay(attempt);
    setBadge(el.badge, "reconnecting", `reconnecting (attempt ${attempt}/${MAX_ATTEMPTS})`);
    addMessage(el.list, {
      type: "connection",
      kind: "system",
      text: `${why}; attempt ${attempt}/${MAX_ATTEMPTS} in ${delay / 1000} s`,
    });
    retryTimer = setTimeout(open, delay);
  }

  function disconnect() {
    if (!wanted) return;
    wanted = false;
    if (retryTimer) clearTimeout(retryTimer);
    retryTimer = null;
    updateButtons();
    if (socket) {
      // 1000 = normal closure. The close event (above) updates the badge
      // once the server has answered with its own close frame.
      socket.close(1000, "the user pressed Disconnect");
    } else {
      setBadge(el.badge, "disconnected");
    }
  }

  function send() {
    const message = readMessage(el.input, el.status);
    if (message === null) return;
    const username = el.username.value.trim() || "Anonymous";
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      setStatusLine(el.status, "error", "not connected: press Connect first");
      return;
    }
    hooks.onSend(message);
    // One text frame: the browser masks it with a fresh random key.
    socket.send(JSON.stringify({ type: "chat", message, username }));
    setStatusLine(el.status, "ok", `sent ${message.length} characters as one text frame`);
    el.input.value = "";
  }

  el.connect.addEventListener("click", connect);
  el.disconnect.addEventListener("click", disconnect);
  el.form.addEventListener("submit", (event) => {
    event.preventDefault(); // stay on the page; Enter in either box sends
    send();
  });
  updateButtons();

  return { connect, disconnect, get clientId() { return clientId; } };
}
