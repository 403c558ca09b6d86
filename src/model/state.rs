//! The states the console shows per host (DESIGN.md, "States the console
//! shows per host"). Shared by the agent (which reports its own
//! registration and token state), the control plane (which keeps the
//! registry) and the console (which merges both views).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How SSH to a host last went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SshState {
    /// Not tried yet.
    #[default]
    Unknown,
    Ok,
    AuthFailed,
    HostKeyUnknown,
    /// The host offered a key other than the one known_hosts holds.
    HostKeyChanged,
    /// Could not connect, or timed out.
    Unreachable,
}

/// The fleetctl agent on a host, as the console sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// No agent deployed (as far as fleetctl knows).
    #[default]
    None,
    /// A deploy is in progress; the step is reported next to it.
    Deploying,
    /// Its stats endpoint answers.
    Running,
    /// Deployed, but its stats endpoint does not answer.
    Unreachable,
    /// The last deploy failed.
    Failed,
}

/// An agent's registration with the control plane. The agent reports its own
/// view in `/v1/stats`; the control plane keeps its view in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistrationState {
    /// Not registered yet (enrolling, or waiting for a join token).
    #[default]
    Pending,
    /// Registered, heartbeats arriving.
    Registered,
    /// Registered, but heartbeats stopped arriving (agent side: the
    /// controller cannot be reached).
    Lost,
    /// Its identity expired without renewal; it needs a new join token.
    Expired,
    /// An operator revoked it; renewals and heartbeats are refused.
    Revoked,
}

/// An agent's identity token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenState {
    /// The agent holds no identity token yet.
    #[default]
    None,
    /// Valid, renewal not due yet.
    Valid,
    /// Renewal is due and under way.
    Renewing,
    /// Renewal is due and failing: the token will expire unless it succeeds.
    Expiring,
    /// Past its expiry.
    Expired,
}

macro_rules! text_forms {
    ($ty:ty { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The short form tables, filters and the store use.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the form [`Self::as_str`] writes.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }

            /// Every state, in the order a sort by state uses.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

text_forms!(SshState {
    Unknown => "unknown",
    Ok => "ok",
    AuthFailed => "auth-failed",
    HostKeyUnknown => "host-key-unknown",
    HostKeyChanged => "host-key-changed",
    Unreachable => "unreachable",
});

text_forms!(AgentState {
    None => "none",
    Deploying => "deploying",
    Running => "running",
    Unreachable => "unreachable",
    Failed => "failed",
});

text_forms!(RegistrationState {
    Pending => "pending",
    Registered => "registered",
    Lost => "lost",
    Expired => "expired",
    Revoked => "revoked",
});

text_forms!(TokenState {
    None => "none",
    Valid => "valid",
    Renewing => "renewing",
    Expiring => "expiring",
    Expired => "expired",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip_and_match_serde() {
        for s in RegistrationState::ALL {
            assert_eq!(RegistrationState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in TokenState::ALL {
            assert_eq!(TokenState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in SshState::ALL {
            assert_eq!(SshState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in AgentState::ALL {
            assert_eq!(AgentState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_string(s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert_eq!(TokenState::parse("bogus"), None);
    }
}
