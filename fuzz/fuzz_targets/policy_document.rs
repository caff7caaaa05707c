//! Policy documents and expressions: any text compiles to a scope document or an error
//! with a line and column, never a panic; an expression that compiles evaluates against
//! an empty environment without panicking.
#![no_main]

use edgegate::policy::expr::{Env, Expr, Field, Lookup, Val};
use edgegate::policy::parse::{parse, Context};
use edgegate::policy::Scope;
use libfuzzer_sys::fuzz_target;

struct Empty;
impl Env for Empty {
    fn field(&self, _: Field) -> Val<'_> {
        Val::Null
    }
    fn lookup(&self, _: Lookup, _: &str) -> Option<Val<'_>> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let named = |n: &str| (n == "nv").then_some("value");
    let backend = |id: &str| (id == "b1").then_some(0);
    let fragment = |id: &str| (id == "f1").then_some("<fragment><set-header name=\"x\" exists-action=\"override\"><value>1</value></set-header></fragment>");
    let mut add = |_: &str| Ok(1);
    let mut ctx = Context {
        scope: Scope::Api,
        named_value: &named,
        backend_id: &backend,
        fragment: &fragment,
        add_backend_url: &mut add,
        owner: "api:fuzz",
        uses: Default::default(),
    };
    let _ = parse(text, &mut ctx);
    for block in [false, true] {
        if let Ok(e) = Expr::parse(text, block) {
            let _ = e.eval(&Empty);
        }
    }
});
