//! `fleetctl logs HOST [-f] [-n N]`: the agent's log over SSH (the journal
//! for an agent run by a systemd unit, else its log file), escaped.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

use super::console::{FrontEnd, engine_config};
use super::job::{self, Show};
use super::ssh_opts::SshArgs;
use super::{Context, EXIT_INTERRUPTED};
use crate::engine::{Command, JobOutput, LogsRequest};
use crate::model::text;

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.hide(true)))]
pub struct LogsArgs {
    /// The host: a name, address or ~/.ssh/config alias, optionally user@host.
    host: String,
    /// Keep showing what the agent writes, until Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// How many of the last lines to show first.
    #[arg(short = 'n', long, default_value_t = 50)]
    lines: u32,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
}

pub async fn run(args: LogsArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let request = LogsRequest {
        host: args.host,
        lines: args.lines,
        follow: args.follow,
        ssh: args.ssh.request(args.port),
    };
    let config = engine_config(ctx, FrontEnd::Headless, None, 16)?;
    let mut view = LogView {
        out: std::io::stdout().lock(),
    };
    let ended = job::run(config, Command::Logs(request), &mut view).await?;
    ended.check()?;
    Ok(if ended.interrupted && !args.follow {
        ExitCode::from(EXIT_INTERRUPTED)
    } else {
        // Ctrl-C is how following ends.
        ExitCode::SUCCESS
    })
}

struct LogView {
    out: std::io::StdoutLock<'static>,
}

impl Show for LogView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        match output {
            JobOutput::Note(note) => eprintln!("note: {}", text::escape_lines(&note)),
            JobOutput::LogLines { lines, .. } => {
                for line in lines {
                    writeln!(self.out, "{}", text::escape(&line))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }
}
