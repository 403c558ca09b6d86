//! The operator's side of the API: what the CLI and the console call.
//!
//! With several control planes sharing one registry (replicas), a client
//! knows every one's URL: each call goes to the one that answered last,
//! and to the next when that one cannot be reached or fails (5xx); a
//! refusal (4xx) is an answer and is not tried elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::model::control::{
    AgentRecord, ApiError, JoinTokenRequest, JoinTokenResponse, SdTargetGroup,
};
use crate::pki::{ControlPin, PkiError};

/// Why a call to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the control plane at {url}: {reason} (is `fleetctl serve` running there?)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the control plane refused: {} ({}, HTTP {status})", error.reason, error.error)]
    Refused { status: u16, error: ApiError },
    #[error("the control plane answered something unexpected: {0}")]
    BadResponse(String),
}

impl ClientError {
    /// Whether another replica might do better: no answer, or a failure
    /// inside the control plane.
    fn worth_another(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::BadResponse(_) => true,
            Self::Refused { status, .. } => *status >= 500,
        }
    }
}

/// An operator's connection to a control plane, or to any of its replicas.
pub struct ControlClient {
    http: reqwest::Client,
    urls: Vec<String>,
    /// The index of the URL that answered last: tried first.
    preferred: Arc<AtomicUsize>,
    token: String,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// A client for the control plane at `url` (https://host:port): its
    /// certificate must chain to `ca_pem` and to the control plane CA that
    /// `pin` names. Calls with `operator_token`.
    pub fn new(
        url: &str,
        ca_pem: &str,
        pin: ControlPin,
        operator_token: String,
        timeout: Duration,
    ) -> Result<Self, PkiError> {
        Self::with_replicas(&[url.to_owned()], ca_pem, pin, operator_token, timeout)
    }

    /// A client for the control planes at `urls`, replicas sharing one
    /// registry and one pin: see the module doc for which is called.
    pub fn with_replicas(
        urls: &[String],
        ca_pem: &str,
        pin: ControlPin,
        operator_token: String,
        timeout: Duration,
    ) -> Result<Self, PkiError> {
        let mut list: Vec<String> = Vec::new();
        for url in urls {
            let url = url.trim_end_matches('/').to_owned();
            if !list.contains(&url) {
                list.push(url);
            }
        }
        if list.is_empty() {
            return Err(PkiError::Tls("no control plane URL to call".into()));
        }
        Ok(Self {
            http: crate::pki::tls::control_client(ca_pem, pin, None, timeout)?,
            urls: list,
            preferred: Arc::new(AtomicUsize::new(0)),
            token: operator_token,
        })
    }

    /// The URL that answered last (the first one before any call).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.urls[self.preferred.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Every URL this client may call.
    #[must_use]
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Every agent with its registration state.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ClientError> {
        self.call(|url| self.http.get(format!("{url}/v1/agents")))
            .await
    }

    /// Revokes an agent: its renewals and heartbeats are refused from now on.
    pub async fn revoke(&self, agent_id: &str) -> Result<AgentRecord, ClientError> {
        // Agent ids are [a-z0-9-]; anything else cannot name one.
        if !agent_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(ClientError::Refused {
                status: 404,
                error: ApiError {
                    error: "unknown_agent".into(),
                    reason: format!("{agent_id:?} is not an agent id"),
                },
            });
        }
        self.call(|url| self.http.post(format!("{url}/v1/agents/{agent_id}/revoke")))
            .await
    }

    /// A join token for `host`, vouching for `names` too, minted by the
    /// control plane.
    pub async fn join_token(
        &self,
        host: &str,
        names: &[String],
        ttl: Option<Duration>,
    ) -> Result<JoinTokenResponse, ClientError> {
        let request = JoinTokenRequest {
            host: host.to_owned(),
            ttl_secs: ttl.map(|t| t.as_secs()),
            names: names.to_vec(),
        };
        self.call(|url| {
            self.http
                .post(format!("{url}/v1/join-tokens"))
                .json(&request)
        })
        .await
    }

    /// What Prometheus sees at /v1/sd.
    pub async fn service_discovery(&self) -> Result<Vec<SdTargetGroup>, ClientError> {
        self.call(|url| self.http.get(format!("{url}/v1/sd"))).await
    }

    /// The fleet CA's revocation list (DER).
    pub async fn crl(&self) -> Result<Vec<u8>, ClientError> {
        self.each_replica(|url| async move {
            let response = self
                .http
                .get(format!("{url}/v1/crl"))
                .send()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    reason: crate::pki::tls::error_chain(&e),
                })?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ClientError::BadResponse(crate::pki::tls::error_chain(&e)))?;
            if status.is_success() {
                Ok(bytes.to_vec())
            } else {
                Err(ClientError::BadResponse(format!(
                    "{url}/v1/crl: HTTP {status}"
                )))
            }
        })
        .await
    }

    /// Runs `attempt` against the preferred URL, then each other one while
    /// the failure is [worth another](ClientError::worth_another); the one
    /// that answers becomes the preferred. The last failure is returned.
    async fn each_replica<T, F, Fut>(&self, attempt: F) -> Result<T, ClientError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.urls.len() {
            let index = (first + i) % self.urls.len();
            match attempt(self.urls[index].clone()).await {
                Ok(v) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.worth_another() => {
                    if self.urls.len() > 1 {
                        tracing::debug!(url = self.urls[index], error = %e, "trying another control plane");
                    }
                    last = Some(e);
                }
                Err(e) => {
                    // A refusal is an answer: this replica is up.
                    self.preferred.store(index, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ClientError::BadResponse("no control plane URL".into())))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        self.each_replica(|url| {
            let request = request(&url).bearer_auth(&self.token);
            async move { Self::answer(request, url).await }
        })
        .await
    }

    async fn answer<T: DeserializeOwned>(
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            reason: crate::pki::tls::error_chain(&e),
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::BadResponse(crate::pki::tls::error_chain(&e)))?;
        if status.is_success() {
            serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
        } else {
            let error = serde_json::from_slice(&bytes).unwrap_or_else(|_| ApiError {
                error: "unexpected".into(),
                reason: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            Err(ClientError::Refused {
                status: status.as_u16(),
                error,
            })
        }
    }
}
