//! The SSH client layer: how fleetctl reaches hosts, as OpenSSH would.

pub mod config;
pub mod known_hosts;
