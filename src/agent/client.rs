//! The agent's calls to the control plane: register, renew, heartbeat.
//! Typed with the shared wire types of [`crate::model::control`]. The
//! control plane must show a certificate from its pinned CA; the agent
//! shows its own certificate once it has one.

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

/// The control plane at one URL, trusted through its pin.
#[derive(Debug, Clone)]
pub struct Controller {
    base: String,
    http: reqwest::Client,
}

impl Controller {
    /// Calls `base`, whose certificate must chain to `ca_pem` through the
    /// CA `pin` names, showing `identity` when given.
    pub fn new(
        base: &str,
        ca_pem: &str,
        pin: pki::ControlPin,
        identity: Option<&pki::tls::ClientIdentity>,
    ) -> Result<Self, pki::PkiError> {
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: pki::tls::control_client(ca_pem, pin, identity, TIMEOUT)?,
        })
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

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R, CallError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
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
