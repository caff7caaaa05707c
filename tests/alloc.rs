//! Measures heap allocations of expression evaluation with dhat's counting allocator
//! in testing mode, so "an expression that only reads headers allocates nothing" is a
//! test rather than a claim. Its own binary without libtest's harness: the allocator
//! counts every thread of the process, so nothing else may run beside the measurement.

use std::borrow::Cow;

use edgegate::policy::expr::{Budget, Env, Expr, Field, Lookup, Val};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn allocations() -> u64 {
    dhat::HeapStats::get().total_blocks
}

/// A request's headers as the gateway holds them: borrowed from the parsed head.
struct Headers<'a> {
    headers: &'a [(&'a str, &'a str)],
    budget: Budget,
}

impl Env for Headers<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        match f {
            Field::RequestMethod => Val::Str(Cow::Borrowed("POST")),
            Field::RequestPath => Val::Str(Cow::Borrowed("/orders/7")),
            _ => Val::Null,
        }
    }
    fn lookup(&self, l: Lookup, name: &str) -> Option<Val<'_>> {
        match l {
            Lookup::RequestHeader => self
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| Val::Str(Cow::Borrowed(*v))),
            _ => None,
        }
    }
    fn budget(&self) -> Option<&Budget> {
        Some(&self.budget)
    }
}

fn main() {
    expressions_that_read_headers_allocate_nothing();
    println!("test expressions_that_read_headers_allocate_nothing ... ok");
}

fn expressions_that_read_headers_allocate_nothing() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let headers = [
        ("X-Tier", "Gold"),
        ("Authorization", "Bearer abc.def.ghi"),
        ("Content-Type", "application/json; charset=utf-8"),
    ];
    let env = Headers {
        headers: &headers,
        budget: Budget::new(u64::MAX, u64::MAX),
    };
    let cases = [
        (
            r#"context.Request.Headers.GetValueOrDefault("X-Tier", "") == "Gold""#,
            false,
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("Authorization", "").StartsWith("Bearer ")"#,
            false,
        ),
        (
            r#"context.Request.Headers.ContainsKey("X-Api-Version") || context.Request.Method == "POST""#,
            false,
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("Content-Type", "").Contains("json", StringComparison.Ordinal)"#,
            false,
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("X-Missing", "fallback").Trim()"#,
            false,
        ),
        (
            r#"context.Request.Headers.ContainsKey("X-Tier") ? context.Request.Headers.GetValueOrDefault("X-Tier") : "none""#,
            false,
        ),
        (
            r#"string.IsNullOrEmpty(context.Request.Headers.GetValueOrDefault("X-Tier")) ? 0 : context.Request.Headers.GetValueOrDefault("X-Tier").Length"#,
            false,
        ),
        (
            r#"var tier = context.Request.Headers.GetValueOrDefault("X-Tier", ""); return tier == "Gold" || tier == "Silver";"#,
            true,
        ),
    ];
    for (code, block) in cases {
        let e = Expr::parse(code, block).unwrap_or_else(|err| panic!("{code}: {err}"));
        // once to settle anything lazy, then counted
        e.eval(&env).unwrap();
        let before = allocations();
        for _ in 0..1000 {
            let v = e.eval(&env).unwrap();
            std::hint::black_box(&v);
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "{code} allocated {} times in 1000 evaluations",
            after - before
        );
    }
    // the counter counts: building a string does allocate
    let concat = Expr::parse(
        r#"context.Request.Headers.GetValueOrDefault("X-Tier", "") + "!""#,
        false,
    )
    .unwrap();
    let before = allocations();
    concat.eval(&env).unwrap();
    assert!(allocations() > before);
}
