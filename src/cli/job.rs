//! Headless commands as front ends over the engine, as the console is:
//! each runs its one job on an engine of its own (no inventory read, no
//! agents watched, questions asked on the terminal) and turns the job's
//! events into its output. Ctrl-C cancels the job, which ends as it would
//! in the console (hosts under way finish, what was found is recorded).
//!
//! A command provides a [`Show`]; [`run`] does the rest.

use std::pin::pin;

use crate::engine::{
    self, Answer, Command, EngineConfig, Event, JobError, JobOutcome, JobOutput, Prompt, PromptKind,
};

use super::BadInput;

/// How a headless command shows its job.
pub trait Show {
    /// One of the job's results.
    fn output(&mut self, output: JobOutput) -> anyhow::Result<()>;
    /// How far the job is.
    fn progress(&mut self, _done: u64, _total: u64) {}
    /// Nothing more is waiting for now: write out what is buffered.
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Ctrl-C: the job was told to stop.
    fn interrupted(&mut self) {}
    /// A rollout's gate: whether the next batch goes.
    fn ask_gate(&mut self, question: &str) -> bool {
        ask_line(question)
    }
}

/// Asks `question` on stderr and reads one line from stdin: yes (`y`,
/// `yes`, `c`, `continue`) or, for anything else and for end of input, no.
pub fn ask_line(question: &str) -> bool {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    drop(err);
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "c" | "continue"
    )
}

/// How the job ended.
#[derive(Debug)]
pub struct Ended {
    pub outcome: JobOutcome,
    /// Ctrl-C was pressed.
    pub interrupted: bool,
}

impl Ended {
    /// The job's failure as the CLI reports it: a bad request is the
    /// operator's mistake (exit 2).
    pub fn check(&self) -> anyhow::Result<()> {
        match &self.outcome {
            JobOutcome::Failed(e @ JobError::BadRequest(_)) => Err(BadInput::wrap(e.clone())),
            JobOutcome::Failed(e) => Err(e.clone().into()),
            JobOutcome::Done(_) | JobOutcome::Cancelled => Ok(()),
        }
    }
}

/// Sends `command` to an engine started with `config` and shows its job's
/// events with `show` until it ends.
pub async fn run(
    config: EngineConfig,
    command: Command,
    show: &mut impl Show,
) -> anyhow::Result<Ended> {
    let (engine, mut events) = engine::spawn(config);
    if !engine.send(command) {
        anyhow::bail!("the engine stopped before the job started");
    }
    let mut job = None;
    let mut interrupted = false;
    let mut ctrl_c = pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            event = events.recv() => {
                let mut next = event;
                // Everything already waiting, then one flush.
                loop {
                    let Some(event) = next else {
                        anyhow::bail!("the engine stopped before the job ended");
                    };
                    match event {
                        Event::JobStarted { id, .. } if job.is_none() => {
                            job = Some(id);
                            if interrupted {
                                engine.send(Command::CancelJob(id));
                            }
                        }
                        Event::Output { output, .. } => show.output(output)?,
                        Event::JobProgress { done, total, .. } => show.progress(done, total),
                        Event::PromptNeeded(Prompt {
                            id,
                            kind: PromptKind::Gate { batch, batches, ok, failed },
                            ..
                        }) => {
                            let question = format!(
                                "batch {batch}/{batches} done: {ok} ok, {failed} failed; \
                                 continue with the next batch? [y/N] "
                            );
                            // The rollout waits at its gate meanwhile.
                            let yes = tokio::task::block_in_place(|| show.ask_gate(&question));
                            engine.send(Command::AnswerPrompt {
                                id,
                                answer: Answer::Confirm(yes),
                            });
                        }
                        Event::JobEnded { id, outcome, .. } if Some(id) == job => {
                            show.flush()?;
                            return Ok(Ended { outcome, interrupted });
                        }
                        _ => {}
                    }
                    match events.try_recv() {
                        Ok(event) => next = Some(event),
                        Err(_) => break,
                    }
                }
                show.flush()?;
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                show.interrupted();
                if let Some(id) = job {
                    engine.send(Command::CancelJob(id));
                }
            }
        }
    }
}
