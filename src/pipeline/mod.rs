//! The APIM pipeline at request time: a compiled plan (`crate::policy`) run against a
//! request, the response, the runtime's entities (`crate::config`) and the loop's
//! counters. It sits above both: the policy language never needs the config's data model
//! to compile, and the config holds compiled plans. The connection drives one call
//! through `phases::Pipeline` at fixed points (inbound, response head, failure, retry
//! decision, finish); `exec` runs a section's steps.
//! Must not touch: sockets, the loop's state, the clock (time comes in as an argument).

pub mod exec;
pub mod phases;

pub use exec::Io;
pub use phases::{Ids, Inbound, Pipeline};

#[cfg(test)]
mod tests;
