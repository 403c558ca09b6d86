//! `fleetctl run [HOST...|--all|--select EXPR] -- COMMAND`: one command on
//! many hosts, the output grouped by identical result, outliers first.
//!
//! ```text
//!  ---- web07 (1) ok
//!  Linux aarch64
//!  ---- web[08,10] (2) timeout
//!  web08: timed out after 5s while running the command
//!  ...
//!  ---- web[01-05,09] (6) ok
//!  Linux x86_64
//!  # 10 hosts: 7 ok, 1 exit 3, 2 timeout
//! ```

use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::console::{FrontEnd, engine_config};
use super::hosts::{HostsArgs, pick};
use super::job::{self, Show};
use super::ssh_opts::SshArgs;
use super::{Context, EXIT_INTERRUPTED};
use crate::config::parse_duration;
use crate::engine::{Command, JobOutput, RunRequest};
use crate::model::run::{Group, GroupKey, RunResult, group, summary};
use crate::model::text;

/// `-o`: how results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RunFormat {
    /// Grouped by identical output, outliers first, then a summary line.
    #[default]
    Text,
    /// One JSON array of every host's result, at the end.
    Json,
    /// One JSON object per host, as each finishes.
    Jsonl,
}

#[derive(Debug, Args)]
#[command(mut_arg("concurrency", |a| a.help(
    "Hosts running the command at once, each over its own SSH connection [default: the config's ssh.concurrency, 32]"
)))]
pub struct RunArgs {
    #[command(flatten)]
    hosts: HostsArgs,
    /// The command, after `--`; the remote user's shell runs it, as `ssh HOST COMMAND` does.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
    #[command(flatten)]
    ssh: SshArgs,
    /// SSH port [default: ~/.ssh/config, else 22].
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Time allowed per host, connecting included [default: the config's ssh.timeout, 30s].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Run the command as root under `sudo -n`; a host where sudo wants a
    /// password fails (sudo-password) rather than waiting.
    #[arg(long)]
    sudo: bool,
    /// Output kept per host, stdout and stderr together (e.g. 64KiB, 10MiB);
    /// the rest is counted and dropped [default: 1MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_output: Option<usize>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = RunFormat::Text)]
    output: RunFormat,
}

pub async fn run(args: RunArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let hosts = pick(&args.hosts, ctx).await?;
    let mut ssh = args.ssh.request(args.port);
    ssh.timeout = args.timeout;
    let request = RunRequest {
        hosts,
        command: args.command.join(" "),
        sudo: args.sudo,
        max_output: args.max_output,
        ssh,
    };
    let config = engine_config(ctx, FrontEnd::Headless, None, 64)?;
    let mut view = RunView {
        format: args.output,
        out: std::io::stdout().lock(),
        results: Vec::new(),
        not_started: 0,
        total: request.hosts.len(),
        progress: args.output == RunFormat::Text && std::io::stderr().is_terminal(),
    };
    let ended = job::run(config, Command::Run(request), &mut view).await?;
    view.clear_progress();
    ended.check()?;
    let RunView {
        format,
        mut out,
        results,
        not_started,
        ..
    } = view;
    let line = summary(&results, not_started);
    match format {
        RunFormat::Text => {
            write_groups(&mut out, &results)?;
            writeln!(out, "# {line}")?;
        }
        RunFormat::Json => {
            super::output::write_json(&mut out, &results, true)?;
            eprintln!("# {line}");
        }
        RunFormat::Jsonl => eprintln!("# {line}"),
    }
    out.flush()?;
    Ok(if ended.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if results.iter().any(|r| !r.ok()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Collects each host's result; JSON lines go out as they come.
struct RunView {
    format: RunFormat,
    out: std::io::StdoutLock<'static>,
    results: Vec<RunResult>,
    not_started: usize,
    total: usize,
    /// A `[done/total]` line on stderr while it runs.
    progress: bool,
}

impl RunView {
    fn clear_progress(&self) {
        if self.progress {
            eprint!("\r\x1b[K");
        }
    }
}

impl Show for RunView {
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()> {
        match output {
            JobOutput::Note(note) => eprintln!("note: {}", text::escape_lines(&note)),
            JobOutput::Ran(result) => {
                if self.format == RunFormat::Jsonl {
                    super::output::write_json(&mut self.out, &result, false)?;
                }
                self.results.push(*result);
            }
            JobOutput::RunDone { not_started } => self.not_started = not_started,
            _ => {}
        }
        Ok(())
    }

    fn progress(&mut self, done: u64, _total: u64) {
        if self.progress {
            eprint!("\r\x1b[K[{done}/{}] running", self.total);
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(self.out.flush()?)
    }

    fn interrupted(&mut self) {
        self.clear_progress();
        eprintln!("interrupted: no new host starts; those under way finish");
    }
}

/// Every group, outliers first: a header line with the folded hosts, their
/// count and status, then the output they share (escaped).
pub fn write_groups(out: &mut impl Write, results: &[RunResult]) -> std::io::Result<()> {
    for g in group(results) {
        write_group(out, &g, results)?;
    }
    Ok(())
}

fn write_group(out: &mut impl Write, g: &Group, results: &[RunResult]) -> std::io::Result<()> {
    writeln!(
        out,
        "---- {} ({}) {}",
        text::escape(&g.hosts),
        g.members.len(),
        g.status()
    )?;
    let first = &results[g.members[0]];
    match &g.key {
        GroupKey::Ran { stdout, stderr, .. } => {
            write_block(out, stdout)?;
            if !stderr.is_empty() {
                writeln!(out, "-- stderr")?;
                write_block(out, stderr)?;
            }
            if let Some(error) = &first.error {
                writeln!(out, "{}", text::escape(error))?;
            }
        }
        GroupKey::Failed(_) => {
            for &i in &g.members {
                if let Some(error) = &results[i].error {
                    writeln!(out, "{}", text::escape(error))?;
                }
            }
        }
    }
    let dropped: u64 = g
        .members
        .iter()
        .map(|&i| results[i].dropped)
        .max()
        .unwrap_or(0);
    if dropped > 0 {
        writeln!(
            out,
            "[{dropped} more bytes dropped per host at most (--max-output)]"
        )?;
    }
    Ok(())
}

/// Output as lines, each escaped; a last line without a break gets one.
fn write_block(out: &mut impl Write, block: &str) -> std::io::Result<()> {
    for line in block.lines() {
        writeln!(out, "{}", text::escape(line))?;
    }
    Ok(())
}

/// `1048576`, `64KiB`, `64K`, `10MiB`, `1G`: bytes (K, M, G are binary).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?}: a size is a number of bytes, or with K, M or G (binary)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("{s:?}: unknown unit {other:?} (K, M or G)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::run::RunFailure;

    fn result(host: &str, exit: Option<u32>, stdout: &str) -> RunResult {
        RunResult {
            host: host.into(),
            address: host.into(),
            exit,
            stdout: stdout.into(),
            stderr: String::new(),
            dropped: 0,
            duration: 0.2,
            error_class: None,
            error: None,
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn groups_print_outliers_first_and_host_text_escaped() {
        let mut results = vec![
            result("web01", Some(0), "same\n"),
            result("web02", Some(0), "same\n"),
            result("web03", Some(3), "\x1b]0;PWNED\x07odd"),
        ];
        let mut late = result("web04", None, "");
        late.error_class = Some(RunFailure::Timeout);
        late.error = Some("web04: timed out after 1s while running the command".into());
        results.push(late);
        let mut out = Vec::new();
        write_groups(&mut out, &results).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "---- web03 (1) exit 3\n\\x1b]0;PWNED\\x07odd\n\
             ---- web04 (1) timeout\nweb04: timed out after 1s while running the command\n\
             ---- web[01-02] (2) ok\nsame\n"
        );
    }
}
