//! `validate-parameters` (the request's path, query and header parameters) and
//! `validate-headers` (the response's headers) against the operation's definition:
//! a declared parameter's value must parse as its type and be one of its values (the
//! specified action), a parameter the definition does not declare is handled by the
//! unspecified action, and a declared one may not repeat. `<headers>`, `<query>` and
//! `<path>` (and `<header name action>`) override the actions per place and per name.
//! Headers of the protocol itself (Host, Content-Type, Accept, Authorization, the
//! subscription key, …) are never "unspecified": no definition lists them.
//! Must not touch: the message (it is read, never changed).

use roxmltree::Node;

use super::validation::{action, action_opt, conclude, response_status, Action, Found, INTERNAL};
use super::{policy, Compiled, Kind, INBOUND, NOT_BACKEND};
use crate::policy::call::{Behaviour, Call, Facts, Flow};
use crate::policy::parse::{attr, elements, no_attributes, only_children, Cx, R};
use crate::policy::request::parse_query;
use crate::policy::schema::Param;
use crate::policy::Step;

pub const PARAMETERS: Kind = Kind {
    element: "validate-parameters",
    sections: INBOUND,
    children: true,
    compile: compile_parameters,
};

pub const HEADERS: Kind = Kind {
    element: "validate-headers",
    sections: NOT_BACKEND,
    children: true,
    compile: compile_headers,
};

/// Actions for one place (or the whole policy), with per-name overrides.
#[derive(Debug, Clone)]
struct Actions {
    specified: Action,
    unspecified: Action,
    names: Vec<(String, Action)>,
}

impl Actions {
    fn for_name(&self, name: &str, declared: bool) -> Action {
        self.names
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(
                if declared {
                    self.specified
                } else {
                    self.unspecified
                },
                |(_, a)| *a,
            )
    }
}

#[derive(Debug, Clone)]
pub struct ValidateParameters {
    errors_var: Option<String>,
    headers: Actions,
    query: Actions,
    path: Actions,
}

#[derive(Debug, Clone)]
pub struct ValidateHeaders {
    errors_var: Option<String>,
    actions: Actions,
}

/// Headers no definition lists: the protocol's, the gateway's and APIM's own.
fn protocol_header(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "host",
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "user-agent",
        "authorization",
        "cache-control",
        "pragma",
        "cookie",
        "set-cookie",
        "date",
        "server",
        "via",
        "etag",
        "expires",
        "last-modified",
        "vary",
        "age",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "range",
        "content-range",
        "accept-ranges",
        "origin",
        "referer",
        "te",
        "trailer",
        "upgrade",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "forwarded",
        "traceparent",
        "tracestate",
        "request-id",
        "x-request-id",
        "ocp-apim-subscription-key",
        "ocp-apim-trace",
        "location",
        "www-authenticate",
        "access-control-allow-origin",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
        || name
            .get(..15)
            .is_some_and(|p| p.eq_ignore_ascii_case("access-control-"))
}

fn place_actions(cx: &Cx, n: Node, parent: Option<&Actions>, child_name: &str) -> R<Actions> {
    let specified_attr = if n.has_attribute("specified-header-action") {
        "specified-header-action"
    } else {
        "specified-parameter-action"
    };
    let unspecified_attr = if n.has_attribute("unspecified-header-action") {
        "unspecified-header-action"
    } else {
        "unspecified-parameter-action"
    };
    let (specified, unspecified) = match parent {
        None => (
            action(cx, n, specified_attr, None)?,
            action(cx, n, unspecified_attr, None)?,
        ),
        Some(p) => (
            action_opt(cx, n, specified_attr)?.unwrap_or(p.specified),
            action_opt(cx, n, unspecified_attr)?.unwrap_or(p.unspecified),
        ),
    };
    let mut names = Vec::new();
    for c in elements(n).filter(|c| c.tag_name().name() == child_name) {
        no_attributes(cx, c, &["name", "action"])?;
        let name = attr(c, "name")
            .ok_or_else(|| cx.err(c, format!("<{child_name}>: name is required")))?;
        names.push((name.to_string(), action(cx, c, "action", None)?));
    }
    Ok(Actions {
        specified,
        unspecified,
        names,
    })
}

fn compile_parameters(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "specified-parameter-action",
            "unspecified-parameter-action",
            "errors-variable-name",
        ],
    )?;
    only_children(cx, n, &["headers", "query", "path"])?;
    let top = place_actions(cx, n, None, "parameter")?;
    let mut v = ValidateParameters {
        errors_var: attr(n, "errors-variable-name").map(str::to_string),
        headers: top.clone(),
        query: top.clone(),
        path: top.clone(),
    };
    for place in elements(n) {
        no_attributes(
            cx,
            place,
            &["specified-parameter-action", "unspecified-parameter-action"],
        )?;
        only_children(cx, place, &["parameter"])?;
        let a = place_actions(cx, place, Some(&top), "parameter")?;
        match place.tag_name().name() {
            "headers" => v.headers = a,
            "query" => v.query = a,
            _ => v.path = a,
        }
    }
    policy(v)
}

fn compile_headers(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "specified-header-action",
            "unspecified-header-action",
            "errors-variable-name",
        ],
    )?;
    only_children(cx, n, &["header"])?;
    policy(ValidateHeaders {
        errors_var: attr(n, "errors-variable-name").map(str::to_string),
        actions: place_actions(cx, n, None, "header")?,
    })
}

/// Checks the values of `name` against `declared` (if declared), as `kind` in `place`.
#[allow(clippy::too_many_arguments)]
fn check(
    found: &mut Vec<Found>,
    name: &str,
    values: &[&str],
    declared: Option<&Param>,
    actions: &Actions,
    kind: &'static str,
    place: &str,
    request: bool,
) {
    let action = actions.for_name(name, declared.is_some());
    let public = |d: &str| {
        if request {
            d.to_string()
        } else {
            INTERNAL.to_string()
        }
    };
    let Some(param) = declared else {
        let details = format!("Unspecified {place} {name} is not allowed.");
        found.push(Found {
            name: name.into(),
            kind,
            rule: "Unspecified",
            public: public(&details),
            details,
            action,
        });
        return;
    };
    if values.len() > 1 {
        let who = if request { "Request" } else { "Response" };
        let details = format!("{who} cannot contain multiple values for the {place} {name}.");
        found.push(Found {
            name: name.into(),
            kind,
            rule: "IncorrectMessage",
            public: public(&details),
            details,
            action,
        });
        return;
    }
    if let Some(problem) = values.first().and_then(|v| param.problem(v)) {
        let details =
            format!("Value of the {place} {name} does not conform to the definition. {problem}");
        let public_text = if request {
            format!("The value of the {place} {name} does not conform to the definition. {problem}")
        } else {
            INTERNAL.to_string()
        };
        found.push(Found {
            name: name.into(),
            kind,
            rule: "IncorrectMessage",
            public: public_text,
            details,
            action,
        });
    }
}

/// Checks each header of `headers` (once per name, all its values) against `declared`.
fn check_headers(
    found: &mut Vec<Found>,
    headers: &[(String, String)],
    declared: &[Param],
    actions: &Actions,
    kind: &'static str,
    request: bool,
) {
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            continue;
        }
        seen.push(lower);
        let param = declared.iter().find(|p| p.name.eq_ignore_ascii_case(name));
        if param.is_none() && protocol_header(name) {
            continue;
        }
        let values: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        check(
            found, name, &values, param, actions, kind, "header", request,
        );
    }
}

impl Behaviour for ValidateParameters {
    fn name(&self) -> &'static str {
        PARAMETERS.element
    }
    fn facts(&self) -> Facts {
        Facts {
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let (contract, _) = call.host.contract();
        let req = call.host.request();
        let mut found = Vec::new();
        // path parameters: always declared by the template they matched
        for p in contract
            .template
            .iter()
            .filter(|p| !call.host.template_query_key(&p.name))
        {
            if let Some(raw) = call.host.template_param(&p.name) {
                let value = crate::policy::request::decode(raw);
                check(
                    &mut found,
                    &p.name,
                    &[&value],
                    Some(p),
                    &self.path,
                    "PathParameter",
                    "path parameter",
                    true,
                );
            }
        }
        let query = parse_query(req.query);
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in &query {
            if seen.contains(&k.as_str()) {
                continue;
            }
            seen.push(k);
            let values: Vec<&str> = query
                .iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect();
            let declared = contract
                .query
                .iter()
                .chain(&contract.template)
                .find(|p| p.name == *k);
            if declared.is_none() && k.eq_ignore_ascii_case("subscription-key") {
                continue;
            }
            check(
                &mut found,
                k,
                &values,
                declared,
                &self.query,
                "QueryParameter",
                "query parameter",
                true,
            );
        }
        let headers = req.headers.to_owned_list();
        check_headers(
            &mut found,
            &headers,
            &contract.headers,
            &self.headers,
            "RequestHeader",
            true,
        );
        conclude(
            step,
            call,
            PARAMETERS.element,
            self.errors_var.as_deref(),
            found,
        )
    }
}

impl Behaviour for ValidateHeaders {
    fn name(&self) -> &'static str {
        HEADERS.element
    }
    fn facts(&self) -> Facts {
        Facts::default()
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let status = response_status(call);
        let (contract, _) = call.host.contract();
        let declared_list: &[Param] = contract
            .responses
            .iter()
            .find(|r| r.status == status)
            .map_or(&[][..], |r| &r.headers[..]);
        let headers = call
            .host
            .response()
            .map(|r| r.headers.to_owned_list())
            .unwrap_or_default();
        let mut found = Vec::new();
        check_headers(
            &mut found,
            &headers,
            declared_list,
            &self.actions,
            "ResponseHeader",
            false,
        );
        conclude(
            step,
            call,
            HEADERS.element,
            self.errors_var.as_deref(),
            found,
        )
    }
}
