//! Text to numbers and GUIDs as .NET reads them: NumberStyles, the Parse forms of int
//! and double (invariant culture), GUIDs in their N, D, B and P forms, new GUIDs, and
//! Random's seed.
//! Must not touch: the interpreter, member dispatch.

use std::borrow::Cow;

use super::Val;

/// `NumberStyles.X` as .NET numbers it.
pub(super) fn number_style(member: &str) -> Option<i64> {
    Some(match member {
        "None" => 0,
        "AllowLeadingWhite" => 1,
        "AllowTrailingWhite" => 2,
        "AllowLeadingSign" => 4,
        "Integer" => 7,
        "AllowTrailingSign" => 8,
        "AllowParentheses" => 16,
        "AllowDecimalPoint" => 32,
        "AllowThousands" => 64,
        "Number" => 111,
        "AllowExponent" => 128,
        "Float" => 167,
        "AllowCurrencySymbol" => 256,
        "Currency" => 383,
        "Any" => 511,
        "AllowHexSpecifier" => 512,
        "HexNumber" => 515,
        _ => return None,
    })
}

const HEX_STYLE: i64 = 512;
const THOUSANDS_STYLE: i64 = 64;

/// int.Parse's text under its NumberStyles (`Val::Null`: the default, Integer).
pub(super) fn parse_int(text: &str, styles: &Val) -> Option<i64> {
    let t = text.trim();
    match styles {
        Val::Int(s) if s & HEX_STYLE != 0 => i64::from_str_radix(t, 16).ok(),
        Val::Int(s) if s & THOUSANDS_STYLE != 0 => t.replace(',', "").parse().ok(),
        _ => t.parse().ok(),
    }
}

/// double.Parse's text (invariant culture) under its NumberStyles.
pub(super) fn parse_double(text: &str, styles: &Val) -> Option<f64> {
    let t = text.trim();
    let t: Cow<str> = match styles {
        Val::Int(s) if s & THOUSANDS_STYLE == 0 => Cow::Borrowed(t),
        // the default (Float | AllowThousands) and styles with AllowThousands
        _ => Cow::Owned(t.replace(',', "")),
    };
    match t.as_ref() {
        "NaN" => Some(f64::NAN),
        "Infinity" | "∞" => Some(f64::INFINITY),
        "-Infinity" | "-∞" => Some(f64::NEG_INFINITY),
        // Rust would also take "inf" and "nan", which .NET does not
        t if t
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) =>
        {
            None
        }
        t => t.parse().ok(),
    }
}

/// A Random's first state: from `new Random(seed)`'s seed (the same seed gives the same
/// numbers, though not .NET's), else from the OS.
pub(super) fn random_seed(seed: Option<&Val>) -> u64 {
    match seed {
        Some(Val::Int(s)) => (*s as u64) ^ 0x9E37_79B9_7F4A_7C15,
        _ => {
            use ring::rand::SecureRandom;
            let mut b = [0u8; 8];
            let _ = ring::rand::SystemRandom::new().fill(&mut b);
            u64::from_le_bytes(b)
        }
    }
}

/// A GUID's text in any of .NET's forms (N, D, B, P) as its D form, lower case.
pub(super) fn guid_of(text: &str) -> Option<String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .or_else(|| t.strip_prefix('(').and_then(|x| x.strip_suffix(')')))
        .unwrap_or(t);
    let hex: String = match inner.len() {
        32 => inner.to_string(),
        36 => {
            let dashes = [8, 13, 18, 23];
            if dashes.iter().any(|&i| inner.as_bytes()[i] != b'-') {
                return None;
            }
            inner.replace('-', "")
        }
        _ => return None,
    };
    if hex.len() != 32
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        || (inner.len() == 32 && inner != t)
    {
        return None;
    }
    let h = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `new Guid(bytes)`: 16 bytes in .NET's order (the first three groups little-endian)
/// as the GUID's D form.
pub(super) fn guid_of_bytes(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let hex = |r: &[u8]| r.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let rev = |r: &[u8]| hex(&r.iter().rev().copied().collect::<Vec<u8>>());
    Some(format!(
        "{}-{}-{}-{}-{}",
        rev(&b[0..4]),
        rev(&b[4..6]),
        rev(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    ))
}

/// A random (version 4) GUID as .NET prints it: lower-case hex, `D` (8-4-4-4-12), `N`
/// (32 digits), `B` ({D}) or `P` ((D)).
pub(super) fn new_guid(format: u8) -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness source at all
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let d = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    match format {
        b'N' => hex,
        b'B' => format!("{{{d}}}"),
        b'P' => format!("({d})"),
        _ => d,
    }
}
