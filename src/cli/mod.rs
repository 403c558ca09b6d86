//! Command-line front end: argument parsing, tracing, dispatch, exit codes.

mod agent;
mod agents;
mod config_cmd;
mod console;
mod demo;
mod deploy;
mod facts_output;
mod fingerprint;
mod hosts;
mod inventory;
mod job;
mod output;
mod scan;
mod serve;
mod ssh_opts;
mod status;
mod tag;
mod token;
mod tui;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{Config, Paths};

/// Exit status for bad input, as clap uses for bad flags.
const EXIT_USAGE: u8 = 2;
/// Exit status after Ctrl-C, as shells report SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status when stdout's reader has gone, as shells report SIGPIPE.
const EXIT_BROKEN_PIPE: u8 = 141;

#[derive(Debug, Parser)]
#[command(
    name = "fleetctl",
    version,
    about = "Find hosts, learn what they are, and watch them.",
    long_about = "Find hosts, learn what they are, and watch them.\n\n\
                  With no command, opens the console (fleetctl tui)."
)]
pub struct Cli {
    /// Config file [default: the platform config dir, ~/.config/fleetctl/config.toml on Linux].
    #[arg(long, global = true, env = "FLEETCTL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory for the inventory [default: from the config file, else
    /// the platform data dir, ~/.local/share/fleetctl on Linux].
    #[arg(long, global = true, env = "FLEETCTL_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The console: the fleet live, jobs and events (the default command).
    Tui(tui::TuiArgs),
    /// Discover live hosts in networks, ranges and lists.
    Scan(scan::ScanArgs),
    /// Learn what hosts are (OS, kernel, CPUs, memory, host key...) over SSH.
    Fingerprint(fingerprint::FingerprintArgs),
    /// Push the agent to hosts, start it, and wait until it is registered.
    Deploy(deploy::DeployArgs),
    /// Stop the agent on hosts and remove everything deploy wrote.
    Undeploy(deploy::UndeployArgs),
    /// Put tags on inventory hosts: `fleetctl tag HOST... key=value...`
    /// (or `--select PATTERN key=value...`).
    Tag(tag::TagArgs),
    /// Take tags off inventory hosts: `fleetctl untag HOST... key...`.
    Untag(tag::UntagArgs),
    /// The fleet for Ansible: `--list` / `--host NAME` (dynamic inventory
    /// JSON), `-o ini|yaml`; `import FILE` brings an Ansible inventory in.
    Inventory(inventory::InventoryArgs),
    /// The fleet as the console sees it, once: inventory, registry and every
    /// agent read (table, or -o json|jsonl|csv).
    Status(status::StatusArgs),
    /// Run the node agent: stats API, enrollment and renewal (what `deploy`
    /// launches on each host). Its settings come from --config FILE.
    Agent,
    /// Show where fleetctl keeps things, and its settings.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run the control plane: fleet CA, tokens, agent registry, HTTPS API.
    Serve(serve::ServeArgs),
    /// Tokens: mint join, operator, stats and sd tokens with the local control
    /// plane's key (printed on stdout); list and revoke them; rotate the key.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// List the agents the control plane knows, with their registration state.
    Agents(agents::AgentsArgs),
    /// Revoke an agent: its certificate, renewals and heartbeats are refused from now on.
    Revoke(agents::RevokeArgs),
    /// A sandbox fleet on loopback and the console over it: scan,
    /// fingerprint, deploy and watch, with no setup and no root.
    Demo(demo::DemoArgs),
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

/// What every command gets: the settings in effect and where things live.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub paths: Paths,
}

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
    Ok(console::engine_config(
        &ctx,
        front,
        None,
        raise_open_files_limit(),
    ))
}

/// Entry point of the binary.
#[must_use]
pub fn main() -> ExitCode {
    let Cli {
        config,
        data_dir,
        command,
    } = Cli::parse();
    let command = command.unwrap_or_else(|| Command::Tui(tui::TuiArgs::default()));
    // The console logs to a file: the terminal is its screen. The agent is a
    // service: what it does is worth seeing by default.
    match command {
        // The console logs to a file; the demo picks by mode.
        Command::Tui(_) | Command::Demo(_) => {}
        Command::Agent => init_tracing("info"),
        _ => init_tracing("warn"),
    }
    let result = run(command, config.as_deref(), data_dir.as_deref());
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
        Command::Serve(args) => runtime()?.block_on(serve::run(args, &ctx()?)),
        Command::Status(args) => runtime()?.block_on(status::run(args, &ctx()?)),
        Command::Inventory(args) => inventory::run(&args, &ctx()?),
        Command::Tag(args) => tag::tag(&args, &ctx()?),
        Command::Untag(args) => tag::untag(&args, &ctx()?),
        Command::Token(cmd) => token::run(&cmd, &ctx()?),
        Command::Agents(args) => runtime()?.block_on(agents::agents(args, &ctx()?)),
        Command::Revoke(args) => runtime()?.block_on(agents::revoke(args, &ctx()?)),
        Command::Demo(args) => demo::run(&args, &ctx()?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Lifts the soft open-files limit to the hard one and returns how many
/// sockets a command may hold open, keeping some descriptors spare: scans,
/// the console's poller and the control plane each hold one per host.
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
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let colour = log_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
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

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))));
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(!log_colour(false, None));
    }
}
