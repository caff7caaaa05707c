//! The APIM pipeline at request time: a compiled plan (`crate::policy`) run against a
//! request, the response, the runtime's entities (`crate::config`) and the loop's
//! counters. It sits above both: the policy language never needs the config's data model
//! to compile, and the config holds compiled plans.
//! Must not touch: sockets, the loop's state, the clock (time comes in as an argument).

pub mod exec;
