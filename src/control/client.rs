//! The operator's side of the API: what the CLI and the console call.

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

/// An operator's connection to one control plane.
pub struct ControlClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("url", &self.url)
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
        Ok(Self {
            http: crate::pki::tls::control_client(ca_pem, pin, None, timeout)?,
            url: url.trim_end_matches('/').to_owned(),
            token: operator_token,
        })
    }

    /// Every agent with its registration state.
    pub async fn agents(&self) -> Result<Vec<AgentRecord>, ClientError> {
        self.call(self.http.get(format!("{}/v1/agents", self.url)))
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
        self.call(
            self.http
                .post(format!("{}/v1/agents/{agent_id}/revoke", self.url)),
        )
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
        self.call(
            self.http
                .post(format!("{}/v1/join-tokens", self.url))
                .json(&request),
        )
        .await
    }

    /// What Prometheus sees at /v1/sd.
    pub async fn service_discovery(&self) -> Result<Vec<SdTargetGroup>, ClientError> {
        self.call(self.http.get(format!("{}/v1/sd", self.url)))
            .await
    }

    /// The fleet CA's revocation list (DER).
    pub async fn crl(&self) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/crl", self.url);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.url.clone(),
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
            Err(ClientError::BadResponse(format!("/v1/crl: HTTP {status}")))
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(|e| {
            ClientError::Unreachable {
                url: self.url.clone(),
                reason: crate::pki::tls::error_chain(&e),
            }
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
