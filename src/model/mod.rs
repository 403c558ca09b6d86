//! Plain data shared by every layer: what the front ends show and the wire
//! formats both sides of a connection agree on. Depends on serde only.

pub mod scan;

pub use scan::{HostScan, Reach, Via};
