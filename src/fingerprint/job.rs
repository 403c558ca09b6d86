//! Fingerprinting many hosts: one connection and one command per host,
//! a bounded number at once; a host that fails never stops the others.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::model::Fingerprint;
use crate::ssh::{Connector, SshError, SshTarget};

/// The script, quoted once for the remote user's shell, run by `sh`
/// whatever that shell is.
static REMOTE_COMMAND: LazyLock<String> =
    LazyLock::new(|| format!("sh -c '{}'", super::SCRIPT.replace('\'', r"'\''")));

async fn fingerprint_one(
    connector: &Connector,
    target: &SshTarget,
    timeout: Duration,
) -> Fingerprint {
    let mut result = Fingerprint {
        host: target.alias.clone(),
        address: target.hostname.clone(),
        port: target.port,
        host_key: None,
        facts: None,
        failure: None,
        error: None,
        gathered_at: 0,
    };
    let work = async {
        let session = connector.connect(target).await?;
        let key = session.host_key().fingerprint();
        let out = session.run(&REMOTE_COMMAND).await;
        session.close().await;
        Ok::<_, SshError>((key, out?))
    };
    let outcome = match connector.within(timeout, work).await {
        Some(outcome) => outcome,
        None => Err(SshError::Timeout {
            host: target.display(),
            after: timeout,
            during: "fingerprinting",
        }),
    };
    result.gathered_at = crate::model::time::now_unix();
    match outcome {
        Ok((key, out)) => {
            result.host_key = Some(key);
            result.facts = Some(super::parse(&String::from_utf8_lossy(&out.stdout)));
        }
        Err(e) => {
            result.failure = Some(e.kind());
            result.error = Some(e.to_string());
        }
    }
    result
}

/// Fingerprints every target, at most `concurrency` at once, each within
/// `timeout`; results go to `out` as they finish. Stops starting new hosts
/// when `cancel` fires.
pub async fn run(
    connector: Arc<Connector>,
    targets: Vec<SshTarget>,
    concurrency: usize,
    timeout: Duration,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<Fingerprint>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    for target in targets {
        let _ = tx.send(target);
    }
    drop(tx);
    run_stream(connector, rx, concurrency, timeout, cancel, out).await;
}

/// As [`run`], for targets that arrive while it runs (hosts a scan is still
/// finding); it ends when `targets` closes and the last host is done.
pub async fn run_stream(
    connector: Arc<Connector>,
    mut targets: mpsc::UnboundedReceiver<SshTarget>,
    concurrency: usize,
    timeout: Duration,
    cancel: CancellationToken,
    out: mpsc::UnboundedSender<Fingerprint>,
) {
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        let room = running.len() < concurrency.max(1) && !cancel.is_cancelled();
        tokio::select! {
            target = targets.recv(), if open && room => match target {
                Some(target) => {
                    let connector = Arc::clone(&connector);
                    running.push(async move { fingerprint_one(&connector, &target, timeout).await });
                }
                None => open = false,
            },
            Some(done) = running.next(), if !running.is_empty() => {
                let _ = out.send(done);
            }
            () = cancel.cancelled(), if open && running.is_empty() => open = false,
            else => break,
        }
    }
}
