//! `fleetctl fingerprint HOST...`: what each host is, over SSH.

use std::io::{StdoutLock, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::console::{FrontEnd, engine_config};
use super::facts_output::{self, CSV_COLUMNS};
use super::hosts::{HostsArgs, pick};
use super::job::{self, Show};
use super::output::Format;
use super::ssh_opts::SshArgs;
use super::{Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::engine::{Command, FingerprintRequest, JobOutput};
use crate::fingerprint::job::Fingerprint;
use crate::model::text;

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    #[command(flatten)]
    hosts: HostsArgs,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Time allowed per host, connection included [default: the config's
    /// ssh.timeout, 30s].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn run(args: FingerprintArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut ssh = args.ssh.request(args.port);
    ssh.timeout = args.timeout;
    let hosts = pick(&args.hosts, ctx).await?;
    let total = hosts.len();
    let request = FingerprintRequest { hosts, ssh };
    let config = engine_config(ctx, FrontEnd::Headless, None, 64)?;
    let mut view = FingerprintView {
        format: args.output,
        out: std::io::stdout().lock(),
        header: false,
        results: Vec::new(),
    };
    let ended = job::run(config, Command::Fingerprint(request), &mut view).await?;
    ended.check()?;
    view.header()?;
    let FingerprintView {
        format,
        mut out,
        results,
        ..
    } = view;
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    match format {
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
    Ok(if ended.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Each host's row as it is fingerprinted (JSON: all at the end).
struct FingerprintView {
    format: Format,
    out: StdoutLock<'static>,
    /// Written: once the job is under way, before the first row.
    header: bool,
    results: Vec<Fingerprint>,
}

impl FingerprintView {
    fn header(&mut self) -> std::io::Result<()> {
        if std::mem::replace(&mut self.header, true) {
            return Ok(());
        }
        match self.format {
            Format::Table => writeln!(
                self.out,
                "{:<24} {}  HOST KEY",
                "HOST",
                facts_output::table_header()
            ),
            Format::Csv => writeln!(self.out, "host,address,port,{}", CSV_COLUMNS.join(",")),
            Format::Json | Format::Jsonl => Ok(()),
        }
    }
}

impl Show for FingerprintView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        match output {
            JobOutput::Note(note) => eprintln!("note: {}", text::escape_lines(&note)),
            JobOutput::Fingerprinted(result) => {
                self.header()?;
                write_row(&mut self.out, self.format, &result)?;
                self.results.push(*result);
            }
            _ => {}
        }
        Ok(())
    }

    /// The job reports progress once it has set up: the header goes out then.
    fn progress(&mut self, _done: u64, _total: u64) {
        let _ = self.header();
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }
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
