//! Randomized robustness of the three parsers that read what a client sends:
//! the HTTP request-head parser, the JSON reader, and the WebSocket frame
//! decoder with its message reader.
//!
//! Every battery is seeded: case `i` of a battery gets its own generator,
//! seeded from the battery's seed and `i`, so a failure names the case and
//! one case can be replayed alone:
//!
//! ```text
//! ROBUSTNESS_REPLAY=head_parser:1234 cargo test --test robustness -- --nocapture
//! ```
//!
//! Inputs are valid documents mutated (bytes flipped, inserted, deleted,
//! duplicated, special bytes spliced in, huge lines, many fields) plus pure
//! random bytes, always fed in random-sized chunks: a parser that reads from
//! a socket must give the same answer however the bytes are cut.
mod common;
use common::*;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use realtime_by_hand::http::{HeadLimits, HeadParser, RequestHead, Version};
use realtime_by_hand::websocket::frame::{
    encode_header, encode_masked_frame, parse_header, FrameHeader, OpCode, MAX_HEADER_LEN,
};
use realtime_by_hand::websocket::message::{
    close_payload, CloseCode, CloseFrame, Event, MessageError, MessageReader, Role,
};

// ------------------------------------------------------------ the harness

/// How many cases each battery runs. The brief asks for at least 100,000
/// inputs per parser; these are the numbers reported in the summary lines.
const HEAD_CASES: u64 = 100_000;
const JSON_CASES: u64 = 100_000;
const FRAME_HEADER_CASES: u64 = 100_000;
const READER_MUTATED_CASES: u64 = 60_000;
const READER_VALID_CASES: u64 = 40_000;

/// The generator for case `index` of a battery: independent of every other
/// case, so replaying one needs nothing but the seed and the index.
fn case_rng(seed: u64, index: u64) -> Rng {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    rng.next_u64();
    rng
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `count` cases of the battery `name`. A panic inside a case (a bug in
/// the parser, or a failed assertion) is reported with the seed, the case
/// number and how to replay it. `ROBUSTNESS_REPLAY=name:index` runs that
/// one case only (and skips the other batteries).
fn battery(name: &str, seed: u64, count: u64, mut case: impl FnMut(&mut Rng, u64)) {
    let started = Instant::now();
    let range = match std::env::var("ROBUSTNESS_REPLAY") {
        Ok(replay) => match replay.split_once(':') {
            Some((n, i)) if n == name => {
                let i: u64 = i.parse().expect("ROBUSTNESS_REPLAY=name:index");
                i..i + 1
            }
            _ => 0..0,
        },
        Err(_) => 0..count,
    };
    for index in range.clone() {
        let mut rng = case_rng(seed, index);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng, index))) {
            panic!(
                "battery {name}: case {index} of seed {seed:#x} failed: {}\n\
                 replay it alone with: ROBUSTNESS_REPLAY={name}:{index} cargo test --test robustness",
                panic_text(&*panic)
            );
        }
    }
    println!(
        "battery {name}: {} cases, seed {seed:#x}, {:.2} s",
        range.end - range.start,
        started.elapsed().as_secs_f64()
    );
}

/// Bytes shown in a failure message: escaped, and cut if long.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(600)];
    let mut text: String = cut.escape_ascii().to_string();
    if bytes.len() > cut.len() {
        text.push_str(&format!("… ({} bytes in all)", bytes.len()));
    }
    format!("b\"{text}\"")
}

fn between(rng: &mut Rng, low: usize, high_inclusive: usize) -> usize {
    low + rng.below(high_inclusive - low + 1)
}

/// The next chunk length when feeding `remaining` bytes: tiny pieces, a
/// packet's worth, or everything at once, so a boundary can fall anywhere.
fn chunk_len(rng: &mut Rng, remaining: usize) -> usize {
    let max = match rng.below(4) {
        0 => 3,
        1 => 17,
        2 => 300,
        _ => remaining,
    };
    between(rng, 1, max.min(remaining).max(1))
}

// --------------------------------------------------- byte-level mutations

/// One random edit of `bytes`, drawing spliced-in pieces from `specials`.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, specials: &[&[u8]]) {
    let at = |rng: &mut Rng, len: usize| rng.below(len + 1);
    match rng.below(7) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next_u64() as u8;
        }
        2 => {
            let i = at(rng, bytes.len());
            bytes.insert(i, rng.next_u64() as u8);
        }
        3 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            let n = between(rng, 1, (bytes.len() - i).min(8));
            bytes.drain(i..i + n);
        }
        4 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            let n = between(rng, 1, (bytes.len() - i).min(40));
            let copy = bytes[i..i + n].to_vec();
            let to = at(rng, bytes.len());
            bytes.splice(to..to, copy);
        }
        5 => {
            let piece = *rng.pick(specials);
            let i = at(rng, bytes.len());
            if rng.chance(2) || i == bytes.len() {
                bytes.splice(i..i, piece.iter().copied());
            } else {
                let end = (i + piece.len()).min(bytes.len());
                bytes.splice(i..end, piece.iter().copied());
            }
        }
        _ => {
            let keep = at(rng, bytes.len());
            bytes.truncate(keep);
        }
    }
}

// =========================================================================
// The HTTP request-head parser
// =========================================================================

/// What feeding a whole input to a fresh parser amounts to.
#[derive(Debug, Clone, PartialEq)]
enum HeadOutcome {
    /// A head, and how many input bytes it used.
    Complete(RequestHead, usize),
    /// An error, as the status code the client would get.
    Failed(u16),
    /// The input ended before the blank line.
    Incomplete,
}

fn parse_head_whole(input: &[u8]) -> HeadOutcome {
    let mut parser = HeadParser::new(HeadLimits::default());
    match parser.feed(input) {
        Err(e) => HeadOutcome::Failed(e.status()),
        Ok((used, Some(head))) => HeadOutcome::Complete(head, used),
        Ok((used, None)) => {
            assert_eq!(used, input.len(), "an unfinished head must use every byte");
            HeadOutcome::Incomplete
        }
    }
}

fn parse_head_chunked(rng: &mut Rng, input: &[u8]) -> HeadOutcome {
    let mut parser = HeadParser::new(HeadLimits::default());
    let mut at = 0;
    while at < input.len() {
        let n = chunk_len(rng, input.len() - at);
        let chunk = &input[at..at + n];
        match parser.feed(chunk) {
            Err(e) => return HeadOutcome::Failed(e.status()),
            Ok((used, Some(head))) => {
                assert!(used <= chunk.len());
                return HeadOutcome::Complete(head, at + used);
            }
            Ok((used, None)) => {
                assert_eq!(used, chunk.len(), "an unfinished head must use every byte");
                at += n;
            }
        }
    }
    HeadOutcome::Incomplete
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The rules a head that parsed must obey, whatever bytes it came from.
fn check_complete_head(head: &RequestHead, used: usize, input: &[u8]) {
    let limits = HeadLimits::default();
    assert!(
        !head.method.is_empty() && head.method.bytes().all(is_token_byte),
        "method {:?} is not a token",
        head.method
    );
    assert!(
        head.target == "*" || head.target.starts_with('/'),
        "target {:?} is neither origin-form nor '*'",
        head.target
    );
    assert!(
        head.target.bytes().all(|b| b.is_ascii_graphic()),
        "target {:?} has a space, a control or a non-ASCII byte",
        head.target
    );
    assert!(
        head.headers.len() <= limits.max_headers,
        "{} headers, more than the limit of {}",
        head.headers.len(),
        limits.max_headers
    );
    for (name, value) in &head.headers {
        assert!(
            !name.is_empty() && name.bytes().all(is_token_byte),
            "header name {name:?} is not a token"
        );
        assert!(
            !value.contains(['\r', '\n', '\0']),
            "header value {value:?} has CR, LF or NUL"
        );
        assert_eq!(
            value.trim_matches([' ', '\t']),
            value,
            "header value {value:?} is not trimmed"
        );
    }
    assert!(used <= input.len() && used > 0);
    assert_eq!(input[used - 1], b'\n', "a head ends with a line feed");
    assert!(used <= limits.max_head_bytes + 1, "{used} bytes used");
}

/// Writes a parsed head back out as a canonical request head.
fn serialize_head(head: &RequestHead) -> Vec<u8> {
    let version = match head.version {
        Version::Http10 => "HTTP/1.0",
        Version::Http11 => "HTTP/1.1",
    };
    let mut out = format!("{} {} {version}\r\n", head.method, head.target);
    for (name, value) in &head.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

const HEAD_CORPUS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n",
    "GET /events?lastEventId=7 HTTP/1.1\r\nHost: localhost:3000\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 7\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: localhost:3000\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\nOrigin: http://localhost:3000\r\n\r\n",
    "POST /trigger-event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"message\":\"hi\"}",
    "OPTIONS * HTTP/1.1\r\nHost: x\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    "GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "GET /index.html HTTP/1.0\n\n",
    "\r\n\r\nHEAD /stats HTTP/1.1\r\nHost: x\r\nAccept-Language: en-US,en;q=0.5\r\nX-Empty:\r\nX-Tab:\tv\t\r\nX-Obs: café\r\n\r\n",
    "GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n",
];

const METHODS: &[&str] = &[
    "GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "BREW", "M-SEARCH", "get", "G@T",
    "", "GET GET", "\tGET", "GÉT",
];

const VERSIONS: &[&str] = &[
    "HTTP/1.1",
    "HTTP/1.0",
    "HTTP/2.0",
    "HTTP/0.9",
    "HTTP/9.9",
    "HTTP/1.10",
    "HTTP/1",
    "http/1.1",
    "HTTP/11.1",
    "HTTP/x.y",
    "",
    "HTTP/1.1 ",
];

const HEAD_SPECIALS: &[&[u8]] = &[
    b"\r",
    b"\n",
    b"\0",
    b":",
    b" ",
    b"\t",
    b"\r\n",
    b"\r\n\r\n",
    b"\n\n",
    b"\x7f",
    b"\xff",
    b"\xc3\xa9",
    b" : ",
    b"\r\n folded",
    b"\r\nX: y",
    b"Host: a\r\nHost: b\r\n",
    b"Transfer-Encoding: chunked\r\n",
];

/// A plausible head built from parts: a method, a target, a version and
/// some headers, each possibly odd.
fn generated_head(rng: &mut Rng) -> Vec<u8> {
    let method = *rng.pick(METHODS);
    let target = match rng.below(6) {
        0 => "*".to_string(),
        1 => format!("http://h{}.test/p?q={}", rng.below(99), rng.below(99)),
        2 => format!("/{}", "seg/".repeat(rng.below(20))),
        3 => "nopath".to_string(),
        4 => format!("/a%20b?x={}&y", rng.below(1000)),
        _ => "/".to_string(),
    };
    let version = *rng.pick(VERSIONS);
    let mut out = format!("{method} {target} {version}\r\n").into_bytes();
    for i in 0..rng.below(12) {
        let name = match rng.below(5) {
            0 => "Host".to_string(),
            1 => format!("X-{i}"),
            2 => "Content-Length".to_string(),
            3 => "Bad Name".to_string(),
            _ => "Sec-WebSocket-Key".to_string(),
        };
        let value = match rng.below(4) {
            0 => String::new(),
            1 => format!("  {}  ", rng.below(100_000)),
            2 => "dGhlIHNhbXBsZSBub25jZQ==".to_string(),
            _ => "text/html, */*;q=0.8".to_string(),
        };
        out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
    }
    out.extend_from_slice(if rng.chance(4) { b"\n" } else { b"\r\n" });
    out
}

/// One edit that knows what a head looks like.
fn mutate_head(rng: &mut Rng, head: &mut Vec<u8>) {
    match rng.below(10) {
        // A huge line: a header value, or raw bytes anywhere.
        0 => {
            let n = between(rng, 1_000, 20_000);
            let piece = if rng.chance(2) {
                format!("X-Big: {}\r\n", "a".repeat(n)).into_bytes()
            } else {
                vec![b'a'; n]
            };
            let i = line_start(rng, head);
            head.splice(i..i, piece);
        }
        // Many headers, around the limit of 100.
        1 => {
            let n = between(rng, 50, 150);
            let mut piece = Vec::new();
            for k in 0..n {
                piece.extend_from_slice(format!("X-H{k}: v{k}\r\n").as_bytes());
            }
            let i = line_start(rng, head);
            head.splice(i..i, piece);
        }
        // Another method or version in place of the first word or the third.
        2 => {
            let end = head.iter().position(|&b| b == b' ').unwrap_or(0);
            let method = rng.pick(METHODS).as_bytes().to_vec();
            head.splice(..end, method);
        }
        3 => {
            let line_end = head
                .iter()
                .position(|&b| b == b'\r' || b == b'\n')
                .unwrap_or(head.len());
            let start = head[..line_end]
                .iter()
                .rposition(|&b| b == b' ')
                .map_or(line_end, |p| p + 1);
            let version = rng.pick(VERSIONS).as_bytes().to_vec();
            head.splice(start..line_end, version);
        }
        // A request line whose target is at the 8 KiB limit, just under or
        // just over it, in place of the first line.
        4 => {
            let n = between(rng, 8_150, 8_250);
            let line = format!("GET /{} HTTP/1.1\r\n", "t".repeat(n)).into_bytes();
            let end = head
                .iter()
                .position(|&b| b == b'\n')
                .map_or(head.len(), |p| p + 1);
            head.splice(..end, line);
        }
        // Line ends: CRLF to LF, or LF to CR.
        5 => {
            if let Some(p) = head.windows(2).position(|w| w == b"\r\n") {
                if rng.chance(2) {
                    head.remove(p);
                } else {
                    head[p + 1] = b'\r';
                }
            }
        }
        _ => mutate_bytes(rng, head, HEAD_SPECIALS),
    }
}

/// A random position at the start of a line after the request line.
fn line_start(rng: &mut Rng, head: &[u8]) -> usize {
    let starts: Vec<usize> = head
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    if starts.is_empty() {
        head.len()
    } else {
        *rng.pick(&starts)
    }
}

fn random_head_input(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        // Pure random bytes.
        0 => {
            let n = rng.below(300);
            rng.bytes(n)
        }
        // Random bytes from the alphabet heads are made of.
        1 => {
            let alphabet = b"GETPOST HTP/1.0\r\n:\t ab-_*?=&%\r\n\n";
            (0..rng.below(400)).map(|_| *rng.pick(alphabet)).collect()
        }
        // A valid or generated head, mutated one to four times.
        _ => {
            let mut head = if rng.chance(3) {
                generated_head(rng)
            } else {
                rng.pick(HEAD_CORPUS).as_bytes().to_vec()
            };
            for _ in 0..between(rng, 1, 4) {
                mutate_head(rng, &mut head);
            }
            head
        }
    }
}

// Why: the head parser is the first code that touches a stranger's bytes; it
// must never panic, must refuse with the right status, must only ever hand
// the router heads that follow the grammar, and must not care how TCP cut
// the bytes (one read or a trickle).
#[test]
fn head_parser_survives_100k_mutated_and_random_heads_in_any_chunking() {
    let allowed = [400, 414, 431, 501, 505];
    let mut tally = [0u64; 3];
    battery("head_parser", 0x4EAD_0001, HEAD_CASES, |rng, _| {
        let input = random_head_input(rng);
        let whole = parse_head_whole(&input);
        let chunked = parse_head_chunked(rng, &input);
        assert_eq!(
            whole,
            chunked,
            "one piece and chunks disagree on {}",
            show(&input)
        );
        match &whole {
            HeadOutcome::Failed(status) => {
                tally[0] += 1;
                assert!(
                    allowed.contains(status),
                    "status {status} for {}",
                    show(&input)
                );
            }
            HeadOutcome::Complete(head, used) => {
                tally[1] += 1;
                check_complete_head(head, *used, &input);
                // A head that parsed, written back canonically, parses to
                // the same head: nothing in it depends on how it was spelled.
                let canonical = serialize_head(head);
                if canonical.len() < 16_000 {
                    match parse_head_whole(&canonical) {
                        HeadOutcome::Complete(again, _) => assert_eq!(&again, head),
                        other => panic!(
                            "{} parsed, but its canonical form {} gave {other:?}",
                            show(&input),
                            show(&canonical)
                        ),
                    }
                }
            }
            HeadOutcome::Incomplete => tally[2] += 1,
        }
    });
    println!(
        "head_parser outcomes: {} refused, {} complete, {} incomplete",
        tally[0], tally[1], tally[2]
    );
    // The generator must reach all three outcomes, or it tests too little.
    if std::env::var("ROBUSTNESS_REPLAY").is_err() {
        assert!(
            tally.iter().all(|&n| n > 1_000),
            "outcomes too lopsided: {tally:?}"
        );
    }
}

// Why: every limit maps to one status (RFC 9112 / RFC 9110): a fuzzer that
// only finds 400s would not notice 414/431/505 being mixed up.
#[test]
fn head_parser_limits_and_versions_have_their_status_in_any_chunking() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(8 * 1024));
    let big_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(17_000));
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..101 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (long_target.into_bytes(), 414),
        (vec![b'a'; 20_000], 414),
        (big_header.into_bytes(), 431),
        (many.into_bytes(), 431),
        (b"\r\n".repeat(9_000), 431),
        (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 505),
        (b"GET / HTTP/1.2\r\n\r\n".to_vec(), 505),
        (b"GET / HTTP/1.1\r\nA: b\0c\r\n\r\n".to_vec(), 400),
        (b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n".to_vec(), 400),
    ];
    let mut rng = Rng::new(0x4EAD_0002);
    for (input, status) in cases {
        assert_eq!(
            parse_head_whole(&input),
            HeadOutcome::Failed(status),
            "{}",
            show(&input)
        );
        for _ in 0..20 {
            assert_eq!(
                parse_head_chunked(&mut rng, &input),
                HeadOutcome::Failed(status),
                "chunked: {}",
                show(&input)
            );
        }
    }
}

// =========================================================================
// The JSON reader
// =========================================================================

/// Characters strings are made of: every range UTF-8 and JSON escapes treat
/// differently.
fn random_char(rng: &mut Rng) -> char {
    match rng.below(12) {
        0 => char::from_u32(rng.below(0x20) as u32).unwrap(), // controls
        1 => *rng.pick(&['"', '\\', '/', '\u{7f}']),
        2 => *rng.pick(&['é', 'ß', 'ж', '\u{7ff}', '\u{80}']),
        3 => *rng.pick(&['€', '中', '\u{fffd}', '\u{ffff}', '\u{d7ff}', '\u{e000}']),
        4 => *rng.pick(&['😀', '\u{10000}', '\u{10ffff}', '𝄞']),
        5 => char::from_u32(0x10000 + rng.below(0x100000) as u32).unwrap(),
        6 => loop {
            if let Some(c) = char::from_u32(0x80 + rng.below(0xFF80) as u32) {
                break c;
            }
        },
        _ => (b' ' + rng.below(95) as u8) as char,
    }
}

fn random_string(rng: &mut Rng) -> String {
    let n = match rng.below(4) {
        0 => 0,
        1 => rng.below(3),
        _ => rng.below(24),
    };
    (0..n).map(|_| random_char(rng)).collect()
}

fn push_hex4(out: &mut String, rng: &mut Rng, unit: u32) {
    let text = format!("{unit:04x}");
    if rng.chance(2) {
        out.push_str(&text.to_ascii_uppercase());
    } else {
        out.push_str(&text);
    }
}

/// Writes `s` as a JSON string, choosing a random valid spelling for each
/// character: raw, a short escape, `\uXXXX`, or a surrogate pair.
fn write_json_string(out: &mut String, rng: &mut Rng, s: &str) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let must_escape = c < ' ' || c == '"' || c == '\\';
        match (rng.below(3), short) {
            (0, _) if !must_escape => out.push(c),
            (0 | 1, Some(escape)) => out.push_str(escape),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str("\\u");
                    push_hex4(out, rng, u32::from(*unit));
                }
            }
        }
    }
    out.push('"');
}

fn whitespace(rng: &mut Rng, out: &mut String) {
    if rng.chance(3) {
        for _ in 0..rng.below(3) {
            out.push(*rng.pick(&[' ', '\t', '\n', '\r']));
        }
    }
}

/// A number's text in the JSON grammar, and the value it stands for.
fn random_number(rng: &mut Rng) -> String {
    let mut text = String::new();
    if rng.chance(3) {
        text.push('-');
    }
    match rng.below(4) {
        0 => text.push('0'),
        1 => text.push_str(&(1 + rng.below(9)).to_string()),
        2 => text.push_str(&rng.next_u64().to_string()),
        _ => {
            text.push_str(&(1 + rng.below(9)).to_string());
            for _ in 0..rng.below(25) {
                text.push((b'0' + rng.below(10) as u8) as char);
            }
        }
    }
    if rng.chance(3) {
        text.push('.');
        for _ in 0..between(rng, 1, 20) {
            text.push((b'0' + rng.below(10) as u8) as char);
        }
    }
    if rng.chance(4) {
        text.push(*rng.pick(&['e', 'E']));
        if rng.chance(2) {
            text.push(*rng.pick(&['+', '-']));
        }
        text.push_str(&rng.below(250).to_string());
    }
    text
}

/// A random document and the value it must parse to.
fn random_json(rng: &mut Rng, depth: usize, out: &mut String) -> Json {
    whitespace(rng, out);
    let kind = if depth >= 5 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    let value = match kind {
        0 => {
            out.push_str("null");
            Json::Null
        }
        1 => {
            let b = rng.chance(2);
            out.push_str(if b { "true" } else { "false" });
            Json::Bool(b)
        }
        2 | 3 => {
            let text = random_number(rng);
            let value: f64 = text.parse().unwrap();
            if value.is_finite() {
                out.push_str(&text);
                Json::Number(value)
            } else {
                out.push('0');
                Json::Number(0.0)
            }
        }
        4 => {
            let s = random_string(rng);
            write_json_string(out, rng, &s);
            Json::String(s)
        }
        5 | 6 => {
            out.push('[');
            let mut items = Vec::new();
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                items.push(random_json(rng, depth + 1, out));
            }
            whitespace(rng, out);
            out.push(']');
            Json::Array(items)
        }
        _ => {
            out.push('{');
            let mut members = Vec::new();
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                whitespace(rng, out);
                let key = if rng.chance(4) {
                    "message".to_string()
                } else {
                    random_string(rng)
                };
                write_json_string(out, rng, &key);
                whitespace(rng, out);
                out.push(':');
                members.push((key, random_json(rng, depth + 1, out)));
            }
            whitespace(rng, out);
            out.push('}');
            Json::Object(members)
        }
    };
    whitespace(rng, out);
    value
}

const JSON_SPECIALS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"\\u",
    b"\\ud83d",
    b"\\ude00",
    b"\\ud83d\\u0041",
    b"\\u12G4",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"-",
    b"e",
    b".",
    b"0",
    b"01",
    b"1e999",
    b"-1e-999",
    b"true",
    b"nul",
    b" ",
    b"\n",
    b"\0",
    b"\x1f",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
];

fn json_input(rng: &mut Rng) -> (Vec<u8>, Option<Json>) {
    match rng.below(10) {
        0 => {
            let n = rng.below(200);
            (rng.bytes(n), None)
        }
        1 => {
            let alphabet = b"{}[]\",:\\u0123456789abcdefE.-+ \ntrufalsn";
            let n = rng.below(200);
            ((0..n).map(|_| *rng.pick(alphabet)).collect(), None)
        }
        // A valid document, unchanged: it must parse to the model.
        2 | 3 => {
            let mut text = String::new();
            let value = random_json(rng, 0, &mut text);
            (text.into_bytes(), Some(value))
        }
        _ => {
            let mut text = String::new();
            random_json(rng, 0, &mut text);
            let mut bytes = text.into_bytes();
            for _ in 0..between(rng, 1, 3) {
                if rng.chance(12) {
                    // Nesting around the limit (json::MAX_DEPTH).
                    let n = between(rng, json::MAX_DEPTH / 2, json::MAX_DEPTH * 2);
                    let open = if rng.chance(2) { "[" } else { "{\"a\":" };
                    let i = rng.below(bytes.len() + 1);
                    bytes.splice(i..i, open.repeat(n).into_bytes());
                } else {
                    mutate_bytes(rng, &mut bytes, JSON_SPECIALS);
                }
            }
            (bytes, None)
        }
    }
}

// Why: the JSON reader parses chat messages and POST bodies from anyone. It
// must never panic, must locate its errors inside the input, and what it
// accepts must survive being written out and read back (the server
// re-serializes chat messages into broadcasts).
#[test]
fn json_reader_survives_100k_mutated_and_random_documents() {
    let mut tally = [0u64; 2];
    battery("json", 0x7503_0001, JSON_CASES, |rng, _| {
        let (input, model) = json_input(rng);
        match json::parse(&input) {
            Err(e) => {
                tally[0] += 1;
                assert!(model.is_none(), "valid {} refused: {e}", show(&input));
                assert!(
                    e.offset <= input.len(),
                    "offset {} past the end of {}",
                    e.offset,
                    show(&input)
                );
                assert!(e.line >= 1 && e.column >= 1, "{e:?}");
                assert!(!e.message.is_empty());
                let _ = e.to_string();
            }
            Ok(value) => {
                tally[1] += 1;
                if let Some(model) = &model {
                    assert_eq!(&value, model, "{}", show(&input));
                }
                let text = value.to_string();
                let again = json::parse(text.as_bytes()).unwrap_or_else(|e| {
                    panic!(
                        "{} parsed, but its serialization {text:?} did not: {e}",
                        show(&input)
                    )
                });
                assert_eq!(again, value, "round trip of {}", show(&input));
                assert_eq!(again.to_string(), text, "serialization is not stable");
            }
        }
    });
    println!("json outcomes: {} refused, {} accepted", tally[0], tally[1]);
    if std::env::var("ROBUSTNESS_REPLAY").is_err() {
        assert!(tally.iter().all(|&n| n > 10_000), "{tally:?}");
    }
}

// Why: `[[[[…` a hundred thousand deep must be an error, not a stack
// overflow that takes the whole server down, even on a connection thread's
// small stack.
#[test]
fn json_deep_nesting_is_an_error_not_a_stack_overflow() {
    let stack = realtime_by_hand::config::CONNECTION_STACK;
    let worker = std::thread::Builder::new()
        .stack_size(stack)
        .spawn(|| {
            for depth in [10_000usize, 30_000, 100_000] {
                let documents = [
                    "[".repeat(depth),
                    format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
                    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
                    format!(
                        "{}0{}",
                        "[{\"k\":".repeat(depth / 2),
                        "}]".repeat(depth / 2)
                    ),
                    format!("{} [ ", "[ \n".repeat(depth)),
                    format!("{{\"message\":{}", "[".repeat(depth)),
                ];
                for doc in &documents {
                    let e = json::parse(doc.as_bytes())
                        .expect_err("a document nested this deep must be refused");
                    assert!(
                        e.message.contains("nesting"),
                        "depth {depth}: the error should mention nesting: {e}"
                    );
                    assert!(e.offset <= doc.len());
                }
            }
            // Right at the limit is still fine on this stack.
            let max = json::MAX_DEPTH;
            let at_limit = format!("{}0{}", "[{\"a\":".repeat(max / 2), "}]".repeat(max / 2));
            json::parse(at_limit.as_bytes()).expect("nesting at the limit");
        })
        .unwrap();
    worker.join().expect("parsing deep nesting panicked");
}

// Why: an error's position is what a client uses to fix its JSON. For a
// string with an escape before an invalid UTF-8 byte, the reported offset
// must still point at that byte in the input, not into the unescaped copy.
#[test]
fn json_utf8_error_offset_points_at_the_bad_byte_after_escapes() {
    // Without escapes the position is right.
    let plain = b"\"ab\xff\"";
    assert_eq!(json::parse(plain).unwrap_err().offset, 3);
    // `"\n\n\xff"`: the bad byte is at input offset 5.
    let escaped = b"\"\\n\\n\xff\"";
    let e = json::parse(escaped).unwrap_err();
    assert!(e.message.contains("UTF-8"), "{e}");
    assert_eq!(
        e.offset,
        5,
        "the invalid byte 0xff is at byte 5 of {}, but the error says {e}",
        show(escaped)
    );
}

// =========================================================================
// WebSocket frames and messages
// =========================================================================

const LENGTHS: &[u64] = &[
    0,
    1,
    125,
    126,
    127,
    0xFFFF,
    0x1_0000,
    0xFFFF_FFFF,
    1 << 62,
    (1 << 63) - 1,
    1 << 63,
    u64::MAX,
];

fn random_header_bytes(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => {
            let n = rng.below(16);
            rng.bytes(n)
        }
        _ => {
            let opcode = if rng.chance(4) {
                rng.below(16) as u8
            } else {
                *rng.pick(&[0x0, 0x1, 0x2, 0x8, 0x9, 0xA])
            };
            let len = if rng.chance(2) {
                *rng.pick(LENGTHS)
            } else {
                rng.next_u64() >> rng.below(64)
            };
            let mask = (!rng.chance(5)).then(|| (rng.next_u64() as u32).to_be_bytes());
            let mut out = Vec::new();
            // Any four bits: OpCode has no reserved values, so encode a
            // valid one and put the random bits in its place.
            encode_header(&mut out, rng.chance(2), OpCode::Binary, mask, len);
            out[0] = (out[0] & 0xF0) | opcode;
            for _ in 0..rng.below(3) {
                match rng.below(6) {
                    _ if out.len() < 2 => {}
                    // Reserved bits.
                    0 => out[0] |= (1 + rng.below(7) as u8) << 4,
                    // A non-minimal length: the 16- or 64-bit form for a small value.
                    1 => {
                        let small = rng.below(0x1_0000) as u64;
                        let masked = out[1] & 0x80;
                        out.truncate(1);
                        if rng.chance(2) {
                            out.push(masked | 126);
                            out.extend_from_slice(&(small as u16).to_be_bytes());
                        } else {
                            out.push(masked | 127);
                            out.extend_from_slice(&small.to_be_bytes());
                        }
                        if masked != 0 {
                            out.extend_from_slice(&[1, 2, 3, 4]);
                        }
                    }
                    2 => out.truncate(rng.below(out.len() + 1)),
                    _ => mutate_bytes(rng, &mut out, &[&[0xFF], &[0x80], &[0x7F], &[0x7E]]),
                }
            }
            // Payload bytes after the header must not change the header.
            if rng.chance(2) {
                let n = rng.below(10);
                out.extend(rng.bytes(n));
            }
            out
        }
    }
}

// Why: `parse_header` decides how many bytes to read and what to allocate.
// Whatever it is given it must not panic; a header it accepts is 2..=14
// bytes, follows every rule of RFC 6455 §5.2, and reads back byte for byte
// (lengths minimal); every error is a protocol error (1002) that more bytes
// cannot undo; and a header that needs more bytes says so on every prefix.
#[test]
fn frame_header_decoder_survives_100k_random_and_mutated_headers() {
    let mut tally = [0u64; 3];
    battery("frame_header", 0xF4A3_0001, FRAME_HEADER_CASES, |rng, _| {
        let input = random_header_bytes(rng);
        match parse_header(&input) {
            Ok(Some((header, len))) => {
                tally[0] += 1;
                assert!(
                    (2..=MAX_HEADER_LEN).contains(&len) && len <= input.len(),
                    "header length {len} for {}",
                    show(&input)
                );
                check_header_rules(&header, &input);
                let mut again = Vec::new();
                encode_header(
                    &mut again,
                    header.fin,
                    header.opcode,
                    header.mask,
                    header.payload_len,
                );
                assert_eq!(again, &input[..len], "re-encoding {header:?}");
                for cut in 0..len {
                    assert_eq!(
                        parse_header(&input[..cut]),
                        Ok(None),
                        "prefix of {cut} bytes of {}",
                        show(&input)
                    );
                }
            }
            Ok(None) => {
                tally[1] += 1;
                assert!(input.len() < MAX_HEADER_LEN, "{}", show(&input));
            }
            Err(e) => {
                tally[2] += 1;
                assert_eq!(MessageError::Frame(e).close_code().to_u16(), 1002, "{e}");
                let mut longer = input.clone();
                longer.extend(rng.bytes(14));
                assert_eq!(
                    parse_header(&longer),
                    Err(e),
                    "more bytes changed the verdict on {}",
                    show(&input)
                );
            }
        }
    });
    println!(
        "frame_header outcomes: {} parsed, {} need more, {} refused",
        tally[0], tally[1], tally[2]
    );
    if std::env::var("ROBUSTNESS_REPLAY").is_err() {
        assert!(tally.iter().all(|&n| n > 5_000), "{tally:?}");
    }
}

fn check_header_rules(h: &FrameHeader, input: &[u8]) {
    assert_eq!(h.rsv, 0, "{}", show(input));
    assert!(
        matches!(h.opcode as u8, 0x0..=0x2 | 0x8..=0xA),
        "opcode {:?} accepted",
        h.opcode
    );
    if h.opcode.is_control() {
        assert!(h.fin && h.payload_len <= 125, "{h:?}");
    }
    assert_eq!(h.payload_len >> 63, 0, "{h:?}");
}

/// One message of a generated stream.
#[derive(Debug, Clone)]
enum Planned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(CloseCode, String)>),
}

fn random_text(rng: &mut Rng, max_chars: usize) -> String {
    let n = rng.below(max_chars + 1);
    (0..n)
        .map(|_| match rng.below(5) {
            0 => *rng.pick(&['é', 'ж', '\u{7ff}']),
            1 => *rng.pick(&['€', '中', '\u{fffd}', '\u{ffff}']),
            2 => *rng.pick(&['😀', '\u{10ffff}', '𝄞']),
            _ => (b' ' + rng.below(95) as u8) as char,
        })
        .collect()
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(20) {
        0 => between(rng, 0x1_0000, 0x1_2000), // a 64-bit length on the wire
        1..=3 => between(rng, 126, 2_000),
        _ => rng.below(126),
    }
}

fn control_payload(rng: &mut Rng) -> Vec<u8> {
    let n = if rng.chance(5) { 125 } else { rng.below(20) };
    rng.bytes(n)
}

fn mask(rng: &mut Rng) -> [u8; 4] {
    (rng.next_u64() as u32).to_ne_bytes()
}

/// Writes one data message as 1..n frames cut at random byte positions
/// (cutting through characters of a text), with control frames between the
/// fragments. Returns the events a reader must produce, in order.
fn write_message(rng: &mut Rng, out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    let pieces = if payload.is_empty() || rng.chance(3) {
        1
    } else {
        between(rng, 1, payload.len().min(12))
    };
    let mut cuts: Vec<usize> = (1..pieces).map(|_| rng.below(payload.len() + 1)).collect();
    cuts.push(0);
    cuts.push(payload.len());
    cuts.sort_unstable();
    for (i, window) in cuts.windows(2).enumerate() {
        let last = i == cuts.len() - 2;
        let op = if i == 0 { opcode } else { OpCode::Continuation };
        out.extend(encode_masked_frame(
            last,
            op,
            &payload[window[0]..window[1]],
            mask(rng),
        ));
        if !last && rng.chance(3) {
            let ping = control_payload(rng);
            if rng.chance(2) {
                out.extend(encode_masked_frame(true, OpCode::Ping, &ping, mask(rng)));
                events.push(Event::Ping(ping));
            } else {
                out.extend(encode_masked_frame(true, OpCode::Pong, &ping, mask(rng)));
                events.push(Event::Pong(ping));
            }
        }
    }
    events
}

/// A valid client stream: the bytes, and the events they must decode to.
fn valid_stream(rng: &mut Rng) -> (Vec<u8>, Vec<Event>, usize) {
    let mut bytes = Vec::new();
    let mut events = Vec::new();
    let mut largest = 0;
    let count = between(rng, 1, 6);
    for i in 0..count {
        let planned = match rng.below(10) {
            0 => Planned::Ping(control_payload(rng)),
            1 => Planned::Pong(control_payload(rng)),
            2 if i == count - 1 => Planned::Close(rng.chance(3).then(|| {
                let code = *rng.pick(&[1000, 1001, 1003, 1011, 3000, 4999]);
                let code = CloseCode::from_u16(code).expect("a code a peer may send");
                (code, random_text(rng, 20))
            })),
            2..=5 => {
                let chars = if rng.chance(20) { 30_000 } else { 200 };
                Planned::Text(random_text(rng, chars))
            }
            _ => {
                let n = random_size(rng);
                Planned::Binary(rng.bytes(n))
            }
        };
        match planned {
            Planned::Text(text) => {
                largest = largest.max(text.len());
                events.extend(write_message(
                    rng,
                    &mut bytes,
                    OpCode::Text,
                    text.as_bytes(),
                ));
                events.push(Event::Text(text));
            }
            Planned::Binary(data) => {
                largest = largest.max(data.len());
                events.extend(write_message(rng, &mut bytes, OpCode::Binary, &data));
                events.push(Event::Binary(data));
            }
            Planned::Ping(p) => {
                bytes.extend(encode_masked_frame(true, OpCode::Ping, &p, mask(rng)));
                events.push(Event::Ping(p));
            }
            Planned::Pong(p) => {
                bytes.extend(encode_masked_frame(true, OpCode::Pong, &p, mask(rng)));
                events.push(Event::Pong(p));
            }
            Planned::Close(close) => {
                let payload = close
                    .as_ref()
                    .map(|(code, reason)| close_payload(*code, reason))
                    .unwrap_or_default();
                bytes.extend(encode_masked_frame(
                    true,
                    OpCode::Close,
                    &payload,
                    mask(rng),
                ));
                events.push(Event::Close(close.map(|(code, reason)| {
                    let payload = close_payload(code, &reason);
                    CloseFrame {
                        code,
                        reason: String::from_utf8(payload[2..].to_vec()).unwrap(),
                    }
                })));
            }
        }
    }
    (bytes, events, largest)
}

/// Feeds `input` to `reader` in random chunks, as a socket would deliver
/// it. Returns the events, and the first error if there was one.
fn feed_reader(
    rng: &mut Rng,
    reader: &mut MessageReader,
    input: &[u8],
    one_piece: bool,
) -> (Vec<Event>, Option<MessageError>) {
    let mut events = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = if one_piece {
            input.len() - at
        } else {
            chunk_len(rng, input.len() - at)
        };
        let mut chunk = &input[at..at + n];
        at += n;
        // Call until this chunk is used up; a call that neither uses a byte
        // nor completes an event would loop forever in the server.
        let budget = chunk.len() + 2;
        let mut calls = 0;
        while !chunk.is_empty() {
            calls += 1;
            assert!(calls <= budget, "the reader stopped making progress");
            match reader.receive(chunk) {
                Err(e) => return (events, Some(e)),
                Ok((used, event)) => {
                    assert!(used <= chunk.len());
                    assert!(
                        used > 0 || event.is_some(),
                        "receive used no byte and produced nothing"
                    );
                    chunk = &chunk[used..];
                    events.extend(event);
                }
            }
        }
    }
    (events, None)
}

/// One edit that knows what frames look like.
fn mutate_stream(rng: &mut Rng, bytes: &mut Vec<u8>) {
    if bytes.len() < 2 {
        bytes.extend(rng.bytes(2));
    }
    let i = rng.below(bytes.len());
    match rng.below(8) {
        // Bits of a byte that is likely a header's first or second byte.
        0 => bytes[i] ^= 0x80 >> rng.below(8),
        1 => bytes[0] ^= 0x70 & (rng.next_u64() as u8), // RSV on the first frame
        2 => bytes[0] = (bytes[0] & 0xF0) | rng.below(16) as u8, // any opcode
        3 => bytes[1] &= 0x7F,                          // unmask the first frame
        4 => {
            // An extra frame with random fields at a random place.
            let mut frame = Vec::new();
            let opcode = rng.below(16) as u8;
            let payload = {
                let n = rng.below(140);
                rng.bytes(n)
            };
            encode_header(
                &mut frame,
                rng.chance(2),
                OpCode::Binary,
                Some(mask(rng)),
                payload.len() as u64,
            );
            frame[0] = (frame[0] & 0xF0) | opcode; // any four bits
            frame.extend(payload);
            bytes.splice(i..i, frame);
        }
        5 => {
            // A huge length claim on the first frame.
            let masked = bytes[1] & 0x80;
            let claim = *rng.pick(LENGTHS);
            let mut header = vec![bytes[0], masked | 127];
            header.extend_from_slice(&claim.to_be_bytes());
            bytes.splice(..2, header);
        }
        _ => mutate_bytes(
            rng,
            bytes,
            &[
                &[0xFF],
                &[0xC0, 0x80],
                &[0xED, 0xA0, 0x80],
                &[0xF4, 0x90],
                &[0x80],
            ],
        ),
    }
}

// Why: the message reader holds the server's memory and CPU in a stranger's
// hands. Whatever arrives, in whatever pieces, it must not panic or stall,
// must fail only with 1002, 1007 or 1009, and must reach the same verdict
// (same events, same close code) however TCP cut the bytes.
#[test]
fn message_reader_survives_60k_mutated_and_random_streams_in_any_chunking() {
    let mut tally = [0u64; 4];
    battery(
        "reader_mutated",
        0x3E4D_0001,
        READER_MUTATED_CASES,
        |rng, _| {
            let input = match rng.below(8) {
                0 => {
                    let n = rng.below(300);
                    rng.bytes(n)
                }
                _ => {
                    let (mut bytes, _, _) = valid_stream(rng);
                    for _ in 0..between(rng, 1, 3) {
                        mutate_stream(rng, &mut bytes);
                    }
                    bytes
                }
            };
            let limit = *rng.pick(&[64, 1024, 1 << 20]);
            let (whole_events, whole_error) = feed_reader(
                rng,
                &mut MessageReader::new(Role::Server, limit),
                &input,
                true,
            );
            let (events, error) = feed_reader(
                rng,
                &mut MessageReader::new(Role::Server, limit),
                &input,
                false,
            );
            let code = error.as_ref().map(MessageError::close_code);
            if let Some(code) = code {
                tally[match code {
                    CloseCode::ProtocolError => 0,
                    CloseCode::InvalidData => 1,
                    CloseCode::TooBig => 2,
                    other => panic!("close code {other} for {error:?}"),
                }] += 1;
            } else {
                tally[3] += 1;
            }
            assert_eq!(
                (&events, code),
                (
                    &whole_events,
                    whole_error.as_ref().map(MessageError::close_code)
                ),
                "chunked and one-piece disagree ({error:?} vs {whole_error:?}) on {}",
                show(&input)
            );
        },
    );
    println!(
        "reader_mutated outcomes: {} x 1002, {} x 1007, {} x 1009, {} without error",
        tally[0], tally[1], tally[2], tally[3]
    );
    if std::env::var("ROBUSTNESS_REPLAY").is_err() {
        assert!(tally.iter().all(|&n| n > 500), "{tally:?}");
    }
}

// Why: the other half of robustness is not refusing what is valid. Text cut
// mid-character across fragments, pings between fragments, 16- and 64-bit
// lengths, empty frames: every valid stream decodes to exactly what was
// sent, whatever the chunking.
#[test]
fn message_reader_decodes_40k_valid_fragmented_streams_exactly() {
    let mut frames_total = 0u64;
    battery("reader_valid", 0x3E4D_0002, READER_VALID_CASES, |rng, _| {
        let (input, expected, largest) = valid_stream(rng);
        frames_total += expected.len() as u64;
        // The limit is at least the largest message; sometimes exactly it.
        let limit = if rng.chance(4) { largest } else { 1 << 20 };
        let one_piece = rng.chance(4);
        let (events, error) = feed_reader(
            rng,
            &mut MessageReader::new(Role::Server, limit),
            &input,
            one_piece,
        );
        assert_eq!(error, None, "valid stream refused (limit {limit})");
        assert_eq!(events, expected, "stream of {} bytes", input.len());
    });
    println!("reader_valid: {frames_total} events decoded");
}

// Why: the size limit is exact: a message of `limit` bytes passes, one byte
// more fails with 1009, whether it comes in one frame or many, and a
// header claiming 2^62 bytes fails before any payload (nothing allocated).
#[test]
fn message_reader_size_limit_is_exact_for_frames_and_fragmented_messages() {
    let mut rng = Rng::new(0x3E4D_0003);
    let limit = 1000;
    for extra in [0usize, 1] {
        let data = vec![7u8; limit + extra];
        let single = encode_masked_frame(true, OpCode::Binary, &data, mask(&mut rng));
        let mut fragmented = Vec::new();
        write_message(&mut rng, &mut fragmented, OpCode::Binary, &data);
        for input in [single, fragmented] {
            for one_piece in [true, false] {
                let (events, error) = feed_reader(
                    &mut rng,
                    &mut MessageReader::new(Role::Server, limit),
                    &input,
                    one_piece,
                );
                if extra == 0 {
                    assert_eq!(error, None);
                    assert_eq!(events.last(), Some(&Event::Binary(data.clone())));
                } else {
                    assert_eq!(error.map(|e| e.close_code()), Some(CloseCode::TooBig));
                }
            }
        }
    }
    let mut claim = Vec::new();
    encode_header(
        &mut claim,
        true,
        OpCode::Binary,
        Some([1, 2, 3, 4]),
        1 << 62,
    );
    let mut reader = MessageReader::new(Role::Server, 16 << 20);
    assert_eq!(
        reader.receive(&claim).map_err(|e| e.close_code()),
        Err(CloseCode::TooBig)
    );
}
