//! The rollout: which hosts start when. Canaries first, one at a time (any
//! failure stops everything); then the rest, `concurrency` at once, until
//! more than `max_failures` have failed. Cancelling starts no new host; the
//! hosts under way finish (or roll back) on their own.
//!
//! It knows nothing of SSH: the per-host work is a function, so the rules
//! are tested here with scripted hosts.

use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Event, Outcome, Step};

/// How a rollout proceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutOptions {
    /// Hosts done first, one at a time; a failure among them stops the rollout.
    pub canary: usize,
    /// Hosts at once after the canaries.
    pub concurrency: usize,
    /// Start no new host once more than this many have failed.
    pub max_failures: Option<usize>,
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

/// Runs `work` over `hosts` by the rules of `options`. Every host gets
/// exactly one [`Event::Done`]; the results come back in the hosts' order.
pub async fn run<T, F, Fut>(
    hosts: Vec<(String, T)>,
    options: RolloutOptions,
    cancel: &CancellationToken,
    events: &mpsc::UnboundedSender<Event>,
    work: F,
) -> Vec<HostResult>
where
    F: Fn(T, Progress) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let total = hosts.len();
    let canaries = options.canary.min(total);
    let mut results: Vec<Option<HostResult>> = vec![None; total];
    let mut pending = hosts.into_iter().enumerate();
    let mut failures = 0usize;
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
                      stop: &mut Option<String>| {
        if let Outcome::Failed { .. } = outcome {
            failures += 1;
            if index < canaries {
                stop.get_or_insert_with(|| format!("canary {host} failed"));
            } else if let Some(max) = options.max_failures.filter(|max| failures > *max) {
                stop.get_or_insert_with(|| format!("more than {max} host(s) failed"));
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
    };
    let interrupted = || Some("interrupted before it started".to_string());

    // Canaries: one at a time, each awaited before the next.
    for _ in 0..canaries {
        if cancel.is_cancelled() {
            stop = interrupted();
        }
        if stop.is_some() {
            break;
        }
        let Some((index, (host, item))) = pending.next() else {
            break;
        };
        let done = launch(index, host, item).await;
        finish(done, &mut stop);
    }

    // The rest: up to `concurrency` at once.
    let mut running = FuturesUnordered::new();
    loop {
        while stop.is_none() && running.len() < options.concurrency.max(1) {
            if cancel.is_cancelled() {
                stop = interrupted();
                break;
            }
            let Some((index, (host, item))) = pending.next() else {
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
        };
        let Some(done) = next else {
            break;
        };
        finish(done, &mut stop);
    }
    drop(running);

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
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A scripted host: how long it takes and whether it fails.
    #[derive(Clone, Copy)]
    struct Scripted {
        ms: u64,
        fails: bool,
    }

    fn ok(ms: u64) -> Scripted {
        Scripted { ms, fails: false }
    }

    fn bad(ms: u64) -> Scripted {
        Scripted { ms, fails: true }
    }

    struct Run {
        results: Vec<HostResult>,
        /// (host, started at ms, ended at ms) in start order.
        log: Vec<(String, u64, u64)>,
        max_parallel: usize,
    }

    async fn rollout(
        hosts: &[Scripted],
        options: RolloutOptions,
        cancel_after: Option<u64>,
    ) -> Run {
        let list = hosts
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("h{i}"), (format!("h{i}"), *s)))
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let parallel = Arc::new(Mutex::new((0usize, 0usize)));
        let cancel = CancellationToken::new();
        if let Some(ms) = cancel_after {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                c.cancel();
            });
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let t0 = tokio::time::Instant::now();
        let results = run(
            list,
            options,
            &cancel,
            &tx,
            |(name, s): (String, Scripted), p| {
                let log = Arc::clone(&log);
                let parallel = Arc::clone(&parallel);
                async move {
                    {
                        let mut g = parallel.lock().unwrap();
                        g.0 += 1;
                        g.1 = g.1.max(g.0);
                    }
                    let start = t0.elapsed().as_millis() as u64;
                    p.step(Step::Upload);
                    tokio::time::sleep(Duration::from_millis(s.ms)).await;
                    parallel.lock().unwrap().0 -= 1;
                    log.lock()
                        .unwrap()
                        .push((name, start, t0.elapsed().as_millis() as u64));
                    if s.fails {
                        Outcome::Failed {
                            step: Step::Upload,
                            reason: "scripted".into(),
                            rolled_back: true,
                        }
                    } else {
                        Outcome::UpToDate { build: "b".into() }
                    }
                }
            },
        )
        .await;
        drop(tx);
        let mut done = 0;
        while let Some(e) = rx.recv().await {
            if matches!(e, Event::Done { .. }) {
                done += 1;
            }
        }
        assert_eq!(done, hosts.len(), "every host gets one Done event");
        let mut log = log.lock().unwrap().clone();
        log.sort_by_key(|e| e.1);
        let max_parallel = parallel.lock().unwrap().1;
        Run {
            results,
            log,
            max_parallel,
        }
    }

    fn opts(canary: usize, concurrency: usize, max_failures: Option<usize>) -> RolloutOptions {
        RolloutOptions {
            canary,
            concurrency,
            max_failures,
        }
    }

    fn skipped(r: &HostResult) -> Option<&str> {
        match &r.outcome {
            Outcome::Skipped { reason } => Some(reason),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn canaries_go_one_at_a_time_then_the_rest_in_parallel() {
        let run = rollout(&[ok(100); 6], opts(2, 4, None), None).await;
        let starts: Vec<u64> = run.log.iter().map(|e| e.1).collect();
        assert_eq!(starts, [0, 100, 200, 200, 200, 200]);
        assert_eq!(run.max_parallel, 4);
        assert!(run.results.iter().all(|r| skipped(r).is_none()));
        assert_eq!(run.results[5].host, "h5");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_canary_stops_everything() {
        let run = rollout(&[ok(10), bad(10), ok(10), ok(10)], opts(2, 4, None), None).await;
        assert_eq!(run.log.len(), 2, "only the canaries ran");
        assert_eq!(skipped(&run.results[2]), Some("canary h1 failed"));
        assert_eq!(skipped(&run.results[3]), Some("canary h1 failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_starting_once_max_failures_is_exceeded() {
        let hosts = [bad(10), bad(10), bad(10), ok(10), ok(10)];
        let run = rollout(&hosts, opts(0, 1, Some(1)), None).await;
        assert_eq!(run.log.len(), 2, "the second failure exceeds 1");
        for r in &run.results[2..] {
            assert_eq!(skipped(r), Some("more than 1 host(s) failed"));
        }
        // Without a limit every host runs.
        let run = rollout(&hosts, opts(0, 1, None), None).await;
        assert_eq!(run.log.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn hosts_under_way_finish_when_failures_pile_up() {
        // Four at once: all four start before any fails, and all finish.
        let hosts = [bad(10), bad(20), ok(30), ok(40), ok(10)];
        let run = rollout(&hosts, opts(0, 4, Some(0)), None).await;
        assert_eq!(run.log.len(), 4);
        assert!(matches!(run.results[3].outcome, Outcome::UpToDate { .. }));
        assert_eq!(skipped(&run.results[4]), Some("more than 0 host(s) failed"));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_starts_no_new_host_and_lets_running_ones_finish() {
        let run = rollout(&[ok(100); 5], opts(0, 2, None), Some(150)).await;
        assert_eq!(
            run.log.len(),
            4,
            "two waves of two started before the cancel"
        );
        assert!(matches!(run.results[3].outcome, Outcome::UpToDate { .. }));
        assert_eq!(
            skipped(&run.results[4]),
            Some("interrupted before it started")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn more_canaries_than_hosts_is_fine() {
        let run = rollout(&[ok(10); 2], opts(5, 3, None), None).await;
        assert_eq!(run.log.iter().map(|e| e.1).collect::<Vec<_>>(), [0, 10]);
    }
}
