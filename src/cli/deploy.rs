//! `fleetctl deploy` and `fleetctl undeploy`: the rollout's front end.
//! Live per-host progress on a terminal, JSON lines otherwise; a summary
//! either way; the inventory records each host's step and result.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::console::{self, FrontEnd, engine_config};
use super::hosts::{HostsArgs, pick};
use super::job::{self, Show};
use super::ssh_opts::SshArgs;
use super::{Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::deploy::batches::{Amount, BatchSpec};
use crate::deploy::layout::InstallScope;
use crate::deploy::{HostResult, Outcome};
use crate::engine::{Command, DeployPlan, DeployRequest, JobOutput, UndeployRequest};
use crate::model::text;

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

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.help(
    "Hosts deployed at once, each over its own SSH connection (after the canaries)"
)))]
#[allow(clippy::struct_excessive_bools)] // the command line's switches, each its own flag
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
    /// Hosts deployed first, one at a time (the first batch); any failure
    /// among them stops the rollout. The rest then go --concurrency at once.
    #[arg(long, value_name = "N", default_value_t = 0)]
    canary: usize,
    /// Batches, as Ansible's serial: N hosts, N% of them, or a list whose
    /// last size repeats (1,2,50%). A batch starts when the one before has
    /// ended; a failed host stops the rollout unless --continue-on-failure.
    #[arg(long, value_name = "N|N%|LIST", value_parser = BatchSpec::parse)]
    batch: Option<BatchSpec>,
    /// Start no new host once more than N (or N% of the hosts) have failed.
    #[arg(long, value_name = "N|N%", value_parser = parse_max_failures)]
    max_failures: Option<Amount>,
    /// With --batch or --gate: go on past failed hosts (up to --max-failures).
    #[arg(long)]
    continue_on_failure: bool,
    /// Wait for the operator between batches: a prompt on the terminal
    /// (y goes on; anything else aborts, and hosts not started stay untouched).
    #[arg(long)]
    gate: bool,
    /// Go on with the rollout a crash, a kill or Ctrl-C cut short: its hosts,
    /// batches and rules come from the inventory, SSH and build settings from
    /// this command line; hosts it finished are not deployed again.
    #[arg(long, conflicts_with_all = ["hosts", "all", "select", "canary", "batch", "max_failures", "continue_on_failure", "gate", "dry_run"])]
    resume: bool,
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

fn parse_max_failures(text: &str) -> Result<Amount, String> {
    Amount::parse(text, "--max-failures", true)
}

pub async fn run_deploy(args: DeployArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let hosts = if args.resume {
        Vec::new()
    } else {
        pick(&args.hosts, ctx).await?
    };
    let request = DeployRequest {
        hosts,
        ssh: args.ssh.request(args.port),
        agent_binary: args.agent_binary,
        controllers: args.controllers,
        listen: args.agent_listen,
        scope: args.scope.map(InstallScope::from),
        canary: args.canary,
        batch: args.batch,
        max_failures: args.max_failures,
        continue_on_failure: args.continue_on_failure,
        gate: args.gate,
        resume: args.resume,
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
    /// interrupted, 130; else any host left out (the gate aborted), 1.
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
            } else if results
                .iter()
                .any(|r| matches!(r.outcome, Outcome::Skipped { .. }))
            {
                ExitCode::FAILURE
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

    fn ask_gate(&mut self, question: &str) -> bool {
        self.view().suspend(|| job::ask_line(question))
    }

    fn interrupted(&mut self) {
        if !std::mem::replace(&mut self.interrupted_note, true) {
            self.view()
                .note("interrupted: no new hosts start; hosts under way finish or roll back");
        }
    }
}

fn print_plan(plan: &DeployPlan) {
    let options = &plan.rollout;
    let batches = options.plan(plan.hosts.len());
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
    let failure = if options.stop_on_failure {
        "; a failed host stops the rollout"
    } else {
        ""
    };
    let gate = if options.gate {
        "; the operator says when each batch after the first goes"
    } else {
        ""
    };
    println!(
        "order: {} canary host(s) one at a time, then {} at once in {} batch(es); {max}{failure}{gate}",
        options.canary.min(plan.hosts.len()),
        options.concurrency.max(1),
        batches.len()
    );
    for (i, (user, host, port)) in plan.hosts.iter().enumerate() {
        let batch = batches
            .iter()
            .position(|(r, _)| r.contains(&i))
            .unwrap_or(0);
        let phase = if i < options.canary {
            "canary".to_string()
        } else if options.batches.is_empty() {
            "rollout".to_string()
        } else {
            format!("batch {}", batch + 1)
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
