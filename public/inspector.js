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
import { clockTime, element, setBadge } from "./ui.js";

/** Records drawn at most (the newest). */
export const MAX_SHOWN = 200;
/** Records kept in memory, own and others', so "show all" has something
 *  to show and records that arrived before we knew our ids are not lost. */
const MAX_KEPT = 600;

/**
 * el:    { status, list, showAll, clear, summary, dropped }
 * hooks: { isOwn(conn) -> bool, onRecord(record, decoded, own) }
 * Returns { start() -> Promise, refresh() }.
 */
export function createInspector(el, hooks) {
  let records = [];    // { record, decoded }, oldest first
  let source = null;
  let off = false;     // the server runs with --no-inspect

  /**
   * Opens the stream. The promise resolves once it is open or has failed,
   * so app.js can open the panels after it: then the inspector sees their
   * very first bytes (the welcome messages).
   */
  function start() {
    return new Promise((resolve) => {
      source = new EventSource("/inspect");
      setBadge(el.status, "connecting", "connecting…");
      // Don't hold the panels back for long if /inspect is slow to answer.
      const timer = setTimeout(resolve, 1500);
      const done = () => { clearTimeout(timer); resolve(); };

      source.addEventListener("open", () => {
        setBadge(el.status, "connected", "recording");
        done();
      });
      source.addEventListener("error", () => {
        if (source.readyState === EventSource.CONNECTING) {
          // The server went away; EventSource is already retrying.
          setBadge(el.status, "reconnecting", "reconnecting");
        } else {
          // CLOSED: the answer was not an event stream. Ask why.
          explainFailure();
        }
        done();
      });
      source.addEventListener("message", (event) => add(JSON.parse(event.data)));
      // The server drops records for a listener that cannot keep up, and
      // tells us with an event named "dropped" (an event: line), which
      // reaches only listeners registered for that name.
      source.addEventListener("dropped", (event) => {
        const { dropped } = JSON.parse(event.data);
        el.dropped.hidden = false;
        el.dropped.textContent = `The server dropped ${dropped} records for this page so far: it queues a bounded number per listener and never waits for one.`;
      });
    });
  }

  // EventSource does not tell us the HTTP status. A plain fetch does: a
  // 404 here means the server runs with --no-inspect.
  async function explainFailure() {
    try {
      const controller = new AbortController();
      const response = await fetch("/inspect", { signal: controller.signal });
      controller.abort(); // if it did open a stream, we don't want it
      if (response.status === 404) {
        off = true;
        setBadge(el.status, "off", "off");
        updateSummary();
        return;
      }
      setBadge(el.status, "disconnected", `unavailable (${response.status})`);
    } catch {
      setBadge(el.status, "disconnected", "unavailable");
    }
  }

  /** Decodes a record into labelled parts, by kind. */
  function decode(record) {
    const bytes = hexToBytes(record.hex);
    return record.kind === "ws" ? decodeWsFrame(bytes) : decodeSse(bytes, record.len);
  }

  function add(record) {
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
    updateSummary();
  }

  /** Redraws the whole list (after the filter or our ids changed). */
  function refresh() {
    const shown = records.filter((e) => el.showAll.checked || hooks.isOwn(e.record.conn)).slice(-MAX_SHOWN);
    el.list.replaceChildren(...shown.reverse().map(draw));
    updateSummary();
  }

  function updateSummary() {
    if (off) {
      el.summary.textContent = "The inspector is off: the server was started with --no-inspect (GET /inspect answers 404). Restart it without that flag to see the frames.";
      return;
    }
    const own = records.filter((e) => hooks.isOwn(e.record.conn)).length;
    const others = records.length - own;
    el.summary.textContent = el.showAll.checked
      ? `Showing records of all connections (${records.length} kept, newest first).`
      : `Showing this page's own connections (${own} records; ${others} from other connections hidden). Newest first.`;
  }

  /** One record as a list item: a summary line, then its labelled parts. */
  function draw({ record, decoded }) {
    const item = document.createElement("li");
    item.className = `record record-${record.kind} record-${record.dir}`;
    item.dataset.kind = record.kind;
    item.dataset.dir = record.dir;
    item.dataset.conn = String(record.conn);

    const head = document.createElement("div");
    head.className = "record-head";
    const arrow = record.dir === "in" ? "browser → server" : "server → browser";
    let what = record.kind === "sse" ? "SSE event" : "WebSocket frame";
    if (record.kind === "ws" && decoded.ok) {
      what = `WebSocket ${decoded.opcodeName} frame${decoded.masked ? ", masked" : ""}`;
    } else if (record.kind === "sse" && decoded.parts.length && decoded.parts[0].kind === "comment") {
      what = "SSE comment";
    }
    // The record's `len` is the whole frame; a frame's own header says the
    // same. If they ever disagreed, the record would be suspect: show both.
    let length = `${record.len} bytes`;
    if (record.kind === "ws" && decoded.ok && decoded.frameLength !== record.len) {
      length = `${decoded.frameLength} bytes (the record's len says ${record.len})`;
    }
    const fields = [
      ["seq", `#${record.seq}`],
      ["time", clockTime(new Date(record.time))],
      ["dir", arrow],
      ["what", what],
      ["conn", `connection ${record.conn}`],
      ["len", length],
    ];
    for (const [name, text] of fields) {
      const span = document.createElement("span");
      span.className = `record-${name}`;
      span.textContent = text;
      head.append(span);
    }

    const parts = document.createElement("div");
    parts.className = "parts";
    for (const part of decoded.parts) {
      const row = document.createElement("div");
      row.className = `part part-${part.kind}`;
      row.dataset.part = part.kind;
      row.append(
        element("span", "part-label", part.label),
        element("code", "part-hex", part.hex),
        element("code", "part-text", part.text),
        element("span", "part-note", part.note),
      );
      parts.append(row);
    }
    item.append(head, parts);
    return item;
  }

  el.showAll.addEventListener("change", refresh);
  el.clear.addEventListener("click", () => {
    records = [];
    refresh();
  });

  return { start, refresh };
}
