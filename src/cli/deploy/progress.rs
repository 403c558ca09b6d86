//! How a rollout looks: a live line per host on a terminal (step and
//! elapsed time), JSON lines otherwise; then the summary. Host names,
//! notes and failure reasons (which carry hosts' stderr and agents' log
//! lines) are escaped on the terminal; JSON lines escape them as JSON does.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::deploy::{Event, HostResult, Outcome};
use crate::model::text;

pub struct View {
    live: Option<Live>,
}

struct Live {
    multi: MultiProgress,
    bars: HashMap<usize, ProgressBar>,
    style: ProgressStyle,
}

impl View {
    pub fn new(live: bool, total: usize) -> Self {
        let live = live.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let _ = multi.println(format!("deploying to {total} host(s)"));
            Live {
                multi,
                bars: HashMap::new(),
                style: ProgressStyle::with_template(
                    "{spinner} {prefix:<28} {msg:<12} {elapsed:>4}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            }
        });
        Self { live }
    }

    pub fn show(&mut self, event: &Event) -> std::io::Result<()> {
        let Some(live) = &mut self.live else {
            return crate::cli::output::write_json(&mut std::io::stdout().lock(), event, false);
        };
        match event {
            Event::Start {
                index,
                host,
                canary,
            } => {
                let bar = live.multi.add(ProgressBar::new_spinner());
                bar.set_style(live.style.clone());
                let host = text::escape(host);
                bar.set_prefix(if *canary {
                    format!("{host} (canary)")
                } else {
                    host.into_owned()
                });
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(200));
                live.bars.insert(*index, bar);
            }
            Event::Step { index, step, .. } => {
                if let Some(bar) = live.bars.get(index) {
                    bar.set_message(step.as_str());
                }
            }
            Event::Note { host, message, .. } => {
                let _ = live.multi.println(note_line(host, message));
            }
            Event::Done { index, outcome, .. } => {
                if let Some(bar) = live.bars.remove(index) {
                    bar.finish_with_message(short(outcome));
                }
            }
            Event::Batch {
                batch,
                batches,
                hosts,
            } => {
                let _ = live
                    .multi
                    .println(format!("batch {batch}/{batches}: {hosts} host(s)"));
            }
            Event::BatchDone {
                batch,
                batches,
                ok,
                failed,
            } => {
                let _ = live.multi.println(format!(
                    "batch {batch}/{batches} done: {ok} ok, {failed} failed"
                ));
            }
        }
        Ok(())
    }

    /// Runs `f` with the live lines put aside (a prompt on the terminal).
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.live {
            Some(live) => live.multi.suspend(f),
            None => f(),
        }
    }

    pub fn note(&self, message: &str) {
        let message = text::escape_lines(message);
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(message);
            }
            None => eprintln!("{message}"),
        }
    }

    /// Counts per result, then one line per host that did not succeed.
    pub fn summary(&self, results: &[HostResult]) -> std::io::Result<()> {
        write_summary(&mut std::io::stdout().lock(), self.live.is_some(), results)
    }
}

/// A note about one host, as the live view prints it.
fn note_line(host: &str, message: &str) -> String {
    format!("  {}: {}", text::escape(host), text::escape_lines(message))
}

/// The summary: JSON when not `live`, else counts and a line per host
/// that did not succeed (its reason may run over several lines).
fn write_summary(
    out: &mut impl std::io::Write,
    live: bool,
    results: &[HostResult],
) -> std::io::Result<()> {
    let count = |f: fn(&Outcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
    let deployed = count(|o| matches!(o, Outcome::Deployed { .. }));
    let up_to_date = count(|o| matches!(o, Outcome::UpToDate { .. }));
    let removed = count(|o| matches!(o, Outcome::Removed | Outcome::NotInstalled));
    let failed = count(|o| matches!(o, Outcome::Failed { .. }));
    let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
    if !live {
        let summary = serde_json::json!({
            "event": "summary",
            "hosts": results.len(),
            "deployed": deployed,
            "up_to_date": up_to_date,
            "removed": removed,
            "failed": failed,
            "skipped": skipped,
        });
        return crate::cli::output::write_json(out, &summary, false);
    }
    let mut elapsed: Vec<Duration> = results
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Skipped { .. }))
        .map(|r| r.elapsed)
        .collect();
    elapsed.sort();
    let median = elapsed.get(elapsed.len() / 2).copied().unwrap_or_default();
    writeln!(
        out,
        "\n{} host(s): {deployed} deployed, {up_to_date} up to date, {removed} removed, \
         {failed} failed, {skipped} skipped (median {:.1}s per host)",
        results.len(),
        median.as_secs_f64()
    )?;
    for r in results {
        match &r.outcome {
            Outcome::Failed {
                step,
                reason,
                rolled_back,
            } => writeln!(
                out,
                "FAILED  {} in {step}{}: {}",
                text::escape(&r.host),
                if *rolled_back {
                    " (rolled back)"
                } else {
                    " (rollback incomplete)"
                },
                text::escape_lines(reason)
            )?,
            Outcome::Skipped { reason } => writeln!(
                out,
                "skipped {}: {}",
                text::escape(&r.host),
                text::escape_lines(reason)
            )?,
            _ => {}
        }
    }
    Ok(())
}

fn short(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Deployed { replaced: None, .. } => "deployed".into(),
        Outcome::Deployed {
            replaced: Some(_), ..
        } => "replaced".into(),
        Outcome::UpToDate { .. } => "up to date".into(),
        Outcome::Removed => "removed".into(),
        Outcome::NotInstalled => "not installed".into(),
        Outcome::Failed { step, .. } => format!("FAILED in {step}"),
        Outcome::Skipped { .. } => "skipped".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::Step;

    const HOSTILE: &str = "db1\x1b]0;PWNED\x07";

    fn failed() -> HostResult {
        HostResult {
            host: HOSTILE.into(),
            outcome: Outcome::Failed {
                step: Step::Healthy,
                reason: "the agent did not answer; the agent's last log lines:\n\
                         \x1b[2m2026\x1b[0m ERROR\x1b[2J gone"
                    .into(),
                rolled_back: true,
            },
            elapsed: Duration::from_secs(3),
        }
    }

    #[test]
    fn hosts_words_reach_the_terminal_escaped_and_json_stays_json() {
        let mut out = Vec::new();
        write_summary(&mut out, true, &[failed()]).unwrap();
        let shown = String::from_utf8(out).unwrap();
        assert!(!shown.contains(['\x1b', '\x07']), "{shown:?}");
        assert!(
            shown.contains("FAILED  db1\\x1b]0;PWNED\\x07 in healthy (rolled back)"),
            "{shown}"
        );
        assert!(
            shown.contains("log lines:\n\\x1b[2m2026"),
            "lines stay lines: {shown}"
        );
        let note = note_line(HOSTILE, "resuming\x1b[2J at configure");
        assert!(!note.contains('\x1b'), "{note:?}");

        let mut out = Vec::new();
        write_summary(&mut out, false, &[failed()]).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["failed"], 1);
        let event = serde_json::to_string(&Event::Note {
            index: 0,
            host: HOSTILE.into(),
            message: "x\x1b[2J".into(),
        })
        .unwrap();
        assert!(!event.contains(['\x1b', '\x07']), "{event:?}");
    }
}
