//! The policies edgegate implements, one module each: its parse (the XML element and
//! its attributes, checked against APIM's), its compiled form, its facts and its run.
//! `KINDS` is the registry the compiler looks elements up in; adding a policy is one new
//! module here and one line in `KINDS`.
//! Must not touch: sockets, the config's data model (a running policy asks its
//! `call::Host`), the clock (time comes in through `call::Call`).

pub mod authentication_basic;
pub mod authentication_certificate;
pub mod cache_response;
pub mod cache_value;
pub mod check_header;
pub mod choose;
pub mod cors;
pub mod cross_domain;
pub mod emit_metric;
pub mod find_and_replace;
pub mod forward_request;
pub mod include_fragment;
pub mod ip_filter;
pub mod json_to_xml;
pub mod jsonp;
pub mod limit_concurrency;
pub mod managed_identity;
pub mod mock_response;
pub mod proxy;
pub mod quota;
pub mod rate_limit;
pub mod rate_limit_by_key;
pub mod retry;
pub mod return_response;
pub mod rewrite_uri;
pub mod send_request;
pub mod set_backend_service;
pub mod set_body;
pub mod set_header;
pub mod set_method;
pub mod set_query_parameter;
pub mod set_status;
pub mod set_variable;
pub mod trace;
pub mod validate_client_certificate;
pub mod validate_content;
pub mod validate_jwt;
pub mod validate_parameters;
pub mod validate_status_code;
pub mod validation;
pub mod wait;
pub mod xml_to_json;

use std::sync::Arc;

use roxmltree::Node;

use super::call::Behaviour;
use super::parse::{Cx, R};
use super::Section;
use forward_request::Forward;

/// What compiling an element gives: a policy, or the forward-request of the backend
/// section (possibly wrapped in retry / limit-concurrency), which the plan holds apart.
pub enum Compiled {
    Policy(Arc<dyn Behaviour>),
    Forward(Box<Forward>),
}

/// One entry of the registry.
pub struct Kind {
    /// The element name.
    pub element: &'static str,
    /// The sections it may appear in.
    pub sections: &'static [Section],
    /// Whether it has child elements (checked by `compile`); without, any child is an
    /// error before `compile` runs.
    pub children: bool,
    pub compile: fn(&mut Cx, Node) -> R<Compiled>,
}

pub(crate) const ALL: &[Section] = &[
    Section::Inbound,
    Section::Backend,
    Section::Outbound,
    Section::OnError,
];
pub(crate) const INBOUND: &[Section] = &[Section::Inbound];
pub(crate) const OUTBOUND: &[Section] = &[Section::Outbound];
pub(crate) const REQUEST: &[Section] = &[Section::Inbound, Section::Backend];
/// Where a call can wait for its policies' own requests.
pub(crate) const WAITING: &[Section] = &[
    Section::Inbound,
    Section::Backend,
    Section::Outbound,
    Section::OnError,
];
pub(crate) const BACKEND: &[Section] = &[Section::Backend];
/// Every section but backend (the body conversions).
pub(crate) const NOT_BACKEND: &[Section] = &[Section::Inbound, Section::Outbound, Section::OnError];

/// The registry: every policy element the compiler accepts.
pub const KINDS: &[Kind] = &[
    authentication_basic::KIND,
    authentication_certificate::KIND,
    cache_response::LOOKUP,
    cache_response::STORE,
    cache_value::LOOKUP,
    cache_value::REMOVE,
    cache_value::STORE,
    check_header::KIND,
    choose::KIND,
    cors::KIND,
    cross_domain::KIND,
    emit_metric::KIND,
    find_and_replace::KIND,
    forward_request::KIND,
    include_fragment::KIND,
    forward_request::RETRY,
    ip_filter::KIND,
    json_to_xml::KIND,
    jsonp::KIND,
    limit_concurrency::KIND,
    managed_identity::KIND,
    mock_response::KIND,
    proxy::KIND,
    quota::KIND,
    quota::BY_KEY,
    rate_limit::KIND,
    rate_limit_by_key::KIND,
    return_response::KIND,
    rewrite_uri::KIND,
    send_request::KIND,
    send_request::ONE_WAY,
    set_backend_service::KIND,
    set_body::KIND,
    set_header::KIND,
    set_method::KIND,
    set_query_parameter::KIND,
    set_status::KIND,
    set_variable::KIND,
    trace::KIND,
    validate_jwt::KIND,
    validate_content::KIND,
    validate_parameters::PARAMETERS,
    validate_parameters::HEADERS,
    validate_status_code::KIND,
    validate_client_certificate::KIND,
    validate_jwt::AZURE_AD,
    wait::KIND,
    xml_to_json::KIND,
];

/// A compiled policy as the plan holds it.
pub(crate) fn policy(p: impl Behaviour + 'static) -> R<Compiled> {
    Ok(Compiled::Policy(Arc::new(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_registered_once() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.element).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "an element is registered twice");
    }
}
