//! `fleetctl scan`: headless discovery.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fingerprint::report_failures;
use super::output::{Format, ScanWriter};
use super::scan_ssh::{self, SSH_PORT, ScanFingerprints, ScanSshArgs};
use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::{ScanConfig, parse_duration};
use crate::model::{HostScan, Reach};
use crate::scan::targets::{self, TargetSpec};
use crate::scan::{self, Method, MethodChoice, ProbePlan, ScanOptions, ScanProgress, ScanSummary};
use crate::store::{Inventory, ScanId};

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

/// The scan's settings after flags are laid over the config file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettings {
    pub method: MethodChoice,
    pub max_hosts: u64,
    pub options: ScanOptions,
}

impl ScanSettings {
    /// Flags win over the config file. Pure, so it is tested directly.
    #[must_use]
    pub fn resolve(args: &ScanArgs, file: &ScanConfig) -> Self {
        // --ssh fingerprints where port 22 answers: it must be probed.
        let ssh_banner = (file.ssh_banner && !args.no_banner) || args.ssh.ssh;
        let mut ports = args.ports.clone().unwrap_or_else(|| file.ports.clone());
        if args.ssh.ssh && !ports.contains(&SSH_PORT) {
            ports.push(SSH_PORT);
        }
        Self {
            method: args.method.unwrap_or(file.method),
            max_hosts: args.max_hosts.unwrap_or(file.max_hosts),
            options: ScanOptions {
                plan: ProbePlan {
                    rate: args.rate.unwrap_or(file.rate),
                    timeout: args.timeout.unwrap_or(file.timeout),
                    retries: args.retries.unwrap_or(file.retries),
                },
                ports,
                banner_timeout: ssh_banner.then_some(file.banner_timeout),
                resolve: args.resolve || file.resolve,
                max_in_flight: file.max_in_flight,
            },
        }
    }
}

pub async fn run(args: ScanArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut settings = ScanSettings::resolve(&args, &ctx.config.scan);
    let cancel = CancellationToken::new();
    let mut fingerprints = args.ssh.start(&cancel)?;
    let addrs = addresses(&args, settings.max_hosts).await?;

    settings.options.max_in_flight = settings
        .options
        .max_in_flight
        .min(super::raise_open_files_limit());
    let probe_ssh = settings.options.banner_timeout.is_some();
    let (method, note) =
        Method::choose(settings.method, &addrs, probe_ssh).map_err(BadInput::wrap)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    let mut inventory = Inventory::open(&ctx.paths.inventory())
        .context("cannot record the scan in the inventory (is --data-dir writable?)")?;
    let scan_id = inventory.begin_scan(&args.targets.join(" "), method.name())?;

    let progress = Arc::new(ScanProgress::new(addrs.len()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let scan = tokio::spawn(scan::run(
        Arc::clone(&addrs),
        method,
        settings.options.clone(),
        cancel.clone(),
        tx,
        Arc::clone(&progress),
    ));

    let bar = progress_bar(addrs.len());
    let mut writer = ScanWriter::new(
        args.output,
        std::io::stdout().lock(),
        &addrs,
        settings.options.resolve,
        fingerprints.is_some(),
    );
    bar_suspend(bar.as_ref(), || writer.header())?;
    let mut results: Vec<HostScan> = Vec::new();
    let mut discovering = true;
    let mut fingerprinting = fingerprints.is_some();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    while discovering || fingerprinting {
        tokio::select! {
            host = rx.recv(), if discovering => {
                let Some(host) = host else {
                    discovering = false;
                    if let Some(f) = &mut fingerprints {
                        f.discovery_done();
                    }
                    continue;
                };
                // Write everything already waiting, then flush once.
                let mut batch = vec![host];
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                let shown = |h: &HostScan| !args.alive_only || h.reach == Reach::Alive;
                write_found(&batch, fingerprints.as_mut(), shown, &mut writer, bar.as_ref())?;
                results.extend(batch);
            }
            done = scan_ssh::next(fingerprints.as_mut()), if fingerprinting => match done {
                Some((Some(host), fp)) => bar_suspend(bar.as_ref(), || {
                    writer.host(&host, Some(&fp))?;
                    writer.flush()
                })?,
                Some((None, _)) => {}
                None => fingerprinting = false,
            },
            _ = tick.tick(), if bar.is_some() => {
                if let Some(bar) = &bar {
                    update_bar(bar, &progress);
                }
            }
            _ = &mut ctrl_c, if !cancel.is_cancelled() => cancel.cancel(),
        }
    }
    let summary = scan.await.context("the scan task failed")?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    record(
        &mut inventory,
        scan_id,
        &results,
        &summary,
        fingerprints.as_ref(),
    )?;
    end(
        &mut writer,
        &summary,
        fingerprints.as_mut(),
        cancel.is_cancelled(),
    )
}

/// Writes the end of the output and says how the run went.
fn end(
    writer: &mut ScanWriter<impl std::io::Write>,
    summary: &ScanSummary,
    mut fingerprints: Option<&mut ScanFingerprints>,
    cancelled: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(f) = fingerprints.as_deref_mut() {
        // Interrupted before their turn: shown without facts.
        for host in f.unfinished() {
            writer.host(&host, None)?;
        }
        report_failures(&f.done);
    }
    let counts = fingerprints.map(|f| f.counts());
    writer.finish(summary, counts)?;
    Ok(if cancelled {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if counts.is_some_and(|c| c.failed > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes hosts just found, except those held to be fingerprinted first
/// (written when that is done).
fn write_found(
    batch: &[HostScan],
    mut fingerprints: Option<&mut ScanFingerprints>,
    shown: impl Fn(&HostScan) -> bool,
    writer: &mut ScanWriter<impl std::io::Write>,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<()> {
    let mut now = Vec::with_capacity(batch.len());
    for host in batch {
        let held = match fingerprints.as_deref_mut() {
            Some(f) => f.take(host)?,
            None => false,
        };
        if !held && shown(host) {
            now.push(host);
        }
    }
    bar_suspend(bar, || {
        for host in now {
            writer.host(host, None)?;
        }
        writer.flush()
    })?;
    Ok(())
}

/// Records the scan, and with `--ssh` the facts, in the inventory.
fn record(
    inventory: &mut Inventory,
    scan_id: ScanId,
    results: &[HostScan],
    summary: &ScanSummary,
    fingerprints: Option<&ScanFingerprints>,
) -> anyhow::Result<()> {
    inventory.record_hosts(scan_id, results)?;
    inventory.finish_scan(scan_id, summary.alive, summary.silent, summary.interrupted)?;
    if let Some(f) = fingerprints {
        inventory.record_fingerprints(&f.done)?;
    }
    Ok(())
}

/// The addresses the targets name, less the excluded ones.
async fn addresses(args: &ScanArgs, max_hosts: u64) -> anyhow::Result<Arc<[IpAddr]>> {
    let targets = parse_all(&args.targets)?;
    let exclude = parse_all(&args.exclude)?;
    let lookup_timeout = Duration::from_secs(5);
    let targets = targets::resolve_names(targets, lookup_timeout)
        .await
        .map_err(BadInput::wrap)?;
    let exclude = targets::resolve_names(exclude, lookup_timeout)
        .await
        .map_err(BadInput::wrap)?;
    Ok(targets::expand(&targets, &exclude, max_hosts)
        .map_err(BadInput::wrap)?
        .into())
}

fn parse_all(inputs: &[String]) -> anyhow::Result<Vec<TargetSpec>> {
    let mut specs = Vec::new();
    for input in inputs {
        specs.extend(targets::parse_target(input).map_err(BadInput::wrap)?);
    }
    Ok(specs)
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

fn update_bar(bar: &ProgressBar, progress: &ScanProgress) {
    let probed = progress.probed.load(Ordering::Relaxed);
    let alive = progress.alive.load(Ordering::Relaxed);
    let secs = bar.elapsed().as_secs_f64().max(0.001);
    bar.set_position(probed);
    bar.set_message(format!("{alive} alive · {:.0}/s", probed as f64 / secs));
}

fn bar_suspend<T>(bar: Option<&ProgressBar>, f: impl FnOnce() -> T) -> T {
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
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

    fn resolve(argv: &[&str], file: &ScanConfig) -> ScanSettings {
        let parsed =
            Wrapper::try_parse_from(std::iter::once("scan").chain(argv.iter().copied())).unwrap();
        ScanSettings::resolve(&parsed.args, file)
    }

    #[test]
    fn defaults_come_from_the_file() {
        let file = ScanConfig {
            rate: 5,
            ports: vec![2222],
            resolve: true,
            ..ScanConfig::default()
        };
        let s = resolve(&["127.0.0.1"], &file);
        assert_eq!(s.options.plan.rate, 5);
        assert_eq!(s.options.ports, [2222]);
        assert!(s.options.resolve);
        assert_eq!(s.options.banner_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.method, MethodChoice::Auto);
    }

    #[test]
    fn flags_override_the_file() {
        let s = resolve(
            &[
                "127.0.0.1",
                "--rate",
                "10",
                "--ports",
                "22,8022",
                "--timeout",
                "2s",
                "--retries",
                "3",
                "-m",
                "tcp",
                "--no-banner",
                "--max-hosts",
                "9",
            ],
            &ScanConfig::default(),
        );
        assert_eq!(s.options.plan.rate, 10);
        assert_eq!(s.options.ports, [22, 8022]);
        assert_eq!(s.options.plan.timeout, Duration::from_secs(2));
        assert_eq!(s.options.plan.retries, 3);
        assert_eq!(s.method, MethodChoice::Tcp);
        assert_eq!(s.options.banner_timeout, None);
        assert_eq!(s.max_hosts, 9);
    }

    #[test]
    fn ssh_probes_port_22_whatever_else_is_asked() {
        let file = ScanConfig {
            ssh_banner: false,
            ..ScanConfig::default()
        };
        let s = resolve(&["127.0.0.1", "--ssh", "--ports", "80"], &file);
        assert_eq!(s.options.ports, [80, 22]);
        assert!(s.options.banner_timeout.is_some());
        let clash = Wrapper::try_parse_from(["scan", "127.0.0.1", "--ssh", "--no-banner"]);
        assert!(clash.is_err(), "--ssh needs the banner probe");
    }

    #[test]
    fn port_zero_is_refused() {
        let parsed = Wrapper::try_parse_from(["scan", "127.0.0.1", "--ports", "0"]);
        assert!(parsed.is_err());
    }
}
