//! `validate-content`: checks the size and the content of the body in hand (the request
//! in inbound, the response in outbound and on-error) against the API's definition: the
//! content type must be one the operation's request (or the response's status) lists,
//! unless unspecified-content-type-action allows it; a `<content validate-as="json">`
//! for that type checks the body against the representation's schema (or the
//! `schema-ref` named in the API's schemas), with allow-additional-properties
//! overriding the schemas. Content types may be mapped first (`content-type-map`).
//! XML and SOAP validation need an XML Schema validator and are refused at load.
//! Must not touch: the body (it is read, never changed).

use roxmltree::Node;

use super::validation::{action, action_opt, conclude, response_status, Action, Found, INTERNAL};
use super::{policy, Compiled, Kind, NOT_BACKEND};
use crate::policy::call::{Behaviour, Call, Facts, Flow, Phase};
use crate::policy::expr::parse_json;
use crate::policy::parse::{attr, boolean, elements, no_attributes, number, only_children, Cx, R};
use crate::policy::schema::Representation;
use crate::policy::Step;

pub const KIND: Kind = Kind {
    element: "validate-content",
    sections: NOT_BACKEND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct ValidateContent {
    unspecified: Action,
    max_size: u64,
    size_exceeded: Action,
    errors_var: Option<String>,
    map_any: Option<String>,
    map_missing: Option<String>,
    /// (from, to), lower case
    map: Vec<(String, String)>,
    contents: Vec<Content>,
}

#[derive(Debug, Clone)]
struct Content {
    /// None: every content type of the definition.
    content_type: Option<String>,
    action: Action,
    schema_ref: Option<String>,
    allow_additional: Option<bool>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "unspecified-content-type-action",
            "max-size",
            "size-exceeded-action",
            "errors-variable-name",
        ],
    )?;
    only_children(cx, n, &["content-type-map", "content"])?;
    let mut v = ValidateContent {
        unspecified: action(cx, n, "unspecified-content-type-action", None)?,
        max_size: number(cx, n, "max-size", None)?,
        size_exceeded: action(cx, n, "size-exceeded-action", None)?,
        errors_var: attr(n, "errors-variable-name").map(str::to_string),
        map_any: None,
        map_missing: None,
        map: Vec::new(),
        contents: Vec::new(),
    };
    for child in elements(n) {
        if child.tag_name().name() == "content-type-map" {
            no_attributes(
                cx,
                child,
                &["any-content-type-value", "missing-content-type-value"],
            )?;
            only_children(cx, child, &["type"])?;
            v.map_any = attr(child, "any-content-type-value").map(str::to_ascii_lowercase);
            v.map_missing = attr(child, "missing-content-type-value").map(str::to_ascii_lowercase);
            for t in elements(child) {
                no_attributes(cx, t, &["from", "when", "to"])?;
                if attr(t, "when").is_some() {
                    return Err(cx.err(t, "<type>: 'when' (a condition on the content type) is not supported; use 'from'"));
                }
                let from = attr(t, "from").ok_or_else(|| cx.err(t, "<type>: from is required"))?;
                let to = attr(t, "to").ok_or_else(|| cx.err(t, "<type>: to is required"))?;
                v.map
                    .push((from.to_ascii_lowercase(), to.to_ascii_lowercase()));
            }
            continue;
        }
        no_attributes(
            cx,
            child,
            &[
                "type",
                "validate-as",
                "schema-id",
                "schema-ref",
                "action",
                "allow-additional-properties",
            ],
        )?;
        match attr(child, "validate-as") {
            Some("json") => {}
            Some(other @ ("xml" | "soap")) => {
                return Err(cx.err(
                    child,
                    format!("<content>: validate-as=\"{other}\" needs an XML Schema validator, which edgegate does not have; json is supported"),
                ))
            }
            Some(other) => return Err(cx.err(child, format!("<content>: validate-as must be json, xml or soap, not '{other}'"))),
            None => return Err(cx.err(child, "<content>: validate-as is required")),
        }
        let schema_ref = match attr(child, "schema-ref") {
            None => None,
            Some(r) => Some(
                r.strip_prefix("#/components/schemas/")
                    .or_else(|| r.strip_prefix("#/definitions/"))
                    .ok_or_else(|| {
                        cx.err(
                            child,
                            format!(
                                "<content>: schema-ref '{r}' must be #/components/schemas/NAME"
                            ),
                        )
                    })?
                    .to_string(),
            ),
        };
        v.contents.push(Content {
            content_type: attr(child, "type")
                .filter(|t| !t.is_empty())
                .map(str::to_ascii_lowercase),
            action: action_opt(cx, child, "action")?.unwrap_or(Action::Prevent),
            schema_ref,
            allow_additional: attr(child, "allow-additional-properties")
                .map(|_| boolean(cx, child, "allow-additional-properties", false))
                .transpose()?,
        });
    }
    policy(v)
}

/// The media type of a Content-Type header, lower case, without parameters.
fn media(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl ValidateContent {
    fn mapped(&self, ct: Option<&str>) -> Option<String> {
        if let Some(any) = &self.map_any {
            return Some(any.clone());
        }
        match ct.map(media).filter(|c| !c.is_empty()) {
            None => self.map_missing.clone(),
            Some(c) => Some(
                self.map
                    .iter()
                    .find(|(from, _)| *from == c)
                    .map_or(c, |(_, to)| to.clone()),
            ),
        }
    }
}

impl Behaviour for ValidateContent {
    fn name(&self) -> &'static str {
        KIND.element
    }
    fn facts(&self) -> Facts {
        Facts {
            needs_body: true,
            reads_request: true,
            ..Facts::default()
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let found = self.check(call);
        conclude(step, call, KIND.element, self.errors_var.as_deref(), found)
    }
}

impl ValidateContent {
    /// What is wrong with the message in hand (read in place, never copied).
    fn check(&self, call: &Call) -> Vec<Found> {
        let request = call.phase == Phase::Request;
        let (message, kind) = if request {
            ("request", "RequestBody")
        } else {
            ("response", "ResponseBody")
        };
        let header = call
            .header(call.phase, "Content-Type")
            .map(|c| c.into_owned());
        let body: &[u8] = match call.phase {
            Phase::Request => call.st.req.body.as_deref().unwrap_or_default(),
            Phase::Response => call.st.resp.body.as_deref().unwrap_or_default(),
        };
        let (contract, schemas) = call.host.contract();
        let status = response_status(call);
        let reps: &[Representation] = if request {
            &contract.request
        } else {
            contract
                .responses
                .iter()
                .find(|r| r.status == status)
                .map_or(&[][..], |r| &r.representations[..])
        };
        let public = |details: &str| {
            if request {
                details.to_string()
            } else {
                INTERNAL.to_string()
            }
        };
        let mut found = Vec::new();
        let size = body.len() as u64;
        if size > self.max_size {
            let cap = if request { "Request" } else { "Response" };
            found.push(Found {
                name: String::new(),
                kind,
                rule: "SizeLimit",
                details: format!("{cap}'s body is {size} bytes long and it exceeds the configured limit of {} bytes.", self.max_size),
                public: if request {
                    format!("Request's body is {size} bytes long and it exceeds the limit of {} bytes.", self.max_size)
                } else {
                    INTERNAL.to_string()
                },
                action: self.size_exceeded,
            });
        }
        let ct = self.mapped(header.as_deref());
        if body.is_empty() && ct.is_none() {
            return found;
        }
        let ct_text = ct.clone().unwrap_or_default();
        let rep = reps.iter().find(|r| r.content_type == ct_text);
        if rep.is_none() {
            let details = format!("Unspecified content type {ct_text} is not allowed.");
            found.push(Found {
                name: ct_text.clone(),
                kind,
                rule: "Unspecified",
                public: public(&details),
                details,
                action: self.unspecified,
            });
        }
        let content = self.contents.iter().find(|c| match &c.content_type {
            Some(t) => *t == ct_text,
            None => rep.is_some(),
        });
        if let Some(content) = content.filter(|c| c.action != Action::Ignore) {
            let schema = match &content.schema_ref {
                Some(name) => schemas.named(name).map(|i| (name.clone(), i)),
                None => rep.and_then(|r| r.schema.clone()),
            };
            match schema {
                None => {
                    let what = content.schema_ref.clone().unwrap_or_default();
                    let details = format!("API's schema does not contain definition {what}, which is associated with the content type {ct_text}.");
                    found.push(Found {
                        name: ct_text.clone(),
                        kind,
                        rule: "MissingDefinition",
                        details,
                        public: INTERNAL.to_string(),
                        action: content.action,
                    });
                }
                Some((name, idx)) => {
                    let lead = format!("Body of the {message} does not conform to the definition {name}, which is associated with the content type {ct_text}.");
                    let text = match std::str::from_utf8(body) {
                        Ok(t) => std::borrow::Cow::Borrowed(t),
                        Err(_) => String::from_utf8_lossy(body),
                    };
                    let problems = match parse_json(&text) {
                        Ok(value) => schemas.validate(idx, &value, content.allow_additional),
                        Err(e) => vec![e],
                    };
                    for p in problems {
                        let details = format!("{lead} {p}");
                        found.push(Found {
                            name: ct_text.clone(),
                            kind,
                            rule: "IncorrectMessage",
                            public: public(&details),
                            details,
                            action: content.action,
                        });
                    }
                }
            }
        }
        found
    }
}
