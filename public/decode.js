// decode.js — turning the inspector's raw bytes into labelled parts.
//
// The server's /inspect stream sends one record per SSE event or WebSocket
// frame it wrote or read (see src/inspect.rs). A record carries the first
// 256 bytes of that event or frame as hex. This module turns those bytes
// into a list of "parts", each with a label, its bytes as hex, and what the
// bytes mean, so the page can show the wire format piece by piece.
//
// Nothing here touches the page or the network: every function takes
// bytes or a string and returns plain values. The browser test imports this
// file directly in Node and checks it against RFC 6455's own examples.

// ---------------------------------------------------------------------
// Bytes and hex
// ---------------------------------------------------------------------

/** "48656c6c6f" -> Uint8Array [0x48, 0x65, 0x6c, 0x6c, 0x6f] */
export function hexToBytes(hex) {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
  }
  return bytes;
}

/** Uint8Array -> "48 65 6c 6c 6f" (spaced, so a reader can count bytes). */
export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** One byte as eight binary digits: 0x81 -> "10000001". */
export function bits(byte) {
  return byte.toString(2).padStart(8, "0");
}

// `fatal: false`: a record may end in the middle of a multi-byte character
// (it keeps only the first 256 bytes), and masked bytes are not text at all.
// Bad sequences become U+FFFD instead of throwing.
const utf8 = new TextDecoder("utf-8", { fatal: false });

/** Bytes as UTF-8 text, for showing. */
export function bytesToText(bytes) {
  return utf8.decode(bytes);
}

/** Bytes as printable ASCII, anything else as "·": for bytes that are not
 *  text yet (a masked payload looks like noise, and that is the point). */
export function bytesToAscii(bytes) {
  return Array.from(bytes, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "·")).join("");
}

/** The part that stands for the bytes a record did not keep (it keeps the
 *  first 256 bytes of an event or frame). */
function notShownPart(note) {
  return { label: "not shown", kind: "more", hex: "", text: "", note };
}

// ---------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------
//
// An event stream is lines of UTF-8 text. Each line is one field
// ("id: 7", "event: alert", "data: {...}", "retry: 3000"), a comment
// (": keep-alive"), or empty: an empty line ends the event and makes the
// browser dispatch it (HTML standard, "Server-sent events", parsing an
// event stream). The server writes "\n" line ends only (src/sse.rs,
// format_event), so that is what we split on.

/** What each kind of line does, in the words the page shows. */
const SSE_FIELDS = {
  retry: "retry: how many milliseconds the browser waits before reconnecting",
  id: "id: the browser remembers it and sends it back as Last-Event-ID when it reconnects",
  event: "event: the event's type (without it the type is \"message\")",
  data: "data: the payload; several data: lines are joined with \"\\n\"",
};

/**
 * Splits one SSE record into its lines.
 * Returns { parts, dataText, complete } where
 *   parts: [{ label, kind, hex, text, note }] one per line,
 *   dataText: the data: lines joined as the browser would join them,
 *   complete: false when the record was cut at 256 bytes.
 */
export function decodeSse(bytes, totalLength) {
  const parts = [];
  const dataLines = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    // A line ends at "\n"; whatever follows the last "\n" is a line the
    // record cut off (only when the event was longer than 256 bytes).
    if (i < bytes.length && bytes[i] !== 0x0a) continue;
    const withEnd = bytes.subarray(start, Math.min(i + 1, bytes.length));
    const line = bytes.subarray(start, i);
    const text = bytesToText(line);
    start = i + 1;
    if (i === bytes.length && line.length === 0) break; // nothing after the last "\n"
    const cut = i === bytes.length; // this line has no "\n": the record ends mid-line
    parts.push(describeSseLine(text, withEnd, cut));
    if (text.startsWith("data:")) dataLines.push(fieldValue(text));
  }
  const complete = totalLength === undefined || totalLength <= bytes.length;
  if (!complete) {
    parts.push(notShownPart(`${totalLength - bytes.length} more bytes (a record keeps the first ${bytes.length})`));
  }
  return { parts, dataText: dataLines.join("\n"), complete };
}

/** The value of a field line: after the colon, minus one leading space. */
function fieldValue(line) {
  const colon = line.indexOf(":");
  let value = line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  return value;
}

function describeSseLine(text, withEnd, cut) {
  const hex = bytesToHex(withEnd);
  if (text === "" && !cut) {
    return { label: "blank line", kind: "blank", hex, text: "\\n", note: "ends the event: the browser dispatches it now" };
  }
  const shown = text + (cut ? "…" : "\\n");
  if (text.startsWith(":")) {
    return { label: ":", kind: "comment", hex, text: shown, note: "a comment: the browser ignores it (keeps the connection busy)" };
  }
  const colon = text.indexOf(":");
  const field = colon === -1 ? text : text.slice(0, colon);
  const note = SSE_FIELDS[field] || "a field the browser does not know: ignored";
  return { label: `${field}:`, kind: SSE_FIELDS[field] ? field : "unknown", hex, text: shown, note };
}

// ---------------------------------------------------------------------
// WebSocket frames (RFC 6455 §5.2)
// ---------------------------------------------------------------------
//
//   byte 0:  FIN (1 bit) RSV1 RSV2 RSV3 (1 bit each) opcode (4 bits)
//   byte 1:  MASK (1 bit) payload length (7 bits)
//            126 -> the real length follows in 2 bytes (16-bit form)
//            127 -> the real length follows in 8 bytes (64-bit form)
//   then:    masking key, 4 bytes, only if MASK is 1 (client-to-server)
//   then:    the payload, XORed with the key if MASK is 1

/** The opcodes RFC 6455 §5.2 defines, by name (src/websocket/frame.rs has
 *  the same as OP_TEXT, OP_CLOSE …): code compares with OPCODES.close, never
 *  with a bare 0x8. */
export const OPCODES = {
  continuation: 0x0,
  text: 0x1,
  binary: 0x2,
  close: 0x8,
  ping: 0x9,
  pong: 0xa,
};

/** Byte 1's 7-bit length values that are markers, not lengths (§5.2): the
 *  real length follows in the next 2 bytes, or in the next 8. */
const LENGTH_16_BIT = 126;
const LENGTH_64_BIT = 127;

/** The opcode's name, or "reserved" for the ones RFC 6455 leaves unused. */
export function opcodeName(opcode) {
  return Object.keys(OPCODES).find((name) => OPCODES[name] === opcode) || "reserved";
}

/**
 * Reverses the masking: RFC 6455 §5.3 says payload byte i is XORed with
 * key[i % 4]. XOR undoes itself, so the same function masks and unmasks.
 */
export function unmask(payload, key) {
  const out = new Uint8Array(payload.length);
  for (let i = 0; i < payload.length; i++) {
    out[i] = payload[i] ^ key[i % 4];
  }
  return out;
}

/**
 * Reads a frame header and splits the (possibly cut) frame into parts.
 * Returns { ok, fin, rsv, opcode, opcodeName, masked, payloadLength,
 *           headerLength, lengthForm, key, payload, unmasked, text,
 *           frameLength, parts } — or { ok: false, parts, error } when fewer
 * bytes than a header arrived.
 */
export function decodeWsFrame(bytes) {
  if (bytes.length < 2) {
    return { ok: false, parts: [], error: "fewer than 2 bytes: not even a header" };
  }
  const b0 = bytes[0];
  const b1 = bytes[1];
  const fin = b0 >> 7;
  const rsv = (b0 >> 4) & 0b111;
  const opcode = b0 & 0x0f;
  const masked = b1 >> 7;
  const len7 = b1 & 0x7f;

  const parts = [byte0Part(b0, fin, rsv, opcode), byte1Part(b1, masked, len7)];
  const { payloadLength, lengthForm, end } = readLength(bytes, len7);
  if (end > 2) parts.push(lengthPart(bytes.subarray(2, end), lengthForm, payloadLength));
  const key = masked ? bytes.subarray(end, end + 4) : null;
  if (key) parts.push(keyPart(key));

  const headerLength = end + (key ? 4 : 0);
  const payload = bytes.subarray(Math.min(headerLength, bytes.length));
  const unmasked = key ? unmask(payload, key) : payload;
  const text = describePayload(opcode, unmasked);
  parts.push(...payloadParts(payload, unmasked, key, text));
  const missing = payloadLength - payload.length;
  if (missing > 0) {
    parts.push(notShownPart(`${missing} more payload bytes (a record keeps the first ${bytes.length} bytes of a frame)`));
  }
  return {
    ok: true, fin, rsv, opcode, opcodeName: opcodeName(opcode), masked, payloadLength,
    headerLength, lengthForm, key, payload, unmasked, text, frameLength: headerLength + payloadLength, parts,
  };
}

/**
 * The payload length, its form, and where the length field ends. Byte 1's
 * 7 bits are the length itself, or a marker: the real length follows in
 * 2 bytes (LENGTH_16_BIT) or 8 bytes (LENGTH_64_BIT). A record cut before
 * those bytes keeps the 7-bit value.
 */
function readLength(bytes, len7) {
  if (len7 === LENGTH_16_BIT && bytes.length >= 4) {
    return { payloadLength: (bytes[2] << 8) | bytes[3], lengthForm: "16-bit", end: 4 };
  }
  if (len7 === LENGTH_64_BIT && bytes.length >= 10) {
    // 64 bits do not fit a JavaScript number exactly; BigInt does. Frames
    // here are far below 2^53, so Number() afterwards is safe.
    let big = 0n;
    for (let i = 2; i < 10; i++) big = (big << 8n) | BigInt(bytes[i]);
    return { payloadLength: Number(big), lengthForm: "64-bit", end: 10 };
  }
  return { payloadLength: len7, lengthForm: "7-bit", end: 2 };
}

function byte0Part(b0, fin, rsv, opcode) {
  return {
    label: "byte 0",
    kind: "ws-b0",
    hex: bytesToHex([b0]),
    text: `${bits(b0).slice(0, 1)} ${bits(b0).slice(1, 4)} ${bits(b0).slice(4)}`,
    note: `FIN=${fin} (${fin ? "last frame of the message" : "more fragments follow"}), ` +
      `RSV=${rsv.toString(2).padStart(3, "0")}, opcode=0x${opcode.toString(16)} (${opcodeName(opcode)})`,
  };
}

function byte1Part(b1, masked, len7) {
  const lengthNote =
    len7 === LENGTH_16_BIT ? " (the real length is in the next 2 bytes)" :
      len7 === LENGTH_64_BIT ? " (the real length is in the next 8 bytes)" : " (7-bit form: the length itself)";
  return {
    label: "byte 1",
    kind: "ws-b1",
    hex: bytesToHex([b1]),
    text: `${bits(b1).slice(0, 1)} ${bits(b1).slice(1)}`,
    note: `MASK=${masked} (${masked ? "masked: client to server" : "not masked: server to client"}), ` +
      `length=${len7}${lengthNote}`,
  };
}

function lengthPart(lengthBytes, lengthForm, payloadLength) {
  return {
    label: `${lengthForm} length`,
    kind: "ws-len",
    hex: bytesToHex(lengthBytes),
    text: String(payloadLength),
    note: `payload length in the ${lengthForm} form, big-endian`,
  };
}

function keyPart(key) {
  return {
    label: "masking key",
    kind: "ws-key",
    hex: bytesToHex(key),
    text: "",
    note: "4 random bytes the browser picked for this frame",
  };
}

/** The payload as it went over the wire and, if it was masked, unmasked. */
function payloadParts(payload, unmasked, key, text) {
  const parts = [];
  if (key) {
    parts.push({
      label: "payload (masked)",
      kind: "ws-masked",
      hex: bytesToHex(payload),
      text: bytesToAscii(payload),
      note: "as on the wire: each byte XORed with key[i % 4]",
    });
  }
  parts.push({
    label: key ? "payload (unmasked)" : "payload",
    kind: "ws-payload",
    hex: bytesToHex(unmasked),
    text,
    note: key ? "decoded here in JavaScript: XORed with the key again" : "sent as is: servers never mask",
  });
  return parts;
}

/** What a payload says: text for text frames, code and reason for close. */
function describePayload(opcode, payload) {
  if (opcode === OPCODES.close && payload.length >= 2) {
    // RFC 6455 §5.5.1: a close payload starts with a 2-byte status code.
    const code = (payload[0] << 8) | payload[1];
    const reason = bytesToText(payload.subarray(2));
    return `close code ${code}${reason ? `, reason "${reason}"` : ""}`;
  }
  if (opcode === OPCODES.binary) return bytesToAscii(payload);
  return bytesToText(payload);
}
