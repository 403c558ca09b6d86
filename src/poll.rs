//! The console's stats client: reads an agent's `GET /v1/stats` over HTTPS,
//! trusting the fleet CA only (and refusing certificates on its revocation
//! list), with a stats token: the console's are each for one agent, so a
//! host that keeps the token it was sent holds nothing that works anywhere
//! else. One client serves every agent (connections are pooled per agent),
//! so the engine can poll thousands of them.

use std::sync::{Arc, RwLock};

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
    /// The agent refused the stats token (code: `token_expired`,
    /// `wrong_audience`, `token_revoked`, ...).
    #[error("the agent refused the stats token ({code}): {reason}")]
    Unauthorized { code: String, reason: String },
    /// The TLS handshake failed: a certificate not from the fleet CA, not
    /// for this address, expired, or revoked.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// An answer that is not `AgentStats`.
    #[error("unexpected answer: {0}")]
    BadResponse(String),
}

/// Polls agents' stats.
#[derive(Clone)]
pub struct StatsClient {
    http: Arc<RwLock<(u64, reqwest::Client)>>,
    revocations: Option<Arc<pki::RevocationList>>,
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
    /// `stats_token` (a fleet-wide one) unless told otherwise, giving each
    /// request `timeout`, connect included.
    pub fn new(ca_pem: &str, stats_token: &str, timeout: Duration) -> Result<Self, pki::PkiError> {
        Ok(Self {
            http: Arc::new(RwLock::new((0, pki::tls::http_client(ca_pem, timeout)?))),
            revocations: None,
            token: stats_token.trim().to_owned(),
            timeout,
        })
    }

    /// A client trusting the fleet CA of `revocations` and refusing the
    /// certificates on its list, with no token of its own: each read
    /// names its token ([`Self::fetch_with`]). When the list revokes
    /// more, the connections it holds are dropped, so the next read of
    /// every agent shows its certificate again.
    pub fn with_revocations(
        revocations: Arc<pki::RevocationList>,
        timeout: Duration,
    ) -> Result<Self, pki::PkiError> {
        let generation = revocations.generation();
        let http = pki::tls::revocation_checked_client(Arc::clone(&revocations), timeout)?;
        Ok(Self {
            http: Arc::new(RwLock::new((generation, http))),
            revocations: Some(revocations),
            token: String::new(),
            timeout,
        })
    }

    /// The HTTP client, a fresh one (no pooled connections) when the
    /// revocation list changed since the last was made.
    fn http(&self) -> reqwest::Client {
        let current = self
            .http
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let Some(list) = &self.revocations else {
            return current.1;
        };
        let generation = list.generation();
        if current.0 == generation {
            return current.1;
        }
        match pki::tls::revocation_checked_client(Arc::clone(list), self.timeout) {
            Ok(fresh) => {
                *self
                    .http
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (generation, fresh.clone());
                fresh
            }
            Err(e) => {
                // Cannot happen with a list that built one before; keep going.
                tracing::warn!("cannot renew the stats client: {e}");
                current.1
            }
        }
    }

    /// `GET https://ADDR/v1/stats` with this client's token. The agent's
    /// certificate must name the address (what its join token vouched for).
    pub async fn fetch(&self, addr: SocketAddr) -> Result<AgentStats, PollError> {
        self.fetch_with(addr, &self.token).await
    }

    /// `GET https://ADDR/v1/stats` with `token`.
    pub async fn fetch_with(&self, addr: SocketAddr, token: &str) -> Result<AgentStats, PollError> {
        let url = format!("https://{addr}/v1/stats");
        let resp = self
            .http()
            .get(&url)
            .bearer_auth(token)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.classify(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.classify(&e))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
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
