//! Plain data shared by every layer: what the front ends show and the wire
//! formats both sides of a connection agree on. Depends on serde, and on
//! regex and ipnet for host patterns (pure parsing and matching).

pub mod control;
pub mod duration;
pub mod facts;
pub mod hostlist;
#[cfg(feature = "console")]
pub mod pattern;
pub mod run;
pub mod scan;
pub mod state;
pub mod stats;
pub mod tags;
pub mod text;
pub mod time;

pub use facts::{FailureKind, Fingerprint, HostFacts};
pub use scan::{HostScan, Reach, Via};
pub use state::{AgentState, RegistrationState, SshState, TokenState};
pub use stats::AgentStats;
