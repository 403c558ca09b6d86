//! `fleetctl deploy` and `fleetctl undeploy`: the rollout's front end.
//! Live per-host progress on a terminal, JSON lines otherwise; a summary
//! either way; the inventory records each host's step and result.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::console::{self, FrontEnd, engine_config};
use super::job::{self, Show};
use super::ssh_opts::SshArgs;
use super::{BadInput, Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::deploy::layout::InstallScope;
use crate::deploy::select::{Candidate, Selector};
use crate::deploy::{HostResult, Outcome};
use crate::engine::{Command, DeployPlan, DeployRequest, JobOutput, UndeployRequest};
use crate::model::{AgentState, text};
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
    /// The agent build to push [default: fleetctl-agent beside this fleetctl
    /// (the agent-only build), else this fleetctl binary].
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
    /// The control plane URL agents register with; repeat it for replicas
    /// (every one is written into each agent's config) [default: `url`
    /// (else `listen`) and `replicas` in the config's [control] section].
    /// It must be reachable from the hosts.
    #[arg(long = "controller", value_name = "URL")]
    controllers: Vec<String>,
    /// Where agents listen; `{host}` stands for the address deployed to
    /// [default: the config's engine.agent_listen, 0.0.0.0:9701].
    #[arg(long, value_name = "ADDR:PORT")]
    agent_listen: Option<String>,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Where the agent goes on each host (undeploy: where it went) [default: auto].
    #[arg(long, value_enum)]
    scope: Option<ScopeArg>,
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
    /// Time allowed for each command or transfer on a host [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    step_timeout: Option<Duration>,
    /// Time allowed for a started agent to answer /healthz, and again to
    /// show as registered [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    wait_timeout: Option<Duration>,
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
    /// Where the agent goes on each host (undeploy: where it went) [default: auto].
    #[arg(long, value_enum)]
    scope: Option<ScopeArg>,
    /// JSON lines (one event per line) even on a terminal.
    #[arg(long)]
    jsonl: bool,
}

pub async fn run_deploy(args: DeployArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let hosts = pick(&args.hosts, ctx).await?;
    let request = DeployRequest {
        hosts,
        ssh: args.ssh.request(args.port),
        agent_binary: args.agent_binary,
        controllers: args.controllers,
        listen: args.agent_listen,
        scope: args.scope.map(InstallScope::from),
        canary: args.canary,
        max_failures: args.max_failures,
        step_timeout: args.step_timeout,
        wait_timeout: args.wait_timeout,
        dry_run: args.dry_run,
    };
    let link = console::link(ctx, Vec::new());
    let config = engine_config(ctx, FrontEnd::Headless, Some(link), 64)?;
    let mut view = RolloutView::new(args.jsonl, request.hosts.len());
    let ended = job::run(config, Command::Deploy(request), &mut view).await?;
    ended.check()?;
    view.end(ended.interrupted)
}

pub async fn run_undeploy(args: UndeployArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let hosts = pick(&args.hosts, ctx).await?;
    let request = UndeployRequest {
        hosts,
        ssh: args.ssh.request(args.port),
        scope: args.scope.map(InstallScope::from),
    };
    let config = engine_config(ctx, FrontEnd::Headless, None, 64)?;
    let mut view = RolloutView::new(args.jsonl, request.hosts.len());
    let ended = job::run(config, Command::Undeploy(request), &mut view).await?;
    ended.check()?;
    view.end(ended.interrupted)
}

/// The hosts named, or those `--all` / `--select` pick from the inventory
/// (read on a blocking thread).
pub(super) async fn pick(args: &HostsArgs, ctx: &Context) -> anyhow::Result<Vec<String>> {
    if !args.all && args.select.is_none() {
        return Ok(args.hosts.clone());
    }
    let (path, select, all) = (ctx.paths.inventory(), args.select.clone(), args.all);
    tokio::task::spawn_blocking(move || {
        let inventory = Inventory::open(&path)?;
        let args = HostsArgs {
            hosts: Vec::new(),
            all,
            select,
        };
        pick_hosts(&args, &inventory)
    })
    .await
    .context("the inventory reader stopped")?
}

/// A rollout as it goes: live per-host lines on a terminal, JSON lines
/// otherwise (started at the first host: a dry run prints its plan alone).
struct RolloutView {
    live: bool,
    total: usize,
    view: Option<progress::View>,
    results: Option<Vec<HostResult>>,
    interrupted_note: bool,
}

impl RolloutView {
    fn new(force_jsonl: bool, total: usize) -> Self {
        Self {
            live: !force_jsonl && std::io::stdout().is_terminal(),
            total,
            view: None,
            results: None,
            interrupted_note: false,
        }
    }

    fn view(&mut self) -> &mut progress::View {
        let (live, total) = (self.live, self.total);
        self.view
            .get_or_insert_with(|| progress::View::new(live, total))
    }

    /// The summary and the exit status: any host failed, 1; else
    /// interrupted, 130.
    fn end(mut self, interrupted: bool) -> anyhow::Result<ExitCode> {
        let Some(results) = self.results.take() else {
            // A dry run: the plan was the output.
            return Ok(ExitCode::SUCCESS);
        };
        self.view().summary(&results)?;
        Ok(
            if results
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Failed { .. }))
            {
                ExitCode::FAILURE
            } else if interrupted {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::SUCCESS
            },
        )
    }
}

impl Show for RolloutView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        match output {
            JobOutput::Note(note) => eprintln!("note: {}", text::escape_lines(&note)),
            JobOutput::DeployPlan(plan) => print_plan(&plan),
            JobOutput::Rollout { event, .. } => self.view().show(&event)?,
            JobOutput::RolloutDone(results) => self.results = Some(results),
            _ => {}
        }
        Ok(())
    }

    fn interrupted(&mut self) {
        if !std::mem::replace(&mut self.interrupted_note, true) {
            self.view()
                .note("interrupted: no new hosts start; hosts under way finish or roll back");
        }
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

fn print_plan(plan: &DeployPlan) {
    let options = plan.rollout;
    println!(
        "plan: push {} (sha256 {}) to {} host(s); agents register with {}",
        text::escape(&plan.build),
        plan.sha256.get(..16).unwrap_or(&plan.sha256),
        plan.hosts.len(),
        text::escape(&plan.url)
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
        options.canary.min(plan.hosts.len()),
        options.concurrency.max(1)
    );
    for (i, (user, host, port)) in plan.hosts.iter().enumerate() {
        let phase = if i < options.canary {
            "canary"
        } else {
            "rollout"
        };
        println!(
            "  {:>3}. {:<8} {}@{}:{}",
            i + 1,
            phase,
            text::escape(user),
            text::escape(host),
            port
        );
    }
    println!("dry run: nothing was changed");
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
