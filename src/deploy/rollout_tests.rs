//! The rollout's rules with scripted hosts.
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
    /// (batch, its size) as the Batch events said.
    batches: Vec<(usize, usize)>,
    /// What the gate was shown.
    asked: Vec<BatchReport>,
}

async fn rollout(hosts: &[Scripted], options: RolloutOptions, cancel_after: Option<u64>) -> Run {
    gated(hosts, options, cancel_after, &[]).await
}

/// As [`rollout`], the gate answering `answers` in turn (then yes).
async fn gated(
    hosts: &[Scripted],
    options: RolloutOptions,
    cancel_after: Option<u64>,
    answers: &[bool],
) -> Run {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let gate = {
        let asked = Arc::clone(&asked);
        let answers = answers.to_vec();
        move |report: BatchReport| {
            let mut asked = asked.lock().unwrap();
            asked.push(report);
            let answer = answers.get(asked.len() - 1).copied().unwrap_or(true);
            async move { answer }
        }
    };
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
        gate,
        None,
    )
    .await;
    drop(tx);
    let mut done = 0;
    let mut batches = Vec::new();
    while let Some(e) = rx.recv().await {
        match e {
            Event::Done { .. } => done += 1,
            Event::Batch { batch, hosts, .. } => batches.push((batch, hosts)),
            _ => {}
        }
    }
    assert_eq!(done, hosts.len(), "every host gets one Done event");
    let mut log = log.lock().unwrap().clone();
    log.sort_by_key(|e| e.1);
    let max_parallel = parallel.lock().unwrap().1;
    let asked = asked.lock().unwrap().clone();
    Run {
        results,
        log,
        max_parallel,
        batches,
        asked,
    }
}

fn opts(canary: usize, concurrency: usize, max_failures: Option<usize>) -> RolloutOptions {
    RolloutOptions {
        canary,
        concurrency,
        max_failures,
        ..RolloutOptions::default()
    }
}

fn batched(sizes: &[usize], concurrency: usize) -> RolloutOptions {
    RolloutOptions {
        concurrency,
        batches: sizes.to_vec(),
        stop_on_failure: true,
        ..RolloutOptions::default()
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

#[tokio::test(start_paused = true)]
async fn batches_go_one_after_another() {
    // 1,2,50% of six: 1, 2, 3.
    let run = rollout(&[ok(100); 6], batched(&[1, 2, 3], 8), None).await;
    let starts: Vec<u64> = run.log.iter().map(|e| e.1).collect();
    assert_eq!(starts, [0, 100, 100, 200, 200, 200]);
    assert_eq!(run.batches, [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(run.max_parallel, 3);
    // Canaries are a batch of their own, one host at a time.
    let mut o = batched(&[2], 8);
    o.canary = 2;
    let run = rollout(&[ok(100); 5], o, None).await;
    let starts: Vec<u64> = run.log.iter().map(|e| e.1).collect();
    assert_eq!(starts, [0, 100, 200, 200, 300]);
    assert_eq!(run.batches, [(1, 2), (2, 2), (3, 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_stops_the_rollout_unless_told_to_go_on() {
    let hosts = [ok(10), bad(10), ok(10), ok(10), ok(10), ok(10)];
    let run = rollout(&hosts, batched(&[1, 2, 3], 8), None).await;
    assert_eq!(run.log.len(), 3, "batch 2 finished, batch 3 never started");
    for r in &run.results[3..] {
        assert_eq!(skipped(r), Some("h1 failed"));
    }
    let mut go_on = batched(&[1, 2, 3], 8);
    go_on.stop_on_failure = false;
    let run = rollout(&hosts, go_on.clone(), None).await;
    assert_eq!(run.log.len(), 6);
    // --max-failures still holds when going on.
    let hosts = [ok(10), bad(10), bad(10), ok(10), ok(10), ok(10)];
    go_on.max_failures = Some(1);
    let run = rollout(&hosts, go_on.clone(), None).await;
    assert_eq!(run.log.len(), 3);
    assert_eq!(skipped(&run.results[5]), Some("more than 1 host(s) failed"));
    // A resumed rollout counts the failures before it.
    go_on.failed_before = 1;
    let run = rollout(&[bad(10), ok(10), ok(10)], go_on, None).await;
    assert_eq!(run.log.len(), 1, "one more failure is more than 1");
}

#[tokio::test(start_paused = true)]
async fn the_gate_is_asked_between_batches_and_abort_starts_nothing_more() {
    let mut o = batched(&[1, 2, 3], 8);
    o.gate = true;
    o.stop_on_failure = false;
    let hosts = [ok(10), ok(10), bad(10), ok(10), ok(10), ok(10)];
    let run = gated(&hosts, o.clone(), None, &[true, false]).await;
    assert_eq!(
        run.asked,
        [
            BatchReport {
                batch: 1,
                batches: 3,
                ok: 1,
                failed: 0
            },
            BatchReport {
                batch: 2,
                batches: 3,
                ok: 1,
                failed: 1
            },
        ]
    );
    assert_eq!(run.log.len(), 3);
    for r in &run.results[3..] {
        assert_eq!(skipped(r), Some("aborted at the gate after batch 2/3"));
    }
    let all_yes = gated(&[ok(10); 6], o, None, &[]).await;
    assert_eq!(all_yes.log.len(), 6);
    assert_eq!(all_yes.asked.len(), 2, "asked between batches only");
}

#[tokio::test(start_paused = true)]
async fn paused_starts_no_new_host_and_resumed_goes_on() {
    let list: Vec<(String, usize)> = (0..4).map(|i| (format!("h{i}"), i)).collect();
    let (pause, paused) = watch::channel(false);
    let (tx, _rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let t0 = tokio::time::Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let rollout = {
        let starts = Arc::clone(&starts);
        let cancel = cancel.clone();
        async move {
            run(
                list,
                opts(0, 2, None),
                &cancel,
                &tx,
                move |i: usize, _p| {
                    let starts = Arc::clone(&starts);
                    async move {
                        starts
                            .lock()
                            .unwrap()
                            .push((i, t0.elapsed().as_millis() as u64));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Outcome::UpToDate { build: "b".into() }
                    }
                },
                |_| async { true },
                Some(paused),
            )
            .await
        }
    };
    let driver = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        pause.send(true).unwrap();
        // Hosts 0 and 1 finish at 100; nothing starts while paused.
        tokio::time::sleep(Duration::from_millis(450)).await;
        pause.send(false).unwrap();
    };
    let (results, ()) = tokio::join!(rollout, driver);
    assert_eq!(results.len(), 4);
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts, [(0, 0), (1, 0), (2, 500), (3, 500)]);
}
