//! Plain data shared by every layer: what the front ends show and the wire
//! formats both sides of a connection agree on. Depends on serde only.

pub mod facts;
pub mod scan;

pub use facts::HostFacts;
pub use scan::{HostScan, Reach, Via};
