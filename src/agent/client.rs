//! The agent's calls to the control plane: register, renew, heartbeat.
//! Typed with the shared wire types of [`crate::model::control`]. The
//! control plane must show a certificate from its pinned CA; the agent
//! shows its own certificate once it has one.
//!
//! An agent may know several control planes (replicas sharing one
//! registry, under one pin): each call goes first to the one that answered
//! last, then to the others in turn when it gets no answer or a 5xx; a
//! refusal is an answer. When none answers, the supervisor backs off.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::control::{
    ApiError, HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, RenewRequest,
    RenewResponse,
};
use crate::pki;

/// Per request, connect included.
const TIMEOUT: Duration = Duration::from_secs(10);

/// How a call failed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: refused, timed out, TLS failed.
    #[error("cannot reach the control plane: {0}")]
    Unreachable(String),
    /// The control plane answered with a refusal.
    #[error("the control plane refused ({status}, {}): {}", .body.error, .body.reason)]
    Refused { status: u16, body: ApiError },
    /// An answer that is not what the API promises (5xx, garbled body).
    #[error("unexpected answer from the control plane: {0}")]
    BadResponse(String),
}

impl CallError {
    /// The refusal's code (`revoked`, `token_replayed`, ...), if refused.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { body, .. } => Some(&body.error),
            _ => None,
        }
    }
}

impl CallError {
    /// Whether another control plane might answer.
    fn worth_another(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::BadResponse(_))
    }
}

/// The control plane at one or more URLs (replicas), trusted through its pin.
#[derive(Debug, Clone)]
pub struct Controller {
    bases: Arc<[String]>,
    /// Which base answered last; shared by every client the agent makes
    /// (a new one comes with each certificate).
    preferred: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Controller {
    /// Calls `bases` (at least one), whose certificates must chain to
    /// `ca_pem` through the CA `pin` names, showing `identity` when given;
    /// `preferred` is where the last answer came from.
    pub fn new(
        bases: &[String],
        preferred: Arc<AtomicUsize>,
        ca_pem: &str,
        pin: pki::ControlPin,
        identity: Option<&pki::tls::ClientIdentity>,
    ) -> Result<Self, pki::PkiError> {
        if bases.is_empty() {
            return Err(pki::PkiError::Tls("no control plane URL".into()));
        }
        Ok(Self {
            bases: bases
                .iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            preferred,
            http: pki::tls::control_client(ca_pem, pin, identity, TIMEOUT)?,
        })
    }

    /// The control plane that answered last.
    #[must_use]
    pub fn current(&self) -> &str {
        &self.bases[self.preferred.load(Ordering::Relaxed) % self.bases.len()]
    }

    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, CallError> {
        self.post("/v1/register", None, req).await
    }

    pub async fn renew(
        &self,
        identity: &str,
        req: &RenewRequest,
    ) -> Result<RenewResponse, CallError> {
        self.post("/v1/renew", Some(identity), req).await
    }

    pub async fn heartbeat(
        &self,
        identity: &str,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, CallError> {
        self.post("/v1/heartbeat", Some(identity), req).await
    }

    /// Posts to the preferred control plane, then to each other one while
    /// the failure is worth another.
    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R, CallError> {
        let first = self.preferred.load(Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.bases.len() {
            let index = (first + i) % self.bases.len();
            match self.post_to(&self.bases[index], path, bearer, body).await {
                Err(e) if e.worth_another() => {
                    if self.bases.len() > 1 {
                        tracing::info!(
                            controller = self.bases[index],
                            "{e}; trying another control plane"
                        );
                    }
                    last = Some(e);
                }
                answered => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return answered;
                }
            }
        }
        Err(last.unwrap_or_else(|| CallError::Unreachable("no control plane URL".into())))
    }

    async fn post_to<B: Serialize, R: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R, CallError> {
        let mut req = self.http.post(format!("{base}{path}")).json(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Unreachable(crate::pki::tls::error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(crate::pki::tls::error_chain(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| CallError::BadResponse(format!("{path}: {e}")));
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(body) if status.is_client_error() => Err(CallError::Refused {
                status: status.as_u16(),
                body,
            }),
            _ => Err(CallError::BadResponse(format!("{path}: HTTP {status}"))),
        }
    }
}
