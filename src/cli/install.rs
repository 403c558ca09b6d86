//! `fleetctl completions SHELL` and `fleetctl man`: what installing a CLI
//! takes besides the binary, generated from the same clap definitions the
//! binary parses with, so they cannot drift from it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};
use clap_complete::Shell;

use super::Cli;

/// `fleetctl completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell the script is for.
    #[arg(value_enum)]
    shell: Shell,
}

/// `fleetctl man [--dir DIR]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write fleetctl.1 and a page per command (fleetctl-scan.1, ...) into
    /// DIR (created if missing) instead of printing fleetctl.1.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "fleetctl", &mut out);
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the manual page, or writes every page into `args.dir`.
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let Some(dir) = &args.dir else {
        let mut out = Vec::new();
        page(command)
            .render(&mut out)
            .context("cannot render the manual page")?;
        write_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the manual pages into {}", dir.display()))?;
    eprintln!(
        "wrote fleetctl.1 and a page per command into {}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn page(command: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(command).source(format!("fleetctl {}", env!("CARGO_PKG_VERSION")))
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}
