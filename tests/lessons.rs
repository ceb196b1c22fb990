//! The lessons check: what the lessons say about the code must be true of
//! the code that runs. Four rules, each checked by a test below.
//!
//! 1. **A block names its file, and is in it.** The line right before a
//!    ```rust (or ```js) fence is `<!-- src/hub.rs -->` (or
//!    `<!-- public/ws-panel.js -->`), and the block's lines appear in that
//!    file in the same order, indentation aside. A line `// …` in a block
//!    stands for lines left out: the pieces around it must appear in that
//!    order. A block that is deliberately not the source (a wrong example,
//!    an exercise) says so in its info string, ```rust,ignore, and names
//!    no file.
//! 2. **A name given as our code is defined in our code.** In the prose
//!    (outside code blocks), every backticked call (`format_event()`,
//!    `apply_mask(…)`, `head.path()`) and every backticked path with `::`
//!    (`Hub::publish`, `json::parse`, `Route::Events`) must be defined in
//!    `src/` or, for the page's JavaScript, `public/`; when the sentence
//!    names a file right beside it (`Hub::publish` (`src/hub.rs`), or
//!    `src/hub.rs`, `Hub::publish`), in that file.
//!
//!    **Not ours: the standard library and the browser.** They are told
//!    apart by one explicit list, `NOT_OURS` below, not by guessing. A
//!    path whose first segment is on it (`Arc::clone`, `std::mem::take`,
//!    `JSON.stringify(…)`) or a call whose name is on it (`drop(…)`,
//!    `fetch(…)`) is not checked. Everything else is taken to be ours, so
//!    a lesson that names a new standard-library item fails until the
//!    item is added to the list: the list is where a reader sees every
//!    exemption.
//! 3. **Every chapter has the same bones**: the sections "The problem",
//!    "The bytes on the wire", "The code", "Try it" and "Exercise", in
//!    that order; a sentence before the bytes that says what it assumes;
//!    and every exercise names a `cargo test` command whose test exists
//!    (and is run with `--ignored` when the test is `#[ignore]`d).
//! 4. Paths the lessons name exist, `--help`'s flags are on the contract
//!    page, and every list of chapters names exactly the chapters present.
//!
//! Only the standard library is used, like everywhere in this crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// The lessons, as (path relative to the root, text).
fn lessons() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    files_under(&root().join("lessons"), "md", &mut paths);
    assert!(!paths.is_empty(), "no lessons found");
    paths
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, fs::read_to_string(p).unwrap())
        })
        .collect()
}

/// The numbered chapters only (`lessons/NN-….md`).
fn chapters() -> Vec<(String, String)> {
    lessons()
        .into_iter()
        .filter(|(name, _)| {
            name.trim_start_matches("lessons/")
                .starts_with(|c: char| c.is_ascii_digit())
        })
        .collect()
}

/// Lines with their indentation and trailing spaces removed.
fn normalized(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim().to_string()).collect()
}

/// One fenced block: where it starts, its info string, the file its
/// marker names (if any), and its text.
#[derive(Debug, PartialEq)]
struct Block {
    line: usize,
    info: String,
    file: Option<String>,
    body: String,
}

/// Every fenced code block of a Markdown text, in order; `name` is for
/// the messages.
fn blocks(name: &str, markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at].trim_start();
        if !line.starts_with("```") {
            at += 1;
            continue;
        }
        let info = line.trim_start_matches('`').trim().to_string();
        let end = (at + 1..lines.len())
            .find(|&i| lines[i].trim_start().starts_with("```"))
            .unwrap_or_else(|| panic!("{name}:{}: this code fence is never closed", at + 1));
        // A closing fence with text after it closes nothing in Markdown:
        // the block would run on to the next fence.
        let closing = lines[end].trim_start().trim_start_matches('`').trim();
        assert!(
            closing.is_empty(),
            "{name}:{}: a closing fence must stand alone, not be followed by {closing:?}",
            end + 1
        );
        let file = at
            .checked_sub(1)
            .and_then(|before| marker(lines[before]))
            .map(str::to_string);
        let mut body = String::new();
        for text in &lines[at + 1..end] {
            body.push_str(text);
            body.push('\n');
        }
        out.push(Block {
            line: at + 1,
            info,
            file,
            body,
        });
        at = end + 1;
    }
    out
}

/// The file a marker line names: `<!-- src/hub.rs -->` gives `src/hub.rs`.
fn marker(line: &str) -> Option<&str> {
    let inner = line
        .trim()
        .strip_prefix("<!--")?
        .strip_suffix("-->")?
        .trim();
    let ours = inner.starts_with("src/") || inner.starts_with("public/");
    (ours && !inner.contains(' ')).then_some(inner)
}

/// The blocks that must come from the source: info string exactly
/// `language` (plain `rust` or `js`).
fn checked_blocks<'a>(all: &'a [Block], language: &str) -> Vec<&'a Block> {
    all.iter().filter(|b| b.info == language).collect()
}

/// A line of a block that stands for lines left out.
fn is_elision(line: &str) -> bool {
    line == "// …" || line == "// ..."
}

/// Whether `block` appears in `source`: each piece between elision lines
/// line for line, and the pieces in order. Blank lines at either end of a
/// piece do not count.
fn appears_in(block: &[String], source: &[String]) -> bool {
    let mut from = 0;
    for piece in block.split(|l| is_elision(l)) {
        let start = piece.iter().position(|l| !l.is_empty()).unwrap_or(0);
        let end = piece
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        let piece = &piece[start..end];
        if piece.is_empty() {
            continue;
        }
        let found = source[from.min(source.len())..]
            .windows(piece.len())
            .position(|w| w == piece);
        match found {
            Some(at) => from += at + piece.len(),
            None => return false,
        }
    }
    true
}

/// Every ```language block in the lessons must name, on the line before
/// its fence, a file under `dir`, and appear in it.
fn check_blocks(language: &str, dir: &str, extension: &str) {
    let mut sources = Vec::new();
    files_under(&root().join(dir), extension, &mut sources);
    let sources: BTreeMap<String, Vec<String>> = sources
        .iter()
        .map(|p| {
            let name = p.strip_prefix(root()).unwrap().display().to_string();
            (name, normalized(&fs::read_to_string(p).unwrap()))
        })
        .collect();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (lesson, text) in lessons() {
        let all = blocks(&lesson, &text);
        for block in checked_blocks(&all, language) {
            checked += 1;
            let lines = normalized(&block.body);
            let found_in: Vec<&String> = sources
                .iter()
                .filter(|(_, source)| appears_in(&lines, source))
                .map(|(name, _)| name)
                .collect();
            let problem = match &block.file {
                Some(file) if !sources.contains_key(file) => {
                    format!(
                        "its marker names {file}, which is not a .{extension} file under {dir}/"
                    )
                }
                Some(file) if found_in.contains(&file) => continue,
                Some(file) => format!("it is not in {file} (found in: {found_in:?})"),
                None => format!(
                    "the line before its fence must name its file, like <!-- {} --> \
                     (mark the block ```{language},ignore if it is not meant to be the source)",
                    found_in.first().map_or("src/….rs", |f| f.as_str())
                ),
            };
            wrong.push(format!(
                "{lesson}:{}: this ```{language} block: {problem}\n{}",
                block.line,
                lines.join("\n")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    assert!(checked > 0, "the lessons have no {language} blocks at all");
}

#[test]
fn every_rust_block_in_the_lessons_is_in_the_file_it_names() {
    check_blocks("rust", "src", "rs");
}

// Why: the page's code is quoted in the lessons as much as the server's; a
// quote of JavaScript that the page no longer has teaches something false.
#[test]
fn every_js_block_in_the_lessons_is_in_the_file_it_names() {
    check_blocks("js", "public", "js");
}

#[test]
fn the_block_checker_catches_a_changed_line_and_a_wrong_file() {
    let source = normalized("fn a() {\n    let x = 1;\n    x + 1\n}\nfn b() {}\n");
    assert!(appears_in(&normalized("let x = 1;\n  x + 1"), &source));
    assert!(!appears_in(&normalized("let x = 2;\nx + 1"), &source));
    // An elision line stands for lines left out, in order.
    assert!(appears_in(
        &normalized("fn a() {\n// …\n}\nfn b() {}"),
        &source
    ));
    assert!(!appears_in(
        &normalized("fn b() {}\n// …\nfn a() {"),
        &source
    ));
    let text = "text\n<!-- src/hub.rs -->\n```rust\nlet x = 1;\n```\n\
                ```rust,ignore\nnot code\n```\n```rust\nno marker\n```\n";
    let all = blocks("test.md", text);
    let rust = checked_blocks(&all, "rust");
    assert_eq!(rust.len(), 2);
    assert_eq!(rust[0].file.as_deref(), Some("src/hub.rs"));
    assert_eq!(rust[0].body, "let x = 1;\n");
    assert_eq!(rust[1].file, None);
    assert_eq!(marker("<!-- capture: curl-stats -->"), None);
    // A closing fence followed by text closes nothing in Markdown.
    let broken = std::panic::catch_unwind(|| blocks("test.md", "```js\nx\n``` The\n"));
    assert!(
        broken.is_err(),
        "a closing fence followed by text was taken"
    );
}

// ---------------------------------------------------------------------------
// Rule 2: the names the prose gives as our code.

/// What is not ours: standard-library paths and types, standard methods
/// the prose calls by name, the browser's objects and functions, and a few
/// other programs' (Python's `websockets`). A path whose first segment is
/// here, or a call whose name is, is not looked for in `src/` or
/// `public/`. Anything not here is looked for.
#[rustfmt::skip]
const NOT_OURS: &[&str] = &[
    // Rust's crates, modules and types, as a path's first segment.
    "std", "core", "alloc", "Arc", "Box", "Condvar", "Duration", "Instant", "Mutex",
    "OnceLock", "Option", "Ordering", "Path", "PathBuf", "RandomState", "Result",
    "Shutdown", "String", "TcpListener", "TcpStream", "Vec", "VecDeque", "char", "f64",
    "fs", "io", "mpsc", "str", "thread", "u16", "u32", "u64", "u8", "usize",
    // Rust's variants and functions, called by name.
    "Some", "None", "Ok", "Err", "drop", "clear", "error_len", "extend", "incoming",
    "is_zero", "load", "push", "read", "repeat", "valid_up_to",
    // The browser's objects and functions, and JavaScript's.
    "EventSource", "WebSocket", "JSON", "console", "addEventListener", "fetch",
    "toISOString",
];

/// Spans that look like paths and are not names at all: a test thread's
/// name as Linux cuts it, to 15 bytes (chapter 16).
const NOT_NAMES: &[&str] = &["websocket::mess"];

/// Words that may stand before `(` without being a name: keywords.
const KEYWORDS: &[&str] = &[
    "if", "match", "while", "for", "return", "fn", "function", "in", "new", "typeof",
];

/// The prose of a Markdown text: every line of a fenced block blanked, so
/// that line numbers stay right.
fn prose_of(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            fenced = !fenced;
        }
        if !fence && !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// An inline code span of the prose: its text (line breaks as spaces), the
/// line it starts on, and its byte range including the backticks.
#[derive(Debug)]
struct Span {
    text: String,
    line: usize,
    start: usize,
    end: usize,
}

/// The inline code spans of some prose. A span may break across lines of
/// a paragraph, never across a blank line.
fn spans(prose: &str) -> Vec<Span> {
    let bytes = prose.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = run_at(i);
        let mut j = i + run;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let other = run_at(j);
                if other == run {
                    close = Some(j);
                    break;
                }
                j += other;
            } else if bytes[j] == b'\n' && bytes.get(j + 1) == Some(&b'\n') {
                break;
            } else {
                j += 1;
            }
        }
        let Some(close) = close else {
            i += run;
            continue;
        };
        out.push(Span {
            text: prose[i + run..close].replace('\n', " ").trim().to_string(),
            line: 1 + prose[..i].matches('\n').count(),
            start: i,
            end: close + run,
        });
        i = close + run;
    }
    out
}

/// A name a span gives as code.
#[derive(Debug, Clone, PartialEq)]
enum Name {
    /// `a::b::c`, with or without a call after it.
    Path(Vec<String>),
    /// `name(…)`.
    Call(String),
    /// `root.….method(…)`; the root is empty when the chain starts on an
    /// expression (`"é".repeat(3)`).
    Method { root: String, method: String },
}

impl Name {
    fn show(&self) -> String {
        match self {
            Name::Path(path) => path.join("::"),
            Name::Call(name) => format!("{name}()"),
            Name::Method { root, method } => format!("{root}.{method}()"),
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The names in one span's text: every chain of identifiers joined by
/// `::` or `.`, kept when it is a path with `::` or is called.
fn names_in(text: &str) -> Vec<Name> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = (chars[i].is_ascii_alphabetic() || chars[i] == '_')
            && (i == 0 || !is_ident_char(chars[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let before = if i == 0 { ' ' } else { chars[i - 1] };
        let attribute = i >= 2 && chars[i - 2] == '#' && before == '[';
        // The chain: identifiers, and the separator before each.
        let mut parts: Vec<(String, &str)> = Vec::new();
        let mut separator = "";
        loop {
            let from = i;
            while i < chars.len() && is_ident_char(chars[i]) {
                i += 1;
            }
            parts.push((chars[from..i].iter().collect(), separator));
            let next = |k: usize| chars.get(i + k).copied();
            let ident_at = |k: usize| next(k).is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            if next(0) == Some(':') && next(1) == Some(':') && ident_at(2) {
                separator = "::";
                i += 2;
            } else if next(0) == Some('.') && ident_at(1) {
                separator = ".";
                i += 1;
            } else {
                break;
            }
        }
        let called = chars.get(i) == Some(&'(');
        // A piece of a longer path, a flag, a lifetime, an attribute.
        if matches!(before, ':' | '#' | '-' | '\'' | '/' | '$' | '@') || attribute {
            continue;
        }
        let dotted = before == '.' || parts.iter().any(|(_, s)| *s == ".");
        let words: Vec<String> = parts.into_iter().map(|(w, _)| w).collect();
        if dotted {
            if called {
                let root = if before == '.' { "" } else { &words[0] };
                out.push(Name::Method {
                    root: root.to_string(),
                    method: words.last().unwrap().clone(),
                });
            }
        } else if words.len() > 1 {
            out.push(Name::Path(words));
        } else if called && !KEYWORDS.contains(&words[0].as_str()) {
            out.push(Name::Call(words[0].clone()));
        }
    }
    out
}

/// Whether a name is on the list of what is not ours.
fn not_ours(name: &Name) -> bool {
    let listed = |word: &str| NOT_OURS.contains(&word);
    match name {
        Name::Path(path) => listed(&path[0]),
        Name::Call(name) => listed(name),
        Name::Method { root, method } => listed(root) || listed(method),
    }
}

/// What one source file defines.
#[derive(Debug, Default)]
struct Defs {
    /// The module path (`app::events`), empty for the page's scripts.
    module: Vec<String>,
    /// Functions, types, traits, constants, statics and modules, by name.
    items: BTreeSet<String>,
    /// (type, member): methods and constants of an `impl` or a trait, and
    /// the variants of an enum.
    members: BTreeSet<(String, String)>,
}

/// Rust source with comments, strings and character literals blanked, so
/// that a brace or a word inside them counts for nothing.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !is_prev_ident(&chars, i)
        {
            // A raw string: r"…" or r#"…"#.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain("#".repeat(hashes).chars())
                .collect();
            let close: Vec<char> = close.chars().collect();
            i += 2 + hashes;
            while i < chars.len() && chars[i..].iter().take(close.len()).ne(close.iter()) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                out.push(chars.get(i).map_or(' ', |&c| blank(c)));
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}'), or a lifetime.
            let end = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&q| q == '\'')
                    .map(|p| i + 2 + p)
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(i + 2)
            };
            match end {
                Some(end) => {
                    out.push_str("' '");
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_prev_ident(chars: &[char], i: usize) -> bool {
    i > 0 && is_ident_char(chars[i - 1])
}

/// The words of some code, each with the brace depth it is at.
fn words_with_depth(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut word = String::new();
    for c in code.chars() {
        if is_ident_char(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push((std::mem::take(&mut word), depth));
        }
        match c {
            '{' => {
                out.push(("{".into(), depth));
                depth += 1;
            }
            '}' => {
                depth = depth.saturating_sub(1);
                out.push(("}".into(), depth));
            }
            '(' | ')' | '[' | ']' | ',' | '<' | '>' | ';' | '=' | '#' => {
                out.push((c.to_string(), depth));
            }
            _ => {}
        }
    }
    out
}

/// What a Rust file defines.
fn rust_defs(text: &str) -> Defs {
    let words = words_with_depth(&code_only(text));
    let mut defs = Defs::default();
    // The type whose block each open brace depth is (an impl, a trait or
    // an enum), and whether it is an enum.
    let mut owners: Vec<(usize, String, bool)> = Vec::new();
    let mut at = 0;
    while at < words.len() {
        let (word, depth) = (&words[at].0, words[at].1);
        owners.retain(|(d, _, _)| *d < depth || (*d == depth && word != "}"));
        let owner = owners.last().filter(|(d, _, _)| *d + 1 == depth);
        let next = words.get(at + 1).map(|(w, _)| w.as_str()).unwrap_or("");
        match word.as_str() {
            "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "mod" | "union"
                if next.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && next != "fn" =>
            {
                defs.items.insert(next.to_string());
                if let Some((_, ty, false)) = owner {
                    defs.members.insert((ty.clone(), next.to_string()));
                }
                if matches!(word.as_str(), "trait" | "enum") {
                    if let Some(open) = block_open(&words, at) {
                        owners.push((depth, next.to_string(), word == "enum"));
                        at = open;
                        if word == "enum" {
                            enum_variants(&words, open, next, &mut defs);
                        }
                        continue;
                    }
                }
            }
            "impl" => {
                if let Some(open) = block_open(&words, at) {
                    let ty = impl_type(&words[at + 1..open]);
                    owners.push((depth, ty, false));
                    at = open;
                    continue;
                }
            }
            _ => {}
        }
        at += 1;
    }
    defs
}

/// The position of the `{` that opens the block of the item at `at`,
/// unless a `;` ends the item first.
fn block_open(words: &[(String, usize)], at: usize) -> Option<usize> {
    let depth = words[at].1;
    (at + 1..words.len())
        .take_while(|&i| !(words[i].0 == ";" && words[i].1 == depth))
        .find(|&i| words[i].0 == "{" && words[i].1 == depth)
}

/// The type an `impl` header is for: `impl<T> Trait for Type<T>` is for
/// `Type`.
fn impl_type(header: &[(String, usize)]) -> String {
    let after_for = header
        .iter()
        .position(|(w, _)| w == "for")
        .map_or(header, |p| &header[p + 1..]);
    // Skip the impl's own generics, then take the path's last segment
    // before any generics of its own.
    let mut angle = 0i32;
    let mut last = String::new();
    for (w, _) in after_for {
        match w.as_str() {
            "<" => angle += 1,
            ">" => angle -= 1,
            _ if angle == 0 && w.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                if w != "dyn" && w != "where" {
                    last = w.clone();
                }
                if w == "where" {
                    break;
                }
            }
            _ => {}
        }
        if angle == 0 && w == ">" && !last.is_empty() {
            break;
        }
    }
    last
}

/// The variants of the enum whose block opens at `open`: each identifier
/// that starts the block or follows a comma at the block's own depth.
fn enum_variants(words: &[(String, usize)], open: usize, name: &str, defs: &mut Defs) {
    let inner = words[open].1 + 1;
    let mut expect = true;
    let mut in_attribute = false;
    for (word, depth) in &words[open + 1..] {
        if *depth < inner || (word == "}" && *depth == inner - 1) {
            break;
        }
        if *depth != inner {
            continue;
        }
        match word.as_str() {
            "#" => in_attribute = true,
            "[" if in_attribute => {}
            "]" if in_attribute => in_attribute = false,
            "," => expect = true,
            _ if in_attribute => {}
            w if expect && w.starts_with(|c: char| c.is_ascii_uppercase()) => {
                defs.members.insert((name.to_string(), w.to_string()));
                expect = false;
            }
            _ => expect = false,
        }
    }
}

/// What a script of the page defines: functions, constants and methods.
fn js_defs(text: &str) -> Defs {
    let words = words_with_depth(text);
    let mut defs = Defs::default();
    for (i, (word, _)) in words.iter().enumerate() {
        let next = words.get(i + 1).map(|(w, _)| w.as_str()).unwrap_or("");
        if matches!(
            word.as_str(),
            "function" | "const" | "let" | "var" | "class"
        ) {
            defs.items.insert(next.to_string());
        }
    }
    // Methods written `name(…) {` in an object or a class.
    for (i, _) in text.match_indices('(') {
        let name_end = text[..i].trim_end().len();
        let name: String = text[..name_end]
            .chars()
            .rev()
            .take_while(|&c| is_ident_char(c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let close = text[i..].find(')').map(|p| i + p);
        let braced = close.is_some_and(|c| text[c + 1..].trim_start().starts_with('{'));
        if !name.is_empty() && braced && !KEYWORDS.contains(&name.as_str()) {
            defs.items.insert(name);
        }
    }
    defs
}

/// Every source file's definitions, by path: `src/hub.rs`, `public/app.js`.
fn all_defs() -> BTreeMap<String, Defs> {
    let mut out = BTreeMap::new();
    for (dir, extension) in [("src", "rs"), ("public", "js")] {
        let mut paths = Vec::new();
        files_under(&root().join(dir), extension, &mut paths);
        for path in paths {
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            let text = fs::read_to_string(&path).unwrap();
            let defs = if extension == "rs" {
                Defs {
                    module: module_of(&name),
                    ..rust_defs(&text)
                }
            } else {
                js_defs(&text)
            };
            out.insert(name, defs);
        }
    }
    out
}

/// The module path of a source file: `src/app/events.rs` is
/// `app::events`, `src/sse/mod.rs` is `sse`, `src/bin/bench/main.rs`
/// is `bench`.
fn module_of(file: &str) -> Vec<String> {
    let inner = file.trim_start_matches("src/").trim_end_matches(".rs");
    let inner = inner.strip_prefix("bin/").unwrap_or(inner);
    inner
        .split('/')
        .filter(|part| !matches!(*part, "mod" | "lib" | "main"))
        .map(str::to_string)
        .collect()
}

/// Whether the files in `files` define `path`: a module path (any
/// suffix of a file's module path will do, so `stream::jittered` finds
/// `sse::stream`), then an item, or a type and one of its members.
fn defines(path: &[String], files: &[&Defs]) -> bool {
    let path: Vec<&str> = path
        .iter()
        .map(String::as_str)
        .skip_while(|s| matches!(*s, "realtime_by_hand" | "crate" | "self" | "super"))
        .collect();
    (0..=path.len()).rev().any(|k| {
        let module = &path[..k];
        let in_module: Vec<&Defs> = files
            .iter()
            .copied()
            .filter(|d| {
                let m: Vec<&str> = d.module.iter().map(String::as_str).collect();
                // The module itself, or a file inside it (a directory
                // module's items may be defined in its files).
                m.ends_with(module) || m.split_last().is_some_and(|(_, up)| up.ends_with(module))
            })
            .collect();
        if k > 0 && in_module.is_empty() {
            return false;
        }
        in_module.iter().any(|d| defines_rest(&path[k..], d))
    })
}

/// Whether one file defines what is left of a path after its module.
fn defines_rest(rest: &[&str], defs: &Defs) -> bool {
    let mut rest = rest;
    // Inline modules (`tests::a_ping_in_is_a_pong_out`).
    while rest.len() > 1 && rest[0].starts_with(|c: char| c.is_ascii_lowercase()) {
        if !defs.items.contains(rest[0]) {
            return false;
        }
        rest = &rest[1..];
    }
    match rest {
        [] => true,
        [name] => defs.items.contains(*name),
        [ty, member] => defs.members.contains(&(ty.to_string(), member.to_string())),
        _ => false,
    }
}

/// The file a sentence names for a span: the next span, after " (",
/// " in ", ", in " or ", ", or the span before it, followed by ", ".
fn attributed_file<'a>(prose: &str, spans: &'a [Span], at: usize) -> Option<&'a str> {
    let is_file = |s: &Span| {
        (s.text.starts_with("src/") || s.text.starts_with("public/")) && !s.text.contains(' ')
    };
    if let Some(next) = spans.get(at + 1) {
        let gap = &prose[spans[at].end..next.start];
        if is_file(next) && matches!(gap, " (" | " in " | ", in " | ", " | " (in ") {
            return Some(&next.text);
        }
    }
    let before = at.checked_sub(1).map(|b| &spans[b])?;
    (is_file(before) && &prose[before.end..spans[at].start] == ", ").then_some(&before.text)
}

/// The names in a lesson's prose that are not defined where it says, as
/// messages.
fn undefined_names(lesson: &str, markdown: &str, defs: &BTreeMap<String, Defs>) -> Vec<String> {
    let prose = prose_of(markdown);
    let spans = spans(&prose);
    let mut wrong = Vec::new();
    for (at, span) in spans.iter().enumerate() {
        let scope = attributed_file(&prose, &spans, at);
        let files: Vec<&Defs> = defs
            .iter()
            .filter(|(path, _)| scope.is_none_or(|s| path.starts_with(s)))
            .map(|(_, d)| d)
            .collect();
        if NOT_NAMES.contains(&span.text.as_str()) {
            continue;
        }
        for name in names_in(&span.text) {
            if not_ours(&name) {
                continue;
            }
            let found = match &name {
                Name::Path(path) => defines(path, &files),
                Name::Call(word) | Name::Method { method: word, .. } => {
                    files.iter().any(|d| d.items.contains(word.as_str()))
                }
            };
            if !found {
                let place = scope.map_or("src/ or public/".to_string(), str::to_string);
                wrong.push(format!(
                    "{lesson}:{}: `{}` is not defined in {place} (in `{}`); if it is the \
                     standard library's or the browser's, add it to NOT_OURS",
                    span.line,
                    name.show(),
                    span.text
                ));
            }
        }
    }
    wrong
}

// Why: a function the prose names and the code no longer has sends the
// reader looking for something that is not there.
#[test]
fn every_name_the_prose_gives_as_our_code_is_defined_there() {
    let defs = all_defs();
    let mut wrong = Vec::new();
    for (lesson, text) in lessons() {
        wrong.extend(undefined_names(&lesson, &text, &defs));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_name_checker_catches_a_made_up_name_and_a_wrong_file() {
    let defs = all_defs();
    let check = |text: &str| undefined_names("lesson.md", text, &defs);
    assert!(check("Then `format_event()` writes it, and `Hub::publish` too.").is_empty());
    assert_eq!(check("Then `format_eventz()` writes it.").len(), 1);
    // In the file the sentence names, not merely somewhere.
    assert!(check("`Hub::publish` (`src/hub.rs`) keeps it.").is_empty());
    assert_eq!(check("`Hub::publish` (`src/json.rs`) keeps it.").len(), 1);
    // Variants, module paths, inline test modules, and the page's code.
    assert!(check("`Route::Events`, `json::parse`, `stream::jittered()`").is_empty());
    assert!(check("`websocket::protocol::tests::a_ping_in_is_a_pong_out`").is_empty());
    assert!(check("`backoffDelay(attempt)` and `source.addEventListener(\"x\")`").is_empty());
    // The standard library is exempt by the list; a name of ours that
    // does not exist is not, however it is written.
    assert!(check("`Arc::clone`, `std::mem::take`, `drop(state)`").is_empty());
    assert_eq!(check("`Hub::publishes` and `link.sendz(x)`").len(), 2);
    assert_eq!(
        names_in("app.hub.publish(None, …)"),
        [Name::Method {
            root: "app".into(),
            method: "publish".into()
        }]
    );
}

// ---------------------------------------------------------------------------
// Rule 3: the bones of a chapter.

/// The sections every chapter has, in this order (others may come between).
const BONES: [&str; 5] = [
    "The problem",
    "The bytes on the wire",
    "The code",
    "Try it",
    "Exercise",
];

/// Chapters whose sections are being rewritten around their debugger
/// sessions (chapter 16): until that lands, only their exercise is
/// checked.
const BONES_PENDING: &[&str] = &[];

/// One test of the crate, as `cargo test`'s filter sees it.
#[derive(Debug)]
struct TestFn {
    /// `src/hub.rs`, `tests/sse.rs`.
    file: String,
    /// `hub::tests::resume_outside_the_history_is_a_reset`, or the bare
    /// name for an integration test.
    path: String,
    ignored: bool,
}

/// Every `#[test]` function in `src/` and `tests/*.rs`.
fn all_tests() -> Vec<TestFn> {
    let mut files = Vec::new();
    files_under(&root().join("src"), "rs", &mut files);
    let mut top = Vec::new();
    files_under(&root().join("tests"), "rs", &mut top);
    files.extend(
        top.into_iter()
            .filter(|p| p.parent() == Some(&root().join("tests"))),
    );
    let mut out = Vec::new();
    for path in files {
        let file = path.strip_prefix(root()).unwrap().display().to_string();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let prefix = if file.starts_with("src/") {
            let module = module_of(&file).join("::");
            let module = if module.is_empty() {
                module
            } else {
                format!("{module}::")
            };
            if text.contains("mod tests") {
                format!("{module}tests::")
            } else {
                module
            }
        } else {
            String::new()
        };
        for (at, line) in lines.iter().enumerate() {
            if line.trim() != "#[test]" {
                continue;
            }
            let mut ignored = false;
            for next in &lines[at + 1..] {
                let next = next.trim();
                if next.starts_with("#[ignore") {
                    ignored = true;
                } else if let Some(rest) = next.strip_prefix("fn ") {
                    let name = rest.split(['(', '<']).next().unwrap_or(rest);
                    out.push(TestFn {
                        file: file.clone(),
                        path: format!("{prefix}{name}"),
                        ignored,
                    });
                    break;
                } else if !next.starts_with("#[") && !next.starts_with("//") {
                    break;
                }
            }
        }
    }
    out
}

/// What is wrong with one `cargo test …` command, if anything: the tests
/// it names must exist, and an ignored one needs `-- --ignored`.
fn check_command(command: &str, tests: &[TestFn]) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().skip(2).collect();
    let (mut target, mut filter, mut ignored, mut harness) = (None, None, false, false);
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "--" => harness = true,
            "--lib" => target = Some("src/".to_string()),
            "--test" => {
                i += 1;
                target = words.get(i).map(|name| format!("tests/{name}.rs"));
            }
            "--ignored" if harness => ignored = true,
            word if word.starts_with('-') => {}
            word if filter.is_none() => filter = Some(word),
            _ => {}
        }
        i += 1;
    }
    let matching: Vec<&TestFn> = tests
        .iter()
        .filter(|t| {
            target
                .as_ref()
                .is_none_or(|dir| t.file.starts_with(dir.as_str()))
        })
        .filter(|t| filter.is_none_or(|f| t.path.contains(f)))
        .collect();
    if matching.is_empty() {
        return Some(format!("`{command}` names no test that exists"));
    }
    // With `--ignored`, cargo runs only the ignored tests; without, only
    // the others.
    if !matching.iter().any(|t| t.ignored == ignored) {
        let why = if ignored {
            "none of its tests is #[ignore]d, and `--ignored` runs only those"
        } else {
            "its test is #[ignore]d, so it needs `-- --ignored`"
        };
        return Some(format!("`{command}` runs nothing: {why}"));
    }
    None
}

/// The text of one `## Heading` section, up to the next one.
fn section<'a>(markdown: &'a str, heading: &str) -> Option<&'a str> {
    let start = markdown.find(&format!("\n## {heading}\n"))? + heading.len() + 5;
    let end = markdown[start..]
        .find("\n## ")
        .map_or(markdown.len(), |e| start + e);
    Some(&markdown[start..end])
}

/// What a chapter lacks of the bones, as messages.
fn missing_bones(chapter: &str, markdown: &str, tests: &[TestFn]) -> Vec<String> {
    let mut wrong = Vec::new();
    if !BONES_PENDING.contains(&chapter) {
        wrong.extend(missing_sections(chapter, markdown));
    }
    let Some(exercise) = section(markdown, "Exercise") else {
        wrong.push(format!("{chapter}: no \"## Exercise\" section"));
        return wrong;
    };
    wrong.extend(unchecked_exercises(chapter, exercise, tests));
    wrong
}

/// The sections a chapter lacks, or has out of order, and whether it says
/// what it assumes.
fn missing_sections(chapter: &str, markdown: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    let headings: Vec<&str> = markdown
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .collect();
    let mut from = 0;
    for bone in BONES {
        match headings[from..].iter().position(|h| *h == bone) {
            Some(at) => from += at + 1,
            None => wrong.push(format!(
                "{chapter}: no \"## {bone}\" section (in this order: {BONES:?})"
            )),
        }
    }
    let before_the_bytes = markdown
        .split("\n## The bytes on the wire")
        .next()
        .unwrap_or("");
    if !before_the_bytes.contains("assumes") {
        wrong.push(format!(
            "{chapter}: the chapter does not say what it assumes (\"It assumes …\", before the bytes on the wire)"
        ));
    }
    wrong
}

/// The exercises of a chapter that name no check, or a check that runs
/// nothing.
fn unchecked_exercises(chapter: &str, exercise: &str, tests: &[TestFn]) -> Vec<String> {
    let mut wrong = Vec::new();
    // Numbered exercises each name their check; an unnumbered one, once.
    let mut items: Vec<String> = Vec::new();
    for line in exercise.lines() {
        let numbered = line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered || (items.is_empty() && !line.trim().is_empty()) {
            items.push(line.to_string());
        } else if let Some(item) = items.last_mut() {
            item.push('\n');
            item.push_str(line);
        }
    }
    for item in &items {
        let prose = prose_of(item);
        let commands: Vec<String> = spans(&prose)
            .into_iter()
            .map(|s| s.text)
            .filter(|t| t.starts_with("cargo test"))
            .collect();
        let first = item.lines().next().unwrap_or("").trim();
        if commands.is_empty() {
            wrong.push(format!(
                "{chapter}: the exercise \"{first}\" names no `cargo test …` that checks it"
            ));
        }
        for command in commands {
            if let Some(problem) = check_command(&command, tests) {
                wrong.push(format!("{chapter}: {problem}"));
            }
        }
    }
    wrong
}

// Why: a reader who has learnt where things are in one chapter finds them
// in the next; and an exercise whose check nobody can run leaves the
// reader guessing whether they got it right.
#[test]
fn every_chapter_has_the_same_bones() {
    let tests = all_tests();
    let mut wrong = Vec::new();
    for (chapter, text) in chapters() {
        wrong.extend(missing_bones(&chapter, &text, &tests));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_bones_checker_reads_commands_and_sections() {
    let tests = all_tests();
    assert!(tests.len() > 200, "found only {} tests", tests.len());
    assert!(check_command("cargo test --lib hub::tests::resume", &tests).is_none());
    assert!(check_command("cargo test --test sse resume_with", &tests).is_none());
    assert!(check_command("cargo test --test sse no_such_test_anywhere", &tests).is_some());
    assert!(check_command("cargo test --test limits fairness", &tests).is_some());
    assert!(check_command("cargo test --test limits fairness -- --ignored", &tests).is_none());
    let chapter = "# 99\n\n## The problem\n\nIt assumes nothing.\n\n## The bytes on the wire\n\n\
                   ## The code\n\n## Try it\n\n## Exercise\n\n1. Do this: `cargo test --lib hub`.\n\
                   2. And that, unchecked.\n";
    let wrong = missing_bones("99.md", chapter, &tests);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].contains("And that"), "{wrong:?}");
}

// ---------------------------------------------------------------------------
// Rule 4: paths, flags and the lists of chapters.

#[test]
fn lessons_name_files_that_exist() {
    let ignored: Vec<String> = fs::read_to_string(root().join(".gitignore"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(str::to_string)
        .collect();
    for (lesson, text) in lessons() {
        for word in text.split(|c: char| c.is_whitespace() || "`()[]<>,;:\"'".contains(c)) {
            let word = word.trim_end_matches('.');
            let ours = ["src/", "public/", "tests/", "lessons/"]
                .iter()
                .any(|top| word.starts_with(top));
            let a_path =
                word.ends_with('/') || word.rsplit('/').next().is_some_and(|f| f.contains('.'));
            // What the runs write (screenshots, reports) is not in a checkout.
            let made_by_a_run = ignored.iter().any(|dir| word.starts_with(dir.as_str()));
            if ours && a_path && !made_by_a_run {
                assert!(
                    root().join(word).exists(),
                    "{lesson} names {word}, which does not exist"
                );
            }
        }
    }
}

// Why: the contract page is where an outside client's author looks up a
// limit. A flag that `--help` prints and the page does not name is a limit
// nobody can find.
#[test]
fn every_flag_the_server_prints_in_its_help_is_on_the_contract_page() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_realtime-by-hand"))
        .arg("--help")
        .output()
        .expect("run the server with --help");
    let help = String::from_utf8_lossy(&output.stdout);
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.starts_with("--"))
        .collect();
    assert!(flags.len() > 20, "--help lists only {flags:?}");
    let contract = fs::read_to_string(root().join("lessons/contract.md")).unwrap();
    let missing: Vec<&&str> = flags
        .iter()
        .filter(|flag| !contract.contains(&format!("`{flag}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lessons/contract.md does not name {missing:?}"
    );
}

// Why: a chapter that exists but is listed nowhere is never read, and a
// listed one that is gone is a dead link. The crate docs list them too,
// beside the modules each one opens.
#[test]
fn the_reading_path_and_the_readme_list_exactly_the_chapters_present() {
    let mut present: Vec<String> = fs::read_dir(root().join("lessons"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".md") && name.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    present.sort();
    let lists = [
        ("lessons/README.md", "("),
        ("README.md", "(lessons/"),
        // The crate docs' reading order.
        ("src/lib.rs", "`lessons/"),
    ];
    for (list, prefix) in lists {
        let text = fs::read_to_string(root().join(list)).unwrap();
        let mut listed: Vec<String> = text
            .split(prefix)
            .skip(1)
            .filter_map(|rest| rest.split([')', '`']).next())
            .filter(|link| link.ends_with(".md") && link.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(
            listed, present,
            "{list} lists other chapters than lessons/ holds"
        );
    }
}
