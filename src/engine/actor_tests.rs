//! The actor's prompt handling, driven directly (no task, no handle).

use super::*;
use crate::engine::prompt::EnginePrompter;
use crate::engine::{Secret, SshSettings};
use crate::ssh::Prompter;

fn actor() -> (Actor, mpsc::Receiver<JobMsg>) {
    let (to_self, from_jobs) = mpsc::channel(JOB_QUEUE);
    let (snapshot, _) = watch::channel(Arc::new(FleetSnapshot::empty()));
    let config = EngineConfig {
        inventory: None,
        keep_fleet: false,
        scan: crate::engine::ScanConfig::default(),
        max_in_flight: 1,
        ssh: SshSettings {
            known_hosts: Some("/nonexistent".into()),
            ssh_config: Some("/nonexistent".into()),
            policy: crate::ssh::HostKeyPolicy::Strict,
            flags: crate::ssh::ConnectFlags::default(),
            concurrency: 1,
            timeout: Duration::from_secs(1),
        },
        control: None,
        poll: None,
        deploy: crate::engine::DeploySettings::default(),
        questions: crate::engine::Questions::Events,
    };
    let actor = Actor {
        config,
        hosts: BTreeMap::new(),
        jobs: BTreeMap::new(),
        prompts: HashMap::new(),
        next_job: 0,
        next_prompt: 0,
        generation: 0,
        dirty: false,
        outbox: Some(VecDeque::new()),
        snapshot,
        to_self,
        root: CancellationToken::new(),
        registry_error: None,
        focus: watch::channel(None).0,
        run_commands: HashMap::new(),
    };
    (actor, from_jobs)
}

/// The events the actor has for the front end so far.
fn emitted(actor: &mut Actor) -> Vec<Event> {
    actor
        .outbox
        .as_mut()
        .map(|o| o.drain(..).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_password_prompt_goes_out_as_an_event_and_the_answer_comes_back() {
    let (mut actor, mut from_jobs) = actor();
    let (job, _) = actor.start_job(JobKind::Fingerprint, "h".into(), 1);
    let prompter = EnginePrompter::new(Some(job.id), actor.to_self.clone());
    let asking = tokio::spawn(async move { prompter.password("root", "127.6.0.1").await });
    let msg = from_jobs.recv().await.unwrap();
    actor.job_msg(msg);
    let prompt = emitted(&mut actor)
        .into_iter()
        .find_map(|e| match e {
            Event::PromptNeeded(prompt) => Some(prompt),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        prompt.kind,
        PromptKind::Password {
            user: "root".into(),
            host: "127.6.0.1".into()
        }
    );
    assert_eq!(prompt.job, Some(job.id));
    actor.command(Command::AnswerPrompt {
        id: prompt.id,
        answer: Answer::Secret(Secret("hunter2".into())),
    });
    assert_eq!(asking.await.unwrap().as_deref(), Some("hunter2"));
}

#[tokio::test]
async fn ending_a_job_withdraws_its_prompts_and_the_asker_gets_no_answer() {
    let (mut actor, mut from_jobs) = actor();
    let (job, _) = actor.start_job(JobKind::Fingerprint, "h".into(), 1);
    let prompter = EnginePrompter::new(Some(job.id), actor.to_self.clone());
    let asking = tokio::spawn(async move {
        crate::ssh::Prompter::confirm_host_key(&prompter, "h", "ssh-ed25519", "SHA256:abc").await
    });
    let msg = from_jobs.recv().await.unwrap();
    actor.job_msg(msg);
    actor.end_job(job.id, JobOutcome::Cancelled);
    let withdrawn = emitted(&mut actor)
        .iter()
        .any(|e| matches!(e, Event::PromptWithdrawn { .. }));
    assert!(withdrawn);
    assert!(!asking.await.unwrap(), "no answer is not a yes");
}

#[tokio::test]
async fn a_front_end_that_falls_behind_holds_the_jobs_back_not_the_commands() {
    let (mut actor, _from_jobs) = actor();
    for i in 0..OUTBOX {
        actor.emit(Event::HostSilent {
            addr: IpAddr::from([127, 6, 2, (i % 250) as u8]),
        });
    }
    assert!(
        !actor.has_room(),
        "job reports wait once the outbox is full"
    );
    // Commands are still served: a key press never waits.
    actor.command(Command::Refresh);
    let (events, front) = mpsc::channel(EVENT_QUEUE_FOR_TESTS);
    actor.flush(&events);
    assert!(actor.has_room(), "room again once the front end took some");
    assert_eq!(front.len(), EVENT_QUEUE_FOR_TESTS);
    drop(front);
    actor.flush(&events);
    actor.emit(Event::HostSilent {
        addr: IpAddr::from([127, 6, 2, 1]),
    });
    assert!(
        actor.outbox.is_none(),
        "a front end gone is no longer written to"
    );
    assert!(actor.has_room());
}

/// A small event channel, so filling it is quick.
const EVENT_QUEUE_FOR_TESTS: usize = 8;

#[test]
fn secrets_do_not_show_in_debug_output() {
    let command = Command::AnswerPrompt {
        id: PromptId(1),
        answer: Answer::Secret(Secret("hunter2".into())),
    };
    assert!(!format!("{command:?}").contains("hunter2"));
}

#[test]
fn runs_show_in_each_host_s_events_past_and_present() {
    use crate::model::run::{RunFailure, RunResult};
    use crate::store::{RunHost, RunRecord};
    let (mut actor, _from_jobs) = actor();
    let addr = IpAddr::from([10, 0, 0, 7]);
    let scan = crate::model::HostScan::new(addr, crate::model::Reach::Alive);
    actor
        .hosts
        .insert(addr, Arc::new(HostView::from_scan(scan, None)));
    actor.past_runs(&[RunRecord {
        id: 4,
        started_at: 1_000,
        finished_at: Some(1_001),
        local_user: "alice".into(),
        command: "uptime\x1b]0;x\x07".into(),
        sudo: false,
        hosts: "10.0.0.[6-7]".into(),
        summary: Some("2 hosts: 1 ok, 1 timeout".into()),
        results: vec![RunHost {
            host: "10.0.0.7".into(),
            address: "10.0.0.7".into(),
            exit: None,
            error_class: Some(RunFailure::Timeout),
        }],
    }]);
    let id = JobId(9);
    actor.run_commands.insert(id, "uname -sm".into());
    actor.ran(
        id,
        &RunResult {
            host: "web7".into(),
            address: "10.0.0.7".into(),
            exit: Some(3),
            stdout: String::new(),
            stderr: String::new(),
            dropped: 0,
            duration: 0.1,
            error_class: None,
            error: None,
        },
    );
    let events: Vec<(i64, String)> = actor.hosts[&addr]
        .events
        .iter()
        .map(|e| (e.at, e.text.clone()))
        .collect();
    assert_eq!(
        events[0],
        (1_000, "alice ran `uptime\\x1b]0;x\\x07`: timeout".into())
    );
    assert_eq!(events[1].1, "ran `uname -sm`: exit 3");
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn a_rollouts_batches_show_on_its_job() {
    let (mut actor, _from_jobs) = actor();
    let (job, _) = actor.start_job(JobKind::Deploy, "h".into(), 6);
    let batch = |event| JobMsg::Output {
        id: job.id,
        output: JobOutput::Rollout { addr: None, event },
    };
    actor.job_msg(batch(DeployEvent::Batch {
        batch: 1,
        batches: 3,
        hosts: 1,
    }));
    actor.job_msg(batch(DeployEvent::BatchDone {
        batch: 1,
        batches: 3,
        ok: 1,
        failed: 0,
    }));
    actor.job_msg(batch(DeployEvent::Batch {
        batch: 2,
        batches: 3,
        hosts: 2,
    }));
    let view = &actor.jobs[&job.id].view;
    assert_eq!(view.batch, Some((2, 3)));
    assert_eq!(view.batch_results, [(1, 0)]);
}

#[tokio::test]
async fn pausing_a_rollout_holds_its_switch_and_shows_on_its_job() {
    let (mut actor, _from_jobs) = actor();
    let (report, _) = actor.start_job(JobKind::Deploy, "h".into(), 2);
    let job = actor.rollout_job(report.id);
    let paused = job.paused.unwrap();
    actor.command(Command::PauseJob {
        id: report.id,
        paused: true,
    });
    assert!(*paused.borrow());
    assert!(actor.jobs[&report.id].view.paused);
    actor.command(Command::PauseJob {
        id: report.id,
        paused: false,
    });
    assert!(!*paused.borrow());
    assert!(!actor.jobs[&report.id].view.paused);
}
