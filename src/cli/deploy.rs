//! `fleetctl deploy` and `fleetctl undeploy`: the rollout's front end.
//! Live per-host progress on a terminal, JSON lines otherwise; a summary
//! either way; the inventory records each host's step and result.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ssh_opts::SshArgs;
use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::deploy::layout::InstallScope;
use crate::deploy::select::{Candidate, Selector};
use crate::deploy::{
    Artifact, ControlPlane, DeployOptions, Deployer, Event, HostResult, Outcome, RolloutOptions,
    rollout,
};
use crate::engine::deploy::record;
use crate::model::{AgentState, text};
use crate::ssh::SshTarget;
use crate::store::Inventory;

mod progress;

/// `--scope`: where the agent is installed on each host.
#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum ScopeArg {
    /// System-wide for root logins, under the home directory otherwise.
    #[default]
    Auto,
    /// Under the login user's home, even as root; never system paths or the
    /// system's service manager.
    User,
    /// System-wide (/usr/local/lib, /var/lib, a system unit); needs a root login.
    System,
}

impl From<ScopeArg> for InstallScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Auto => InstallScope::Auto,
            ScopeArg::User => InstallScope::User,
            ScopeArg::System => InstallScope::System,
        }
    }
}

/// Which hosts: named, every one in the inventory, or a selection of it.
#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Hosts: names, addresses or ~/.ssh/config aliases, optionally user@host.
    #[arg(value_name = "HOST", required_unless_present_any = ["all", "select"])]
    hosts: Vec<String>,
    /// Every host in the inventory.
    #[arg(long, conflicts_with_all = ["hosts", "select"])]
    all: bool,
    /// Inventory hosts matching EXPR: FIELD=VALUE[|VALUE...] terms joined by
    /// commas; fields addr (also a network), name, os, arch, agent, reach;
    /// `*` wildcards; `!=` negates. E.g. `os=debian,agent=none|failed`.
    #[arg(long, value_name = "EXPR", conflicts_with = "hosts")]
    select: Option<String>,
}

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.help(
    "Hosts deployed at once, each over its own SSH connection (after the canaries)"
)))]
pub struct DeployArgs {
    #[command(flatten)]
    hosts: HostsArgs,
    #[command(flatten)]
    ssh: SshArgs,
    /// The agent build to push [default: this fleetctl binary].
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
    /// The control plane URL agents register with; repeat it for replicas
    /// (every one is written into each agent's config) [default: `url`
    /// (else `listen`) and `replicas` in the config's [control] section].
    /// It must be reachable from the hosts.
    #[arg(long = "controller", value_name = "URL")]
    controllers: Vec<String>,
    /// Where agents listen; `{host}` stands for the address deployed to.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9701")]
    agent_listen: String,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Where the agent goes on each host (undeploy: where it went).
    #[arg(long, value_enum, default_value = "auto")]
    scope: ScopeArg,
    /// Hosts deployed first, one at a time; any failure among them stops the
    /// rollout. The rest then go --concurrency at once.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canary: usize,
    /// Start no new host once more than N have failed.
    #[arg(long, value_name = "N")]
    max_failures: Option<usize>,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Time allowed for each command or transfer on a host.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    step_timeout: Duration,
    /// Time allowed for a started agent to answer /healthz, and again to show as registered.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    wait_timeout: Duration,
    /// JSON lines (one event per line) even on a terminal.
    #[arg(long)]
    jsonl: bool,
}

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.help(
    "Hosts undeployed at once, each over its own SSH connection"
)))]
pub struct UndeployArgs {
    #[command(flatten)]
    hosts: HostsArgs,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Where the agent goes on each host (undeploy: where it went).
    #[arg(long, value_enum, default_value = "auto")]
    scope: ScopeArg,
    /// JSON lines (one event per line) even on a terminal.
    #[arg(long)]
    jsonl: bool,
}

pub async fn run_deploy(args: DeployArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut inventory = Inventory::open(&ctx.paths.inventory())?;
    let hosts = pick_hosts(&args.hosts, &inventory)?;
    let ssh = args.ssh.setup(args.port)?;
    let targets = hosts
        .iter()
        .map(|host| ssh.target(host))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let binary = match &args.agent_binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot tell where this fleetctl binary is")?,
    };
    let artifact = Artifact::load(&binary).map_err(BadInput::wrap)?;
    let urls = if args.controllers.is_empty() {
        ctx.config.control.client_urls()
    } else {
        args.controllers.clone()
    };
    if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "--controller {bad:?}: agents only talk to the control plane over https://"
        )));
    }
    let url = urls.join(" ");
    let options = RolloutOptions {
        canary: args.canary,
        concurrency: ssh.concurrency,
        max_failures: args.max_failures,
    };
    if args.dry_run {
        print_plan(&targets, &artifact, &url, options);
        return Ok(ExitCode::SUCCESS);
    }
    let control_dir = ctx.paths.control_dir();
    // Keys nobody serves with would mint tokens every agent is refused with.
    let issuer = super::token::local_issuer(&control_dir)?;
    let ca_pem = super::token::local_ca_pem(&control_dir)?;
    let pin = super::token::local_control_pin(&control_dir)?;
    let control = ControlPlane::new(&urls[0], ca_pem, pin, issuer)?.with_replicas(&urls[1..])?;
    let deployer = Arc::new(Deployer {
        connector: Arc::clone(&ssh.connector),
        artifact: Arc::new(artifact),
        control: Arc::new(control),
        options: DeployOptions {
            listen: args.agent_listen.clone(),
            step_timeout: args.step_timeout,
            healthy_timeout: args.wait_timeout,
            registered_timeout: args.wait_timeout,
            scope: args.scope.into(),
            controller_for: std::collections::BTreeMap::new(),
        },
    });
    let build = deployer.artifact.sha256.clone();
    let cancel = CancellationToken::new();
    let work = {
        let cancel = cancel.clone();
        move |target: SshTarget, progress: rollout::Progress| {
            let deployer = Arc::clone(&deployer);
            let cancel = cancel.clone();
            async move { deployer.deploy(&target, &progress, &cancel).await }
        }
    };
    let results = drive(
        targets.clone(),
        options,
        cancel.clone(),
        args.jsonl,
        work,
        |event| record(&mut inventory, &targets, Some(&build), event),
    )
    .await?;
    Ok(exit_code(&results, &cancel))
}

pub async fn run_undeploy(args: UndeployArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let mut inventory = Inventory::open(&ctx.paths.inventory())?;
    let hosts = pick_hosts(&args.hosts, &inventory)?;
    let ssh = args.ssh.setup(args.port)?;
    let targets = hosts
        .iter()
        .map(|host| ssh.target(host))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let connector = Arc::clone(&ssh.connector);
    let scope = args.scope.into();
    let cancel = CancellationToken::new();
    let options = RolloutOptions {
        canary: 0,
        concurrency: ssh.concurrency,
        max_failures: None,
    };
    let work = move |target: SshTarget, progress: rollout::Progress| {
        let connector = Arc::clone(&connector);
        async move {
            crate::deploy::undeploy(
                &connector,
                &target,
                &progress,
                Duration::from_mins(1),
                scope,
            )
            .await
        }
    };
    let results = drive(
        targets.clone(),
        options,
        cancel.clone(),
        args.jsonl,
        work,
        |event| record(&mut inventory, &targets, None, event),
    )
    .await?;
    Ok(exit_code(&results, &cancel))
}

/// Runs the rollout, shows its events, and prints the summary.
async fn drive<F, Fut>(
    targets: Vec<SshTarget>,
    options: RolloutOptions,
    cancel: CancellationToken,
    force_jsonl: bool,
    work: F,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Vec<HostResult>>
where
    F: Fn(SshTarget, rollout::Progress) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    let live = !force_jsonl && std::io::stdout().is_terminal();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let hosts: Vec<(String, SshTarget)> =
        targets.into_iter().map(|t| (t.alias.clone(), t)).collect();
    let total = hosts.len();
    let job = {
        let cancel = cancel.clone();
        tokio::spawn(async move { rollout::run(hosts, options, &cancel, &tx, work).await })
    };
    let mut view = progress::View::new(live, total);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                on_event(&event);
                view.show(&event)?;
            }
            _ = &mut ctrl_c, if !cancel.is_cancelled() => {
                view.note("interrupted: no new hosts start; hosts under way finish or roll back");
                cancel.cancel();
            }
        }
    }
    let results = job.await.context("the rollout task failed")?;
    view.summary(&results)?;
    Ok(results)
}

fn exit_code(results: &[HostResult], cancel: &CancellationToken) -> ExitCode {
    if results
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed { .. }))
    {
        ExitCode::FAILURE
    } else if cancel.is_cancelled() {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        ExitCode::SUCCESS
    }
}

/// The hosts named, or those `--all` / `--select` pick from the inventory.
fn pick_hosts(args: &HostsArgs, inventory: &Inventory) -> anyhow::Result<Vec<String>> {
    if !args.all && args.select.is_none() {
        return Ok(args.hosts.clone());
    }
    let selector = args
        .select
        .as_deref()
        .map(Selector::parse)
        .transpose()
        .map_err(BadInput::wrap)?;
    let candidates = candidates(inventory)?;
    let hosts: Vec<String> = candidates
        .iter()
        .filter(|c| selector.as_ref().is_none_or(|s| s.matches(c)))
        .map(|c| c.name.clone().unwrap_or_else(|| c.addr.clone()))
        .collect();
    if hosts.is_empty() {
        return Err(BadInput::wrap(anyhow::anyhow!(
            "no host in the inventory matches (it knows {} host(s); `fleetctl scan` and `fleetctl fingerprint` add them)",
            candidates.len()
        )));
    }
    Ok(hosts)
}

/// Every host the inventory knows, with what `--select` can look at.
fn candidates(inventory: &Inventory) -> anyhow::Result<Vec<Candidate>> {
    let mut by_addr = std::collections::BTreeMap::<String, Candidate>::new();
    for h in inventory.hosts()? {
        let addr = h.scan.addr.to_string();
        by_addr.insert(
            addr.clone(),
            Candidate {
                addr,
                name: h.scan.name.clone(),
                reach: Some(h.scan.reach.as_str().to_string()),
                agent: AgentState::None.as_str().to_string(),
                ..Candidate::default()
            },
        );
    }
    for f in inventory.all_facts()? {
        let c = by_addr
            .entry(f.address.clone())
            .or_insert_with(|| Candidate {
                addr: f.address.clone(),
                agent: AgentState::None.as_str().to_string(),
                ..Candidate::default()
            });
        if f.host != f.address {
            c.name = Some(f.host.clone());
        }
        if let Some(facts) = &f.facts {
            c.os.clone_from(&facts.os_id);
            c.arch.clone_from(&facts.arch);
        }
    }
    for d in inventory.deployments()? {
        let c = by_addr
            .entry(d.address.clone())
            .or_insert_with(|| Candidate {
                addr: d.address.clone(),
                ..Candidate::default()
            });
        c.agent = d.state.as_str().to_string();
        if d.host != d.address {
            c.name = Some(d.host.clone());
        }
    }
    Ok(by_addr.into_values().collect())
}

fn print_plan(targets: &[SshTarget], artifact: &Artifact, url: &str, options: RolloutOptions) {
    println!(
        "plan: push {} ({}, Linux {}, sha256 {}) to {} host(s); agents register with {url}",
        artifact.path.display(),
        human_bytes(artifact.bytes.len()),
        artifact.elf.arch_name(),
        &artifact.sha256[..16],
        targets.len()
    );
    println!(
        "steps per host: connect, inspect, upload, verify, configure, start, healthy, registered"
    );
    let max = options.max_failures.map_or_else(
        || "no limit".to_string(),
        |m| format!("stop after more than {m} failure(s)"),
    );
    println!(
        "order: {} canary host(s) one at a time, then {} at once; {max}",
        options.canary.min(targets.len()),
        options.concurrency.max(1)
    );
    for (i, t) in targets.iter().enumerate() {
        let phase = if i < options.canary {
            "canary"
        } else {
            "rollout"
        };
        println!(
            "  {:>3}. {:<8} {}@{}:{}",
            i + 1,
            phase,
            text::escape(&t.user),
            text::escape(&t.hostname),
            t.port
        );
    }
    println!("dry run: nothing was changed");
}

fn human_bytes(n: usize) -> String {
    let mib = n as f64 / f64::from(1u32 << 20);
    format!("{mib:.1} MiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Deployment;

    #[test]
    fn candidates_merge_scan_facts_and_deployments() {
        let mut inv = Inventory::open_in_memory().unwrap();
        inv.record_deployment(&Deployment {
            address: "127.7.0.10".into(),
            port: 22,
            host: "web1".into(),
            build: None,
            state: AgentState::Failed,
            step: Some("upload".into()),
            error: None,
            updated_at: 1,
        })
        .unwrap();
        let all = candidates(&inv).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name.as_deref(), Some("web1"));
        assert_eq!(all[0].agent, "failed");
        let args = HostsArgs {
            hosts: vec![],
            all: false,
            select: Some("agent=failed".into()),
        };
        assert_eq!(pick_hosts(&args, &inv).unwrap(), ["web1"]);
        let none = HostsArgs {
            hosts: vec![],
            all: false,
            select: Some("agent=running".into()),
        };
        let err = pick_hosts(&none, &inv).unwrap_err();
        assert!(err.downcast_ref::<BadInput>().is_some());
    }
}
