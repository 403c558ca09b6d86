//! The control plane's HTTPS API: requests and responses, shared by the
//! server (`control`), the agent and the console.
//!
//! ```text
//!  POST /v1/join-tokens          operator     JoinTokenRequest  -> JoinTokenResponse
//!  POST /v1/register             join token   RegisterRequest   -> RegisterResponse
//!  POST /v1/renew                identity+cert RenewRequest     -> RenewResponse
//!  POST /v1/heartbeat            identity+cert HeartbeatRequest -> HeartbeatResponse
//!  GET  /v1/agents               operator                       -> Vec<AgentRecord>
//!  POST /v1/agents/{id}/revoke   operator                       -> AgentRecord
//!  GET  /v1/sd                   sd, operator                   -> Vec<SdTargetGroup>
//!  GET  /v1/crl                  open         the fleet CA's revocation list (DER)
//!  GET  /healthz                 open                           -> Health
//! ```
//! Tokens travel as `Authorization: Bearer <jwt>`, except the join token,
//! which is a field of the register request. "identity+cert": the agent's
//! identity token, on a connection where the agent shows its certificate
//! (TLS client authentication). Stats tokens (`fleetctl token stats`, and
//! the console's per-agent ones) are refused everywhere here: they are for
//! agents' `/v1/stats` and `/metrics`. Every refusal is an [`ApiError`]
//! body with a 4xx status.

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
    /// More names and addresses the issuer vouches for (after `host`): the
    /// agent's certificate names exactly these and `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
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
    /// PEM PKCS#10 request; the key never leaves the host. Only its key is
    /// used: the names come from the join token.
    pub csr_pem: String,
    pub hostname: String,
    /// Addresses the agent says it can be reached at. Informational: the
    /// certificate, the console and service discovery use the addresses
    /// the join token vouches for.
    pub addresses: Vec<String>,
    pub stats_port: u16,
    pub agent_version: String,
}

/// One token verification key: `kid` names it in a JWT's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenKey {
    pub kid: String,
    /// Ed25519 public key, SPKI PEM.
    pub public_key_pem: String,
}

/// What an agent needs to check the tokens it is shown, sent with every
/// registration, renewal and heartbeat: so a rotated key or a revoked
/// token reaches every agent within one heartbeat interval.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TrustUpdate {
    /// Every key a valid token may be signed with.
    pub token_keys: Vec<TokenKey>,
    /// Ids (`jti`) of revoked tokens that have not expired yet.
    #[serde(default)]
    pub revoked_tokens: Vec<String>,
    /// Stats and operator tokens living longer than this are refused.
    pub max_token_ttl_secs: u64,
}

/// What a registered agent needs to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub agent_id: String,
    /// The agent's certificate, naming what its join token vouched for.
    pub certificate_pem: String,
    pub certificate_expires_at: i64,
    /// The fleet CA: the root the agent's certificate chains to.
    pub ca_pem: String,
    /// The agent's identity token (JWT, audience `fleet-agent`).
    pub identity_token: String,
    pub identity_expires_at: i64,
    /// How often the control plane expects a heartbeat.
    pub heartbeat_interval_secs: u64,
    pub trust: TrustUpdate,
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
    pub trust: TrustUpdate,
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
    pub trust: TrustUpdate,
}

/// One agent as the control plane's registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    /// The name the agent reported (shown to people; not in its certificate
    /// unless its join token vouched for it).
    pub hostname: String,
    /// The names and addresses its join token vouched for, in the issuer's
    /// order: what its certificate names, where the console reads it and
    /// what service discovery publishes (the first address).
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
    /// e.g. `token_expired`, `token_replayed`, `token_revoked`,
    /// `wrong_audience`, `unknown_key`, `bad_signature`, `wrong_host`,
    /// `unknown_agent`, `revoked`, `certificate_required`.
    pub error: String,
    pub reason: String,
}

/// A token minted for a person or a service (`fleetctl token operator`,
/// `stats`, `sd`), as `fleetctl token list` shows it. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's `jti`: what `fleetctl token revoke` takes.
    pub id: String,
    /// `operator`, `stats` or `sd`.
    pub kind: String,
    /// Who it is for (its `sub`).
    pub name: String,
    pub issued_at: i64,
    pub expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// `GET /healthz`: whether this control plane can serve, and the state of
/// its registry (503 when the registry cannot be reached).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `unavailable` when the registry cannot be reached.
    pub status: String,
    pub registry: RegistryHealth,
}

/// The registry as one control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryHealth {
    /// `sqlite` (embedded) or `postgres` (shared by replicas).
    pub backend: String,
    /// `ok` or `unavailable`.
    pub state: String,
    /// The schema version the registry is at, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
}
