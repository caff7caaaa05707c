//! The data plane: one mio event loop thread owning every listener, client and backend
//! socket. `server` is the loop (tokens, accept, config swap, timers, drain), `conn` the
//! per-connection state machine, `gate` the subscription check and policy glue between
//! routing and an exchange, `backend` the upstream keep-alive pool, `buffer` the
//! bounded buffer pool, `transport` plain TCP or TLS under a client connection.
//! Must not touch: disk, DNS, anything that blocks.

pub mod backend;
pub mod buffer;
pub mod conn;
pub mod external;
pub mod gate;
#[cfg(test)]
pub mod memory;
pub mod names;
pub mod one_way;
pub mod server;
pub mod sub;
pub mod token;
pub mod transport;
pub mod tunnel;
