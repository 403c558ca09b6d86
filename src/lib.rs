//! fleetctl: find hosts, learn what they are, put an agent on them, watch them.
//!
//! Layers, each using only those below it (see DESIGN.md):
//! `cli` → `scan` → `store` → `model`; `pki` and `auth` (certificates,
//! tokens) use only `model`.

// Tests may unwrap: a panic there is a failed test, which is the point.
#![cfg_attr(test, allow(clippy::unwrap_used))]

// The agent's layers: all a host runs (`--no-default-features --features agent`).
pub mod agent;
pub mod auth;
pub mod cli;
pub mod model;
pub mod pki;

// The console's: everything an operator runs besides the agent.
#[cfg(feature = "console")]
pub mod config;
#[cfg(feature = "console")]
pub mod control;
#[cfg(feature = "console")]
pub mod deploy;
#[cfg(feature = "console")]
pub mod engine;
#[cfg(feature = "console")]
pub mod fingerprint;
#[cfg(feature = "console")]
pub mod poll;
#[cfg(feature = "console")]
pub mod sandbox;
#[cfg(feature = "console")]
pub mod scan;
#[cfg(feature = "console")]
pub mod ssh;
#[cfg(feature = "console")]
pub mod store;
#[cfg(feature = "console")]
pub mod tui;

#[cfg(not(feature = "agent"))]
compile_error!(
    "fleetctl needs the `agent` feature (the console includes it): build with the default \
     features, or --no-default-features --features agent for the agent alone"
);
