//! HTTP/1.x as pure functions over byte slices: request heads (strict), response heads
//! (framing), chunked decoding, head rewriting, and the gateway's own failure answers.
//! Must not touch: sockets, the event loop, config loading.

pub mod chunked;
pub mod failure;
pub mod forward;
pub mod query;
pub mod request;
pub mod response;
pub mod spare;
pub mod whole;

pub use failure::{Failure, Source};
