//! `fleetctl scan`: headless discovery, the engine's scan job shown as a
//! table, JSON, JSON lines or CSV. Hosts are written as they are found;
//! with `--ssh`, hosts showing SSH once their fingerprint is in too.

use std::collections::HashMap;
use std::io::{IsTerminal, StdoutLock};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::console::{FrontEnd, engine_config};
use super::fingerprint::report_failures;
use super::job::{self, Show};
use super::output::{FingerprintCounts, Format, ScanWriter};
use super::ssh_opts::SshArgs;
use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::engine::{Command, JobOutput, SSH_PORT, ScanRequest};
use crate::model::{Fingerprint, HostScan, Reach, text};
use crate::scan::{MethodChoice, ScanSummary};

/// Defaults come from the config file's `[scan]` table; see `fleetctl config default`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// What to scan: 10.0.0.0/24, fd00::/120, 10.0.0.5-40, 10.0.0.7, host.example.com, @file.
    #[arg(required = true, value_name = "TARGET")]
    targets: Vec<String>,
    /// Leave these out (same forms as targets; repeat or separate with commas).
    #[arg(long, value_name = "TARGET", value_delimiter = ',')]
    exclude: Vec<String>,
    /// How to probe [default: auto].
    #[arg(short, long, value_enum)]
    method: Option<MethodChoice>,
    /// Ports for TCP probes [default: 22,80,443].
    #[arg(short, long, value_delimiter = ',', value_parser = clap::value_parser!(u16).range(1..))]
    ports: Option<Vec<u16>>,
    /// Probe packets per second, 0 for no limit [default: 100000].
    #[arg(long)]
    rate: Option<u32>,
    /// Longest wait for an answer (ICMP adapts below it to the replies seen): 500ms, 2s [default: 500ms].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Extra attempts for hosts that have not answered [default: 1].
    #[arg(long)]
    retries: Option<u32>,
    /// Refuse to scan more addresses than this [default: 65536].
    #[arg(long)]
    max_hosts: Option<u64>,
    /// Look up reverse DNS names of live hosts.
    #[arg(long)]
    resolve: bool,
    /// Do not read SSH banners on port 22.
    #[arg(long, conflicts_with = "ssh")]
    no_banner: bool,
    /// Show only hosts that answered.
    #[arg(long)]
    alive_only: bool,
    /// Output format [default: table].
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(flatten)]
    ssh: ScanSshArgs,
}

/// `--ssh`: live hosts showing SSH on port 22 are fingerprinted while the
/// scan goes on, as `fleetctl fingerprint` does.
#[derive(Debug, Args)]
pub struct ScanSshArgs {
    /// Also fingerprint live hosts with SSH on port 22, as `fleetctl fingerprint` does.
    #[arg(long)]
    pub ssh: bool,
    #[command(flatten, next_help_heading = "SSH (with --ssh)")]
    opts: SshArgs,
    /// Time allowed per host for --ssh, connection included [default: the
    /// config's ssh.timeout, 30s].
    #[arg(long, value_parser = parse_duration)]
    ssh_timeout: Option<Duration>,
}

impl ScanArgs {
    /// The scan the flags ask for; what they leave unset, `[scan]` says.
    fn request(&self) -> anyhow::Result<ScanRequest> {
        let ssh = if self.ssh.ssh {
            let mut ssh = self.ssh.opts.request(Some(SSH_PORT));
            ssh.timeout = self.ssh.ssh_timeout;
            Some(ssh)
        } else if self.ssh.opts.any_given() || self.ssh.ssh_timeout.is_some() {
            return Err(BadInput::wrap(anyhow::anyhow!(
                "SSH options (-l, -i, -J, --known-hosts, --host-key-policy, ...) apply only with --ssh"
            )));
        } else {
            None
        };
        Ok(ScanRequest {
            targets: self.targets.clone(),
            exclude: self.exclude.clone(),
            method: self.method,
            ports: self.ports.clone(),
            rate: self.rate,
            timeout: self.timeout,
            retries: self.retries,
            max_hosts: self.max_hosts,
            resolve: self.resolve,
            no_banner: self.no_banner,
            ssh,
        })
    }
}

pub async fn run(args: ScanArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let request = args.request()?;
    let fingerprinting = request.ssh.is_some();
    let config = engine_config(
        ctx,
        FrontEnd::Headless,
        None,
        super::raise_open_files_limit(),
    )?;
    let mut view = ScanView {
        format: args.output,
        alive_only: args.alive_only,
        fingerprinting,
        writer: None,
        bar: None,
        alive: 0,
        held: HashMap::new(),
        fingerprints: Vec::new(),
        summary: None,
    };
    let ended = job::run(config, Command::Scan(request), &mut view).await?;
    if let Some(bar) = &view.bar {
        bar.finish_and_clear();
    }
    ended.check()?;
    view.end(ended.interrupted)
}

/// The scan as it goes: the writer once the targets are known, the
/// progress bar, and the hosts held for their fingerprint.
struct ScanView {
    format: Format,
    alive_only: bool,
    fingerprinting: bool,
    writer: Option<ScanWriter<StdoutLock<'static>>>,
    bar: Option<ProgressBar>,
    alive: u64,
    /// Found hosts waiting for their fingerprint, by the name it reports.
    held: HashMap<String, HostScan>,
    fingerprints: Vec<Fingerprint>,
    summary: Option<ScanSummary>,
}

impl ScanView {
    /// Writes `f`'s output, keeping the progress bar clear of it.
    fn write(
        &mut self,
        f: impl FnOnce(&mut ScanWriter<StdoutLock<'static>>) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let Some(writer) = &mut self.writer else {
            return Ok(());
        };
        match &self.bar {
            Some(bar) => bar.suspend(|| f(writer))?,
            None => f(writer)?,
        }
        Ok(())
    }

    fn counts(&self) -> Option<FingerprintCounts> {
        self.fingerprinting.then(|| {
            let failed = self
                .fingerprints
                .iter()
                .filter(|f| f.failure.is_some())
                .count();
            FingerprintCounts {
                ok: self.fingerprints.len() - failed,
                failed,
            }
        })
    }

    /// Writes the end of the output and says how the run went.
    fn end(mut self, interrupted: bool) -> anyhow::Result<ExitCode> {
        // Interrupted before their turn: shown without facts.
        let unfinished: Vec<HostScan> = self.held.drain().map(|(_, host)| host).collect();
        self.write(|w| unfinished.iter().try_for_each(|h| w.host(h, None)))?;
        if self.fingerprinting {
            report_failures(&self.fingerprints);
        }
        let counts = self.counts();
        if let (Some(writer), Some(summary)) = (&mut self.writer, &self.summary) {
            writer.finish(summary, counts)?;
        }
        Ok(if interrupted {
            ExitCode::from(EXIT_INTERRUPTED)
        } else if counts.is_some_and(|c| c.failed > 0) {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

impl Show for ScanView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        match output {
            JobOutput::Note(note) => {
                let line = format!("note: {}", text::escape_lines(&note));
                match &self.bar {
                    Some(bar) => bar.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
            JobOutput::ScanStarted { targets, names, .. } => {
                self.bar = progress_bar(targets.len());
                let out = std::io::stdout().lock();
                self.writer = Some(ScanWriter::new(
                    self.format,
                    out,
                    &targets,
                    names,
                    self.fingerprinting,
                ));
                self.write(ScanWriter::header)?;
            }
            JobOutput::Scanned {
                host,
                fingerprinting,
            } => {
                if host.reach == Reach::Alive {
                    self.alive += 1;
                }
                if fingerprinting {
                    self.held.insert(host.addr.to_string(), host);
                } else if !self.alive_only || host.reach == Reach::Alive {
                    self.write(|w| w.host(&host, None))?;
                }
            }
            JobOutput::Fingerprinted(fingerprint) => {
                if let Some(host) = self.held.remove(&fingerprint.host) {
                    self.write(|w| w.host(&host, Some(&fingerprint)))?;
                }
                self.fingerprints.push(*fingerprint);
            }
            JobOutput::ScanDone(summary) => self.summary = Some(summary),
            _ => {}
        }
        Ok(())
    }

    fn progress(&mut self, done: u64, _total: u64) {
        if let Some(bar) = &self.bar {
            let secs = bar.elapsed().as_secs_f64().max(0.001);
            bar.set_position(done);
            bar.set_message(format!(
                "{} alive · {:.0}/s",
                self.alive,
                done as f64 / secs
            ));
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.write(ScanWriter::flush)
    }
}

/// A progress bar on stderr, only when stderr is a terminal.
fn progress_bar(total: usize) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} probed · {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ScanArgs,
    }

    fn request(argv: &[&str]) -> anyhow::Result<ScanRequest> {
        Wrapper::try_parse_from(std::iter::once("scan").chain(argv.iter().copied()))
            .unwrap()
            .args
            .request()
    }

    #[test]
    fn flags_become_the_request_and_unset_ones_stay_unset() {
        let r = request(&["127.0.0.1", "--exclude", "127.0.0.2,127.0.0.3"]).unwrap();
        assert_eq!(r.exclude, ["127.0.0.2", "127.0.0.3"]);
        assert_eq!((r.rate, r.ports.clone(), r.method), (None, None, None));
        assert!(r.ssh.is_none());
        let r = request(&[
            "127.0.0.1",
            "--rate",
            "10",
            "-m",
            "tcp",
            "--ssh",
            "-l",
            "root",
            "--ssh-timeout",
            "5s",
        ])
        .unwrap();
        assert_eq!((r.rate, r.method), (Some(10), Some(MethodChoice::Tcp)));
        let ssh = r.ssh.unwrap();
        assert_eq!(ssh.port, Some(SSH_PORT), "where the scan found SSH");
        assert_eq!(ssh.user.as_deref(), Some("root"));
        assert_eq!(ssh.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn ssh_options_need_ssh() {
        let err = request(&["127.0.0.1", "-l", "root"]).unwrap_err();
        assert!(err.downcast_ref::<BadInput>().is_some(), "{err}");
        let clash = Wrapper::try_parse_from(["scan", "127.0.0.1", "--ssh", "--no-banner"]);
        assert!(clash.is_err(), "--ssh needs the banner probe");
    }

    #[test]
    fn port_zero_is_refused() {
        let parsed = Wrapper::try_parse_from(["scan", "127.0.0.1", "--ports", "0"]);
        assert!(parsed.is_err());
    }
}
