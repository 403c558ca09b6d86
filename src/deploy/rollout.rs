//! The rollout: which hosts start when. Canaries first, one at a time (any
//! failure stops everything); then the rest in batches (`--batch`, as
//! Ansible's serial), `concurrency` at once within a batch, a batch
//! starting when the one before has ended. A failure stops the rollout
//! when `stop_on_failure` says so, and more than `max_failures` always
//! does; with `gate`, the operator says whether the next batch goes.
//! Stopping (or cancelling) starts no new host; the hosts under way
//! finish (or roll back) on their own.
//!
//! It knows nothing of SSH: the per-host work is a function, so the rules
//! are tested here with scripted hosts.

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Event, Outcome, Step};

/// How a rollout proceeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutOptions {
    /// Hosts done first, one at a time; a failure among them stops the rollout.
    pub canary: usize,
    /// Hosts at once within a batch after the canaries.
    pub concurrency: usize,
    /// Start no new host once more than this many have failed.
    pub max_failures: Option<usize>,
    /// The sizes of the batches after the canaries; empty: one batch.
    pub batches: Vec<usize>,
    /// Start no new host once one has failed (without it, only
    /// `max_failures` and canaries stop a rollout).
    pub stop_on_failure: bool,
    /// Ask before each batch after the first.
    pub gate: bool,
    /// Hosts that failed in an earlier run of this rollout (resumed).
    pub failed_before: usize,
}

impl RolloutOptions {
    /// The batches `total` hosts go in: host ranges, and whether a batch
    /// goes one host at a time (the canaries).
    #[must_use]
    pub fn plan(&self, total: usize) -> Vec<(Range<usize>, bool)> {
        let canaries = self.canary.min(total);
        let mut plan = Vec::new();
        if canaries > 0 {
            plan.push((0..canaries, true));
        }
        let mut at = canaries;
        for size in &self.batches {
            let end = (at + size).min(total);
            if end > at {
                plan.push((at..end, false));
            }
            at = end;
        }
        if at < total {
            plan.push((at..total, false));
        }
        plan
    }
}

/// A batch that ended, for the gate before the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchReport {
    /// 1-based.
    pub batch: usize,
    pub batches: usize,
    pub ok: usize,
    pub failed: usize,
}

/// One host's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostResult {
    pub host: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// Handed to each host's work: reports the step it is in.
#[derive(Debug, Clone)]
pub struct Progress {
    index: usize,
    host: String,
    started: Instant,
    events: mpsc::UnboundedSender<Event>,
}

impl Progress {
    /// Says the host entered `step`.
    pub fn step(&self, step: Step) {
        let _ = self.events.send(Event::Step {
            index: self.index,
            host: self.host.clone(),
            step,
            elapsed_ms: millis::of(self.started.elapsed()),
        });
    }

    /// A note worth showing (e.g. "resuming at verify").
    pub fn note(&self, message: String) {
        let _ = self.events.send(Event::Note {
            index: self.index,
            host: self.host.clone(),
            message,
        });
    }
}

fn is_paused(paused: Option<&watch::Receiver<bool>>) -> bool {
    paused.is_some_and(|p| *p.borrow())
}

/// Returns when the pause switch moves (or its holder is gone).
async fn changed(paused: &mut Option<watch::Receiver<bool>>) {
    match paused {
        Some(p) => {
            if p.changed().await.is_err() {
                // Nobody can resume any more: run on.
                *paused = None;
            }
        }
        None => std::future::pending().await,
    }
}

/// Waits until resumed; false when cancelled meanwhile.
async fn unpaused(paused: &mut Option<watch::Receiver<bool>>, cancel: &CancellationToken) -> bool {
    while is_paused(paused.as_ref()) {
        tokio::select! {
            () = changed(paused) => {}
            () = cancel.cancelled() => return false,
        }
    }
    true
}

/// Runs `work` over `hosts` by the rules of `options`, asking `gate`
/// between batches when `options.gate` is set, starting no new host while
/// `paused` holds true (hosts under way finish). Every host gets exactly
/// one [`Event::Done`]; the results come back in the hosts' order.
#[allow(clippy::too_many_lines)] // one loop over batches, its rules side by side
pub async fn run<T, F, Fut, G, GFut>(
    hosts: Vec<(String, T)>,
    options: RolloutOptions,
    cancel: &CancellationToken,
    events: &mpsc::UnboundedSender<Event>,
    work: F,
    gate: G,
    mut paused: Option<watch::Receiver<bool>>,
) -> Vec<HostResult>
where
    F: Fn(T, Progress) -> Fut,
    Fut: Future<Output = Outcome>,
    G: Fn(BatchReport) -> GFut,
    GFut: Future<Output = bool>,
{
    let total = hosts.len();
    let canaries = options.canary.min(total);
    let plan = options.plan(total);
    let batches = plan.len();
    let mut results: Vec<Option<HostResult>> = vec![None; total];
    let mut pending = hosts.into_iter().enumerate().peekable();
    let mut failures = options.failed_before;
    let mut stop: Option<String> = None;
    let launch = |index: usize, host: String, item: T| {
        let progress = Progress {
            index,
            host: host.clone(),
            started: Instant::now(),
            events: events.clone(),
        };
        let _ = events.send(Event::Start {
            index,
            host: host.clone(),
            canary: index < canaries,
        });
        let fut = work(item, progress.clone());
        async move {
            let outcome = fut.await;
            (index, host, outcome, progress.started.elapsed())
        }
    };
    let mut finish = |(index, host, outcome, elapsed): (usize, String, Outcome, Duration),
                      stop: &mut Option<String>|
     -> bool {
        let failed = matches!(outcome, Outcome::Failed { .. });
        if failed {
            failures += 1;
            if index < canaries {
                stop.get_or_insert_with(|| format!("canary {host} failed"));
            } else if let Some(max) = options.max_failures.filter(|max| failures > *max) {
                stop.get_or_insert_with(|| format!("more than {max} host(s) failed"));
            } else if options.stop_on_failure {
                stop.get_or_insert_with(|| format!("{host} failed"));
            }
        }
        let _ = events.send(Event::Done {
            index,
            host: host.clone(),
            outcome: outcome.clone(),
            elapsed_ms: millis::of(elapsed),
        });
        results[index] = Some(HostResult {
            host,
            outcome,
            elapsed,
        });
        failed
    };
    let interrupted = || Some("interrupted before it started".to_string());

    let mut last: Option<BatchReport> = None;
    for (k, (range, one_at_a_time)) in plan.into_iter().enumerate() {
        if cancel.is_cancelled() {
            stop = stop.or_else(interrupted);
        }
        if stop.is_some() {
            break;
        }
        if let Some(done) = last.filter(|_| options.gate) {
            let go = tokio::select! {
                go = gate(done) => Some(go),
                () = cancel.cancelled() => None,
            };
            match go {
                None => {
                    stop = interrupted();
                    break;
                }
                Some(false) => {
                    stop = Some(format!(
                        "aborted at the gate after batch {}/{batches}",
                        done.batch
                    ));
                    break;
                }
                Some(true) => {}
            }
        }
        let _ = events.send(Event::Batch {
            batch: k + 1,
            batches,
            hosts: range.len(),
        });
        let at_once = if one_at_a_time {
            1
        } else {
            options.concurrency.max(1)
        };
        let mut report = BatchReport {
            batch: k + 1,
            batches,
            ok: 0,
            failed: 0,
        };
        let mut running = FuturesUnordered::new();
        loop {
            let hold = is_paused(paused.as_ref());
            let more = pending.peek().is_some_and(|(i, _)| range.contains(i));
            if hold && more && running.is_empty() && stop.is_none() {
                // Paused with nothing under way: wait to be resumed.
                if !unpaused(&mut paused, cancel).await {
                    stop = interrupted();
                }
                continue;
            }
            while !hold && stop.is_none() && running.len() < at_once {
                if cancel.is_cancelled() {
                    stop = interrupted();
                    break;
                }
                let Some((index, (host, item))) = pending.next_if(|(i, _)| range.contains(i))
                else {
                    break;
                };
                running.push(launch(index, host, item));
            }
            let next = tokio::select! {
                done = running.next() => done,
                () = cancel.cancelled(), if stop.is_none() && !running.is_empty() => {
                    stop = interrupted();
                    continue;
                }
                // Resumed while hosts are under way: start more at once.
                () = changed(&mut paused), if hold && !running.is_empty() => continue,
            };
            let Some(done) = next else {
                break;
            };
            if finish(done, &mut stop) {
                report.failed += 1;
            } else {
                report.ok += 1;
            }
        }
        let _ = events.send(Event::BatchDone {
            batch: report.batch,
            batches,
            ok: report.ok,
            failed: report.failed,
        });
        last = Some(report);
    }

    let reason = stop.unwrap_or_else(|| "not started".into());
    skip_rest(pending, &reason, events, &mut results);
    results.into_iter().flatten().collect()
}

/// Hosts never started get a Skipped result (and event) saying why.
fn skip_rest<T>(
    pending: impl Iterator<Item = (usize, (String, T))>,
    reason: &str,
    events: &mpsc::UnboundedSender<Event>,
    results: &mut [Option<HostResult>],
) {
    for (index, (host, _)) in pending {
        let outcome = Outcome::Skipped {
            reason: reason.to_string(),
        };
        let _ = events.send(Event::Done {
            index,
            host: host.clone(),
            outcome: outcome.clone(),
            elapsed_ms: 0,
        });
        results[index] = Some(HostResult {
            host,
            outcome,
            elapsed: Duration::ZERO,
        });
    }
}

mod millis {
    use std::time::Duration;

    pub fn of(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(of(*d))
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
