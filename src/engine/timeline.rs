//! Each host's recent identity token, certificate, registration and
//! heartbeat history, for the host detail's timeline: a bounded list of
//! marks in Unix seconds over the last [`HISTORY_WINDOW`] (the window the
//! CPU and memory charts keep), fed where the actor merges stats reads and
//! registry reads.
//!
//! Times the agent or the control plane report (registered, renewed,
//! heartbeat, revoked) are kept as they report them; state changes are
//! stamped with the time the engine saw them. Marks that fall out of the
//! window fold into the state the window starts with, so the first column
//! still says what held then.

use std::collections::VecDeque;

use crate::model::control::AgentRecord;
use crate::model::{AgentStats, RegistrationState, TokenState};

use super::state::HISTORY_WINDOW;

/// The most marks one host keeps, whatever the heartbeat interval: a
/// thousand hosts' timelines stay a few megabytes.
pub const TIMELINE_MARKS: usize = 256;

/// Something that happened to a host's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Registration: a new identity token and certificate.
    Issued,
    /// The identity token was renewed.
    TokenRenewed,
    /// The certificate was renewed.
    CertRenewed,
    /// The token's state changed to this.
    Token(TokenState),
    /// The registration's state changed to this.
    Registration(RegistrationState),
    /// A heartbeat the control plane accepted.
    Heartbeat,
    /// An operator revoked the agent.
    Revoked,
}

/// A mark and when it happened (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedMark {
    pub at: i64,
    pub mark: Mark,
}

/// What the merged host view says now, for [`Timeline::observe`].
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub token: TokenState,
    pub registration: RegistrationState,
    pub token_expires_at: Option<i64>,
    pub stats: Option<&'a AgentStats>,
    pub registry: Option<&'a AgentRecord>,
}

/// The latest reported times (Unix seconds) already recorded, to tell
/// new ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    registered: Option<i64>,
    token_renewed: Option<i64>,
    cert_renewed: Option<i64>,
    heartbeat: Option<i64>,
    revoked: Option<i64>,
}

/// One host's marks, oldest first, at most [`TIMELINE_MARKS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    marks: VecDeque<TimedMark>,
    /// What held before the first kept mark.
    token_before: TokenState,
    registration_before: RegistrationState,
    cert_before: bool,
    /// When the current identity token and certificate expire.
    pub token_expires_at: Option<i64>,
    pub cert_expires_at: Option<i64>,
    seen: Seen,
}

impl Timeline {
    /// Marks, oldest first.
    #[must_use]
    pub fn marks(&self) -> impl DoubleEndedIterator<Item = &TimedMark> + ExactSizeIterator {
        self.marks.iter()
    }

    /// Nothing recorded and nothing held: a host that never had an agent.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
            && self.token_before == TokenState::None
            && self.registration_before == RegistrationState::Pending
            && !self.cert_before
    }

    /// Adds a mark in time order; past [`TIMELINE_MARKS`] the oldest goes.
    pub fn record(&mut self, at: i64, mark: Mark) {
        let index = self
            .marks
            .iter()
            .rposition(|m| m.at <= at)
            .map_or(0, |i| i + 1);
        self.marks.insert(index, TimedMark { at, mark });
        while self.marks.len() > TIMELINE_MARKS {
            self.pop_front();
        }
    }

    /// Drops marks before `start`, keeping what they left in effect.
    pub fn prune(&mut self, start: i64) {
        while self.marks.front().is_some_and(|m| m.at < start) {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        let Some(first) = self.marks.pop_front() else {
            return;
        };
        match first.mark {
            Mark::Issued => {
                self.token_before = TokenState::Valid;
                self.registration_before = RegistrationState::Registered;
                self.cert_before = true;
            }
            Mark::Token(state) => self.token_before = state,
            Mark::Registration(state) => self.registration_before = state,
            Mark::Revoked => self.registration_before = RegistrationState::Revoked,
            Mark::TokenRenewed | Mark::CertRenewed | Mark::Heartbeat => {}
        }
    }

    fn until(&self, t: i64) -> impl Iterator<Item = &TimedMark> {
        self.marks.iter().take_while(move |m| m.at <= t)
    }

    /// The token's state at `t` as recorded (expiry times aside).
    #[must_use]
    pub fn token_at(&self, t: i64) -> TokenState {
        self.until(t)
            .fold(self.token_before, |state, m| match m.mark {
                Mark::Issued | Mark::TokenRenewed => TokenState::Valid,
                Mark::Token(s) => s,
                _ => state,
            })
    }

    /// The registration's state at `t`.
    #[must_use]
    pub fn registration_at(&self, t: i64) -> RegistrationState {
        self.until(t)
            .fold(self.registration_before, |state, m| match m.mark {
                Mark::Issued => RegistrationState::Registered,
                Mark::Registration(s) => s,
                Mark::Revoked => RegistrationState::Revoked,
                _ => state,
            })
    }

    /// Whether a certificate was held at `t` (expiry aside).
    #[must_use]
    pub fn cert_at(&self, t: i64) -> bool {
        self.cert_before || self.until(t).any(|m| m.mark == Mark::Issued)
    }

    /// Records what changed since the last observation: new reported
    /// times, and state changes stamped `now`; then drops what fell out of
    /// the window.
    pub fn observe(&mut self, host: Observed<'_>, now: i64) {
        let stats = host.stats;
        let registry = host.registry;
        let registered_at = registry
            .map(|r| r.registered_at)
            .or_else(|| stats.and_then(|s| s.registration.registered_at));
        if let Some(at) = newer(registered_at, &mut self.seen.registered) {
            self.record(at, Mark::Issued);
        }
        if let Some(at) = newer(registry.and_then(|r| r.revoked_at), &mut self.seen.revoked) {
            self.record(at, Mark::Revoked);
        }
        if let Some(at) = newer(
            stats.and_then(|s| s.token.last_renewal_at),
            &mut self.seen.token_renewed,
        ) {
            self.record(at, Mark::TokenRenewed);
        }
        if let Some(at) = newer(
            stats.and_then(|s| s.certificate.last_renewal_at),
            &mut self.seen.cert_renewed,
        ) {
            self.record(at, Mark::CertRenewed);
        }
        let heartbeat = stats
            .and_then(|s| s.registration.last_heartbeat_at)
            .max(registry.and_then(|r| r.last_heartbeat_at));
        if let Some(at) = newer(heartbeat, &mut self.seen.heartbeat) {
            self.record(at, Mark::Heartbeat);
        }
        if self.token_at(now) != host.token {
            self.record(now, Mark::Token(host.token));
        }
        if self.registration_at(now) != host.registration {
            self.record(now, Mark::Registration(host.registration));
        }
        self.token_expires_at = host.token_expires_at;
        self.cert_expires_at = stats
            .and_then(|s| s.certificate.expires_at)
            .or(registry.map(|r| r.certificate_expires_at));
        let window = i64::try_from(HISTORY_WINDOW.as_secs()).unwrap_or(i64::MAX);
        self.prune(now.saturating_sub(window));
    }
}

/// `reported` when it is later than `seen` (which it then becomes).
fn newer(reported: Option<i64>, seen: &mut Option<i64>) -> Option<i64> {
    let at = reported?;
    if seen.is_some_and(|s| s >= at) {
        return None;
    }
    *seen = Some(at);
    Some(at)
}

#[cfg(test)]
#[path = "timeline_tests.rs"]
mod tests;
