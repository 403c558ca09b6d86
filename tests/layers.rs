//! The layers DESIGN.md draws, checked on the source: every path into the
//! crate a module names (`crate::x`, and `super::` chains that climb to
//! the crate's root), in `use` statements and in code, must lead to a
//! layer its own may use. Comments, strings and test code (`#[cfg(test)]`
//! items, `tests.rs` and `*_tests.rs` files) are left out: tests may reach
//! any layer to set up what they check.
//!
//! The checker checks itself first, on a tree where an engine file
//! imports the console.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Anything: the front ends and their settings.
const ALL: &[&str] = &["*"];
/// One capability each (scan, ssh, fingerprint, deploy, poll): model, ssh
/// for those that need it, pki for HTTPS clients.
const CAPABILITY: &[&str] = &["ssh", "pki"];

/// DESIGN.md's table: who may use whom (model is shared by all).
const LAYERS: &[(&str, &[&str])] = &[
    ("cli", ALL),
    ("config", ALL),
    ("tui", &["engine"]),
    (
        "engine",
        &[
            "scan",
            "ssh",
            "fingerprint",
            "deploy",
            "poll",
            "control",
            "store",
        ],
    ),
    ("scan", CAPABILITY),
    ("ssh", CAPABILITY),
    ("fingerprint", CAPABILITY),
    ("deploy", CAPABILITY),
    ("poll", CAPABILITY),
    ("agent", &["pki", "auth"]),
    ("control", &["pki", "auth", "store"]),
    ("pki", &[]),
    ("auth", &[]),
    ("store", &[]),
    ("model", &[]),
    ("sandbox", &["ssh", "agent"]),
];

/// What the table leaves out that is right, each with why. Keep it short.
const ADDITIONS: &[(&str, &str, &str)] = &[
    (
        "engine",
        "pki",
        "the poller's HTTPS clients pin the control plane and check agents against the fleet \
         CA's revocation list: pki for HTTPS clients, as the table grants poll",
    ),
    (
        "auth",
        "pki",
        "the token keys are written as the CA's keys are, through pki::write_private (0600 \
         from creation, never readable by others)",
    ),
    (
        "store",
        "pki",
        "the registry's connection to PostgreSQL is TLS: pki builds the rustls client config \
         trusting the database's CA, with the one crypto backend every other TLS client uses",
    ),
];

/// One import a layer may not make.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: PathBuf,
    line: usize,
    from: String,
    to: String,
}

fn may_use(from: &str, to: &str) -> Result<bool, String> {
    let allowed = LAYERS
        .iter()
        .find(|(layer, _)| *layer == from)
        .map(|(_, allowed)| *allowed)
        .ok_or_else(|| {
            format!(
                "module {from} is in no layer: add it to DESIGN.md's table and to tests/layers.rs"
            )
        })?;
    Ok(from == to
        || to == "model"
        || allowed.contains(&"*")
        || allowed.contains(&to)
        || ADDITIONS.iter().any(|(f, t, _)| *f == from && *t == to))
}

/// Every forbidden import under `src`.
fn violations(src: &Path) -> Result<Vec<Violation>, String> {
    let mut found = Vec::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        // lib.rs and main.rs are the crate root: they name every module.
        let Some(layer) = module_of(&parts) else {
            continue;
        };
        let depth = module_depth(&parts);
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, target) in crate_paths(&text, depth) {
            if !may_use(&layer, &target)? {
                found.push(Violation {
                    file: rel.to_owned(),
                    line,
                    from: layer.clone(),
                    to: target,
                });
            }
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The top-level module a file belongs to (`engine` for
/// `engine/jobs/scan.rs`, `poll` for `poll.rs`).
fn module_of(parts: &[&str]) -> Option<String> {
    match parts {
        [file] if *file == "lib.rs" || *file == "main.rs" => None,
        [file] => Some(file.trim_end_matches(".rs").to_owned()),
        [dir, ..] => Some((*dir).to_owned()),
        [] => None,
    }
}

/// How many `super`s climb from the file's module to the crate root.
fn module_depth(parts: &[&str]) -> usize {
    let last = parts.last().copied().unwrap_or_default();
    if last == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    }
}

/// `text` with comments, strings and character literals blanked (line
/// breaks kept, so lines still count).
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
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br"..": ends at a quote and as many hashes.
            let hashes = chars[i..i + len].iter().filter(|&&c| c == '#').count();
            for _ in 0..len {
                out.push(' ');
            }
            i += len;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&c| c == '#') {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The length of a raw string's opening (`r"`, `r##"`, `br#"`) at `i`.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    while chars.get(j) == Some(&'#') {
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some(j + 1 - i)
}

/// `'a'` and `'\n'` are characters; `'a` is a lifetime.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// Tokens of code: identifiers, `::`, and single punctuation.
fn tokens(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((line, chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push((line, "::".into()));
            i += 2;
        } else {
            out.push((line, c.to_string()));
            i += 1;
        }
    }
    out
}

/// Drops `#[cfg(test)]` items: from the attribute to the item's `;` or
/// the end of its block.
fn without_test_items(tokens: &[(usize, String)]) -> Vec<(usize, String)> {
    let is = |i: usize, text: &str| tokens.get(i).is_some_and(|(_, t)| t == text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let cfg_test = is(i, "#")
            && is(i + 1, "[")
            && is(i + 2, "cfg")
            && is(i + 3, "(")
            && is(i + 4, "test")
            && is(i + 5, ")")
            && is(i + 6, "]");
        if !cfg_test {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        let mut depth = 0usize;
        while i < tokens.len() {
            let t = tokens[i].1.as_str();
            i += 1;
            match t {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ";" if depth == 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// Every top-level module the code names, with its line: `crate::x`,
/// `crate::{x, y::z}`, and `super::...::x` climbing `depth` levels to the root.
fn crate_paths(text: &str, depth: usize) -> Vec<(usize, String)> {
    let tokens = without_test_items(&tokens(&code_only(text)));
    let word = |i: usize| tokens.get(i).map_or("", |(_, t)| t.as_str());
    let mut found = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let after_root = if word(i) == "crate" && word(i + 1) == "::" {
            Some(i + 2)
        } else if word(i) == "super" && (i == 0 || word(i - 1) != "::") {
            // super::super::... up to the crate root, then a module.
            let mut j = i;
            let mut climbed = 0;
            while word(j) == "super" && word(j + 1) == "::" {
                climbed += 1;
                j += 2;
            }
            (climbed >= depth && depth > 0).then_some(j)
        } else {
            None
        };
        let Some(at) = after_root else {
            i += 1;
            continue;
        };
        let line = tokens[at.min(tokens.len() - 1)].0;
        if word(at) == "{" {
            // A group: the first name of each comma-separated item.
            let mut level = 0;
            let mut item_start = true;
            let mut j = at;
            while j < tokens.len() {
                match word(j) {
                    "{" => {
                        level += 1;
                        if level == 1 {
                            item_start = true;
                        }
                    }
                    "}" => {
                        level -= 1;
                        if level == 0 {
                            break;
                        }
                    }
                    "," if level == 1 => item_start = true,
                    name if item_start && level == 1 => {
                        if name != "self" {
                            found.push((tokens[j].0, name.to_owned()));
                        }
                        item_start = false;
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j;
        } else {
            let name = word(at);
            if name
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_')
            {
                found.push((line, name.to_owned()));
            }
            i = at + 1;
        }
    }
    found
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_checker_finds_an_engine_file_importing_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    write(
        src,
        "lib.rs",
        "pub mod engine;\npub mod tui;\npub mod model;\n",
    );
    write(
        src,
        "engine/jobs/scan.rs",
        r##"//! Mentions crate::tui in a comment only.
use crate::model::HostScan;
/* a block comment: crate::tui::App, /* nested crate::tui */ still a comment */
const SAID: &str = "crate::tui::app";
const RAW: &str = r#"use crate::tui;"#;
fn lifetime<'a>(s: &'a str) -> char { let _ = s; 'c' }
use crate::tui::app::App;

#[cfg(test)]
mod tests {
    use crate::tui::view;
}
"##,
    );
    write(
        src,
        "engine/actor/merge.rs",
        "use super::super::super::{model, tui::keys};\nuse super::Actor;\n",
    );
    write(src, "tui/app.rs", "use crate::engine::Event;\n");
    write(src, "engine/tests.rs", "use crate::tui::app::App;\n");
    let found = violations(src).unwrap();
    let seen: BTreeSet<(String, usize, String)> = found
        .iter()
        .map(|v| (v.file.display().to_string(), v.line, v.to.clone()))
        .collect();
    assert_eq!(
        seen,
        BTreeSet::from([
            ("engine/actor/merge.rs".to_owned(), 1, "tui".to_owned()),
            ("engine/jobs/scan.rs".to_owned(), 7, "tui".to_owned()),
        ]),
        "{found:#?}"
    );

    // A module the table does not know is a failure of its own.
    write(src, "telemetry.rs", "use crate::model::HostScan;\n");
    let err = violations(src).unwrap_err();
    assert!(err.contains("telemetry"), "{err}");
}

#[test]
fn every_module_keeps_to_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src).unwrap();
    assert!(
        found.is_empty(),
        "imports DESIGN.md's layers forbid (fix the code, or add the import to ADDITIONS \
         with why it is right):\n{}",
        found
            .iter()
            .map(|v| format!(
                "  src/{}:{}: {} uses {}",
                v.file.display(),
                v.line,
                v.from,
                v.to
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Each addition is still needed: an unused one is dropped from the list.
    for (from, to, why) in ADDITIONS {
        let used = rust_files(&src.join(from)).iter().any(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            if name == "tests.rs" || name.ends_with("_tests.rs") {
                return false;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let parts: Vec<String> = file
                .strip_prefix(&src)
                .unwrap()
                .iter()
                .map(|p| p.to_str().unwrap().to_owned())
                .collect();
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            crate_paths(&text, module_depth(&parts))
                .iter()
                .any(|(_, t)| t == to)
        });
        assert!(
            used,
            "{from} no longer uses {to}: drop the addition ({why})"
        );
    }
}
