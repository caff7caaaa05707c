//! The integration suite, one test binary (built and linked once): the real `edgegate`
//! binary on 127.0.0.1 ephemeral ports, real origins, real SQLite files, the real
//! management plane. One module per area; helpers live in `common`.

mod common;

mod agent;
mod backups;
mod client_certificates;
mod expressions;
mod external_cache;
mod federation;
mod forward_proxy;
mod identity;
mod lifecycle;
mod openapi;
mod openid;
mod plane_http;
mod policies;
mod portal;
mod portal_oidc;
mod proxy;
mod response_cache;
mod send_request;
mod stores;
mod streaming;
mod strict;
mod tls;
mod validation;
