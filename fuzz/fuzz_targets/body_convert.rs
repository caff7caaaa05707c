//! xml-to-json and json-to-xml over any body: a converted body is well-formed JSON
//! (xml-to-json) or XML that parses back (json-to-xml), a refused one is an error, and
//! nothing panics.
#![no_main]

use edgegate::policy::xmljson::{json_to_xml, xml_to_json, JsonKind, XmlOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in [JsonKind::Direct, JsonKind::JavascriptFriendly] {
        for always_array in [false, true] {
            if let Ok(json) = xml_to_json(text, kind, always_array) {
                assert!(
                    edgegate::policy::expr::parse_json_tree(&json).is_ok(),
                    "xml-to-json wrote JSON that does not parse: {json}"
                );
            }
        }
    }
    for separator in ['_', ':'] {
        let opts = XmlOptions {
            parse_date: true,
            separator,
            namespace_prefix: "xmlns".into(),
            attribute_block: Some("#attrs".into()),
        };
        if let Ok(xml) = json_to_xml(text, &opts) {
            assert!(
                roxmltree::Document::parse(&xml).is_ok(),
                "json-to-xml wrote XML that does not parse: {xml}"
            );
        }
    }
});
