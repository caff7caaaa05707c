//! Compiled expressions against arbitrary request data: the input is an expression, a
//! NUL, then the request's headers, variables and body (`name: value` lines up to a blank
//! line, then the body). Whatever compiles evaluates to a value or an error within its
//! budget, never a panic, a hang or unbounded memory.
#![no_main]

use std::borrow::Cow;

use edgegate::policy::expr::{liquid, Budget, Env, Expr, Field, Lookup, Val};
use libfuzzer_sys::fuzz_target;

struct Request<'a> {
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    budget: Budget,
}

impl Env for Request<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match f {
            Field::RequestMethod => Val::Str(Cow::Borrowed("POST")),
            Field::ResponseStatus | Field::RequestPort => Val::Int(200),
            _ => Val::Str(Cow::Borrowed("x")),
        }
    }
    fn lookup(&self, _: Lookup, name: &str) -> Option<Val<'_>> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| Val::Str(Cow::Borrowed(*v)))
    }
    fn entries(&self, _: Lookup) -> Vec<(String, Val<'_>)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.to_string(), Val::Str(Cow::Borrowed(*v))))
            .collect()
    }
    fn body(&self, _: bool) -> Option<&[u8]> {
        Some(self.body)
    }
    fn budget(&self) -> Option<&Budget> {
        Some(&self.budget)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|b| *b == 0) else { return };
    let Ok(code) = std::str::from_utf8(&data[..split]) else { return };
    let rest = &data[split + 1..];
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let headers = std::str::from_utf8(head)
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(": "))
        .collect();
    let env = Request {
        headers,
        body,
        budget: Budget::new(20_000, 1 << 20),
    };
    for block in [false, true] {
        if let Ok(e) = Expr::parse(code, block) {
            let _ = e.eval(&env);
        }
    }
    if let Ok(t) = liquid::compile(code, false) {
        let _ = liquid::render(&t, &env);
    }
});
