//! Answers to the questions connecting asks (an unknown host key, key
//! passphrases, passwords). Each front end provides its own: the CLI asks on
//! the terminal or through `SSH_ASKPASS`, the console will ask in a modal,
//! tests answer directly. Never from argv.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// A boxed answer, so front ends can wait on a person without blocking.
pub type Answer<'a> = Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

/// A boxed yes (`true`) or no.
pub type Confirm<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

pub trait Prompter: Send + Sync {
    /// The passphrase of an encrypted key, or `None` to skip the key.
    fn passphrase<'a>(&'a self, key: &'a Path) -> Answer<'a>;
    /// The password of `user` at `host`, or `None` to give up on passwords.
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a>;
    /// Whether to trust `host`'s key, which known_hosts does not list
    /// (`--host-key-policy ask`); yes learns it into known_hosts. Never
    /// asked for a changed key: that is always refused. Says no unless a
    /// front end answers.
    fn confirm_host_key<'a>(
        &'a self,
        _host: &'a str,
        _algorithm: &'a str,
        _fingerprint: &'a str,
    ) -> Confirm<'a> {
        Box::pin(async { false })
    }
}

/// Never answers, and says no to unknown host keys: for runs where nobody
/// is there to ask.
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
/// terminal (or `SSH_ASKPASS_REQUIRE=force`), else on the terminal. One
/// question at a time, however many hosts are connecting.
#[derive(Debug, Clone, Default)]
pub struct TerminalPrompt;

/// Hosts connecting at once take turns at the terminal.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many times to ask "yes or no" before taking silence for no.
const CONFIRM_TRIES: usize = 3;

impl TerminalPrompt {
    /// Asks `question`; `secret` answers are not echoed.
    async fn ask(question: String, secret: bool) -> Option<String> {
        let _turn = TURN.lock().await;
        let askpass = std::env::var_os("SSH_ASKPASS").map(PathBuf::from);
        let forced = std::env::var("SSH_ASKPASS_REQUIRE").is_ok_and(|v| v == "force");
        let has_tty = std::fs::File::open("/dev/tty").is_ok();
        match askpass {
            Some(program) if forced || !has_tty => {
                let mut cmd = tokio::process::Command::new(&program);
                if !secret {
                    // As ssh tells the program a yes/no question from a secret.
                    cmd.env("SSH_ASKPASS_PROMPT", "confirm");
                }
                let out = cmd
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
            _ if has_tty => tokio::task::spawn_blocking(move || {
                if secret {
                    rpassword::prompt_password(question).ok()
                } else {
                    read_tty_line(&question).ok()
                }
            })
            .await
            .ok()
            .flatten(),
            _ => None,
        }
    }
}

/// Writes `question` to the terminal and reads one echoed line back.
fn read_tty_line(question: &str) -> std::io::Result<String> {
    use std::io::{BufRead as _, Write as _};
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    tty.write_all(question.as_bytes())?;
    tty.flush()?;
    let mut line = String::new();
    std::io::BufReader::new(tty).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The key type as ssh names it in its question (`ED25519`, `RSA`, `ECDSA`).
fn key_type(algorithm: &str) -> String {
    match algorithm {
        "ssh-ed25519" => "ED25519".into(),
        "ssh-rsa" => "RSA".into(),
        a if a.starts_with("ecdsa-") => "ECDSA".into(),
        a => a.to_string(),
    }
}

/// Reads a yes/no answer as ssh does: `yes` or the fingerprint itself
/// accept, `no` refuses, anything else asks again.
fn confirmation(answer: &str, fingerprint: &str) -> Option<bool> {
    match answer.trim() {
        "yes" => Some(true),
        "no" => Some(false),
        a if a == fingerprint => Some(true),
        _ => None,
    }
}

impl Prompter for TerminalPrompt {
    fn passphrase<'a>(&'a self, key: &'a Path) -> Answer<'a> {
        Box::pin(Self::ask(
            format!("Enter passphrase for key '{}': ", key.display()),
            true,
        ))
    }
    fn password<'a>(&'a self, user: &'a str, host: &'a str) -> Answer<'a> {
        Box::pin(Self::ask(format!("{user}@{host}'s password: "), true))
    }
    fn confirm_host_key<'a>(
        &'a self,
        host: &'a str,
        algorithm: &'a str,
        fingerprint: &'a str,
    ) -> Confirm<'a> {
        Box::pin(async move {
            let mut question = format!(
                "The authenticity of host '{host}' can't be established.\n\
                 {} key fingerprint is {fingerprint}.\n\
                 Are you sure you want to continue connecting (yes/no)? ",
                key_type(algorithm)
            );
            for _ in 0..CONFIRM_TRIES {
                let Some(answer) = Self::ask(question.clone(), false).await else {
                    return false;
                };
                if let Some(yes) = confirmation(&answer, fingerprint) {
                    return yes;
                }
                question = "Please type 'yes', 'no' or the fingerprint: ".into();
            }
            false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_answers_are_read_as_ssh_reads_them() {
        let fp = "SHA256:abc";
        assert_eq!(confirmation("yes\n", fp), Some(true));
        assert_eq!(confirmation("SHA256:abc", fp), Some(true));
        assert_eq!(confirmation("no", fp), Some(false));
        assert_eq!(confirmation("y", fp), None, "ssh wants the whole word");
        assert_eq!(confirmation("SHA256:abd", fp), None);
        assert_eq!(key_type("ssh-ed25519"), "ED25519");
        assert_eq!(key_type("ecdsa-sha2-nistp256"), "ECDSA");
    }
}
