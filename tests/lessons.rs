//! The lessons check: every ```rust block in `lessons/` must appear, line
//! for line (indentation aside), in a file under `src/`. A lesson's code is
//! then always the code that runs. A block that is deliberately not from
//! the source (a wrong example, an exercise) says so in its info string:
//! ```rust,ignore (or any info string other than plain `rust`).

use std::fs;
use std::path::{Path, PathBuf};

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

/// Lines with their indentation and trailing spaces removed.
fn normalized(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim().to_string()).collect()
}

/// The ```rust blocks of a Markdown file, with the line each starts on.
fn rust_blocks(markdown: &str) -> Vec<(usize, String)> {
    blocks_of(markdown, "rust")
}

/// The code blocks of one language (the info string exactly `language`).
fn blocks_of(markdown: &str, language: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    // The open fence: its first line, whether it must be checked, its text.
    let mut open: Option<(usize, bool, String)> = None;
    for (number, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let info = line.trim_start().trim_start_matches('`').trim();
                // Only a plain "rust" (or "js") block must come from the source.
                open = Some((number + 1, info == language, String::new()));
            }
            (Some(_), true) => {
                let (start, checked, body) = open.take().unwrap();
                if checked {
                    blocks.push((start, body));
                }
            }
            (Some((_, _, body)), false) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, false) => {}
        }
    }
    assert!(open.is_none(), "a code fence is never closed");
    blocks
}

fn appears_in(block: &[String], source: &[String]) -> bool {
    // Leading and trailing blank lines of a block do not count.
    let start = block.iter().position(|l| !l.is_empty()).unwrap_or(0);
    let end = block
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    let block = &block[start..end];
    block.is_empty() || source.windows(block.len()).any(|w| w == block)
}

/// Every block of `language` in the lessons must appear, line for line,
/// in a file of `extension` under `dir`.
fn check_blocks(language: &str, dir: &str, extension: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    files_under(&root.join(dir), extension, &mut sources);
    let sources: Vec<Vec<String>> = sources
        .iter()
        .map(|p| normalized(&fs::read_to_string(p).unwrap()))
        .collect();
    let mut lessons = Vec::new();
    files_under(&root.join("lessons"), "md", &mut lessons);
    assert!(!lessons.is_empty(), "no lessons found");
    let mut checked = 0;
    let mut missing = Vec::new();
    for lesson in &lessons {
        let text = fs::read_to_string(lesson).unwrap();
        for (line, block) in blocks_of(&text, language) {
            checked += 1;
            let block = normalized(&block);
            if !sources.iter().any(|source| appears_in(&block, source)) {
                missing.push(format!(
                    "{}:{line}: this ```{language} block is not in {dir}/ (mark it ```{language},ignore if it is not meant to be):\n{}",
                    lesson.strip_prefix(root).unwrap().display(),
                    block.join("\n")
                ));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n\n"));
    assert!(checked > 0, "the lessons have no {language} blocks at all");
}

#[test]
fn every_rust_block_in_the_lessons_is_real_code() {
    check_blocks("rust", "src", "rs");
}

#[test]
fn the_checker_catches_a_changed_line() {
    let source = normalized("fn a() {\n    let x = 1;\n    x + 1\n}\n");
    assert!(appears_in(&normalized("let x = 1;\n  x + 1"), &source));
    assert!(!appears_in(&normalized("let x = 2;\nx + 1"), &source));
    let blocks = rust_blocks(
        "text\n```rust\nlet x = 1;\n```\n```rust,ignore\nnot code\n```\n```text\nx\n```\n",
    );
    assert_eq!(blocks, [(2, "let x = 1;\n".to_string())]);
}

#[test]
fn lessons_name_files_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ignored: Vec<String> = fs::read_to_string(root.join(".gitignore"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix('/'))
        .map(str::to_string)
        .collect();
    let mut lessons = Vec::new();
    files_under(&root.join("lessons"), "md", &mut lessons);
    for lesson in lessons {
        let text = fs::read_to_string(&lesson).unwrap();
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
                    root.join(word).exists(),
                    "{} names {word}, which does not exist",
                    lesson.display()
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = fs::read_to_string(root.join("lessons/contract.md")).unwrap();
    let missing: Vec<&&str> = flags
        .iter()
        .filter(|flag| !contract.contains(&format!("`{flag}")))
        .collect();
    assert!(
        missing.is_empty(),
        "lessons/contract.md does not name {missing:?}"
    );
}

// Why: the page's code is quoted in the lessons as much as the server's; a
// quote of JavaScript that the page no longer has teaches something false.
#[test]
fn every_js_block_in_the_lessons_is_in_public() {
    check_blocks("js", "public", "js");
}

// Why: a chapter that exists but is listed nowhere is never read, and a
// listed one that is gone is a dead link.
#[test]
fn the_reading_path_and_the_readme_list_exactly_the_chapters_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut present: Vec<String> = fs::read_dir(root.join("lessons"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.ends_with(".md") && name.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    present.sort();
    for (list, prefix) in [("lessons/README.md", "("), ("README.md", "(lessons/")] {
        let text = fs::read_to_string(root.join(list)).unwrap();
        let mut listed: Vec<String> = text
            .split(prefix)
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
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
