//! `fleetctl status`: the fleet as the engine sees it, headless. The same
//! engine as the console: it loads the inventory, reads the registry and
//! every agent once, and prints one row per host with the console's columns.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::Context;
use super::output::Format;
use crate::config::parse_duration;
use crate::engine::{self, Event, FleetSnapshot, HostView};
use crate::model::tags::{Tags, tags_text};
use crate::model::text;
use crate::tui::format::{ago, time_left};
use crate::tui::table::Column;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// How long to wait for the registry and the agents to answer.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    wait: Duration,
}

/// One host, as JSON, JSON lines and CSV show it.
#[derive(Debug, Serialize)]
struct Row {
    address: String,
    hostname: Option<String>,
    os: Option<String>,
    reach: &'static str,
    ssh: &'static str,
    agent: &'static str,
    registration: &'static str,
    token: &'static str,
    /// Seconds until the identity token expires.
    token_left_secs: Option<i64>,
    cpu_pct: Option<f64>,
    mem_pct: Option<f64>,
    load1: Option<f64>,
    /// Unix seconds.
    last_seen: Option<i64>,
    /// CPU samples kept (the console's sparkline).
    samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_error: Option<String>,
    /// The operator's tags (`fleetctl tag`).
    tags: Tags,
}

impl Row {
    fn new(h: &HostView, now: i64) -> Self {
        Self {
            address: h.addr.to_string(),
            hostname: h.hostname().map(str::to_owned),
            os: h.os(),
            reach: h.reach().as_str(),
            ssh: h.ssh.as_str(),
            agent: h.agent.as_str(),
            registration: h.registration.as_str(),
            token: h.token.as_str(),
            token_left_secs: h.token_left(now),
            cpu_pct: h.stats.as_ref().map(|s| round1(s.cpu.total_pct)),
            mem_pct: h.stats.as_ref().map(|s| round1(s.memory.used_pct())),
            load1: h.stats.as_ref().map(|s| s.cpu.load1),
            last_seen: h.last_seen,
            samples: h.history.len(),
            agent_error: h.stats_error.clone(),
            tags: h.tags.clone(),
        }
    }

    /// The cells of the table, in [`Column::ALL`]'s order, escaped: names
    /// and OS come from the hosts. The tags cell is left out when `tags` is false.
    fn cells(&self, h: &HostView, now: i64, tags: bool) -> Vec<String> {
        let pct = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0}%"));
        let cells = vec![
            self.address.clone(),
            self.hostname.clone().unwrap_or_else(|| "-".into()),
            self.os.clone().unwrap_or_else(|| "-".into()),
            if self.tags.is_empty() {
                "-".into()
            } else {
                tags_text(&self.tags)
            },
            self.reach.into(),
            self.ssh.into(),
            h.deploy_step
                .as_ref()
                .map_or_else(|| self.agent.into(), |s| format!("{}: {s}", self.agent)),
            self.registration.into(),
            time_left(self.token_left_secs, h.token),
            pct(self.cpu_pct),
            pct(self.mem_pct),
            self.load1.map_or_else(|| "-".into(), |l| format!("{l:.2}")),
            ago(self.last_seen, now),
        ];
        cells
            .into_iter()
            .zip(Column::ALL)
            .filter(|(_, column)| tags || *column != Column::Tags)
            .map(|(c, _)| text::escape(&c).into_owned())
            .collect()
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub async fn run(args: StatusArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let (link, embedded, _) = super::console::control(ctx).await?;
    let polling = link.is_some();
    let config = super::console::engine_config(ctx, super::console::FrontEnd::Console, link, 64)?;
    let (engine, mut events) = engine::spawn(config);
    let (mut loaded, mut polled) = (false, !polling);
    let waited = tokio::time::timeout(args.wait, async {
        while !(loaded && polled) {
            match events.recv().await {
                Some(Event::InventoryLoaded { .. }) => loaded = true,
                Some(Event::PollRound { .. }) => polled = true,
                Some(Event::JobEnded { outcome, .. }) if !loaded => {
                    // The inventory could not be read: say so, show the rest.
                    tracing::warn!("inventory: {outcome:?}");
                    loaded = true;
                }
                Some(_) => {}
                None => break,
            }
        }
    })
    .await;
    if waited.is_err() {
        eprintln!(
            "note: not every agent answered within {:?}; showing what is known",
            args.wait
        );
    }
    // Events go out while the engine handles a batch; the snapshot after
    // it is the next one published from now (at most a second away).
    let mut watch = engine.watch();
    watch.borrow_and_update();
    let _ = tokio::time::timeout(Duration::from_secs(2), watch.changed()).await;
    let fleet = engine.snapshot();
    drop(engine);
    if let Some(embedded) = embedded {
        embedded.stop().await;
    }
    write(&mut io::stdout().lock(), &fleet, args.output)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `fleet` in `format`; the table is also what `fleetctl demo` prints.
pub(super) fn write(out: &mut impl Write, fleet: &FleetSnapshot, format: Format) -> io::Result<()> {
    let now = fleet.now_unix;
    let rows: Vec<(Row, &HostView)> = fleet
        .hosts
        .iter()
        .map(|h| (Row::new(h, now), h.as_ref()))
        .collect();
    match format {
        Format::Json => {
            let plain: Vec<&Row> = rows.iter().map(|(r, _)| r).collect();
            super::output::write_json(out, &plain, true)?;
        }
        Format::Jsonl => {
            for (row, _) in &rows {
                super::output::write_json(out, row, false)?;
            }
        }
        Format::Csv => {
            // The csv crate quotes; what hosts said is escaped first, as
            // in every other writer.
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record([
                "address",
                "hostname",
                "os",
                "reach",
                "ssh",
                "agent",
                "registration",
                "token",
                "token_left_secs",
                "cpu_pct",
                "mem_pct",
                "load1",
                "last_seen",
                "tags",
            ])?;
            for (r, _) in &rows {
                let opt = |v: Option<String>| v.unwrap_or_default();
                let fields = [
                    r.address.clone(),
                    opt(r.hostname.clone()),
                    opt(r.os.clone()),
                    r.reach.into(),
                    r.ssh.into(),
                    r.agent.into(),
                    r.registration.into(),
                    r.token.into(),
                    opt(r.token_left_secs.map(|v| v.to_string())),
                    opt(r.cpu_pct.map(|v| v.to_string())),
                    opt(r.mem_pct.map(|v| v.to_string())),
                    opt(r.load1.map(|v| v.to_string())),
                    opt(r.last_seen.map(|v| v.to_string())),
                    tags_text(&r.tags),
                ];
                csv.write_record(fields.iter().map(|f| text::escape(f).into_owned()))?;
            }
            csv.flush()?;
        }
        Format::Table => {
            // The tags column only when some host has tags, as in the console.
            let tags = rows.iter().any(|(r, _)| !r.tags.is_empty());
            let header: Vec<String> = Column::ALL
                .iter()
                .filter(|c| tags || **c != Column::Tags)
                .map(|c| c.title().into())
                .collect();
            let cells: Vec<Vec<String>> = rows.iter().map(|(r, h)| r.cells(h, now, tags)).collect();
            let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&cells) {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
            writeln!(out, "{} host(s)", rows.len())?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostFacts, HostScan, Reach};
    use std::sync::Arc;

    /// A host whose name and OS are terminal escapes.
    fn hostile_fleet() -> FleetSnapshot {
        let hostile = "web1\x1b]0;PWNED\x07\x1b[2J\u{9b}1m";
        let mut scan = HostScan::new("127.12.0.9".parse().unwrap(), Reach::Alive);
        scan.name = Some(hostile.into());
        let mut host = HostView::from_scan(scan, Some(1));
        host.facts = Some(HostFacts {
            hostname: Some(hostile.into()),
            os_pretty: Some(format!("Debian{hostile}")),
            ..HostFacts::default()
        });
        host.stats_error = Some(format!("agent said {hostile}"));
        let mut fleet = FleetSnapshot::empty();
        fleet.hosts.push(Arc::new(host));
        fleet
    }

    #[test]
    fn no_format_lets_a_control_character_through() {
        let fleet = hostile_fleet();
        for format in [Format::Table, Format::Csv, Format::Json, Format::Jsonl] {
            let mut out = Vec::new();
            write(&mut out, &fleet, format).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                !text.contains(['\x1b', '\x07', '\u{9b}']),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("web1"), "{format:?}: {text}");
        }
        let mut out = Vec::new();
        write(&mut out, &fleet, Format::Json).unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            rows[0]["hostname"], "web1\x1b]0;PWNED\x07\x1b[2J\u{9b}1m",
            "JSON keeps what was received, escaped as JSON"
        );
    }

    #[test]
    fn csv_is_quoted_by_the_csv_crate_and_reads_back() {
        let mut scan = HostScan::new("127.12.0.8".parse().unwrap(), Reach::Alive);
        scan.name = Some("web, \"one\"\nand\x1b[2J".into());
        let mut fleet = FleetSnapshot::empty();
        fleet
            .hosts
            .push(Arc::new(HostView::from_scan(scan, Some(1))));
        let mut out = Vec::new();
        write(&mut out, &fleet, Format::Csv).unwrap();
        let mut reader = csv::Reader::from_reader(out.as_slice());
        let header = reader.headers().unwrap().clone();
        assert_eq!(&header[0], "address");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "127.12.0.8");
        // One field, quoted where it must be; the control characters escaped.
        assert_eq!(&rows[0][1], "web, \"one\"\\nand\\x1b[2J");
    }
}
