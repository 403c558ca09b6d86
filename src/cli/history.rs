//! `fleetctl history [HOST] [-n N]`: the audit trail, every command run on
//! hosts from this inventory (by `fleetctl run` or the console), newest first.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::Context;
use super::run::RunFormat;
use crate::model::text;
use crate::model::time::utc;
use crate::store::{Inventory, RunHost, RunRecord};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs on this host (its address, or the name it was run by),
    /// with its own outcome.
    #[arg(value_name = "HOST")]
    host: Option<String>,
    /// How many runs, newest first.
    #[arg(short = 'n', long, default_value_t = 20)]
    limit: usize,
    /// Output format (text: a table).
    #[arg(short, long, value_enum, default_value_t = RunFormat::Text)]
    output: RunFormat,
}

pub async fn run(args: HistoryArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let path = ctx.paths.inventory();
    let (host, limit) = (args.host.clone(), args.limit);
    let runs = tokio::task::spawn_blocking(move || {
        let inventory = Inventory::open(&path)?;
        Ok::<_, anyhow::Error>(inventory.runs(host.as_deref(), limit)?)
    })
    .await
    .context("the inventory reader stopped")??;
    let mut out = std::io::stdout().lock();
    match args.output {
        RunFormat::Text => write_table(&mut out, &runs, args.host.is_some())?,
        RunFormat::Json => super::output::write_json(&mut out, &runs, true)?,
        RunFormat::Jsonl => {
            for run in &runs {
                super::output::write_json(&mut out, run, false)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line per run: when, who, where, how it ended (for one host: that
/// host's outcome), what.
fn write_table(out: &mut impl Write, runs: &[RunRecord], one_host: bool) -> std::io::Result<()> {
    if runs.is_empty() {
        writeln!(out, "no commands run yet")?;
        return Ok(());
    }
    let rows: Vec<[String; 6]> = runs
        .iter()
        .map(|r| {
            let result = if one_host {
                r.results
                    .first()
                    .map_or_else(|| "not started".into(), RunHost::outcome)
            } else {
                match (&r.summary, r.finished_at) {
                    (Some(s), _) => s.clone(),
                    (None, None) => "never finished".into(),
                    (None, Some(_)) => "-".into(),
                }
            };
            let command = if r.sudo {
                format!("sudo {}", r.command)
            } else {
                r.command.clone()
            };
            [
                r.id.to_string(),
                utc(r.started_at),
                text::escape(&r.local_user).into_owned(),
                text::escape(&r.hosts).into_owned(),
                result,
                text::escape(&command).into_owned(),
            ]
        })
        .collect();
    let header = ["ID", "WHEN", "USER", "HOSTS", "RESULT", "COMMAND"].map(String::from);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        line.push_str(&row[5]);
        writeln!(out, "{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_who_ran_what_where_and_how_it_ended() {
        let runs = vec![
            RunRecord {
                id: 2,
                started_at: 1_796_283_619,
                finished_at: None,
                local_user: "root (sudo from alice)".into(),
                command: "reboot\x1b[2J".into(),
                sudo: true,
                hosts: "web[01-02]".into(),
                summary: None,
                results: Vec::new(),
            },
            RunRecord {
                id: 1,
                started_at: 1_796_283_000,
                finished_at: Some(1_796_283_001),
                local_user: "bob".into(),
                command: "uptime".into(),
                sudo: false,
                hosts: "db1".into(),
                summary: Some("1 host: 0 ok, 1 exit 3".into()),
                results: vec![RunHost {
                    host: "db1".into(),
                    address: "10.0.0.9".into(),
                    exit: Some(3),
                    error_class: None,
                }],
            },
        ];
        let mut out = Vec::new();
        write_table(&mut out, &runs, false).unwrap();
        let table = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ID  WHEN "), "{table}");
        assert_eq!(
            lines[0].find("COMMAND"),
            lines[1].find("sudo reboot"),
            "{table}"
        );
        assert!(lines[1].contains("2026-12-03 07:40:19Z"), "{table}");
        assert!(lines[1].contains("root (sudo from alice)"), "{table}");
        assert!(lines[1].contains("never finished"), "{table}");
        assert!(lines[1].ends_with("sudo reboot\\x1b[2J"), "{table}");
        assert!(
            lines[2].contains("1 host: 0 ok, 1 exit 3  uptime"),
            "{table}"
        );
        let mut out = Vec::new();
        write_table(&mut out, &runs[1..], true).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("exit 3  uptime"));
    }
}
