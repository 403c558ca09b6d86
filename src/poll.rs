//! The console's stats client: reads an agent's `GET /v1/stats` over HTTPS,
//! trusting the fleet CA only, with an operator token. One client serves
//! every agent (connections are pooled per agent), so the engine can poll
//! thousands of them.

use std::net::SocketAddr;
use std::time::Duration;

use crate::model::control::ApiError;
use crate::model::stats::AgentStats;
use crate::pki;

/// Why a poll failed: what the console shows for the agent.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// Nothing listens, or the host cannot be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer within the per-request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The agent refused the operator token (code: `token_expired`,
    /// `bad_signature`, ...).
    #[error("the agent refused the operator token ({code}): {reason}")]
    Unauthorized { code: String, reason: String },
    /// The TLS handshake failed: a certificate not from the fleet CA, or
    /// not for this address, or expired.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// An answer that is not `AgentStats`.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
}

/// Polls agents' stats with one operator token.
#[derive(Clone)]
pub struct StatsClient {
    http: reqwest::Client,
    token: String,
    timeout: Duration,
}

impl std::fmt::Debug for StatsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StatsClient {
    /// A client trusting only `ca_pem` (the fleet CA), sending
    /// `operator_token`, giving each request `timeout`, connect included.
    pub fn new(
        ca_pem: &str,
        operator_token: &str,
        timeout: Duration,
    ) -> Result<Self, pki::PkiError> {
        Ok(Self {
            http: pki::tls::http_client(ca_pem, timeout)?,
            token: operator_token.trim().to_owned(),
            timeout,
        })
    }

    /// `GET https://ADDR/v1/stats`. The agent's certificate must name the
    /// address (agents register theirs as SANs).
    pub async fn fetch(&self, addr: SocketAddr) -> Result<AgentStats, PollError> {
        let url = format!("https://{addr}/v1/stats");
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.classify(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.classify(&e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let err: ApiError = serde_json::from_slice(&body).unwrap_or_else(|_| ApiError {
                error: "unauthorized".into(),
                reason: String::from_utf8_lossy(&body).into_owned(),
            });
            return Err(PollError::Unauthorized {
                code: err.error,
                reason: err.reason,
            });
        }
        if !status.is_success() {
            return Err(PollError::BadResponse(format!("HTTP {status}")));
        }
        serde_json::from_slice(&body).map_err(|e| PollError::BadResponse(e.to_string()))
    }

    fn classify(&self, e: &reqwest::Error) -> PollError {
        if e.is_timeout() {
            return PollError::Timeout(self.timeout);
        }
        let chain = crate::pki::tls::error_chain(e);
        if is_tls(&chain) {
            PollError::Tls(chain)
        } else if e.is_connect() {
            PollError::Unreachable(chain)
        } else if e.is_decode() || e.is_body() {
            PollError::BadResponse(chain)
        } else {
            PollError::Unreachable(chain)
        }
    }
}

/// rustls errors surface as io errors inside hyper's; their text is what
/// tells them apart from a refused connection.
fn is_tls(chain: &str) -> bool {
    let lower = chain.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "unknownissuer", "alert"]
        .iter()
        .any(|w| lower.contains(w))
}
