// inspector.js — the frame inspector: what actually went over the sockets.
//
// A page cannot see raw bytes: EventSource hands us parsed events, and
// WebSocket hands us unmasked, reassembled messages. The server can, so it
// reports them on GET /inspect, itself an SSE stream: one event per SSE
// event it wrote or WebSocket frame it read or wrote (src/inspect.rs). Each
// event's data is one record:
//
//   {"seq":3, "time":1795481434048, "dir":"in", "conn":4, "kind":"ws",
//    "len":116, "hex":"81ee0c7120f1…"}
//
//   seq   numbers the records; a jump means the server dropped some
//   time  when the server saw the bytes (milliseconds since 1970)
//   dir   "in" = browser to server, "out" = server to browser
//   conn  the server's connection id: the clientId of the welcome messages
//   kind  "sse" or "ws"
//   len   the length of the whole event or frame
//   hex   its first 256 bytes
//
// decode.js splits the bytes into labelled parts; this file keeps the last
// records, filters them to this page's own connections, and draws them.

import { hexToBytes, decodeSse, decodeWsFrame } from "./decode.js";
import { clockTime, element, setBadge, setStatusLine } from "./ui.js";

/** Records drawn at most (the newest). */
export const MAX_SHOWN = 200;
/** Records kept in memory, own and others', so "show all" has something
 *  to show and records that arrived before we knew our ids are not lost. */
const MAX_KEPT = 600;
/** How long the panels wait for /inspect to open before they connect anyway. */
const START_WAIT_MS = 1500;

/**
 * el:    { status, list, showAll, clear, summary, dropped }
 * hooks: { isOwn(conn) -> bool, onRecord(record, decoded, own) }
 * Returns { start() -> Promise, refresh() }.
 *
 * What the inspector remembers is in one object, `inspector`; each
 * function below takes it first.
 */
export function createInspector(el, hooks) {
  const inspector = {
    el,
    hooks,
    records: [],   // { record, decoded }, oldest first
    source: null,
    off: false,    // the server runs with --no-inspect
  };

  el.showAll.addEventListener("change", () => refresh(inspector));
  el.clear.addEventListener("click", () => {
    inspector.records = [];
    refresh(inspector);
  });

  return { start: () => start(inspector), refresh: () => refresh(inspector) };
}

// ---------------------------------------------------------------------
// The /inspect stream
// ---------------------------------------------------------------------

/**
 * Opens the stream. The promise resolves once it is open or has failed,
 * so app.js can open the panels after it: then the inspector sees their
 * very first bytes (the welcome messages).
 */
function start(inspector) {
  const { el } = inspector;
  return new Promise((resolve) => {
    const source = new EventSource("/inspect");
    inspector.source = source;
    setBadge(el.status, "connecting", "connecting…");
    // Don't hold the panels back for long if /inspect is slow to answer.
    const timer = setTimeout(resolve, START_WAIT_MS);
    const done = () => { clearTimeout(timer); resolve(); };

    source.addEventListener("open", () => {
      setBadge(el.status, "connected", "recording");
      done();
    });
    source.addEventListener("error", () => {
      onError(inspector, source);
      done();
    });
    source.addEventListener("message", (event) => add(inspector, JSON.parse(event.data)));
    // The server drops records for a listener that cannot keep up, and
    // tells us with an event named "dropped" (an event: line), which
    // reaches only listeners registered for that name.
    source.addEventListener("dropped", (event) => showDropped(el.dropped, JSON.parse(event.data)));
  });
}

function onError(inspector, source) {
  if (source.readyState === EventSource.CONNECTING) {
    // The server went away; EventSource is already retrying.
    setBadge(inspector.el.status, "reconnecting", "reconnecting");
  } else {
    // CLOSED: the answer was not an event stream. Ask why.
    explainFailure(inspector);
  }
}

// EventSource does not tell us the HTTP status. A plain fetch does: a
// 404 here means the server runs with --no-inspect.
async function explainFailure(inspector) {
  const { el } = inspector;
  try {
    const controller = new AbortController();
    const response = await fetch("/inspect", { signal: controller.signal });
    controller.abort(); // if it did open a stream, we don't want it
    if (response.status === 404) {
      inspector.off = true;
      setBadge(el.status, "off", "off");
      updateSummary(inspector);
      return;
    }
    setBadge(el.status, "disconnected", `unavailable (${response.status})`);
  } catch {
    setBadge(el.status, "disconnected", "unavailable");
  }
}

function showDropped(line, { dropped }) {
  line.hidden = false;
  setStatusLine(line, "error",
    `The server dropped ${dropped} records for this page so far: it queues a bounded number per listener and never waits for one.`);
}

// ---------------------------------------------------------------------
// Keeping and filtering records
// ---------------------------------------------------------------------

/** Decodes a record into labelled parts, by kind. */
function decode(record) {
  const bytes = hexToBytes(record.hex);
  return record.kind === "ws" ? decodeWsFrame(bytes) : decodeSse(bytes, record.len);
}

function add(inspector, record) {
  const { el, hooks, records } = inspector;
  const decoded = decode(record);
  const entry = { record, decoded };
  records.push(entry);
  if (records.length > MAX_KEPT) records.shift();
  const own = hooks.isOwn(record.conn);
  hooks.onRecord(record, decoded, own);
  if (own || el.showAll.checked) {
    el.list.prepend(draw(entry));
    while (el.list.children.length > MAX_SHOWN) el.list.lastElementChild.remove();
  }
  updateSummary(inspector);
}

/** Redraws the whole list (after the filter or our ids changed). */
function refresh(inspector) {
  const { el, hooks, records } = inspector;
  const shown = records.filter((e) => el.showAll.checked || hooks.isOwn(e.record.conn)).slice(-MAX_SHOWN);
  el.list.replaceChildren(...shown.reverse().map(draw));
  updateSummary(inspector);
}

function updateSummary(inspector) {
  const { el, hooks, records } = inspector;
  if (inspector.off) {
    el.summary.textContent = "The inspector is off: the server was started with --no-inspect (GET /inspect answers 404). Restart it without that flag to see the frames.";
    return;
  }
  const own = records.filter((e) => hooks.isOwn(e.record.conn)).length;
  const others = records.length - own;
  el.summary.textContent = el.showAll.checked
    ? `Showing records of all connections (${records.length} kept, newest first).`
    : `Showing this page's own connections (${own} records; ${others} from other connections hidden). Newest first.`;
}

// ---------------------------------------------------------------------
// Drawing one record
// ---------------------------------------------------------------------

/** One record as a list item: a summary line, then its labelled parts. */
function draw({ record, decoded }) {
  const item = element("li", `record record-${record.kind} record-${record.dir}`);
  item.dataset.kind = record.kind;
  item.dataset.dir = record.dir;
  item.dataset.conn = String(record.conn);
  const parts = element("div", "parts");
  parts.append(...decoded.parts.map(drawPart));
  item.append(drawHead(record, decoded), parts);
  return item;
}

/** The summary line: number, time, direction, what it is, connection, length. */
function drawHead(record, decoded) {
  const head = element("div", "record-head");
  const fields = [
    ["seq", `#${record.seq}`],
    ["time", clockTime(new Date(record.time))],
    ["dir", record.dir === "in" ? "browser → server" : "server → browser"],
    ["what", describeWhat(record, decoded)],
    ["conn", `connection ${record.conn}`],
    ["len", describeLength(record, decoded)],
  ];
  for (const [name, text] of fields) head.append(element("span", `record-${name}`, text));
  return head;
}

/** "WebSocket text frame, masked", "SSE event", "SSE comment" … */
function describeWhat(record, decoded) {
  if (record.kind === "sse") {
    return decoded.parts.length && decoded.parts[0].kind === "comment" ? "SSE comment" : "SSE event";
  }
  if (decoded.ok) return `WebSocket ${decoded.opcodeName} frame${decoded.masked ? ", masked" : ""}`;
  return "WebSocket frame";
}

function describeLength(record, decoded) {
  // The record's `len` is the whole frame; a frame's own header says the
  // same. If they ever disagreed, the record would be suspect: show both.
  if (record.kind === "ws" && decoded.ok && decoded.frameLength !== record.len) {
    return `${decoded.frameLength} bytes (the record's len says ${record.len})`;
  }
  return `${record.len} bytes`;
}

/** One labelled part: label | hex | text, and the note under them. */
function drawPart(part) {
  const row = element("div", `part part-${part.kind}`);
  row.dataset.part = part.kind;
  row.append(
    element("span", "part-label", part.label),
    element("code", "part-hex", part.hex),
    element("code", "part-text", part.text),
    element("span", "part-note", part.note),
  );
  return row;
}
