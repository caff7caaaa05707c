//! An OpenAPI document from any text (an administrator's upload): YAML or JSON read,
//! then mapped to operations, or refused with an error that names a JSON pointer; never
//! a panic, and an export of what was read is a document that reads again.
#![no_main]

use libfuzzer_sys::fuzz_target;

use edgegate::manage::openapi::{self, RequiredQuery};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = openapi::parse_document(text) else {
        return;
    };
    match openapi::import(&doc, RequiredQuery::Template) {
        Ok(imported) => {
            for op in &imported.operations {
                assert!(!op.id.is_empty() && op.id.len() <= 80, "{}", op.id);
                assert!(op.pointer.starts_with("/paths/") || op.pointer.starts_with("/x-ms-paths/"));
            }
        }
        Err(e) => assert!(e.pointer.is_empty() || e.pointer.starts_with('/'), "{e}"),
    }
});
