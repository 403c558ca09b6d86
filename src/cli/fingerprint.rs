//! `fleetctl fingerprint HOST...`: what each host is, over SSH.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output::Format;
use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::fingerprint::job::{self, Fingerprint};
use crate::ssh::config::SshConfig;
use crate::ssh::target::{default_known_hosts, default_ssh_config};
use crate::ssh::{ConnectFlags, Connector, HostKeyPolicy, LocalUser, SshTarget, TerminalPrompt};

/// How to reach hosts, as ssh(1) spells it where it can.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Log in as this user [default: ~/.ssh/config, else the local user].
    #[arg(short = 'l', long)]
    user: Option<String>,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Identity file, tried before the config's and the defaults (repeatable).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    identities: Vec<PathBuf>,
    /// Jump host(s): [user@]host[:port][,...] [default: ProxyJump from ~/.ssh/config].
    #[arg(short = 'J', long = "jump", value_name = "HOST")]
    jump: Option<String>,
    /// Per-connection timeout [default: ConnectTimeout from ~/.ssh/config, else 10s].
    #[arg(long, value_parser = parse_duration)]
    connect_timeout: Option<Duration>,
    /// known_hosts file to check host keys against [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// Unknown host keys: refuse (strict) or learn them (accept-new). A changed key is always refused.
    #[arg(long, value_enum, default_value_t = HostKeyPolicy::Strict)]
    host_key_policy: HostKeyPolicy,
    /// ssh_config file [default: ~/.ssh/config].
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Hosts: names, addresses or ~/.ssh/config aliases, optionally user@host.
    #[arg(required = true, value_name = "HOST")]
    hosts: Vec<String>,
    #[command(flatten)]
    ssh: SshArgs,
    /// Hosts fingerprinted at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Time allowed per host, connection included.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

pub async fn run(args: FingerprintArgs, _ctx: &Context) -> anyhow::Result<ExitCode> {
    let (connector, targets) = args.ssh.resolve(&args.hosts)?;

    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let total = targets.len();
    let job = tokio::spawn(job::run(
        Arc::new(connector),
        targets,
        args.concurrency,
        args.timeout,
        cancel.clone(),
        tx,
    ));
    let mut out = std::io::stdout().lock();
    let mut results = Vec::new();
    if args.output == Format::Table {
        writeln!(
            out,
            "{:<24} {:<18} {:<28} {:<8} {:>4} {:>9}  HOST KEY",
            "HOST", "STATUS", "OS", "ARCH", "CPUS", "MEMORY"
        )?;
    } else if args.output == Format::Csv {
        writeln!(
            out,
            "host,address,port,status,os,kernel,arch,cpus,mem_total_bytes,host_key,error"
        )?;
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
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    match args.output {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?,
        Format::Table => writeln!(
            out,
            "# {total} hosts: {} ok, {failed} failed",
            results.len() - failed
        )?,
        Format::Jsonl | Format::Csv => {}
    }
    out.flush()?;
    for result in results.iter().filter(|r| r.failure.is_some()) {
        if let Some(error) = &result.error {
            eprintln!("error: {error}");
        }
    }
    Ok(if cancel.is_cancelled() {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write_row(out: &mut impl Write, format: Format, r: &Fingerprint) -> anyhow::Result<()> {
    let facts = r.facts.clone().unwrap_or_default();
    let status = r.failure.map_or("ok", |f| f.as_str());
    match format {
        Format::Table => {
            let os = facts
                .os_pretty
                .clone()
                .or(facts.os_id.clone())
                .unwrap_or_else(|| "-".into());
            let mem = facts.mem_total_bytes.map_or_else(
                || "-".into(),
                |b| format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
            );
            let line = format!(
                "{:<24} {:<18} {:<28} {:<8} {:>4} {:>9}  {}",
                r.host,
                status,
                os.chars().take(28).collect::<String>(),
                facts.arch.as_deref().unwrap_or("-"),
                facts
                    .cpu_count
                    .map_or_else(|| "-".into(), |c| c.to_string()),
                mem,
                r.host_key.as_deref().unwrap_or("")
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        Format::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(&mut *out);
            csv.write_record([
                r.host.clone(),
                r.address.clone(),
                r.port.to_string(),
                status.to_string(),
                facts.os_id.clone().unwrap_or_default(),
                facts.kernel.clone().unwrap_or_default(),
                facts.arch.clone().unwrap_or_default(),
                facts.cpu_count.map(|c| c.to_string()).unwrap_or_default(),
                facts
                    .mem_total_bytes
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
                r.host_key.clone().unwrap_or_default(),
                r.error.clone().unwrap_or_default(),
            ])?;
            csv.flush()?;
        }
        Format::Json => {}
    }
    Ok(())
}

impl SshArgs {
    /// The connector (known_hosts, policy, prompts) and each host resolved
    /// through ~/.ssh/config, as `fleetctl fingerprint` and `deploy` share them.
    pub(super) fn resolve(&self, hosts: &[String]) -> anyhow::Result<(Connector, Vec<SshTarget>)> {
        let local = LocalUser::current();
        let config_path = self
            .ssh_config
            .clone()
            .unwrap_or_else(|| default_ssh_config(&local));
        let config = SshConfig::load(&config_path).map_err(BadInput::wrap)?;
        for warning in &config.warnings {
            eprintln!("note: {warning}");
        }
        let flags = ConnectFlags {
            user: self.user.clone(),
            port: self.port,
            identities: self.identities.clone(),
            connect_timeout: self.connect_timeout,
            jump: self.jump.clone(),
        };
        let targets = hosts
            .iter()
            .map(|host| SshTarget::resolve(host, &flags, &config, &local))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BadInput::wrap(anyhow::anyhow!(e)))?;
        let known_hosts = self
            .known_hosts
            .clone()
            .unwrap_or_else(|| default_known_hosts(&local));
        let connector =
            Connector::new(&known_hosts, self.host_key_policy, Arc::new(TerminalPrompt))
                .context("cannot read known_hosts")?;
        Ok((connector, targets))
    }
}
