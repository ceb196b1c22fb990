// measure.js — the live figures in the comparison table.
//
// Three things are measured while the page is open:
//
//   1. Bytes on the wire per message. The inspector's records give the real
//      length of each SSE event and WebSocket frame; the JSON inside is the
//      payload. The difference is the framing: what each protocol costs.
//   2. Latency. For WebSocket, the round trip of a chat message: from
//      ws.send() to our own message coming back in the broadcast. For SSE,
//      from the POST /trigger-event to the event arriving on the
//      EventSource. Both on this machine, so mostly the server's own time.
//   3. The server's counts, from GET /stats every few seconds.
//
// performance.now() is a monotonic clock in milliseconds with fractions:
// unlike Date.now(), it never jumps when the system clock is adjusted.

import { OPCODES } from "./decode.js";

/** How often GET /stats is asked. */
export const STATS_EVERY_MS = 3000;
/** A message sent this long ago and not seen coming back is not coming. */
const GIVE_UP_MS = 30_000;

const encoder = new TextEncoder();

/** Running figures for one kind of message. */
function series() {
  return { count: 0, sum: 0, last: null };
}

function addSample(s, value) {
  s.count += 1;
  s.sum += value;
  s.last = value;
}

const average = (s) => (s.count ? s.sum / s.count : null);
const ms = (value) => `${value.toFixed(1)} ms`;

/**
 * cells: { sseBytes, wsBytes, sseLatency, wsLatency, sseConns, wsConns,
 *          server } — table cells (or other elements) to write into.
 * Returns the note… functions app.js calls, and startStatsPolling().
 *
 * Everything measured so far is in one object, `figures`; each function
 * below takes it first.
 */
export function createMeasurements(cells) {
  const figures = {
    cells,
    // Framing overhead in bytes, and the last (wire, payload) pair seen.
    bytes: {
      sse: { overhead: series(), lastPair: null },
      wsOut: { overhead: series(), lastPair: null },
      wsIn: { overhead: series(), lastPair: null },
    },
    sseDelivery: series(),
    wsRoundTrip: series(),
    // Messages sent and not yet seen coming back: { message, t0 }.
    pendingTriggers: [],
    pendingChats: [],
  };
  render(figures);
  return {
    noteTrigger: (message) => noteTrigger(figures, message),
    noteSseMessage: (data) => noteSseMessage(figures, data),
    noteWsSend: (message) => noteWsSend(figures, message),
    noteWsMessage: (data, ownClientId) => noteWsMessage(figures, data, ownClientId),
    noteRecord: (record, decoded, own) => noteRecord(figures, record, decoded, own),
    startStatsPolling: () => startStatsPolling(cells),
  };
}

// ---------------------------------------------------------------------
// Latency
// ---------------------------------------------------------------------

function forgetOld(list) {
  const cutoff = performance.now() - GIVE_UP_MS;
  return list.filter((p) => p.t0 > cutoff);
}

/** Finds and removes the oldest pending entry with this message text. */
function take(list, message) {
  const index = list.findIndex((p) => p.message === message);
  return index === -1 ? null : list.splice(index, 1)[0];
}

function noteTrigger(figures, message) {
  figures.pendingTriggers = forgetOld(figures.pendingTriggers);
  figures.pendingTriggers.push({ message, t0: performance.now() });
}

function noteSseMessage(figures, data) {
  if (data.type !== "notification") return;
  const sent = take(figures.pendingTriggers, data.message);
  if (!sent) return;
  addSample(figures.sseDelivery, performance.now() - sent.t0);
  render(figures);
}

function noteWsSend(figures, message) {
  figures.pendingChats = forgetOld(figures.pendingChats);
  figures.pendingChats.push({ message, t0: performance.now() });
}

function noteWsMessage(figures, data, ownClientId) {
  // Only our own chat coming back counts as a round trip.
  if (data.type !== "chat" || data.clientId !== ownClientId) return;
  const sent = take(figures.pendingChats, data.message);
  if (!sent) return;
  addSample(figures.wsRoundTrip, performance.now() - sent.t0);
  render(figures);
}

// ---------------------------------------------------------------------
// Bytes on the wire
// ---------------------------------------------------------------------

/** Called by the inspector for every record it receives. */
function noteRecord(figures, record, decoded, own) {
  if (!own) return;
  if (record.kind === "sse") {
    noteSseEvent(figures, record, decoded);
  } else if (decoded.ok && decoded.opcode === OPCODES.text) {
    // The frame's own header says how long it is (and agrees with the
    // record's `len`, which counts the whole frame).
    const kind = record.dir === "in" ? figures.bytes.wsIn : figures.bytes.wsOut;
    sample(figures, kind, decoded.frameLength, decoded.payloadLength);
  }
}

function noteSseEvent(figures, record, decoded) {
  // Only whole events that carry data (not comments, not cut records).
  if (!decoded.complete || decoded.dataText === "") return;
  // The retry: line rides on the welcome; leave that one out so the
  // figure is what every broadcast costs.
  if (decoded.parts.some((p) => p.kind === "retry")) return;
  const payload = encoder.encode(decoded.dataText).length;
  sample(figures, figures.bytes.sse, record.len, payload);
}

function sample(figures, kind, wire, payload) {
  addSample(kind.overhead, wire - payload);
  kind.lastPair = { wire, payload };
  render(figures);
}

// ---------------------------------------------------------------------
// Writing the figures into the table
// ---------------------------------------------------------------------

function describeBytes(kind, label) {
  if (!kind.lastPair) return `${label}: nothing measured yet`;
  const { wire, payload } = kind.lastPair;
  const avg = average(kind.overhead);
  return `${label}: ${wire} B on the wire for ${payload} B of JSON (+${wire - payload} B); ` +
    `average +${avg.toFixed(1)} B over ${kind.overhead.count}`;
}

function describeLatency(s, label) {
  if (!s.count) return `${label}: nothing measured yet`;
  return `${label}: ${ms(s.last)} (last), ${ms(average(s))} average over ${s.count}`;
}

function render({ cells, bytes, sseDelivery, wsRoundTrip }) {
  cells.sseBytes.textContent = describeBytes(bytes.sse, "each event");
  cells.wsBytes.textContent = `${describeBytes(bytes.wsOut, "server → browser")}. ` +
    `${describeBytes(bytes.wsIn, "browser → server (masked)")}.`;
  cells.sseLatency.textContent = describeLatency(sseDelivery, "POST /trigger-event → event on the EventSource");
  cells.wsLatency.textContent = describeLatency(wsRoundTrip, "chat sent → own broadcast back");
}

// ---------------------------------------------------------------------
// GET /stats
// ---------------------------------------------------------------------

async function pollStats(cells) {
  try {
    const response = await fetch("/stats", { cache: "no-store" });
    const stats = await response.json();
    cells.sseConns.textContent = `${stats.sse_connections} open SSE streams`;
    cells.wsConns.textContent = `${stats.ws_connections} open WebSocket connections`;
    cells.server.textContent = `${stats.events_sent} events broadcast, server up ${stats.uptime_secs} s`;
    cells.server.dataset.state = "ok";
  } catch {
    cells.server.textContent = "the server does not answer GET /stats (is it running?)";
    cells.server.dataset.state = "down";
  }
}

function startStatsPolling(cells) {
  pollStats(cells);
  setInterval(() => pollStats(cells), STATS_EVERY_MS);
}
