//! Command-line front end: argument parsing, tracing, dispatch, exit codes.
//!
//! The agent-only build (`--no-default-features --features agent`) has one
//! command, `agent`; every other command comes with the `console` feature.

mod agent;
#[cfg(feature = "console")]
mod agents;
#[cfg(feature = "console")]
mod config_cmd;
#[cfg(feature = "console")]
mod console;
#[cfg(feature = "console")]
mod demo;
#[cfg(feature = "console")]
mod deploy;
#[cfg(feature = "console")]
mod facts_output;
#[cfg(feature = "console")]
mod fingerprint;
#[cfg(feature = "console")]
mod history;
#[cfg(feature = "console")]
mod hosts;
#[cfg(feature = "console")]
mod install;
#[cfg(feature = "console")]
mod inventory;
#[cfg(feature = "console")]
mod job;
#[cfg(feature = "console")]
mod logs;
#[cfg(feature = "console")]
mod output;
#[cfg(feature = "console")]
mod registry;
#[cfg(feature = "console")]
mod run;
#[cfg(feature = "console")]
mod scan;
#[cfg(feature = "console")]
mod serve;
#[cfg(feature = "console")]
mod shell;
#[cfg(feature = "console")]
mod ssh_opts;
#[cfg(feature = "console")]
mod status;
#[cfg(feature = "console")]
mod tag;
#[cfg(feature = "console")]
mod token;
#[cfg(feature = "console")]
mod tui;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[cfg(feature = "console")]
use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[cfg(feature = "console")]
use crate::config::{Config, Paths};

/// Exit status for bad input, as clap uses for bad flags.
const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C, as shells report SIGINT.
#[cfg(feature = "console")]
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout's reader has gone, as shells report SIGPIPE.
const EXIT_BROKEN_PIPE: u8 = 141;

#[derive(Debug, Parser)]
#[cfg_attr(
    feature = "console",
    command(
        name = "fleetctl",
        version,
        about = "Find hosts, learn what they are, and watch them.",
        long_about = "Find hosts, learn what they are, and watch them.\n\n\
                      With no command, opens the console (fleetctl tui)."
    )
)]
#[cfg_attr(
    not(feature = "console"),
    command(
        name = "fleetctl",
        // Deploy tells this build from the console's by these words.
        version = concat!(env!("CARGO_PKG_VERSION"), " (agent-only build)"),
        about = "The fleetctl node agent (the agent-only build: `fleetctl agent --config FILE`).",
        subcommand_required = true,
        arg_required_else_help = true
    )
)]
pub struct Cli {
    /// Config file [default: the platform config dir, ~/.config/fleetctl/config.toml on Linux].
    #[cfg_attr(
        not(feature = "console"),
        arg(help = "The agent's config file (what `deploy` writes)")
    )]
    #[arg(long, global = true, env = "FLEETCTL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory for the inventory [default: from the config file, else
    /// the platform data dir, ~/.local/share/fleetctl on Linux].
    #[cfg(feature = "console")]
    #[arg(long, global = true, env = "FLEETCTL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The console: the fleet live, jobs and events (the default command).
    #[cfg(feature = "console")]
    Tui(tui::TuiArgs),
    /// Discover live hosts in networks, ranges and lists.
    #[cfg(feature = "console")]
    Scan(scan::ScanArgs),
    /// Learn what hosts are (OS, kernel, CPUs, memory, host key...) over SSH.
    #[cfg(feature = "console")]
    Fingerprint(fingerprint::FingerprintArgs),
    /// Push the agent to hosts, start it, and wait until it is registered.
    #[cfg(feature = "console")]
    Deploy(deploy::DeployArgs),
    /// Stop the agent on hosts and remove everything deploy wrote.
    #[cfg(feature = "console")]
    Undeploy(deploy::UndeployArgs),
    /// Run a command on hosts over SSH; the output grouped by identical
    /// result, outliers first (or -o json|jsonl).
    #[cfg(feature = "console")]
    Run(run::RunArgs),
    /// An interactive shell on a host, reached as every job reaches it.
    #[cfg(feature = "console")]
    Shell(shell::ShellArgs),
    /// The agent's log on a host (its systemd journal, else its log file).
    #[cfg(feature = "console")]
    Logs(logs::LogsArgs),
    /// The audit trail: every command run on hosts, who ran it from here,
    /// when, and how it ended (newest first).
    #[cfg(feature = "console")]
    History(history::HistoryArgs),
    /// Put tags on inventory hosts: `fleetctl tag HOST... key=value...`
    /// (or `--select PATTERN key=value...`).
    #[cfg(feature = "console")]
    Tag(tag::TagArgs),
    /// Take tags off inventory hosts: `fleetctl untag HOST... key...`.
    #[cfg(feature = "console")]
    Untag(tag::UntagArgs),
    /// The fleet for Ansible: `--list` / `--host NAME` (dynamic inventory
    /// JSON), `-o ini|yaml`; `import FILE` brings an Ansible inventory in.
    #[cfg(feature = "console")]
    Inventory(inventory::InventoryArgs),
    /// The fleet as the console sees it, once: inventory, registry and every
    /// agent read (table, or -o json|jsonl|csv).
    #[cfg(feature = "console")]
    Status(status::StatusArgs),
    /// Run the node agent: stats API, enrollment and renewal (what `deploy`
    /// launches on each host). Its settings come from --config FILE.
    Agent,
    /// Show where fleetctl keeps things, and its settings.
    #[cfg(feature = "console")]
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run the control plane: fleet CA, tokens, agent registry, HTTPS API.
    #[cfg(feature = "console")]
    Serve(serve::ServeArgs),
    /// Tokens: mint join, operator, stats and sd tokens with the local control
    /// plane's key (printed on stdout); list and revoke them; rotate the key.
    #[cfg(feature = "console")]
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The registry's database: bring its schema up to date (`registry migrate`).
    #[cfg(feature = "console")]
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// List the agents the control plane knows, with their registration state.
    #[cfg(feature = "console")]
    Agents(agents::AgentsArgs),
    /// Revoke an agent: its certificate, renewals and heartbeats are refused from now on.
    #[cfg(feature = "console")]
    Revoke(agents::RevokeArgs),
    /// A sandbox fleet on loopback and the console over it: scan,
    /// fingerprint, deploy and watch, with no setup and no root.
    #[cfg(feature = "console")]
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[cfg(feature = "console")]
    Completions(install::CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a directory.
    #[cfg(feature = "console")]
    Man(install::ManArgs),
}

/// An error in what the operator asked for: exit status 2, not 1.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BadInput(#[from] anyhow::Error);

impl BadInput {
    /// Marks `e` as the operator's mistake.
    pub fn wrap(e: impl Into<anyhow::Error>) -> anyhow::Error {
        anyhow::Error::new(Self(e.into()))
    }
}

/// What every console command gets: the settings in effect and where things live.
#[cfg(feature = "console")]
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub paths: Paths,
}

#[cfg(feature = "console")]
impl Context {
    fn load(config_flag: Option<&Path>, data_dir_flag: Option<&Path>) -> anyhow::Result<Self> {
        let dirs = Paths::platform();
        let config_file = Paths::config_file(config_flag, dirs.as_ref()).map_err(BadInput::wrap)?;
        let config = Config::load(&config_file, config_flag.is_some()).map_err(BadInput::wrap)?;
        let paths = Paths::resolve(config_file, data_dir_flag, &config.paths, dirs.as_ref())
            .map_err(BadInput::wrap)?;
        Ok(Self { config, paths })
    }
}

/// The engine's settings as `fleetctl` starts it with this config file and
/// data dir: for the console (`console`), else for a headless job. No
/// control plane is started. What tests drive the console's engine with.
#[cfg(feature = "console")]
pub fn engine_config(
    config_file: &Path,
    data_dir: &Path,
    console: bool,
) -> anyhow::Result<crate::engine::EngineConfig> {
    let ctx = Context::load(Some(config_file), Some(data_dir))?;
    let front = if console {
        console::FrontEnd::Console
    } else {
        console::FrontEnd::Headless
    };
    console::engine_config(&ctx, front, None, raise_open_files_limit())
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command.or_else(default_command) else {
        // Unreachable in practice: clap insists on a command in this build.
        eprintln!("error: the agent-only build runs one command: fleetctl agent --config FILE");
        return ExitCode::from(EXIT_USAGE);
    };
    // The console logs to a file: the terminal is its screen. The agent is a
    // service: what it does is worth seeing by default.
    match command {
        // The console logs to a file; the demo picks by mode.
        #[cfg(feature = "console")]
        Command::Tui(_) | Command::Demo(_) => {}
        Command::Agent => init_tracing("info"),
        #[cfg(feature = "console")]
        _ => init_tracing("warn"),
    }
    #[cfg(feature = "console")]
    let result = run(command, cli.config.as_deref(), cli.data_dir.as_deref());
    #[cfg(not(feature = "console"))]
    let result = run(&command, cli.config.as_deref());
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => {
            // The reader went away (`fleetctl scan ... | head`): stop quietly.
            ExitCode::from(EXIT_BROKEN_PIPE)
        }
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            if err.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// What `fleetctl` alone runs: the console, where there is one.
#[allow(clippy::unnecessary_wraps)] // None in the agent-only build
fn default_command() -> Option<Command> {
    #[cfg(feature = "console")]
    return Some(Command::Tui(tui::TuiArgs::default()));
    #[cfg(not(feature = "console"))]
    None
}

#[cfg(not(feature = "console"))]
fn run(command: &Command, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Agent => agent::run(config),
    }
}

#[cfg(feature = "console")]
fn run(
    command: Command,
    config: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let ctx = || Context::load(config, data_dir);
    match command {
        // The agent's config file is its own, not the console's.
        Command::Agent => agent::run(config),
        Command::Config(cmd) => Ok(config_cmd::run(&cmd, &ctx()?)),
        Command::Tui(args) => tui::run(&args, &ctx()?),
        Command::Scan(args) => runtime()?.block_on(scan::run(args, &ctx()?)),
        Command::Fingerprint(args) => runtime()?.block_on(fingerprint::run(args, &ctx()?)),
        Command::Deploy(args) => runtime()?.block_on(deploy::run_deploy(args, &ctx()?)),
        Command::Undeploy(args) => runtime()?.block_on(deploy::run_undeploy(args, &ctx()?)),
        Command::Run(args) => runtime()?.block_on(run::run(args, &ctx()?)),
        Command::Shell(args) => runtime()?.block_on(shell::run(args, &ctx()?)),
        Command::Logs(args) => runtime()?.block_on(logs::run(args, &ctx()?)),
        Command::History(args) => runtime()?.block_on(history::run(args, &ctx()?)),
        Command::Serve(args) => runtime()?.block_on(serve::run(args, &ctx()?)),
        Command::Status(args) => runtime()?.block_on(status::run(args, &ctx()?)),
        Command::Inventory(args) => inventory::run(&args, &ctx()?),
        Command::Tag(args) => tag::tag(&args, &ctx()?),
        Command::Untag(args) => tag::untag(&args, &ctx()?),
        Command::Token(cmd) => token::run(&cmd, &ctx()?),
        Command::Registry(cmd) => runtime()?.block_on(registry::run(cmd, &ctx()?)),
        Command::Agents(args) => runtime()?.block_on(agents::agents(args, &ctx()?)),
        Command::Revoke(args) => runtime()?.block_on(agents::revoke(args, &ctx()?)),
        Command::Demo(args) => demo::run(&args, &ctx()?),
        // Neither reads the config: they describe the command line itself.
        Command::Completions(args) => install::completions(&args),
        Command::Man(args) => install::man(&args),
    }
}

#[cfg(feature = "console")]
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Lifts the soft open-files limit to the hard one and returns how many
/// sockets a command may hold open, keeping some descriptors spare: scans,
/// the console's poller and the control plane each hold one per host.
#[cfg(feature = "console")]
pub(crate) fn raise_open_files_limit() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 256;
    };
    let limit = if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(64)
        .max(16)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `err` and its causes as one message, each cause said once, with what
/// hosts wrote into it (stderr, log lines) escaped for the terminal.
///
/// anyhow's `{:#}` prints every cause after its error; an error whose
/// message already holds its source's words would say them twice
/// ("cannot read X: No such file: No such file"). Such a cause is left out
/// here, so no error type can make the CLI repeat itself.
#[must_use]
pub fn error_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    crate::model::text::escape_lines(&out).into_owned()
}

/// Headless commands log to stderr; `RUST_LOG` picks what (default: `default`).
/// Colour only when stderr is a terminal and `NO_COLOR` is unset: a
/// detached agent's stderr is its log file, deploy reads it back, and
/// escape codes in it would reach the operator's terminal.
fn init_tracing(default: &str) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = tracing_subscriber::registry()
        .with(log_filter(default))
        .with(output)
        .try_init();
}

/// `RUST_LOG` with all of `EnvFilter`'s syntax (spans, fields).
#[cfg(feature = "console")]
fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    use tracing_subscriber::EnvFilter;
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
}

/// `RUST_LOG` as levels per target (`debug`, `fleetctl=debug,hyper=warn`):
/// the agent-only build leaves out `EnvFilter` and the regex engine it
/// brings (about 0.3 MB of a binary every host runs).
#[cfg(not(feature = "console"))]
fn log_filter(default: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .or_else(|| default.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Whether logs may be coloured: on a terminal, unless `NO_COLOR` is set
/// to anything but the empty string (no-color.org).
fn log_colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the config file /x: {source}")]
    struct SaysItsSource {
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let said = io.to_string();
        let err = anyhow::Error::new(SaysItsSource { source: io }).context("loading settings");
        let text = error_text(&err);
        assert_eq!(
            text,
            format!("loading settings: cannot read the config file /x: {said}")
        );
        assert_eq!(text.matches(&said).count(), 1, "{text}");
        let wrapped = BadInput::wrap(anyhow::anyhow!("bad --select"));
        assert_eq!(error_text(&wrapped), "bad --select");
        let host = anyhow::anyhow!("web1: `sh` exited with status 1: \x1b]0;PWNED\x07");
        assert!(!error_text(&host).contains(['\x1b', '\x07']));
    }

    fn commands() -> Vec<String> {
        use clap::CommandFactory as _;
        Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .collect()
    }

    #[cfg(not(feature = "console"))]
    #[test]
    fn the_agent_only_build_runs_the_agent_alone() {
        use clap::CommandFactory as _;
        assert_eq!(commands(), ["agent"]);
        let version = Cli::command().render_version();
        assert!(version.ends_with(" (agent-only build)\n"), "{version}");
        let bare = Cli::try_parse_from(["fleetctl"]).unwrap_err();
        assert_eq!(bare.exit_code(), 2, "{bare}");
        assert!(Cli::try_parse_from(["fleetctl", "scan", "10.0.0.0/24"]).is_err());
    }

    #[cfg(feature = "console")]
    #[test]
    fn the_console_build_has_every_command_and_opens_the_console_bare() {
        use clap::CommandFactory as _;
        let all = commands();
        for name in [
            "tui",
            "scan",
            "deploy",
            "agent",
            "serve",
            "demo",
            "completions",
            "man",
        ] {
            assert!(all.iter().any(|c| c == name), "{name} not in {all:?}");
        }
        assert!(!Cli::command().render_version().contains("agent-only"));
        let bare = Cli::try_parse_from(["fleetctl"]).unwrap();
        assert!(matches!(
            bare.command.or_else(default_command),
            Some(Command::Tui(_))
        ));
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
    }
}
