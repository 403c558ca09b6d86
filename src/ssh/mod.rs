//! The SSH client layer: how fleetctl reaches hosts, as OpenSSH would.
//!
//! ```text
//!  SshTarget::resolve(flags, ~/.ssh/config) ─▶ Connector::connect ─▶ Session::run
//!                                               │ TCP or ProxyJump hop
//!                                               │ host key vs user + global known_hosts (policy, ask)
//!                                               └ agent → identity files → password
//! ```

mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod exec;
pub mod host_keys;
pub mod known_hosts;
pub mod prompt;
mod sftp;
pub mod shell;
pub mod target;
mod verify;

pub use client::{Connector, HostKeyPolicy, Output, Session};
pub use error::{FailureKind, SshError};
pub use prompt::{NoPrompt, Prompter, TerminalPrompt};
pub use target::{ConnectFlags, LocalUser, SshTarget};
