//! Answers to the questions authentication asks (key passphrases,
//! passwords). Each front end provides its own: the CLI asks on the terminal
//! or through `SSH_ASKPASS`, the console will ask in a modal, tests answer
//! directly. Never from argv.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// A boxed answer, so front ends can wait on a person without blocking.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

pub trait Prompter: Send + Sync {
    /// The passphrase of an encrypted key, or `None` to skip the key.
    fn passphrase<'a>(&'a self, key: &'a Path) -> Answer<'a>;
    /// The password of `user` at `host`, or `None` to give up on passwords.
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a>;
}

/// Never answers: for runs where nobody is there to ask.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrompt;

impl Prompter for NoPrompt {
    fn passphrase<'a>(&'a self, _key: &'a Path) -> Answer<'a> {
        Box::pin(async { None })
    }
    fn password<'a>(&'a self, _user: &'a str, _host: &'a str) -> Answer<'a> {
        Box::pin(async { None })
    }
}

/// Asks as OpenSSH does: through the `SSH_ASKPASS` program when there is no
/// terminal (or `SSH_ASKPASS_REQUIRE=force`), else on the terminal.
#[derive(Debug, Clone, Default)]
pub struct TerminalPrompt;

impl TerminalPrompt {
    async fn ask(question: String) -> Option<String> {
        let askpass = std::env::var_os("SSH_ASKPASS").map(PathBuf::from);
        let forced = std::env::var("SSH_ASKPASS_REQUIRE").is_ok_and(|v| v == "force");
        let has_tty = std::fs::File::open("/dev/tty").is_ok();
        match askpass {
            Some(program) if forced || !has_tty => {
                let out = tokio::process::Command::new(&program)
                    .arg(&question)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .await
                    .ok()?;
                out.status.success().then(|| {
                    String::from_utf8_lossy(&out.stdout)
                        .trim_end_matches(['\r', '\n'])
                        .to_string()
                })
            }
            _ if has_tty => {
                tokio::task::spawn_blocking(move || rpassword::prompt_password(question).ok())
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        }
    }
}

impl Prompter for TerminalPrompt {
    fn passphrase<'a>(&'a self, key: &'a Path) -> Answer<'a> {
        Box::pin(Self::ask(format!(
            "Enter passphrase for key '{}': ",
            key.display()
        )))
    }
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a> {
        Box::pin(Self::ask(format!("{user}@{host}'s password: ")))
    }
}
