//! `xml-to-json`: converts the body of the message in hand (the request in inbound,
//! the response in outbound and on-error) from XML to JSON (`xmljson` shapes it) and
//! labels it `application/json`. `apply="content-type-xml"` converts only a body
//! labelled XML, `consider-accept-header` (default true) only when the request's Accept
//! asks for JSON. A body that is not well-formed XML goes on unchanged.
//! Must not touch: the status, headers other than Content-Type.

use roxmltree::Node;

use super::{policy, Compiled, Kind, NOT_BACKEND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow, Phase};
use crate::policy::parse::{flag, no_attributes, setting, Cx, BOOLEAN, R};
use crate::policy::xmljson::{xml_to_json, JsonKind, NotConverted};
use crate::policy::{Setting, Step};

pub const KIND: Kind = Kind {
    element: "xml-to-json",
    sections: NOT_BACKEND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct XmlToJson {
    pub kind: Setting<JsonKind>,
    /// true: convert only a body labelled XML (`apply="content-type-xml"`).
    pub only_xml: Setting<bool>,
    pub consider_accept: Setting<bool>,
    pub always_array: Setting<bool>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "kind",
            "apply",
            "consider-accept-header",
            "always-array-child-elements",
            "always-array-children",
        ],
    )?;
    let always_array = match n.attribute("always-array-child-elements") {
        Some(_) => setting(
            cx,
            n,
            "always-array-child-elements",
            Some(false),
            flag,
            BOOLEAN,
        )?,
        None => setting(cx, n, "always-array-children", Some(false), flag, BOOLEAN)?,
    };
    policy(XmlToJson {
        kind: setting(
            cx,
            n,
            "kind",
            None,
            json_kind,
            "javascript-friendly or direct",
        )?,
        only_xml: setting(
            cx,
            n,
            "apply",
            None,
            |v| apply(v, "content-type-xml"),
            "always or content-type-xml",
        )?,
        consider_accept: setting(cx, n, "consider-accept-header", Some(true), flag, BOOLEAN)?,
        always_array,
    })
}

/// `apply`: false for "always", true for the content-type condition.
pub(crate) fn apply(v: &str, condition: &str) -> Option<bool> {
    match v {
        "always" => Some(false),
        v if v == condition => Some(true),
        _ => None,
    }
}

fn json_kind(v: &str) -> Option<JsonKind> {
    match v {
        "direct" => Some(JsonKind::Direct),
        "javascript-friendly" => Some(JsonKind::JavascriptFriendly),
        _ => None,
    }
}

/// Whether a media type (a Content-Type, or one range of an Accept) is JSON or XML.
pub(crate) fn media_is(value: &str, json: bool) -> bool {
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if json {
        media == "application/json" || media == "text/json" || media.ends_with("+json")
    } else {
        media == "application/xml" || media == "text/xml" || media.ends_with("+xml")
    }
}

/// The request's Accept names JSON (or XML) explicitly, with a quality above zero.
pub(crate) fn accept_asks_for(call: &Call, json: bool) -> bool {
    let Some(accept) = call.header(Phase::Request, "Accept") else {
        return false;
    };
    accept.split(',').any(|range| {
        let refused = range.split(';').skip(1).any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        media_is(range, json) && !refused
    })
}

/// When a body conversion applies: towards which format, and its two conditions.
pub(crate) struct When {
    /// xml-to-json (else json-to-xml).
    pub to_json: bool,
    /// Only when the request's Accept asks for the target format.
    pub consider_accept: bool,
    /// Only when the body is labelled with the source format.
    pub only_labelled: bool,
}

/// Converts the body of the message in hand with `convert` and labels it with the
/// target format, when `when` holds; a body that is absent, not UTF-8 or not
/// convertible goes on as it was.
pub(crate) fn convert_body(
    call: &mut Call,
    when: When,
    convert: impl FnOnce(&str) -> Result<String, NotConverted>,
) {
    if when.consider_accept && !accept_asks_for(call, when.to_json) {
        return;
    }
    if when.only_labelled
        && !call
            .header(call.phase, "Content-Type")
            .is_some_and(|ct| media_is(&ct, !when.to_json))
    {
        return;
    }
    let (body, headers) = match call.phase {
        Phase::Request => (&mut call.st.req.body, &mut call.st.req.headers),
        Phase::Response => (&mut call.st.resp.body, &mut call.st.resp.headers),
    };
    let Some(text) = body.as_deref().and_then(|b| std::str::from_utf8(b).ok()) else {
        return;
    };
    match convert(text) {
        Ok(converted) => {
            *body = Some(converted.into_bytes());
            let label = match when.to_json {
                true => "application/json; charset=utf-8",
                false => "application/xml; charset=utf-8",
            };
            headers.set("Content-Type", Some(vec![label.into()]));
        }
        Err(why) => log::debug!("body conversion: the body goes on as it was: {}", why.0),
    }
}

impl Behaviour for XmlToJson {
    fn name(&self) -> &'static str {
        "xml-to-json"
    }
    fn facts(&self) -> Facts {
        let texts = [
            self.kind.text(),
            self.only_xml.text(),
            self.consider_accept.text(),
            self.always_array.text(),
        ];
        Facts {
            needs_body: true,
            reads_request: true,
            ..Facts::reading(texts.into_iter().flatten())
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let kind = or_fail!(call, step, call.setting(&self.kind));
        let only_xml = or_fail!(call, step, call.setting(&self.only_xml));
        let consider_accept = or_fail!(call, step, call.setting(&self.consider_accept));
        let always_array = or_fail!(call, step, call.setting(&self.always_array));
        let when = When {
            to_json: true,
            consider_accept,
            only_labelled: only_xml,
        };
        convert_body(call, when, |text| xml_to_json(text, kind, always_array));
        Flow::Continue
    }
}
