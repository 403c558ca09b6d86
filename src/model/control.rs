//! The control plane's HTTPS API: requests and responses, shared by the
//! server (`control`), the agent and the console.
//!
//! ```text
//!  POST /v1/join-tokens          operator   JoinTokenRequest  -> JoinTokenResponse
//!  POST /v1/register             join token RegisterRequest   -> RegisterResponse
//!  POST /v1/renew                identity   RenewRequest      -> RenewResponse
//!  POST /v1/heartbeat            identity   HeartbeatRequest  -> HeartbeatResponse
//!  GET  /v1/agents               operator                     -> Vec<AgentRecord>
//!  POST /v1/agents/{id}/revoke   operator                     -> AgentRecord
//!  GET  /v1/sd                   operator                     -> Vec<SdTargetGroup>
//!  GET  /healthz                 open                         -> "ok"
//! ```
//! Tokens travel as `Authorization: Bearer <jwt>`, except the join token,
//! which is a field of the register request. Every refusal is an
//! [`ApiError`] body with a 4xx status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::state::RegistrationState;

/// Asks for a one-use join token bound to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenRequest {
    /// The host the token is for: the name or address the agent will
    /// register with. Registering with any other name is refused.
    pub host: String,
    /// Lifetime in seconds; the control plane's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenResponse {
    pub token: String,
    pub expires_at: i64,
}

/// An agent's first call: who it is, and a CSR for its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub join_token: String,
    /// PEM PKCS#10 request; the key never leaves the host.
    pub csr_pem: String,
    pub hostname: String,
    /// Addresses the agent can be reached at (its stats endpoint's).
    pub addresses: Vec<String>,
    pub stats_port: u16,
    pub agent_version: String,
}

/// What a registered agent needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: String,
    /// The agent's certificate, with SANs for its hostname and addresses.
    pub certificate_pem: String,
    pub certificate_expires_at: i64,
    /// The fleet CA: the only root the agent trusts.
    pub ca_pem: String,
    /// The agent's identity token (JWT, audience `fleet-agent`).
    pub identity_token: String,
    pub identity_expires_at: i64,
    /// The public key that verifies operator tokens (PEM).
    pub token_public_key_pem: String,
    /// How often the control plane expects a heartbeat.
    pub heartbeat_interval_secs: u64,
}

/// Renews the identity token (sent as the bearer), and the certificate when
/// a CSR is included.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RenewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr_pem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    pub identity_token: String,
    pub identity_expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_expires_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub agent_version: String,
    /// Seconds since the agent started.
    pub agent_uptime_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub state: RegistrationState,
    pub heartbeat_interval_secs: u64,
}

/// One agent as the control plane's registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub hostname: String,
    pub addresses: Vec<String>,
    pub stats_port: u16,
    pub agent_version: String,
    pub state: RegistrationState,
    pub registered_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<i64>,
    pub identity_expires_at: i64,
    pub certificate_expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// One entry of Prometheus HTTP service discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdTargetGroup {
    /// `host:port` of each agent's stats endpoint.
    pub targets: Vec<String>,
    /// `__meta_fleet_*` labels.
    pub labels: BTreeMap<String, String>,
}

/// The body of every refusal: a stable code to branch on and a reason for
/// people. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// e.g. `token_expired`, `token_replayed`, `wrong_audience`,
    /// `bad_signature`, `wrong_host`, `unknown_agent`, `revoked`.
    pub error: String,
    pub reason: String,
}
