//! fleetctl: find hosts, learn what they are, put an agent on them, watch them.
//!
//! Layers, each using only those below it (see DESIGN.md):
//! `cli` → `scan` → `store` → `model`; `pki` and `auth` (certificates,
//! tokens) use only `model`.

// Tests may unwrap: a panic there is a failed test, which is the point.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agent;
pub mod auth;
pub mod cli;
pub mod config;
pub mod control;
pub mod deploy;
pub mod engine;
pub mod fingerprint;
pub mod model;
pub mod pki;
pub mod poll;
pub mod sandbox;
pub mod scan;
pub mod ssh;
pub mod store;
pub mod tui;
