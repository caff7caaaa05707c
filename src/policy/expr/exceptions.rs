//! Exception types for `try`/`catch`: the .NET types an expression may `throw` or
//! `catch`, their base types (so `catch (ArgumentException)` takes an
//! ArgumentNullException and `catch (Exception)` takes everything), and the type a
//! failure of the language itself has, known from its message (a null reference, a bad
//! format, a missing key, bad JSON…).
//! Must not touch: evaluation, syntax.

/// A caught or thrown exception: its type and its message.
#[derive(Debug)]
pub struct Exception {
    pub kind: &'static str,
    pub message: String,
}

/// Each known type and its base type.
const TYPES: &[(&str, &str)] = &[
    ("Exception", ""),
    ("SystemException", "Exception"),
    ("ApplicationException", "Exception"),
    ("ArgumentException", "SystemException"),
    ("ArgumentNullException", "ArgumentException"),
    ("ArgumentOutOfRangeException", "ArgumentException"),
    ("FormatException", "SystemException"),
    ("UriFormatException", "FormatException"),
    ("InvalidOperationException", "SystemException"),
    ("NotSupportedException", "SystemException"),
    ("NotImplementedException", "SystemException"),
    ("NullReferenceException", "SystemException"),
    ("InvalidCastException", "SystemException"),
    ("KeyNotFoundException", "SystemException"),
    ("IndexOutOfRangeException", "SystemException"),
    ("UnauthorizedAccessException", "SystemException"),
    ("TimeoutException", "SystemException"),
    ("ArithmeticException", "SystemException"),
    ("DivideByZeroException", "ArithmeticException"),
    ("OverflowException", "ArithmeticException"),
    ("XmlException", "SystemException"),
    ("JsonException", "Exception"),
    ("JsonReaderException", "JsonException"),
    ("JsonSerializationException", "JsonException"),
];

/// The known type named `name` (a namespace prefix is ignored).
pub(super) fn named(name: &str) -> Option<&'static str> {
    let short = name.rsplit('.').next().unwrap_or(name);
    TYPES.iter().find(|(t, _)| *t == short).map(|(t, _)| *t)
}

/// The index of the type named `name` in the table (what a compiled `new` keeps).
pub(super) fn index_of(name: &str) -> Option<u8> {
    let short = name.rsplit('.').next().unwrap_or(name);
    TYPES
        .iter()
        .position(|(t, _)| *t == short)
        .and_then(|i| u8::try_from(i).ok())
}

/// The type at `index` (Exception when there is none).
pub(super) fn by_index(index: u8) -> &'static str {
    TYPES
        .get(usize::from(index))
        .map_or("Exception", |(t, _)| *t)
}

/// Whether `catch (wanted)` takes an exception of type `kind`.
pub(super) fn catches(wanted: &str, kind: &str) -> bool {
    let mut cur = kind;
    for _ in 0..TYPES.len() {
        if cur == wanted {
            return true;
        }
        match TYPES.iter().find(|(t, _)| *t == cur) {
            Some((_, base)) if !base.is_empty() => cur = base,
            _ => return false,
        }
    }
    false
}

/// The type of a failure of the language itself, from its message.
pub(super) fn kind_of(message: &str) -> &'static str {
    const BY_MESSAGE: &[(&str, &str)] = &[
        ("Object reference not set", "NullReferenceException"),
        ("Value cannot be null", "ArgumentNullException"),
        (
            "Input string was not in a correct format",
            "FormatException",
        ),
        ("was not recognized as a valid", "FormatException"),
        ("Invalid URI", "UriFormatException"),
        ("The given key", "KeyNotFoundException"),
        ("Index was out of range", "ArgumentOutOfRangeException"),
        ("Unable to cast", "InvalidCastException"),
        ("divide by zero", "DivideByZeroException"),
        ("overflow", "OverflowException"),
        ("Bad JSON escape", "JsonReaderException"),
        ("(JSON)", "JsonReaderException"),
        ("while parsing JSON", "JsonReaderException"),
        ("end of JSON content", "JsonReaderException"),
        ("The XML is not well-formed", "XmlException"),
    ];
    BY_MESSAGE
        .iter()
        .find(|(needle, _)| message.contains(needle))
        .map_or("Exception", |(_, kind)| kind)
}

/// How .NET prints an exception (`ToString()`): its full type name and message.
pub(super) fn text(e: &Exception) -> String {
    let ns = match e.kind {
        "JsonException" | "JsonReaderException" | "JsonSerializationException" => "Newtonsoft.Json",
        "KeyNotFoundException" => "System.Collections.Generic",
        "XmlException" => "System.Xml",
        _ => "System",
    };
    format!("{ns}.{}: {}", e.kind, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_catch_their_derived_types() {
        assert!(catches("Exception", "ArgumentNullException"));
        assert!(catches("ArgumentException", "ArgumentNullException"));
        assert!(catches("JsonException", "JsonReaderException"));
        assert!(!catches("FormatException", "JsonReaderException"));
        assert!(!catches("ArgumentNullException", "ArgumentException"));
        assert!(!catches("WebException", "Exception"));
        assert_eq!(
            named("Newtonsoft.Json.JsonReaderException"),
            Some("JsonReaderException")
        );
        assert_eq!(
            kind_of("Unexpected character encountered while parsing JSON"),
            "JsonReaderException"
        );
        assert_eq!(kind_of("something else"), "Exception");
    }
}
