//! The management plane (`edgegate manage`): the admin API that configures everything
//! and the gateway API that federated gateways poll. Plain blocking threads; not on the
//! hot path.
//! Must not touch: the gateway's event loop.

pub mod store;
pub mod token;
