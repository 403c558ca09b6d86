//! `fleetctl fingerprint HOST...`: what each host is, over SSH.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::facts_output::{self, CSV_COLUMNS};
use super::output::Format;
use super::ssh_opts::SshArgs;
use super::{Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::fingerprint::job::{self, Fingerprint};
use crate::model::text;
use crate::store::Inventory;

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Hosts: names, addresses or ~/.ssh/config aliases, optionally user@host.
    #[arg(required = true, value_name = "HOST")]
    hosts: Vec<String>,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Time allowed per host, connection included.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn run(args: FingerprintArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let ssh = args.ssh.setup(args.port)?;
    let targets = args
        .hosts
        .iter()
        .map(|host| ssh.target(host))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut inventory = Inventory::open(&ctx.paths.inventory())
        .context("cannot record facts in the inventory (is --data-dir writable?)")?;

    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let total = targets.len();
    let job = tokio::spawn(job::run(
        ssh.connector,
        targets,
        ssh.concurrency,
        args.timeout,
        cancel.clone(),
        tx,
    ));
    let mut out = std::io::stdout().lock();
    let mut results = Vec::new();
    match args.output {
        Format::Table => writeln!(
            out,
            "{:<24} {}  HOST KEY",
            "HOST",
            facts_output::table_header()
        )?,
        Format::Csv => writeln!(out, "host,address,port,{}", CSV_COLUMNS.join(","))?,
        Format::Json | Format::Jsonl => {}
    }
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            result = rx.recv() => {
                let Some(result) = result else { break };
                write_row(&mut out, args.output, &result)?;
                results.push(result);
            }
            _ = &mut ctrl_c, if !cancel.is_cancelled() => cancel.cancel(),
        }
    }
    job.await.context("the fingerprint job failed")?;
    inventory.record_fingerprints(&results)?;
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    match args.output {
        Format::Json => super::output::write_json(&mut out, &results, true)?,
        Format::Table => writeln!(
            out,
            "# {total} hosts: {} ok, {failed} failed",
            results.len() - failed
        )?,
        Format::Jsonl | Format::Csv => {}
    }
    out.flush()?;
    report_failures(&results);
    Ok(if cancel.is_cancelled() {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Says on stderr why each failed host failed.
pub fn report_failures(results: &[Fingerprint]) {
    for error in results.iter().filter_map(|r| r.error.as_ref()) {
        eprintln!("error: {}", text::escape_lines(error));
    }
}

fn write_row(out: &mut impl Write, format: Format, r: &Fingerprint) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            let line = format!(
                "{:<24} {}  {}",
                text::escape(&r.host),
                facts_output::table_cells(Some(r)),
                text::escape(r.host_key.as_deref().unwrap_or(""))
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        Format::Jsonl => super::output::write_json(out, r, false)?,
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            let mut record = vec![
                text::escape(&r.host).into_owned(),
                text::escape(&r.address).into_owned(),
                r.port.to_string(),
            ];
            record.extend(facts_output::csv_cells(Some(r)));
            csv.write_record(record)?;
            csv.flush()?;
        }
        Format::Json => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FailureKind, HostFacts};

    #[test]
    fn no_format_lets_what_a_host_said_through_raw() {
        let hostile = "x\x1b]0;PWNED\x07\x1b[2J\u{9b}1m";
        let r = Fingerprint {
            host: format!("web1{hostile}"),
            address: "127.12.0.5".into(),
            port: 22,
            host_key: Some("SHA256:k".into()),
            facts: Some(HostFacts {
                os_pretty: Some(hostile.into()),
                hostname: Some(hostile.into()),
                kernel: Some(hostile.into()),
                ..HostFacts::default()
            }),
            failure: Some(FailureKind::CommandFailed),
            error: Some(format!("web1: `sh` exited with status 1: {hostile}")),
            gathered_at: 0,
        };
        for format in [Format::Table, Format::Csv, Format::Jsonl] {
            let mut out = Vec::new();
            write_row(&mut out, format, &r).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(
                !text.contains(['\x1b', '\x07', '\u{9b}']),
                "{format:?}: {text:?}"
            );
            assert!(text.contains("PWNED"), "{format:?}: {text}");
        }
        let mut out = Vec::new();
        crate::cli::output::write_json(&mut out, &[&r], true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains(['\x1b', '\x07', '\u{9b}']), "{text:?}");
        let back: Vec<Fingerprint> = serde_json::from_str(&text).unwrap();
        assert_eq!(back[0].error, r.error, "JSON keeps what was received");
    }
}
