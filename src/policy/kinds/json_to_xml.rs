//! `json-to-xml`: converts the body of the message in hand (the request in inbound,
//! the response in outbound and on-error) from JSON to XML (`xmljson` shapes it) and
//! labels it `application/xml`. `apply="content-type-json"` converts only a body
//! labelled JSON, `consider-accept-header` (default true) only when the request's
//! Accept asks for XML. A body that is not JSON goes on unchanged.
//! Must not touch: the status, headers other than Content-Type.

use roxmltree::Node;

use super::xml_to_json::{apply, convert_body, When};
use super::{policy, Compiled, Kind, NOT_BACKEND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{flag, no_attributes, setting, text_value, Cx, BOOLEAN, R};
use crate::policy::xmljson::{json_to_xml, XmlOptions};
use crate::policy::{Setting, Step, Text};

pub const KIND: Kind = Kind {
    element: "json-to-xml",
    sections: NOT_BACKEND,
    children: false,
    compile,
};

#[derive(Debug, Clone)]
pub struct JsonToXml {
    /// true: convert only a body labelled JSON (`apply="content-type-json"`).
    pub only_json: Setting<bool>,
    pub consider_accept: Setting<bool>,
    pub parse_date: bool,
    pub separator: Setting<char>,
    pub namespace_prefix: Option<Text>,
    pub attribute_block: Option<Text>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(
        cx,
        n,
        &[
            "apply",
            "consider-accept-header",
            "parse-date",
            "namespace-separator",
            "namespace-prefix",
            "attribute-block-name",
        ],
    )?;
    let optional = |cx: &mut Cx, name: &str| -> R<Option<Text>> {
        n.attribute(name).map(|v| text_value(cx, n, v)).transpose()
    };
    policy(JsonToXml {
        only_json: setting(
            cx,
            n,
            "apply",
            None,
            |v| apply(v, "content-type-json"),
            "always or content-type-json",
        )?,
        consider_accept: setting(cx, n, "consider-accept-header", Some(true), flag, BOOLEAN)?,
        parse_date: crate::policy::parse::boolean(cx, n, "parse-date", true)?,
        separator: setting(
            cx,
            n,
            "namespace-separator",
            Some('_'),
            one_char,
            "one character",
        )?,
        namespace_prefix: optional(cx, "namespace-prefix")?,
        attribute_block: optional(cx, "attribute-block-name")?,
    })
}

fn one_char(v: &str) -> Option<char> {
    let mut chars = v.chars();
    chars.next().filter(|_| chars.next().is_none())
}

impl Behaviour for JsonToXml {
    fn name(&self) -> &'static str {
        "json-to-xml"
    }
    fn facts(&self) -> Facts {
        let texts = [
            self.only_json.text(),
            self.consider_accept.text(),
            self.separator.text(),
            self.namespace_prefix.as_ref(),
            self.attribute_block.as_ref(),
        ];
        Facts {
            needs_body: true,
            reads_request: true,
            ..Facts::reading(texts.into_iter().flatten())
        }
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let only_json = or_fail!(call, step, call.setting(&self.only_json));
        let consider_accept = or_fail!(call, step, call.setting(&self.consider_accept));
        let separator = or_fail!(call, step, call.setting(&self.separator));
        let mut optional = |t: &Option<Text>| t.as_ref().map(|t| call.text(t)).transpose();
        let namespace_prefix = or_fail!(call, step, optional(&self.namespace_prefix));
        let attribute_block = or_fail!(call, step, optional(&self.attribute_block));
        let opts = XmlOptions {
            parse_date: self.parse_date,
            separator,
            namespace_prefix: namespace_prefix.unwrap_or_else(|| "xmlns".into()),
            attribute_block: attribute_block.filter(|b| !b.is_empty()),
        };
        let when = When {
            to_json: false,
            consider_accept,
            only_labelled: only_json,
        };
        convert_body(call, when, |text| json_to_xml(text, &opts));
        Flow::Continue
    }
}
