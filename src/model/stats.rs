//! The agent's stats API (`GET /v1/stats`): what the agent serves and the
//! console reads. One type for both sides, so they cannot drift.
//!
//! Times are Unix seconds (`*_at`) or milliseconds (`*_at_ms`) in UTC;
//! percentages are 0..=100.

use serde::{Deserialize, Serialize};

use super::state::{RegistrationState, TokenState};

/// The port agents serve their stats API on when their `listen` names none.
pub const AGENT_PORT: u16 = 9701;

/// Where a deployed agent listens unless told otherwise: every address, [`AGENT_PORT`].
#[must_use]
pub fn default_agent_listen() -> String {
    format!("0.0.0.0:{AGENT_PORT}")
}

/// The port an agent's `listen` names: `ADDR:PORT`, `[V6]:PORT` or
/// `{host}:PORT` (deploy's placeholder for the address deployed to);
/// [`AGENT_PORT`] for an address alone, IPv6 ones unbracketed included
/// (`fd00::5` names no port: its last group is part of the address).
#[must_use]
pub fn listen_port(listen: &str) -> u16 {
    let port = if let Some(bracketed) = listen.strip_prefix('[') {
        bracketed.split_once("]:").map(|(_, port)| port)
    } else {
        // One colon separates a port; more make a bare IPv6 address.
        listen
            .split_once(':')
            .map(|(_, port)| port)
            .filter(|port| !port.contains(':'))
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(AGENT_PORT)
}

/// Everything `GET /v1/stats` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    /// The agent's version (`CARGO_PKG_VERSION` of the build it runs).
    pub agent_version: String,
    /// The host's name as the agent reads it.
    pub hostname: String,
    /// Seconds since the host booted.
    pub host_uptime_secs: u64,
    /// Seconds since the agent started.
    pub agent_uptime_secs: u64,
    /// The agent's own resident memory, in bytes.
    pub agent_rss_bytes: u64,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub registration: RegistrationStatus,
    pub token: TokenStatus,
    pub certificate: CertificateStatus,
    pub sample: SampleInfo,
}

/// CPU use over the last sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuStats {
    /// All CPUs together, 0..=100.
    pub total_pct: f64,
    /// One entry per CPU (`cpu0`, `cpu1`, ... in order), 0..=100.
    pub per_core_pct: Vec<f64>,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

/// Memory and swap from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
}

impl MemoryStats {
    /// Memory in use (total less available), 0..=100.
    #[must_use]
    pub fn used_pct(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        used as f64 * 100.0 / self.total_bytes as f64
    }
}

/// The agent's registration with the control plane, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationStatus {
    pub state: RegistrationState,
    /// Assigned by the control plane at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The control plane's URL.
    pub controller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<i64>,
    /// The last heartbeat the control plane accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<i64>,
    /// Heartbeats or renewals that failed in a row.
    pub consecutive_failures: u32,
    /// Why the last call to the control plane failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The agent's identity token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    pub state: TokenState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Seconds until expiry; negative once expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewal_at: Option<i64>,
    /// Renewals of this identity since the agent started.
    pub renewals: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The agent's TLS certificate from the fleet CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewal_at: Option<i64>,
    pub renewals: u32,
}

/// When the numbers above were sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub taken_at_ms: i64,
    pub interval_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_memory_is_total_less_available() {
        let m = MemoryStats {
            total_bytes: 1000,
            available_bytes: 250,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        };
        assert!((m.used_pct() - 75.0).abs() < 1e-9);
        let empty = MemoryStats {
            total_bytes: 0,
            ..m
        };
        assert!(empty.used_pct().abs() < f64::EPSILON);
    }

    #[test]
    fn listen_ports_are_read_whatever_the_address_family() {
        for (listen, port) in [
            ("0.0.0.0:9801", 9801),
            ("{host}:9702", 9702),
            ("{host}", AGENT_PORT),
            ("[fd00::5]:9703", 9703),
            ("[::1]:9704", 9704),
            // Bare IPv6 addresses name no port, whatever their last group.
            ("fd00::5", AGENT_PORT),
            ("fd00::1:5", AGENT_PORT),
            ("::1", AGENT_PORT),
            ("10.0.0.1", AGENT_PORT),
            ("[fd00::5]", AGENT_PORT),
        ] {
            assert_eq!(listen_port(listen), port, "{listen}");
        }
        assert_eq!(listen_port(&default_agent_listen()), AGENT_PORT);
    }
}
