//! Tokens: JWTs signed with Ed25519 (EdDSA), each naming its key (`kid`).
//! The control plane holds the signing keys ([`keys`]); agents hold only
//! the public key set, which they learn at registration and with every
//! heartbeat and renewal.
//!
//! Kinds, by audience (least privilege: each is worthless where another
//! belongs):
//!
//! | audience              | who holds it            | accepted by                         |
//! |-----------------------|-------------------------|-------------------------------------|
//! | `fleet-join`          | one host, once          | `/v1/register`, one use, bound host |
//! | `fleet-agent`         | an agent (sub = its id) | `/v1/renew`, `/v1/heartbeat`        |
//! | `fleet-operator`      | console, CLI, scripts   | the control plane; never agents     |
//! | `fleet-stats`         | Prometheus              | every agent's `/v1/stats`, `/metrics` |
//! | `fleet-stats:<agent>` | the console, per agent  | that one agent's stats only         |
//! | `fleet-sd`            | Prometheus              | `/v1/sd` only                       |
//!
//! Validation has no leeway: lifetimes are seconds in tests, and the
//! fleet's clocks are expected to agree.

pub mod keys;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

pub use keys::{AuthError, Rotation, TokenIssuer};

use crate::model::control::TokenKey;

/// How far behind ours another host's clock may run and still accept a
/// token we just issued.
const CLOCK_SKEW_SECS: i64 = 60;
/// Every token names its issuer; a token from anything else is refused.
const ISSUER: &str = "fleetctl";
const STATS_PREFIX: &str = "fleet-stats:";

/// Who a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    /// An agent's one-use ticket to register.
    Join,
    /// An agent's identity.
    Agent,
    /// The console and the CLI: the control plane's API.
    Operator,
    /// Read-only stats of every agent (Prometheus scraping `/metrics`).
    Stats,
    /// Read-only service discovery (Prometheus reading `/v1/sd`).
    Sd,
}

impl Audience {
    /// The `aud` claim.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "fleet-join",
            Self::Agent => "fleet-agent",
            Self::Operator => "fleet-operator",
            Self::Stats => "fleet-stats",
            Self::Sd => "fleet-sd",
        }
    }

    /// Whether tokens of this kind are people's (listed by `fleetctl token
    /// list`, revocable, their lifetime capped by `control.max_operator_ttl`).
    #[must_use]
    pub fn is_capped(self) -> bool {
        matches!(self, Self::Operator | Self::Stats | Self::Sd)
    }
}

/// The audience of a stats token that only `agent_id` accepts.
#[must_use]
pub fn stats_audience_for(agent_id: &str) -> String {
    format!("{STATS_PREFIX}{agent_id}")
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The agent id (Agent), the operator's name (Operator, Stats, Sd), the
    /// host (Join).
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token: join tokens are refused once their jti is used;
    /// people's tokens are revoked by it.
    pub jti: String,
    /// The host a join token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What a join token's issuer vouches for, in order (the bound host
    /// first): the only names and addresses the agent's certificate gets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A join token's pin of the control plane (see
    /// [`crate::pki::ControlPin`]): the agent talks to no other server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_pin: Option<String>,
}

impl Claims {
    /// How long the token was issued for.
    #[must_use]
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.exp - self.iat).unwrap_or(0))
    }
}

/// A join token's contents beyond its host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinGrant {
    /// The host it is bound to: the agent must register with this name or address.
    pub host: String,
    /// More names and addresses vouched for (the host is always first).
    pub names: Vec<String>,
    /// The control plane's pin.
    pub control_pin: Option<String>,
}

impl JoinGrant {
    /// A grant for `host` vouching for `host` alone.
    #[must_use]
    pub fn new(host: &str) -> Self {
        Self {
            host: host.to_owned(),
            ..Self::default()
        }
    }

    /// The vouched names in order, the host first, without repeats.
    #[must_use]
    pub fn vouched(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.names.len() + 1);
        for name in std::iter::once(&self.host).chain(&self.names) {
            if !out.iter().any(|n| same_name(n, name)) {
                out.push(name.clone());
            }
        }
        out
    }
}

/// Whether two names or addresses are the same (addresses by value,
/// names case-insensitively).
#[must_use]
pub fn same_name(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Why a token was refused. Callers turn each into a status and a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's signature does not verify (it was not issued by this control plane)")]
    BadSignature,
    #[error(
        "the token names a signing key this side does not know (retired, or not from this fleet)"
    )]
    UnknownKey,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token lives longer than this fleet allows; mint a shorter one")]
    TooLong,
    #[error("the token is malformed")]
    Malformed,
}

impl TokenError {
    /// The stable code an [`crate::model::control::ApiError`] carries.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::BadSignature => "bad_signature",
            Self::UnknownKey => "unknown_key",
            Self::Revoked => "token_revoked",
            Self::TooLong => "token_too_long",
            Self::Malformed => "malformed_token",
        }
    }
}

/// Verifies tokens with public keys only (what agents hold), picking the
/// key by the token's `kid`.
#[derive(Clone, Default)]
pub struct TokenVerifier {
    keys: Vec<(String, DecodingKey)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("TokenVerifier")
            .field("kids", &kids)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier for the Ed25519 public key in `pem` (SPKI) alone.
    pub fn from_public_pem(pem: &str) -> Result<Self, AuthError> {
        Self::from_keys(&[TokenKey {
            kid: keys::kid_of_public_pem(pem)?,
            public_key_pem: pem.to_owned(),
        }])
    }

    /// A verifier for a key set, as the control plane sends it. A key whose
    /// kid does not match its own key is refused: kids are derived from
    /// keys, so a key set cannot alias one key under another's name.
    pub fn from_keys(set: &[TokenKey]) -> Result<Self, AuthError> {
        let mut keys = Vec::with_capacity(set.len());
        for key in set {
            if keys::kid_of_public_pem(&key.public_key_pem)? != key.kid {
                return Err(AuthError::BadPublicKey(format!(
                    "the key named {:?} is another key",
                    key.kid
                )));
            }
            let decoding = DecodingKey::from_ed_pem(key.public_key_pem.as_bytes())
                .map_err(|e| AuthError::BadPublicKey(e.to_string()))?;
            keys.push((key.kid.clone(), decoding));
        }
        Ok(Self { keys })
    }

    /// The kids this verifier knows.
    #[must_use]
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// The claims of `token` when it is signed by a key of this set, for
    /// `aud`, from this issuer, and inside its lifetime (no leeway).
    pub fn verify(&self, token: &str, aud: Audience) -> Result<Claims, TokenError> {
        self.verify_for(token, &[aud.as_str()])
    }

    /// As [`Self::verify`], for any one of `audiences`.
    pub fn verify_for(&self, token: &str, audiences: &[&str]) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::BadSignature);
        }
        let kid = header.kid.ok_or(TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|(k, _)| *k == kid)
            .map(|(_, key)| key)
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_audience(audiences);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                    TokenError::BadSignature
                }
                _ => TokenError::Malformed,
            })
    }
}

/// The claims of a join token *without* checking its signature: what an
/// agent reads from the token file an operator (or deploy, over SSH) gave
/// it, before it can check anything (it learns the keys by registering).
/// Only for the control plane's pin, which came by the same trusted path
/// as the token; the control plane checks the token itself.
#[must_use]
pub fn unverified_join_claims(token: &str) -> Option<Claims> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
