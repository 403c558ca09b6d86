//! What a discovery scan learns about one address.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Whether an address answered a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// It answered at least one probe.
    Alive,
    /// Every probe and retry went unanswered.
    Silent,
    /// Not probed to the end (the scan was interrupted) or never probed.
    Unknown,
}

impl Reach {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Alive => "alive",
            Reach::Silent => "silent",
            Reach::Unknown => "unknown",
        }
    }

    /// Parses the stored form written by [`Reach::as_str`].
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alive" => Some(Reach::Alive),
            "silent" => Some(Reach::Silent),
            "unknown" => Some(Reach::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The probe that proved a host alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// An ICMP (or ICMPv6) echo reply.
    Icmp,
    /// A TCP connection to this port was accepted or actively refused.
    Tcp(u16),
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // pad() so table columns line up with `{:<7}`.
        match self {
            Via::Icmp => f.pad("icmp"),
            Via::Tcp(port) => f.pad(&format!("tcp:{port}")),
        }
    }
}

impl std::str::FromStr for Via {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "icmp" {
            return Ok(Via::Icmp);
        }
        s.strip_prefix("tcp:")
            .and_then(|p| p.parse().ok())
            .map(Via::Tcp)
            .ok_or_else(|| format!("not a probe kind: {s:?} (expected icmp or tcp:PORT)"))
    }
}

// Serialised as the same short text the table shows ("icmp", "tcp:22"), so
// scripts match on one spelling whatever the output format.
impl Serialize for Via {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Via {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The outcome of scanning one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostScan {
    pub addr: IpAddr,
    /// Reverse DNS name, when asked for and found.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    pub reach: Reach,
    /// The first probe that got an answer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub via: Option<Via>,
    /// Round-trip time of that first answer, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rtt_ms: Option<f64>,
    /// TCP ports that accepted a connection.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub open_ports: Vec<u16>,
    /// The identification line an SSH server sent on port 22.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ssh_banner: Option<String>,
}

impl HostScan {
    #[must_use]
    pub fn new(addr: IpAddr, reach: Reach) -> Self {
        Self {
            addr,
            name: None,
            reach,
            via: None,
            rtt_ms: None,
            open_ports: Vec::new(),
            ssh_banner: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_round_trips_through_its_text_form() {
        for via in [Via::Icmp, Via::Tcp(22), Via::Tcp(65535)] {
            assert_eq!(via.to_string().parse::<Via>(), Ok(via));
        }
        assert!("tcp:x".parse::<Via>().is_err());
        assert!("udp:53".parse::<Via>().is_err());
    }

    #[test]
    fn json_uses_the_short_forms_and_omits_unknowns() {
        let mut host = HostScan::new("127.0.0.1".parse().unwrap(), Reach::Alive);
        host.via = Some(Via::Tcp(22));
        let json = serde_json::to_string(&host).unwrap();
        assert_eq!(
            json,
            r#"{"addr":"127.0.0.1","reach":"alive","via":"tcp:22"}"#
        );
        let back: HostScan = serde_json::from_str(&json).unwrap();
        assert_eq!(back, host);
    }
}
