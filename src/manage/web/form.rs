//! What a browser sends: `application/x-www-form-urlencoded` bodies and query strings,
//! and the `Cookie` header. Bounded: at most `MAX_FIELDS` fields are kept.
//! Must not touch: what the fields mean (the pages decide).

use crate::manage::http::Request;

/// Most fields read from one form or query string.
const MAX_FIELDS: usize = 64;

/// Decoded `name=value` pairs, in order.
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(text: &str) -> Form {
        let decode = |s: &str| crate::telemetry::percent_decoded(&s.replace('+', " "));
        Form(
            text.split('&')
                .filter(|p| !p.is_empty())
                .take(MAX_FIELDS)
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// The body of a form post (any other content type reads as an empty form).
    pub fn body(req: &Request) -> Form {
        let urlencoded = req.header("content-type").is_some_and(|t| {
            t.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        match (urlencoded, std::str::from_utf8(&req.body)) {
            (true, Ok(text)) => Form::parse(text),
            _ => Form(Vec::new()),
        }
    }

    pub fn query(req: &Request) -> Form {
        Form::parse(&req.query)
    }

    /// The first value of `name`, trimmed; `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.raw(name).map_or("", str::trim)
    }

    /// The first value of `name` as sent (passwords, bodies).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The value of cookie `name` in the request, if sent.
pub fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, v)| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)], body: &str) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
            peer: String::new(),
        }
    }

    #[test]
    fn forms_decode_plus_and_percent_and_keep_raw_values() {
        let f = Form::parse("email=a%40b.example&name=Ada+Lovelace&pw=+x+&empty&x=%ZZ");
        assert_eq!(f.get("email"), "a@b.example");
        assert_eq!(f.get("name"), "Ada Lovelace");
        assert_eq!(f.raw("pw"), Some(" x "));
        assert_eq!(f.get("empty"), "");
        assert_eq!(f.get("x"), "%ZZ");
        assert_eq!(f.get("missing"), "");
    }

    #[test]
    fn only_urlencoded_bodies_are_forms() {
        let form = request(
            &[(
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )],
            "a=1",
        );
        assert_eq!(Form::body(&form).get("a"), "1");
        let json = request(&[("Content-Type", "application/json")], "a=1");
        assert_eq!(Form::body(&json).get("a"), "");
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let req = request(&[("Cookie", "a=1; s=abc"), ("cookie", "t=2")], "");
        assert_eq!(cookie(&req, "s"), Some("abc"));
        assert_eq!(cookie(&req, "t"), Some("2"));
        assert_eq!(cookie(&req, "z"), None);
    }
}
