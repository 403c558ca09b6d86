//! Questions jobs ask a person: the engine's side of [`Prompter`].
//!
//! A job's SSH connector calls the prompter; it hands the question to the
//! actor, which gives it an id and sends [`Event::PromptNeeded`](super::Event)
//! to the front end, then waits for the answer that comes back as
//! [`Command::AnswerPrompt`](super::Command). A job cancelled meanwhile
//! drops the wait, and the actor withdraws the prompt.

use std::path::Path;

use tokio::sync::{mpsc, oneshot};

use super::jobs::JobMsg;
use super::{Answer, JobId, PromptKind};
use crate::ssh::Prompter;

/// Asks through the front end, on behalf of one job.
#[derive(Debug, Clone)]
pub struct EnginePrompter {
    job: Option<JobId>,
    to_actor: mpsc::Sender<JobMsg>,
}

impl EnginePrompter {
    pub(super) fn new(job: Option<JobId>, to_actor: mpsc::Sender<JobMsg>) -> Self {
        Self { job, to_actor }
    }

    /// Asks and waits; [`Answer::Dismissed`] when the engine has stopped.
    pub async fn ask(&self, kind: PromptKind) -> Answer {
        let (reply, answer) = oneshot::channel();
        let asked = self
            .to_actor
            .send(JobMsg::Prompt {
                job: self.job,
                kind,
                reply,
            })
            .await;
        if asked.is_err() {
            return Answer::Dismissed;
        }
        answer.await.unwrap_or(Answer::Dismissed)
    }

    async fn secret(&self, kind: PromptKind) -> Option<String> {
        match self.ask(kind).await {
            Answer::Secret(secret) => Some(secret.0),
            Answer::Confirm(_) | Answer::Dismissed => None,
        }
    }

    /// Whether to trust a host key known_hosts does not list: only an
    /// explicit yes is.
    async fn confirm(&self, host: &str, algorithm: &str, fingerprint: &str) -> bool {
        let kind = PromptKind::HostKey {
            host: host.to_owned(),
            fingerprint: format!("{algorithm} {fingerprint}"),
        };
        matches!(self.ask(kind).await, Answer::Confirm(true))
    }
}

impl Prompter for EnginePrompter {
    fn passphrase<'a>(&'a self, key: &'a Path) -> crate::ssh::prompt::Answer<'a> {
        Box::pin(self.secret(PromptKind::Passphrase {
            key: key.to_owned(),
        }))
    }

    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> crate::ssh::prompt::Answer<'a> {
        Box::pin(self.secret(PromptKind::Password {
            user: user.to_owned(),
            host: host.to_owned(),
        }))
    }

    /// `HostKeyPolicy::Ask`: the console's yes/no modal, showing the key's
    /// fingerprint; dismissing it is a no.
    fn confirm_host_key<'a>(
        &'a self,
        host: &'a str,
        algorithm: &'a str,
        fingerprint: &'a str,
    ) -> crate::ssh::prompt::Confirm<'a> {
        Box::pin(self.confirm(host, algorithm, fingerprint))
    }
}
