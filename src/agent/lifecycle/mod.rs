//! The agent's relationship with the control plane as a pure state machine:
//! what to do next and when, and what to report. No I/O and no clock: the
//! supervisor passes the time in (Unix milliseconds) and feeds back what
//! each call returned, so every timing rule is tested with plain numbers.
//!
//! ```text
//!   Pending ──enroll──▶ Registered ◀──success── Lost (calls failing)
//!      ▲                 │   │  heartbeat every interval; renew identity and
//!      │ new join token  │   │  certificate at 2/3 of their lifetimes
//!   Expired ◀─identity past expiry, or refused─┘   │
//!   Revoked ◀──────────── 403 revoked ─────────────┘
//! ```

use crate::model::state::{RegistrationState, TokenState};
use crate::model::stats::{CertificateStatus, RegistrationStatus, TokenStatus};

/// First retry delay after a failure; doubles per failure up to the cap.
const BACKOFF_BASE_MS: i64 = 1_000;
const BACKOFF_CAP_MS: i64 = 60_000;
/// Never wait less than this between attempts.
const BACKOFF_FLOOR_MS: i64 = 250;
/// How often to look for a join token file while waiting for one.
pub const JOIN_POLL_MS: i64 = 1_000;

/// A credential with a lifetime: the identity token or the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// When the agent received it (Unix ms).
    pub obtained_at: i64,
    /// When it stops being valid (Unix ms).
    pub expires_at: i64,
}

impl Held {
    /// Renewal is due at two thirds of the lifetime.
    #[must_use]
    pub fn renew_due(&self) -> i64 {
        self.obtained_at + (self.expires_at - self.obtained_at).max(0) * 2 / 3
    }
}

/// What the supervisor should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Register with a join token, once one has been given. Also the step
    /// of a revoked or expired agent: only a new join token helps it.
    Enroll,
    /// Renew the identity; with a new certificate when `certificate`.
    Renew {
        certificate: bool,
    },
    Heartbeat,
}

/// Why a call to the control plane failed, as far as the state cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Unreachable, timed out, TLS, 5xx, garbled: try again later.
    Transient,
    /// The control plane no longer accepts this identity (expired,
    /// unknown agent, bad signature): only a new join token helps.
    IdentityRefused,
    /// The operator revoked this agent.
    Revoked,
    /// No join token file, or the one there was refused.
    NoUsableJoinToken,
}

/// What a call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Enrolled {
        agent_id: String,
        registered_at: i64,
        identity: Held,
        cert: Held,
        heartbeat_interval_ms: i64,
    },
    Renewed {
        identity: Held,
        cert: Option<Held>,
    },
    HeartbeatAccepted {
        state: RegistrationState,
        interval_ms: i64,
    },
    Failed {
        failure: Failure,
        error: String,
    },
}

/// Everything the agent knows about its registration; cloned into the
/// stats API's snapshot after each change.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub controller: String,
    registration: RegistrationState,
    agent_id: Option<String>,
    registered_at: Option<i64>,
    identity: Option<Held>,
    cert: Option<Held>,
    heartbeat_interval_ms: i64,
    next_heartbeat_at: i64,
    failures: u32,
    retry_at: Option<i64>,
    last_error: Option<String>,
    last_heartbeat_at: Option<i64>,
    renewals: u32,
    last_renewal_at: Option<i64>,
    cert_renewals: u32,
    last_cert_renewal_at: Option<i64>,
}

impl Lifecycle {
    /// An agent that has never enrolled.
    #[must_use]
    pub fn new(controller: &str) -> Self {
        Self {
            controller: controller.to_owned(),
            registration: RegistrationState::Pending,
            agent_id: None,
            registered_at: None,
            identity: None,
            cert: None,
            heartbeat_interval_ms: 30_000,
            next_heartbeat_at: 0,
            failures: 0,
            retry_at: None,
            last_error: None,
            last_heartbeat_at: None,
            renewals: 0,
            last_renewal_at: None,
            cert_renewals: 0,
            last_cert_renewal_at: None,
        }
    }

    /// An agent resuming from its saved state after a restart: it
    /// heartbeats at once to learn where it stands.
    #[must_use]
    pub fn resumed(controller: &str, saved: Resumed) -> Self {
        Self {
            registration: RegistrationState::Registered,
            agent_id: Some(saved.agent_id),
            registered_at: Some(saved.registered_at),
            identity: Some(saved.identity),
            cert: Some(saved.cert),
            heartbeat_interval_ms: saved.heartbeat_interval_ms.max(1_000),
            ..Self::new(controller)
        }
    }

    /// The next step and the earliest time (Unix ms) to take it.
    #[must_use]
    pub fn next(&self, now: i64) -> (Step, i64) {
        let earliest = self.retry_at.unwrap_or(now).max(now);
        let needs_join = match self.registration {
            RegistrationState::Pending
            | RegistrationState::Expired
            | RegistrationState::Revoked => true,
            RegistrationState::Registered | RegistrationState::Lost => {
                self.identity.is_none_or(|id| now >= id.expires_at)
            }
        };
        let (Some(identity), Some(cert), false) = (self.identity, self.cert, needs_join) else {
            return (Step::Enroll, earliest);
        };
        let renew_at = identity.renew_due().min(cert.renew_due()).max(earliest);
        let heartbeat_at = self.next_heartbeat_at.max(earliest);
        if renew_at <= heartbeat_at {
            let certificate = cert.renew_due() <= renew_at;
            (Step::Renew { certificate }, renew_at)
        } else {
            (Step::Heartbeat, heartbeat_at)
        }
    }

    /// Takes in what a call returned at `now`. `jitter` in 0..1 spreads
    /// retries (the supervisor passes a random number).
    pub fn apply(&mut self, now: i64, outcome: Outcome, jitter: f64) {
        match outcome {
            Outcome::Enrolled {
                agent_id,
                registered_at,
                identity,
                cert,
                heartbeat_interval_ms,
            } => {
                self.registration = RegistrationState::Registered;
                self.agent_id = Some(agent_id);
                self.registered_at = Some(registered_at);
                self.identity = Some(identity);
                self.cert = Some(cert);
                self.heartbeat_interval_ms = heartbeat_interval_ms.max(1_000);
                self.next_heartbeat_at = now + self.heartbeat_interval_ms;
                self.renewals = 0;
                self.cert_renewals = 0;
                self.succeeded();
            }
            Outcome::Renewed { identity, cert } => {
                self.registration = RegistrationState::Registered;
                self.identity = Some(identity);
                self.renewals += 1;
                self.last_renewal_at = Some(now);
                if let Some(cert) = cert {
                    self.cert = Some(cert);
                    self.cert_renewals += 1;
                    self.last_cert_renewal_at = Some(now);
                }
                self.succeeded();
            }
            Outcome::HeartbeatAccepted { state, interval_ms } => {
                self.heartbeat_interval_ms = interval_ms.max(1_000);
                self.next_heartbeat_at = now + self.heartbeat_interval_ms;
                self.last_heartbeat_at = Some(now);
                self.succeeded();
                self.registration = RegistrationState::Registered;
                if matches!(
                    state,
                    RegistrationState::Revoked | RegistrationState::Expired
                ) {
                    self.registration = state;
                    self.last_error = Some(format!("the control plane has this agent as {state}"));
                }
            }
            Outcome::Failed { failure, error } => self.failed(now, failure, error, jitter),
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
        self.last_error = None;
    }

    fn failed(&mut self, now: i64, failure: Failure, error: String, jitter: f64) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        let delay = match failure {
            Failure::Transient => self.backoff_ms(now, jitter),
            Failure::IdentityRefused => {
                self.registration = RegistrationState::Expired;
                JOIN_POLL_MS
            }
            Failure::Revoked => {
                self.registration = RegistrationState::Revoked;
                JOIN_POLL_MS
            }
            Failure::NoUsableJoinToken => JOIN_POLL_MS,
        };
        self.retry_at = Some(now + delay);
    }

    /// Capped exponential backoff with jitter. The cap shrinks as the
    /// identity nears expiry, so a control plane that comes back is found
    /// before the identity runs out.
    fn backoff_ms(&self, now: i64, jitter: f64) -> i64 {
        let exp = BACKOFF_BASE_MS.saturating_mul(1 << self.failures.saturating_sub(1).min(16));
        let mut cap = BACKOFF_CAP_MS;
        if self.identity.is_some() {
            cap = cap.min(self.heartbeat_interval_ms);
        }
        if let Some(id) = self.identity
            && id.expires_at > now
        {
            cap = cap.min((id.expires_at - now) / 4);
        }
        let delay = exp.min(cap) as f64 * (0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        (delay as i64).max(BACKOFF_FLOOR_MS)
    }

    /// The registration as the agent reports it at `now`.
    #[must_use]
    pub fn registration_state(&self, now: i64) -> RegistrationState {
        match self.registration {
            RegistrationState::Registered | RegistrationState::Lost
                if self.identity.is_none_or(|id| now >= id.expires_at) =>
            {
                RegistrationState::Expired
            }
            RegistrationState::Registered if self.failures > 0 => RegistrationState::Lost,
            state => state,
        }
    }

    /// The identity token's state at `now`.
    #[must_use]
    pub fn token_state(&self, now: i64) -> TokenState {
        match self.identity {
            None => TokenState::None,
            Some(id) if now >= id.expires_at => TokenState::Expired,
            Some(id) if now >= id.renew_due() && self.failures > 0 => TokenState::Expiring,
            Some(id) if now >= id.renew_due() => TokenState::Renewing,
            Some(_) => TokenState::Valid,
        }
    }

    #[must_use]
    pub fn agent_id(&self) -> Option<&str> {
        self.agent_id.as_deref()
    }

    #[must_use]
    pub fn identity(&self) -> Option<Held> {
        self.identity
    }

    #[must_use]
    pub fn cert(&self) -> Option<Held> {
        self.cert
    }

    /// `/v1/stats`'s registration block at `now`.
    #[must_use]
    pub fn registration_status(&self, now: i64) -> RegistrationStatus {
        RegistrationStatus {
            state: self.registration_state(now),
            agent_id: self.agent_id.clone(),
            controller: self.controller.clone(),
            registered_at: self.registered_at.map(secs),
            last_heartbeat_at: self.last_heartbeat_at.map(secs),
            consecutive_failures: self.failures,
            last_error: self.last_error.clone(),
        }
    }

    /// `/v1/stats`'s token block at `now`.
    #[must_use]
    pub fn token_status(&self, now: i64) -> TokenStatus {
        let state = self.token_state(now);
        TokenStatus {
            state,
            expires_at: self.identity.map(|id| secs(id.expires_at)),
            seconds_left: self
                .identity
                .map(|id| (id.expires_at - now).div_euclid(1000)),
            last_renewal_at: self.last_renewal_at.map(secs),
            renewals: self.renewals,
            last_error: if state == TokenState::Valid {
                None
            } else {
                self.last_error.clone()
            },
        }
    }

    /// `/v1/stats`'s certificate block at `now`.
    #[must_use]
    pub fn cert_status(&self, now: i64) -> CertificateStatus {
        CertificateStatus {
            expires_at: self.cert.map(|c| secs(c.expires_at)),
            seconds_left: self.cert.map(|c| (c.expires_at - now).div_euclid(1000)),
            last_renewal_at: self.last_cert_renewal_at.map(secs),
            renewals: self.cert_renewals,
        }
    }
}

/// What a restart resumes from (the saved state file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub agent_id: String,
    pub registered_at: i64,
    pub identity: Held,
    pub cert: Held,
    pub heartbeat_interval_ms: i64,
}

fn secs(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

#[cfg(test)]
mod tests;
