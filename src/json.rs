//! A small JSON reader and writer (RFC 8259), written here instead of pulling
//! in serde: turning bytes into values is part of what this project teaches.
//!
//! Reading: [`parse`] takes the whole document and returns a [`Json`] value or
//! a [`JsonError`] that says what went wrong and where (line, column, byte).
//! Nesting is limited to [`MAX_DEPTH`] so that `[[[[…` a hundred thousand
//! levels deep is an error, not a stack overflow, and a document holds at
//! most [`MAX_VALUES`] values, so what it costs to hold is bounded too.
//!
//! Writing: `Json::to_string` (via `Display`) and [`write_string`], which
//! escapes a string the way JSON requires.

use std::fmt;

/// How deeply arrays and objects may nest. Each level costs two stack
/// frames (`value`, then `array` or `object`): up to about 2 KB per level in
/// an unoptimised build, measured. 32 levels fit with room to spare in half
/// of a connection thread's 256 KiB stack; no honest request to this server
/// nests more than two.
pub const MAX_DEPTH: usize = 32;

/// How many values (each object, array, string, number and literal counts
/// one) one document may hold. A value takes 32 bytes in memory however few
/// bytes it took in the text (`0,` is two), so without a bound a document
/// costs up to sixteen times its length, and more while its arrays grow.
/// With it, a tree costs at most about 640 KB for its values plus the bytes
/// of its strings, whatever the document. The callers check the size of a
/// document before parsing it (`--max-body`, `--max-chat-bytes`); this is
/// the parser's own bound. No honest request to this server holds more
/// than a dozen values.
pub const MAX_VALUES: usize = 10_000;

/// A JSON value. Objects keep their members in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object. RFC 8259 §4 leaves duplicate names
    /// undefined; like JavaScript's `JSON.parse`, the last one wins.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The name JSON gives this kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }
}

/// Builds an object from `(name, value)` pairs: `object([("type", "chat".into())])`.
pub fn object<const N: usize>(members: [(&str, Json); N]) -> Json {
    Json::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_string())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::Number(n as f64)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

// ---------------------------------------------------------------- writing

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_value(&mut out, self);
        f.write_str(&out)
    }
}

fn write_value(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => write_number(out, *n),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            for (i, (key, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: f64) {
    use fmt::Write;
    if !n.is_finite() {
        // JSON has no NaN or Infinity; JavaScript's JSON.stringify writes null.
        out.push_str("null");
    } else if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        // Whole numbers (ids, counts) print without a fraction, as in JS.
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
}

/// Appends `s` as a JSON string literal: quotes, backslashes and control
/// characters escaped (RFC 8259 §7); everything else is copied as UTF-8.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain_from = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain_from..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        plain_from = i + 1;
    }
    out.push_str(&s[plain_from..]);
    out.push('"');
}

// ---------------------------------------------------------------- reading

/// What went wrong while reading JSON, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    pub message: String,
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {} (byte {})",
            self.message, self.line, self.column, self.offset
        )
    }
}

impl std::error::Error for JsonError {}

/// Reads one JSON document from `input`. Whitespace may surround the value;
/// anything else after it is an error.
pub fn parse(input: &[u8]) -> Result<Json, JsonError> {
    let mut parser = Parser {
        input,
        pos: 0,
        values: 0,
    };
    parser.skip_whitespace();
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.pos < input.len() {
        return Err(parser.error("unexpected data after the JSON value"));
    }
    Ok(value)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Values read so far, for [`MAX_VALUES`].
    values: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> JsonError {
        self.error_at(self.pos, message.to_string())
    }

    fn error_at(&self, offset: usize, message: String) -> JsonError {
        // Lines and columns are counted only when an error is reported, so the
        // happy path never pays for them. Columns count characters, not bytes.
        let before = &self.input[..offset.min(self.input.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let column = 1 + before[line_start..]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count();
        JsonError {
            message,
            offset,
            line,
            column,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    /// Describes the byte at the cursor for an error message.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the input".to_string(),
            Some(b) if b.is_ascii_graphic() => format!("'{}'", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
        }
    }

    fn skip_whitespace(&mut self) {
        // RFC 8259 §2: only space, tab, LF and CR count as whitespace.
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(self.error(&format!("more than {MAX_VALUES} values in one document")));
        }
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            _ => Err(self.error(&format!("expected a value, found {}", self.found()))),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")))
        } else {
            Ok(())
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, JsonError> {
        if self.input[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.error(&format!(
                "expected a value, found {} (the JSON literals are true, false and null)",
                self.found()
            )))
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => {
                    return Err(self.error(&format!("expected ',' or ']', found {}", self.found())))
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err(self.error(&format!(
                    "expected a member name in double quotes, found {}",
                    self.found()
                )));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error(&format!("expected ':', found {}", self.found())));
            }
            self.pos += 1;
            self.skip_whitespace();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => {
                    return Err(self.error(&format!("expected ',' or '}}', found {}", self.found())))
                }
            }
        }
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        // RFC 8259 §6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.error("leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("expected a digit in the exponent"));
            }
            self.digits();
        }
        // The grammar above admits only ASCII, so this cannot fail; Rust's
        // float parser then does the correctly rounded conversion.
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("0");
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Json::Number(n)),
            _ => Err(self.error_at(start, "number is too large".to_string())),
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let open = self.pos;
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            // Copy the run of ordinary bytes up to the next quote, backslash
            // or control character in one go.
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // RFC 8259 §8.1: JSON text is UTF-8. Each run is checked as it is
            // copied, so an error points at the bad byte in the input. (A run
            // cannot cut a character in two: it stops only at ASCII bytes,
            // which never occur inside a multi-byte character.)
            match std::str::from_utf8(&self.input[run_start..self.pos]) {
                Ok(run) => out.push_str(run),
                Err(e) => {
                    let bad = run_start + e.valid_up_to();
                    return Err(self.error_at(bad, "string is not valid UTF-8".to_string()));
                }
            }
            match self.peek() {
                None => {
                    return Err(self.error_at(open, "string is never closed".to_string()));
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(b) => {
                    return Err(self.error(&format!(
                        "control character 0x{b:02x} must be escaped inside a string"
                    )))
                }
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.pos;
        self.pos += 1; // the backslash
        let Some(letter) = self.peek() else {
            return Err(self.error("string ends inside an escape"));
        };
        self.pos += 1;
        let character = match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape(at)?,
            _ => {
                return Err(self.error_at(at, format!("unknown escape '\\{}'", letter as char)));
            }
        };
        out.push(character);
        Ok(())
    }

    /// `\uXXXX`, and the second half when the first is a high surrogate:
    /// characters outside the Basic Multilingual Plane are written as a
    /// UTF-16 surrogate pair, `\ud83d\ude00` for 😀 (RFC 8259 §7).
    fn unicode_escape(&mut self, at: usize) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if !self.input[self.pos..].starts_with(b"\\u") {
                    return Err(self.error_at(at, "high surrogate without a low surrogate".into()));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error_at(at, "high surrogate without a low surrogate".into()));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => {
                return Err(self.error_at(at, "low surrogate without a high surrogate".into()));
            }
            _ => first,
        };
        // Every value built above is a valid scalar value.
        char::from_u32(code).ok_or_else(|| self.error_at(at, "invalid \\u escape".into()))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("expected four hex digits after \\u")),
            };
            value = value * 16 + u32::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Json {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> JsonError {
        match parse(text.as_bytes()) {
            Ok(v) => panic!("{text:?} parsed as {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn reads_the_request_body_of_the_article() {
        let v = ok(r#"{"message": "hello", "type": "notification"}"#);
        assert_eq!(v.get("message").and_then(Json::as_str), Some("hello"));
        assert_eq!(v.get("type").and_then(Json::as_str), Some("notification"));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn reads_every_kind_of_value() {
        assert_eq!(ok("null"), Json::Null);
        assert_eq!(ok(" true "), Json::Bool(true));
        assert_eq!(ok("false"), Json::Bool(false));
        assert_eq!(ok("0"), Json::Number(0.0));
        assert_eq!(ok("-0.5e2"), Json::Number(-50.0));
        assert_eq!(ok("1E+3"), Json::Number(1000.0));
        assert_eq!(ok("[]"), Json::Array(vec![]));
        assert_eq!(ok("{}"), Json::Object(vec![]));
        assert_eq!(
            ok(r#"[1, "two", [null], {"k": false}]"#),
            Json::Array(vec![
                Json::Number(1.0),
                Json::String("two".into()),
                Json::Array(vec![Json::Null]),
                Json::Object(vec![("k".into(), Json::Bool(false))]),
            ])
        );
    }

    #[test]
    fn reads_every_escape() {
        assert_eq!(
            ok(r#""\"\\\/\b\f\n\r\t""#),
            Json::String("\"\\/\u{8}\u{c}\n\r\t".into())
        );
        assert_eq!(ok(r#""\u0041\u00e9\u20AC""#), Json::String("Aé€".into()));
        // A character outside the BMP as a surrogate pair.
        assert_eq!(ok(r#""\ud83d\ude00""#), Json::String("😀".into()));
        assert_eq!(ok("\"😀 raw\""), Json::String("😀 raw".into()));
    }

    #[test]
    fn refuses_broken_surrogates() {
        assert!(err(r#""\ud83d""#).message.contains("high surrogate"));
        assert!(err(r#""\ud83dx""#).message.contains("high surrogate"));
        assert!(err(r#""\ud83d\u0041""#).message.contains("high surrogate"));
        assert!(err(r#""\ude00""#).message.contains("low surrogate"));
        assert!(err(r#""\u12G4""#).message.contains("hex digits"));
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = err("{\n  \"message\": \"hi\",\n  oops\n}");
        assert_eq!((e.line, e.column), (3, 3));
        assert!(e.message.contains("member name"), "{e}");
        assert_eq!(
            e.to_string(),
            "expected a member name in double quotes, found 'o' at line 3, column 3 (byte 23)"
        );
        assert!(err(r#"{"a" 1}"#).message.contains("expected ':'"));
        assert!(err("[1 2]").message.contains("expected ',' or ']'"));
        assert!(err("").message.contains("found the end of the input"));
        assert!(err("\"abc").message.contains("never closed"));
        assert!(err("{} x").message.contains("after the JSON value"));
    }

    #[test]
    fn a_document_holds_at_most_max_values() {
        let at_limit = format!("[{}0]", "0,".repeat(MAX_VALUES - 2));
        assert!(parse(at_limit.as_bytes()).is_ok());
        let over = format!("[{}0]", "0,".repeat(MAX_VALUES - 1));
        let e = parse(over.as_bytes()).unwrap_err();
        assert!(e.message.contains("more than 10000 values"), "{e}");
        // Refused where the budget ran out, not after the whole document.
        assert_eq!(e.offset, 1 + 2 * (MAX_VALUES - 1));
    }

    #[test]
    fn refuses_what_the_grammar_refuses() {
        for bad in [
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "+1",
            "NaN",
            "Infinity",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "'single'",
            "\"tab\there\"",
            "\"\\x\"",
            "1e999",
            "[",
            "{",
            "{\"a\"",
            "\u{feff}{}",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn refuses_invalid_utf8_inside_strings() {
        let e = parse(b"\"ab\xff\"").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn nesting_is_limited_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let e = err(&deep);
        assert!(e.message.contains("nesting deeper than 32"), "{e}");
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        ok(&fine);
        let too_deep = format!(
            "{}{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(err(&too_deep).message.contains("nesting"));
    }

    #[test]
    fn the_deepest_document_fits_in_half_a_connection_stack() {
        // The real budget is a whole connection thread's stack; half of it
        // leaves room for the frames above the parser (and for debug builds).
        let half = MAX_DEPTH / 2;
        let deepest = format!("{}0{}", "[{\"a\":".repeat(half), "}]".repeat(half));
        let too_deep = format!("[{deepest}]");
        let parsed = std::thread::Builder::new()
            .stack_size(crate::config::CONNECTION_STACK / 2)
            .spawn(move || {
                (
                    parse(deepest.as_bytes()).is_ok(),
                    parse(too_deep.as_bytes()).is_err(),
                )
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(parsed, (true, true));
    }

    #[test]
    fn duplicate_names_last_one_wins() {
        let v = ok(r#"{"message": "first", "message": "second"}"#);
        assert_eq!(v.get("message").and_then(Json::as_str), Some("second"));
    }

    #[test]
    fn writes_and_reads_back() {
        let value = object([
            ("type", "chat".into()),
            ("message", "line one\nline \"two\"\t\u{1}é😀".into()),
            ("id", 42u64.into()),
            ("ratio", Json::Number(0.25)),
            ("ok", true.into()),
            ("none", Json::Null),
            ("list", Json::Array(vec![Json::Number(-3.0)])),
        ]);
        let text = value.to_string();
        assert_eq!(
            text,
            r#"{"type":"chat","message":"line one\nline \"two\"\t\u0001é😀","id":42,"ratio":0.25,"ok":true,"none":null,"list":[-3]}"#
        );
        assert_eq!(ok(&text), value);
    }
}
