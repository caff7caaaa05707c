//! Cost of the expression JSON model on a request body: parse, edit and print a JSON
//! document (default: a 2 KB order like bench/policies.sh posts) many times.
//!   cargo run --release --example json_cost [-- FILE]
use std::time::Instant;

use edgegate::policy::expr::{Budget, Env, Expr, Field, Lookup, Val};

struct Body(Vec<u8>, Budget);

impl Env for Body {
    fn field(&self, _: Field) -> Val<'_> {
        Val::Null
    }
    fn lookup(&self, _: Lookup, _: &str) -> Option<Val<'_>> {
        None
    }
    fn body(&self, _: bool) -> Option<&[u8]> {
        Some(&self.0)
    }
    fn budget(&self) -> Option<&Budget> {
        Some(&self.1)
    }
}

fn main() {
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read(path).expect("a readable file"),
        None => {
            let mut items = Vec::new();
            let mut i = 0;
            while items.join(",").len() < 1900 {
                items.push(format!(
                    r#"{{"sku": "sku-{i:04}", "name": "Item number {i}", "qty": {}, "price": {:.2}}}"#,
                    i % 5 + 1,
                    9.99 + i as f64
                ));
                i += 1;
            }
            format!(
                r#"{{"id": "order-1", "total": 250.5, "currency": "EUR", "internal": "x", "items": [{}]}}"#,
                items.join(", ")
            )
            .into_bytes()
        }
    };
    let cases = [
        ("parse", "context.Request.Body.As<JObject>(true) != null"),
        (
            "parse+edit+print",
            r#"var b = context.Request.Body.As<JObject>(true); b["tier"] = "gold"; b.Remove("internal"); return b.ToString(Formatting.None);"#,
        ),
    ];
    for (name, code) in cases {
        let e = Expr::parse(code, code.contains("return")).expect("compiles");
        let n = 20_000;
        let start = Instant::now();
        for _ in 0..n {
            let env = Body(text.clone(), Budget::new(u64::MAX, u64::MAX));
            std::hint::black_box(e.eval(&env).expect("runs"));
        }
        let per = start.elapsed().as_secs_f64() / n as f64 * 1e6;
        println!("{name}: {per:.2} us per evaluation ({} bytes)", text.len());
    }
}
