//! Fingerprinting many hosts: one connection and one command per host,
//! a bounded number at once; a host that fails never stops the others.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::HostFacts;
use crate::ssh::{Connector, FailureKind, SshError, SshTarget};

/// The outcome for one host.
#[derive(Debug, Clone, Serialize)]
pub struct Fingerprint {
    /// The host as the operator named it.
    pub host: String,
    /// What was connected to.
    pub address: String,
    pub port: u16,
    /// `SHA256:...` of the host key seen (and verified) in the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix seconds when the facts were gathered.
    pub gathered_at: i64,
}

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
    let outcome = match tokio::time::timeout(timeout, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(SshError::Timeout {
            host: target.display(),
            after: timeout,
            during: "fingerprinting",
        }),
    };
    result.gathered_at = crate::store::now_unix();
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
    let mut pending = targets.into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < concurrency.max(1) && !cancel.is_cancelled() {
            let Some(target) = pending.next() else { break };
            let connector = Arc::clone(&connector);
            running.push(async move { fingerprint_one(&connector, &target, timeout).await });
        }
        let Some(done) = running.next().await else {
            break;
        };
        let _ = out.send(done);
    }
}
