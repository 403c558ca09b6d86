//! One scan, two front ends: `fleetctl scan` (headless) and the console's
//! `:scan` line (the command the TUI sends, to the engine the console
//! starts) over the same targets and config must find the same hosts and
//! leave the same rows in their inventories. Loopback block 127.14.0.x.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use common::{Env, stderr};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use fleetctl::engine::{self, Command, Event, JobKind, JobOutcome, JobOutput};
use fleetctl::model::HostScan;
use fleetctl::tui::app::{App, Msg, update};
use fleetctl::tui::theme::ThemeSet;

const TARGETS: &str = "127.14.0.0/28";
const EXCLUDE: &str = "127.14.0.5,127.14.0.9";

/// What a scan says of a host that two runs must agree on (not times).
type Seen = (IpAddr, String, Option<String>, Vec<u16>, Option<String>);

fn seen(h: &HostScan) -> Seen {
    let mut ports = h.open_ports.clone();
    ports.sort_unstable();
    (
        h.addr,
        h.reach.to_string(),
        h.via.map(|v| v.to_string()),
        ports,
        h.ssh_banner.clone(),
    )
}

/// A scan's row: targets, method, alive, silent, interrupted.
type ScanRow = (String, String, i64, i64, bool);

/// The inventory's hosts and its scans' rows, without times and ids.
fn inventory_rows(data_dir: &Path) -> (Vec<Seen>, Vec<ScanRow>) {
    let path = data_dir.join("inventory.sqlite3");
    let hosts = fleetctl::store::Inventory::open(&path)
        .unwrap()
        .hosts()
        .unwrap()
        .iter()
        .map(|h| seen(&h.scan))
        .collect();
    let db = rusqlite::Connection::open(&path).unwrap();
    let scans = db
        .prepare("SELECT targets, method, alive, silent, interrupted FROM scans ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (hosts, scans)
}

/// The command the console sends for `:LINE` Enter.
fn console_commands(line: &str) -> Vec<Command> {
    let themes = ThemeSet::load(None, false);
    let theme = themes.get("default").unwrap();
    let mut app = App::new(themes, theme);
    let mut sent = Vec::new();
    let mut press = |code| {
        sent.extend(update(
            &mut app,
            Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        ));
    };
    press(KeyCode::Char(':'));
    for c in line.chars() {
        press(KeyCode::Char(c));
    }
    press(KeyCode::Enter);
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_is_the_same_headless_and_from_the_console() {
    let listener = TcpListener::bind("127.14.0.3:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new();
    // One config for both: TCP to the listener's port, no banners.
    std::fs::write(
        env.config_file(),
        format!(
            "[scan]\nmethod = \"tcp\"\nports = [{port}]\ntimeout = \"300ms\"\nretries = 0\n\
             ssh_banner = false\n"
        ),
    )
    .unwrap();

    // Headless.
    let headless_dir = env.dir.path().join("headless");
    let out = env
        .cmd()
        .env("FLEETCTL_DATA_DIR", &headless_dir)
        .args(["scan", TARGETS, "--exclude", EXCLUDE, "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut headless: Vec<Seen> = serde_json::from_slice::<Vec<HostScan>>(&out.stdout)
        .unwrap()
        .iter()
        .map(seen)
        .collect();
    headless.sort();

    // The console: its `:scan` line, to the engine it starts.
    let console_dir = env.dir.path().join("console");
    let config = fleetctl::cli::engine_config(&env.config_file(), &console_dir, true).unwrap();
    let (engine, mut events) = engine::spawn(config);
    let commands = console_commands(&format!("scan {TARGETS} --exclude {EXCLUDE}"));
    assert_eq!(commands.len(), 1, "{commands:?}");
    for command in commands {
        assert!(engine.send(command));
    }
    let mut console = Vec::new();
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await.expect("the engine stopped") {
                Event::Output {
                    output: JobOutput::Scanned { host, .. },
                    ..
                } => console.push(seen(&host)),
                Event::JobEnded {
                    kind: JobKind::Scan,
                    outcome,
                    ..
                } => return outcome,
                _ => {}
            }
        }
    })
    .await
    .unwrap();
    assert!(matches!(outcome, JobOutcome::Done(_)), "{outcome:?}");
    console.sort();
    // The fleet the console shows holds them too.
    let mut watch = engine.watch();
    let fleet = tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|f| f.jobs.is_empty() && f.hosts.len() == console.len()),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    drop(engine);

    // 16 addresses less the network, broadcast-free /28 ends and the two excluded.
    assert_eq!(headless.len(), 14 - 2, "{headless:?}");
    let excluded: Vec<IpAddr> = EXCLUDE.split(',').map(|a| a.parse().unwrap()).collect();
    assert!(headless.iter().all(|h| !excluded.contains(&h.0)));
    let open: Vec<IpAddr> = headless
        .iter()
        .filter(|h| h.3 == [port])
        .map(|h| h.0)
        .collect();
    assert_eq!(open, ["127.14.0.3".parse::<IpAddr>().unwrap()]);
    assert_eq!(console, headless, "the same hosts, found the same way");
    let mut shown: Vec<IpAddr> = fleet.hosts.iter().map(|h| h.addr).collect();
    shown.sort();
    assert_eq!(shown, headless.iter().map(|h| h.0).collect::<Vec<_>>());

    let (headless_rows, headless_scans) = inventory_rows(&headless_dir);
    let (console_rows, console_scans) = inventory_rows(&console_dir);
    assert_eq!(
        headless_rows, headless,
        "the inventory holds what was printed"
    );
    assert_eq!(console_rows, headless_rows, "the same inventory rows");
    assert_eq!(console_scans, headless_scans, "the same scan recorded");
    assert_eq!(
        headless_scans,
        [(TARGETS.to_owned(), "tcp".to_owned(), 12, 0, false)]
    );
    drop(listener);
}
