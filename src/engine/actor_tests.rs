//! The actor's prompt handling, driven directly (no task, no handle).

use super::*;
use crate::engine::prompt::EnginePrompter;
use crate::engine::{Secret, SshSettings};
use crate::ssh::Prompter;

fn actor() -> (
    Actor,
    mpsc::UnboundedReceiver<Event>,
    mpsc::UnboundedReceiver<JobMsg>,
) {
    let (events, event_rx) = mpsc::unbounded_channel();
    let (to_self, from_jobs) = mpsc::unbounded_channel();
    let (snapshot, _) = watch::channel(Arc::new(FleetSnapshot::empty()));
    let config = EngineConfig {
        inventory: None,
        scan: crate::config::ScanConfig::default(),
        max_in_flight: 1,
        ssh: SshSettings {
            known_hosts: "/nonexistent".into(),
            ssh_config: "/nonexistent".into(),
            policy: crate::ssh::HostKeyPolicy::Strict,
            flags: crate::ssh::ConnectFlags::default(),
        },
        fingerprint_concurrency: 1,
        fingerprint_timeout: Duration::from_secs(1),
        control: None,
        poll: crate::engine::PollSettings::default(),
        deploy: crate::engine::DeploySettings::default(),
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
        events,
        snapshot,
        to_self,
        root: CancellationToken::new(),
        registry_error: None,
        focus: watch::channel(None).0,
    };
    (actor, event_rx, from_jobs)
}

#[tokio::test]
async fn a_password_prompt_goes_out_as_an_event_and_the_answer_comes_back() {
    let (mut actor, mut events, mut from_jobs) = actor();
    let (job, _) = actor.start_job(JobKind::Fingerprint, "h".into(), 1);
    let prompter = EnginePrompter::new(Some(job), actor.to_self.clone());
    let asking = tokio::spawn(async move { prompter.password("root", "127.6.0.1").await });
    let msg = from_jobs.recv().await.unwrap();
    actor.job_msg(msg);
    let prompt = loop {
        if let Event::PromptNeeded(prompt) = events.recv().await.unwrap() {
            break prompt;
        }
    };
    assert_eq!(
        prompt.kind,
        PromptKind::Password {
            user: "root".into(),
            host: "127.6.0.1".into()
        }
    );
    assert_eq!(prompt.job, Some(job));
    actor.command(Command::AnswerPrompt {
        id: prompt.id,
        answer: Answer::Secret(Secret("hunter2".into())),
    });
    assert_eq!(asking.await.unwrap().as_deref(), Some("hunter2"));
}

#[tokio::test]
async fn ending_a_job_withdraws_its_prompts_and_the_asker_gets_no_answer() {
    let (mut actor, mut events, mut from_jobs) = actor();
    let (job, _) = actor.start_job(JobKind::Fingerprint, "h".into(), 1);
    let prompter = EnginePrompter::new(Some(job), actor.to_self.clone());
    let asking = tokio::spawn(async move {
        crate::ssh::Prompter::confirm_host_key(&prompter, "h", "ssh-ed25519", "SHA256:abc").await
    });
    let msg = from_jobs.recv().await.unwrap();
    actor.job_msg(msg);
    actor.end_job(job, JobOutcome::Cancelled);
    let mut withdrawn = false;
    while let Ok(event) = events.try_recv() {
        withdrawn |= matches!(event, Event::PromptWithdrawn { .. });
    }
    assert!(withdrawn);
    assert!(!asking.await.unwrap(), "no answer is not a yes");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let command = Command::AnswerPrompt {
        id: PromptId(1),
        answer: Answer::Secret(Secret("hunter2".into())),
    };
    assert!(!format!("{command:?}").contains("hunter2"));
}
