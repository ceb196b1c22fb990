// app.js — where the page starts. It finds the elements, builds the two
// panels, the inspector and the measurements, and connects them:
//
//   inspector.js   GET /inspect: the bytes the server read and wrote
//   sse-panel.js   GET /events with EventSource, POST /trigger-event
//   ws-panel.js    ws://<host>/ws with WebSocket, and our own reconnect
//   measure.js     the live figures of the comparison table, GET /stats
//   decode.js      bytes -> labelled parts (used by the inspector)
//   ui.js          badges, status lines and message lists
//
// Loaded as a module (<script type="module">): modules run after the page
// has been parsed, so every element below exists already.

import { createSsePanel } from "./sse-panel.js";
import { createWsPanel } from "./ws-panel.js";
import { createInspector } from "./inspector.js";
import { createMeasurements } from "./measure.js";

const $ = (id) => document.getElementById(id);

// The server's connection ids of this page's own connections, learned from
// the welcome messages (clientId). The inspector shows only their records
// unless "show all connections" is ticked. An SSE reconnect is a new
// connection with a new id, so the set grows; it starts over when the
// server restarted (ids start from 1 again, and an old id of ours may now
// belong to somebody else).
let ownIds = new Set();

const measure = createMeasurements({
  sseBytes: $("m-sse-bytes"),
  wsBytes: $("m-ws-bytes"),
  sseLatency: $("m-sse-latency"),
  wsLatency: $("m-ws-latency"),
  sseConns: $("m-sse-conns"),
  wsConns: $("m-ws-conns"),
  server: $("m-server"),
});

const inspector = createInspector(
  {
    status: $("inspector-badge"),
    list: $("records"),
    showAll: $("show-all"),
    clear: $("clear-records"),
    summary: $("inspector-summary"),
    dropped: $("inspector-dropped"),
  },
  {
    isOwn: (conn) => ownIds.has(conn),
    onRecord: (record, decoded, own) => measure.noteRecord(record, decoded, own),
  },
);

function addOwnId(id) {
  ownIds.add(id);
  inspector.refresh(); // records that came before the welcome now count as ours
}

const sse = createSsePanel(
  {
    badge: $("sse-badge"),
    connect: $("sse-connect"),
    disconnect: $("sse-disconnect"),
    list: $("sse-messages"),
    form: $("trigger-form"),
    input: $("trigger-message"),
    status: $("trigger-status"),
  },
  {
    onClientId: addOwnId,
    onMessage: (data) => measure.noteSseMessage(data),
    onTrigger: (message) => measure.noteTrigger(message),
    onReset: () => {
      // The server restarted (or we fell out of its history): keep only the
      // ids of connections that are open now.
      ownIds = new Set([sse.clientId, ws.clientId].filter((id) => id !== null));
      inspector.refresh();
    },
  },
);

const ws = createWsPanel(
  {
    badge: $("ws-badge"),
    connect: $("ws-connect"),
    disconnect: $("ws-disconnect"),
    list: $("ws-messages"),
    form: $("chat-form"),
    username: $("chat-username"),
    input: $("chat-message"),
    status: $("chat-status"),
  },
  {
    onClientId: addOwnId,
    onMessage: (data) => measure.noteWsMessage(data, ws.clientId),
    onSend: (message) => measure.noteWsSend(message),
  },
);

// The inspector first, so that it sees the panels' very first bytes; then
// both panels connect by themselves, and the /stats polling starts.
inspector.start().then(() => {
  sse.connect();
  ws.connect();
});
measure.startStatsPolling();
