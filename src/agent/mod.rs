//! The node agent (`fleetctl agent`): collects CPU and memory figures,
//! serves them over HTTPS with its fleet-CA certificate, and keeps its
//! registration with the control plane alive.

pub mod collect;
pub mod config;
pub mod lifecycle;
pub mod metrics;
