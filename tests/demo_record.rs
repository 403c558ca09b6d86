//! `demo/record.sh` end to end: it drives `fleetctl demo` in tmux while
//! asciinema records, and the cast it writes replays (through a terminal
//! emulator) to a last screen showing the fleet with registered hosts.
//! And `demo/render.sh`, which turns a fresh recording into the README's
//! SVGs: run into a temporary directory, its animation has frames of the
//! fleet table with registered hosts.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{require_tool, stderr, stdout};

const HOSTS: usize = 8;
const COLS: u16 = 120;
const ROWS: u16 = 36;

#[test]
#[ignore = "needs asciinema and tmux (the interop suite in .ci/run runs it)"]
fn the_recording_ends_on_the_fleet_with_registered_hosts() {
    require_tool("asciinema");
    require_tool("tmux");
    let dir = tempfile::tempdir().unwrap();
    let cast = dir.path().join("first-look.cast");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/demo/record.sh"))
        .arg(&cast)
        .env("FLEETCTL", env!("CARGO_BIN_EXE_fleetctl"))
        .env("HOSTS", HOSTS.to_string())
        .env("SEED", "7")
        .env("COLS", COLS.to_string())
        .env("ROWS", ROWS.to_string())
        .env("WATCH", "5")
        .env("BASE", "127.42.7.10")
        .env("TMPDIR", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record.sh failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    let text = std::fs::read_to_string(&cast).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(120), Some(36))
    );
    let size = |n: u16| std::num::NonZero::new(n).unwrap();
    let mut term = vt100::Parser::new(size(ROWS), size(COLS), 0);
    let mut last_time = 0.0;
    for line in lines {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let time = event[0].as_f64().unwrap();
        assert!(time >= last_time, "events out of order");
        last_time = time;
        if event[1] == "o" {
            term.process(event[2].as_str().unwrap().as_bytes());
        }
    }
    let screen = term.screen().contents();
    assert!(
        screen.contains("ADDRESS"),
        "no fleet table on the last screen:\n{screen}"
    );
    let registered = screen
        .lines()
        .filter(|l| l.contains(" demo-") && l.contains(" running ") && l.contains(" registered "))
        .count();
    assert!(
        registered >= HOSTS - 3,
        "{registered} registered hosts on the last screen:\n{screen}"
    );
    for state in [" silent ", " auth-failed "] {
        assert!(screen.contains(state), "no {state:?} host:\n{screen}");
    }
    // Nothing of the sandbox is left in the temp dir.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.starts_with("fleetctl-sandbox-")
                && std::path::Path::new(n)
                    .extension()
                    .is_none_or(|e| e != "lock")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The text between each `open` and the next `close` in `s`.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The value of attribute `name` in a tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    between(tag, &format!("{name}=\""), "\"").into_iter().next()
}

/// The words of `<text>` elements in `svg`, as (y, x, word).
fn words(svg: &str) -> Vec<(String, f64, String)> {
    between(svg, "<text ", "</text>")
        .into_iter()
        .filter_map(|t| {
            let (tag, word) = t.split_once('>')?;
            let x = attr(tag, "x").map_or(0.0, |x| x.parse().unwrap());
            let word = word.replace('\u{a0}', " ").replace("&amp;", "&");
            Some((attr(tag, "y")?.to_owned(), x, word))
        })
        .collect()
}

/// The screens of an svg-term animation, each a list of text lines: its
/// frames `<use>` the lines kept once in `<symbol>`s and hold the rest.
fn frames(svg: &str) -> Vec<Vec<String>> {
    let (defs, reel) = svg.split_once("</defs>").unwrap();
    let symbols: BTreeMap<&str, String> = between(defs, "<symbol id=\"", "</symbol>")
        .into_iter()
        .map(|s| {
            let (id, body) = s.split_once('"').unwrap();
            let line = words(body)
                .into_iter()
                .map(|(_, _, w)| w)
                .collect::<Vec<_>>();
            (id, line.join(" "))
        })
        .collect();
    reel.split("<svg x=\"")
        .skip(1) // the reel itself
        .map(|frame| {
            let mut lines: BTreeMap<i64, Vec<(f64, String)>> = BTreeMap::new();
            let y_key = |y: &str| (y.parse::<f64>().unwrap() * 100.0).round() as i64;
            for (y, x, word) in words(frame) {
                lines.entry(y_key(&y)).or_default().push((x, word));
            }
            for used in between(frame, "<use ", ">") {
                let (Some(id), Some(y)) = (attr(used, "xlink:href"), attr(used, "y")) else {
                    continue;
                };
                if let Some(line) = symbols.get(id.trim_start_matches('#')) {
                    // A symbol's own y is its first baseline, 1.67 below its top.
                    lines
                        .entry(y_key(y) + 167)
                        .or_default()
                        .push((0.0, line.clone()));
                }
            }
            lines
                .into_values()
                .map(|mut words| {
                    words.sort_by(|a, b| a.0.total_cmp(&b.0));
                    words
                        .into_iter()
                        .map(|(_, w)| w)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<String>>()
        })
        .filter(|screen| !screen.is_empty())
        .collect()
}

/// Rows of the fleet table on `screen` with a running, registered agent.
fn registered_rows(screen: &[String]) -> usize {
    screen
        .iter()
        .filter(|l| l.contains("demo-") && l.contains(" running ") && l.contains(" registered "))
        .count()
}

fn modified_times(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().modified().unwrap())
        })
        .collect()
}

/// The stills, each of the screen it is named after.
fn stills(read: &dyn Fn(&str) -> String) {
    let still = |name: &str| {
        let svg = read(name);
        assert!(svg.len() < 100 << 10, "{name}.svg is {} bytes", svg.len());
        frames(&svg).concat()
    };
    // A timeline lane, spaces left out (svg-term splits words where styles
    // change, and this joins them with spaces).
    let lane = |screen: &[String], name: &str| {
        let head = format!("{name}│");
        screen
            .iter()
            .map(|l| l.replace(' ', ""))
            .find(|l| l.contains(&head))
            .unwrap_or_default()
    };
    let fleet = still("fleet");
    assert!(
        fleet.iter().any(|l| l.contains("ADDRESS")) && registered_rows(&fleet) >= HOSTS - 3,
        "{}",
        fleet.join("\n")
    );
    let detail = still("host-detail");
    let all = detail.join("\n");
    assert!(all.contains("demo-02") && all.contains("timeline"), "{all}");
    assert!(lane(&detail, "token").contains('●'), "{all}");
    assert!(lane(&detail, "beat").contains('•'), "{all}");
    let expired = still("token-expired");
    let all = expired.join("\n");
    assert!(all.contains("demo-03"), "{all}");
    assert!(lane(&expired, "token").contains("expired╳"), "{all}");
    assert!(lane(&expired, "reg").contains("lost"), "{all}");
    let styles: Vec<String> = ["default", "light", "high-contrast", "catppuccin-mocha"]
        .iter()
        .map(|theme| {
            let svg = read(&format!("theme-{theme}"));
            assert!(svg.contains("ADDRESS"), "theme-{theme}");
            between(&svg, "<style>", "</style>").concat()
        })
        .collect();
    for (i, a) in styles.iter().enumerate() {
        for b in &styles[i + 1..] {
            assert_ne!(a, b, "two themes drew the same colours");
        }
    }
}

#[test]
#[ignore = "needs asciinema, tmux, Node.js and npm (svg-term-cli from the npm registry) (the interop suite in .ci/run runs it)"]
fn render_makes_the_readmes_animation_and_stills_from_a_fresh_demo() {
    for tool in ["asciinema", "tmux", "node", "npm"] {
        require_tool(tool);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = modified_times(&repo.join("demo"));
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    // Seed 7 with 8 hosts: demo-08 silent, demo-05 refuses the key, demo-03 cut off.
    let out = Command::new("bash")
        .arg(repo.join("demo/render.sh"))
        .arg(&out_dir)
        .env("FLEETCTL", env!("CARGO_BIN_EXE_fleetctl"))
        .env("HOSTS", HOSTS.to_string())
        .env("SEED", "7")
        .env("CUT_HOST", "demo-03")
        .env("DETAIL_HOST", "demo-02")
        .env("WATCH", "5")
        .env("BASE", "127.42.9.10")
        .env("TMPDIR", dir.path())
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render.sh failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let read = |name: &str| {
        let path = out_dir.join(format!("{name}.svg"));
        let svg = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), stderr(&out)));
        assert!(svg.starts_with("<svg"), "{name} is not an SVG");
        svg
    };

    // The animation: the flow from an unregistered fleet to a registered one.
    let animation = read("first-look");
    assert!(
        animation.len() < 1 << 20,
        "first-look.svg is {} bytes",
        animation.len()
    );
    let screens = frames(&animation);
    assert!(screens.len() >= 10, "{} frames", screens.len());
    let table = |s: &&Vec<String>| s.iter().any(|l| l.contains("ADDRESS"));
    let first = screens
        .iter()
        .find(table)
        .expect("no frame shows the fleet table");
    assert_eq!(
        registered_rows(first),
        0,
        "it starts registered:\n{}",
        first.join("\n")
    );
    let live = screens
        .iter()
        .filter(|s| s.iter().any(|l| l.contains("ADDRESS")) && registered_rows(s) >= HOSTS - 3)
        .count();
    assert!(
        live >= 3,
        "{live} frames show the fleet table with {} registered hosts; the last:\n{}",
        HOSTS - 3,
        screens.last().unwrap().join("\n")
    );

    stills(&read);

    // It wrote only where it was told.
    assert_eq!(modified_times(&repo.join("demo")), committed);
}
