//! Expression tests: the language's forms against a test environment.

use super::*;
use std::collections::HashMap;

struct TestEnv {
    headers: HashMap<&'static str, &'static str>,
    vars: HashMap<&'static str, Val<'static>>,
}
impl Env for TestEnv {
    fn field(&self, f: Field) -> Val<'_> {
        match f {
            Field::RequestMethod => Val::Str("GET".into()),
            Field::RequestIp => Val::Str("10.0.0.7".into()),
            Field::ResponseStatus => Val::Int(200),
            Field::SubscriptionId | Field::SubscriptionObject => Val::Str("sub-1".into()),
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
            Lookup::Variable => self.vars.get(name).map(Val::borrowed),
            _ => None,
        }
    }
    fn entries(&self, l: Lookup) -> Vec<(String, Val<'_>)> {
        match l {
            Lookup::RequestHeader => {
                let mut h: Vec<_> = self
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), Val::Str(Cow::Borrowed(*v))))
                    .collect();
                h.sort_by(|a, b| a.0.cmp(&b.0));
                h
            }
            _ => Vec::new(),
        }
    }
}

fn env() -> TestEnv {
    TestEnv {
        headers: [("X-Tier", "Gold"), ("Authorization", "Bearer abc")].into(),
        vars: [("n", Val::Int(3)), ("s", Val::Str("7".into()))].into(),
    }
}

fn run(text: &str) -> Result<Val<'static>, String> {
    let block = text.starts_with('{');
    let inner = if block {
        &text[1..text.len() - 1]
    } else {
        text
    };
    let e = Expr::parse(inner, block).map_err(|e| e.to_string())?;
    let env = env();
    e.eval(&env)
        .map(Val::into_owned)
        .map_err(|e| e.0.to_string())
}

fn s(v: &str) -> Val<'static> {
    Val::Str(Cow::Owned(v.to_string()))
}

/// The literal forms of C# that real APIM documents use: comments, verbatim and
/// interpolated strings, and `Equals` (before, each was a load error).
#[test]
fn comments_verbatim_and_interpolated_strings_and_equals() {
    let cases: &[(&str, Val)] = &[
        (
            "context.Request.Method /* the verb */ == \"GET\" // only reads",
            Val::Bool(true),
        ),
        (
            "{\n  // a block with comments\n  var t = context.Request.Headers.GetValueOrDefault(\"X-Tier\", \"\"); /* keep */\n  return t;\n}",
            s("Gold"),
        ),
        (r#"@"c:\temp\""quoted""""#, s(r#"c:\temp\"quoted""#)),
        (
            r#"$"{context.Request.Method} /items/{context.Response.StatusCode} tier={context.Request.Headers.GetValueOrDefault("x-tier", "none").ToLower()}""#,
            s("GET /items/200 tier=gold"),
        ),
        (
            r#"$"{{literal}} {1 < 2} [{context.Request.Headers.GetValueOrDefault("nope")}]""#,
            s("{literal} True []"),
        ),
        (r#"$@"c:\{context.Subscription.Id}\""x""""#, s(r#"c:\sub-1\"x""#)),
        (r#"context.Request.Method.Equals("GET")"#, Val::Bool(true)),
        (r#"context.Request.Method.Equals("get")"#, Val::Bool(false)),
        (
            r#"context.Request.Method.Equals("get", StringComparison.OrdinalIgnoreCase)"#,
            Val::Bool(true),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("X-Tier","").Equals("GOLD", StringComparison.InvariantCultureIgnoreCase)"#,
            Val::Bool(true),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    for (text, error) in [
        ("1 /* open", "unterminated comment"),
        (r#"$"a } b""#, "must be doubled"),
        (r#"$"{}""#, "an empty hole"),
        (
            r#""a".Equals("b", StringComparison.Whatever)"#,
            "StringComparison.Whatever is not supported",
        ),
    ] {
        let got = run(text).expect_err(text);
        assert!(got.contains(error), "{text}: {got}");
    }
}

/// String members and statics that APIM documents use most after the literals.
#[test]
fn string_members_and_statics() {
    let cases: &[(&str, Val)] = &[
        (r#""a-b-c".Replace("-", "/")"#, s("a/b/c")),
        (r#""héllo wörld".IndexOf("wö")"#, Val::Int(6)),
        (r#""abcabc".LastIndexOf("b")"#, Val::Int(4)),
        (r#""abc".IndexOf("z")"#, Val::Int(-1)),
        (
            r#""  x  ".TrimStart() + "|" + "  y  ".TrimEnd() + "|""#,
            s("x  |  y|"),
        ),
        (
            r#""/a/b/c".Substring(0, "/a/b/c".IndexOf("/", 1))"#,
            s("/a"),
        ),
        (r#""/a/b/c".IndexOf("/", 6)"#, Val::Int(-1)),
        (r#"string.IsNullOrWhiteSpace("  \t")"#, Val::Bool(true)),
        (r#"String.IsNullOrEmpty(null)"#, Val::Bool(true)),
        (
            r#"string.Concat("a", 1, true, null, context.Request.Method)"#,
            s("a1TrueGET"),
        ),
        (
            r#"string.Format("{0}:{1} {{x}} {0}", context.Request.Method, 42)"#,
            s("GET:42 {x} GET"),
        ),
        (
            r#"string.Equals(context.Request.Method, "GET")"#,
            Val::Bool(true),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    for (text, error) in [
        (r#"string.Format("{1}", "a")"#, "Index (zero based)"),
        (r#""/a/b/c".IndexOf("/", 9)"#, "startIndex must be within"),
        (r#"string.Format("{0", "a")"#, "not in a correct format"),
        (r#""abc".Replace("", "x")"#, "zero length"),
        (r#"string.Format(1)"#, "needs a format string"),
    ] {
        let got = run(text).expect_err(text);
        assert!(got.contains(error), "{text}: {got}");
    }
}

/// Null handling as APIM documents write it: `??`, `?.`, and the call's optional
/// objects compared with null.
#[test]
fn null_coalescing_safe_navigation_and_optional_objects() {
    let cases: &[(&str, Val)] = &[
        (
            r#"context.Request.Headers.GetValueOrDefault("nope") ?? "dflt""#,
            s("dflt"),
        ),
        (r#"null ?? null ?? "c""#, s("c")),
        (
            r#"context.Request.Headers.GetValueOrDefault("nope")?.ToLower() ?? "none""#,
            s("none"),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("X-Tier")?.ToLower()"#,
            s("gold"),
        ),
        (r#"context.Subscription?.Id"#, s("sub-1")),
        (r#"context.Subscription != null"#, Val::Bool(true)),
        (r#"context.Product == null"#, Val::Bool(true)),
        (r#"context.User == null"#, Val::Bool(true)),
        (
            r#"context.Product == null ? "no product" : context.Product.Name"#,
            s("no product"),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    let got = run(r#"context.Request.Headers.GetValueOrDefault("nope").ToLower()"#);
    assert_eq!(
        got,
        Err("Object reference not set to an instance of an object".to_string()),
        "without ?. a null target is an error, as in C#"
    );
}

/// Char literals (one-character strings here) and trimming given characters.
#[test]
fn char_literals_and_trimming_characters() {
    let cases: &[(&str, Val)] = &[
        (r#""/a/b/".TrimEnd('/')"#, s("/a/b")),
        (r#""/a/b/".TrimStart('/')"#, s("a/b/")),
        (r#""-x_-".Trim('-', '_')"#, s("x")),
        (r#""a,b".IndexOf(',')"#, Val::Int(1)),
        (r#""it's".Replace('\'', '"')"#, s("it\"s")),
        (r#"'\n' == "\n""#, Val::Bool(true)),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    for (text, error) in [
        ("''", "empty char literal"),
        ("'ab'", "holds one character"),
        (r"'\q'", "unsupported escape"),
    ] {
        let got = run(text).expect_err(text);
        assert!(got.contains(error), "{text}: {got}");
    }
}

/// `Guid.NewGuid()`, `int.Parse`, `bool.Parse` and `Convert.To*`.
#[test]
fn guids_and_conversions() {
    let cases: &[(&str, Val)] = &[
        (r#"int.Parse(" 42 ") + 1"#, Val::Int(43)),
        (r#"long.Parse("-7")"#, Val::Int(-7)),
        (
            r#"Convert.ToInt32((string)context.Variables["s"]) + 1"#,
            Val::Int(8),
        ),
        (r#"Convert.ToInt32(null)"#, Val::Int(0)),
        (
            r#"bool.Parse("True") && Convert.ToBoolean("false") == false"#,
            Val::Bool(true),
        ),
        (r#"Convert.ToString(12) + Convert.ToString(null)"#, s("12")),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    let hex = |c: char| c.is_ascii_hexdigit() && !c.is_ascii_uppercase();
    let Ok(Val::Str(d)) = run("Guid.NewGuid().ToString()") else {
        panic!("a guid")
    };
    let groups: Vec<&str> = d.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{d}"
    );
    assert!(d.chars().all(|c| c == '-' || hex(c)), "{d}");
    assert_eq!(&groups[2][..1], "4", "version 4: {d}");
    let Ok(Val::Str(n)) = run(r#"Guid.NewGuid().ToString("N")"#) else {
        panic!("a guid")
    };
    assert!(n.len() == 32 && n.chars().all(hex), "{n}");
    // a second ToString keeps the format the first one chose
    let Ok(Val::Str(n)) = run(r#"(Guid.NewGuid().ToString("N"))?.ToString()"#) else {
        panic!("a guid")
    };
    assert!(n.len() == 32 && n.chars().all(hex), "{n}");
    assert_ne!(
        run("Guid.NewGuid().ToString()"),
        run("Guid.NewGuid().ToString()")
    );
    for (text, error) in [
        (r#"int.Parse("x")"#, "not in a correct format"),
        (r#"int.Parse(null)"#, "Value cannot be null"),
        (r#"bool.Parse("yes")"#, "not recognized as a valid Boolean"),
        (r#"Guid.NewGuid().ToString("X")"#, "a GUID's format"),
        (r#"Guid.Parse("x")"#, "Guid should contain 32 digits"),
    ] {
        let got = run(text).expect_err(text);
        assert!(got.contains(error), "{text}: {got}");
    }
}

/// `*`, `/` and `%` on ints, with C#'s precedence, truncation and errors.
#[test]
fn multiplicative_operators() {
    let cases: &[(&str, Val)] = &[
        ("2 + 3 * 4", Val::Int(14)),
        ("(2 + 3) * 4", Val::Int(20)),
        ("7 / 2", Val::Int(3)),
        ("-7 / 2", Val::Int(-3)),
        ("-7 % 3", Val::Int(-1)),
        ("10 - 4 / 2 * 3 % 4", Val::Int(8)),
        ("context.Response.StatusCode / 100 == 2", Val::Bool(true)),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
    assert_eq!(run("1 / 0"), Err("Attempted to divide by zero".to_string()));
    assert_eq!(run("1 % 0"), Err("Attempted to divide by zero".to_string()));
    assert!(run(r#""a" * 2"#).is_err());
}

#[test]
fn evaluates_the_subset() {
    let cases: &[(&str, Val)] = &[
        (
            r#"context.Request.Headers.GetValueOrDefault("x-tier", "")"#,
            s("Gold"),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("missing", "d")"#,
            s("d"),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("missing")"#,
            Val::Null,
        ),
        (
            r#"context.Response.StatusCode == 200 && context.Request.Method != "POST""#,
            Val::Bool(true),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("Authorization","").StartsWith("Bearer ")"#,
            Val::Bool(true),
        ),
        (
            r#"context.Request.Headers.GetValueOrDefault("x-tier","").ToLower() + "-" + context.Subscription.Id"#,
            s("gold-sub-1"),
        ),
        (r#"(string)context.Response.StatusCode"#, s("200")),
        (
            r#"(int)context.Variables["s"] + context.Variables.GetValueOrDefault<int>("n", 0)"#,
            Val::Int(10),
        ),
        (
            r#"context.Variables.ContainsKey("n") ? "yes" : "no""#,
            s("yes"),
        ),
        (
            r#"context.Variables.GetValueOrDefault<int>("none", 5) >= 5"#,
            Val::Bool(true),
        ),
        (r#"!(1 < 2) || "abc".Substring(1) == "bc""#, Val::Bool(true)),
        (r#""  a ".Trim().ToUpper().Length"#, Val::Int(1)),
        (
            r#"string.IsNullOrEmpty(context.Request.Headers.GetValueOrDefault("nope"))"#,
            Val::Bool(true),
        ),
        (
            r#"{ var t = context.Request.Headers.GetValueOrDefault("X-Tier",""); string u = t + "!"; return u.EndsWith("!"); }"#,
            Val::Bool(true),
        ),
        (r#""a<b" == "a<b" && 2 > 1"#, Val::Bool(true)),
        (r#"(bool)"True""#, Val::Bool(true)),
        (r#"context.Response.StatusCode.ToString()"#, s("200")),
    ];
    for (text, want) in cases {
        assert_eq!(run(text).as_ref(), Ok(want), "{text}");
    }
}

#[test]
fn rejects_what_is_not_in_the_subset_with_a_column() {
    let cases = [
        ("System.IO.File.ReadAllText(\"/etc/passwd\")", "expression error at column 1: 'System.IO' is not supported here (known: context, literals, declared variables and the types in README \"Policy expressions\")"),
        ("context.Request.Body.Length", "expression error at column 21: 'Length' of a body is not supported (As<T>(preserveContent) and AsFormUrlEncodedContent(preserveContent) are)"),
        ("context.Request.Method.Frobnicate(\",\")", "expression error at column 23: member 'Frobnicate' is not supported"),
        ("context.Response.StatusCode.StartsWith(\"2\")", "expression error at column 28: 'StartsWith' is not a member of a number or bool"),
        ("1 +", "expression error at column 3: expected an expression"),
        ("\"open", "expression error at column 1: unterminated string"),
        ("a = 1", "expression error at column 1: 'a' is not supported here (known: context, literals, declared variables and the types in README \"Policy expressions\")"),
        ("context.Request", "expression error at column 1: 'context.Request' is not a value"),
        ("1 ; 2", "expression error at column 3: expected ';'"),
    ];
    for (text, want) in cases {
        let got = Expr::parse(text, false)
            .map(|_| ())
            .map_err(|e| e.to_string());
        // "1 ; 2" is an error either way; the message is what matters for the others
        if text == "1 ; 2" {
            assert!(got.is_err());
            continue;
        }
        assert_eq!(got, Err(want.to_string()), "{text}");
    }
    // a loop that never ends runs out of its budget; no catch can hold it
    let spin = Expr::parse("for (;;) { } return 1;", true).unwrap();
    assert_eq!(spin.eval(&env()).unwrap_err(), BUDGET_STEPS);
    let caught = Expr::parse(
        "try { while (true) { } } catch (Exception e) { return 2; } return 1;",
        true,
    )
    .unwrap();
    assert_eq!(caught.eval(&env()).unwrap_err(), BUDGET_STEPS);
}

#[test]
fn runtime_errors_are_values_not_panics() {
    assert_eq!(
        run(r#"context.Variables["absent"]"#).unwrap_err(),
        "The given key 'absent' was not present in the dictionary"
    );
    assert!(run(r#""abc".Substring(5)"#).is_err());
    assert!(run(r#"context.Request.Headers.GetValueOrDefault("nope").ToLower()"#).is_err());
    assert!(run(r#"(int)"x""#).is_err());
}

#[test]
fn reads_request_is_tracked() {
    assert!(
        Expr::parse(
            r#"context.Request.Headers.GetValueOrDefault("a","")"#,
            false
        )
        .unwrap()
        .reads_request
    );
    assert!(
        !Expr::parse("context.Response.StatusCode == 200", false)
            .unwrap()
            .reads_request
    );
}

/// `run` as text (JSON and lists print as C#'s ToString would).
pub(super) fn text(code: &str) -> String {
    match run(code) {
        Ok(v) => v.to_text().into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

/// Statement blocks as APIM documents use them: declarations, if/else, loops with
/// break and continue, compound assignment, try/catch/finally and throw.
#[test]
fn statement_blocks() {
    let cases = [
        (
            r#"{
                var parts = "a,b,,c".Split(',');
                var n = 0;
                foreach (var p in parts) { if (p == "") { continue; } n++; }
                return n;
            }"#,
            "3",
        ),
        (
            r#"{
                var sb = new StringBuilder();
                for (int i = 0; i < 3; i++) {
                    if (i > 0) sb.Append("-");
                    sb.Append(i);
                }
                return sb.ToString();
            }"#,
            "0-1-2",
        ),
        (
            "{ int i = 0, total = 0; while (true) { i += 1; if (i > 4) break; total += i; } return total; }",
            "10",
        ),
        ("{ var x = 5; do { x--; } while (x > 10); return x; }", "4"),
        (
            r#"{ string tier = context.Request.Headers.GetValueOrDefault("X-Tier", "");
                 if (tier == "Gold") { return "g"; } else if (tier == "Silver") { return "s"; } else { return "b"; } }"#,
            "g",
        ),
        (
            r#"{ try { return int.Parse("x").ToString(); } catch (Exception ex) { return "caught: " + ex.Message; } }"#,
            "caught: Input string was not in a correct format (int.Parse)",
        ),
        (
            r#"{ var log = ""; try { log += "a"; throw new Exception("boom"); } catch { log += "b"; } finally { log += "c"; } return log; }"#,
            "abc",
        ),
        (r#"{ throw new Exception("custom failure"); }"#, "error: custom failure"),
        (
            r#"{ try { throw new InvalidOperationException("inner"); } catch (Exception) { throw; } }"#,
            "error: inner",
        ),
        ("{ string s = null; s ??= \"fallback\"; return s; }", "fallback"),
        ("{ var n = 10; n *= 3; n -= 2; n /= 4; n %= 4; return n; }", "3"),
        // `(string)context.Variables[...]` and GetValueOrDefault<T> defaults
        (
            r#"{ var n = context.Variables.GetValueOrDefault<int>("missing"); return n + (int)context.Variables["n"]; }"#,
            "3",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
    for (code, error) in [
        ("{ var x = 1; }", "not all code paths return a value"),
        ("{ break; return 1; }", "'break' outside a loop"),
        (
            "{ int x = \"a\"; return x; }",
            "cannot assign a Str to a Int variable",
        ),
        (
            "{ var x = 1; var x = 2; return x; }",
            "'x' is declared twice",
        ),
        (
            "{ if (1) { return 1; } return 2; }",
            "a condition must be a bool",
        ),
        ("{ context.Variables[\"a\"] = 1; return 1; }", "read-only"),
        ("{ x + 1; return 1; }", "'x' is not supported here"),
        ("{ var y = 2; y + 1; return y; }", "only calls, assignments"),
    ] {
        let got = Expr::parse(&code[1..code.len() - 1], true)
            .map(|_| ())
            .unwrap_err()
            .message;
        assert!(got.contains(error), "{code}: {got}");
    }
}

/// Newtonsoft.Json.Linq as the documented examples use it: parse, index, edit, build,
/// query and print.
#[test]
fn json_objects_and_arrays() {
    let cases = [
        (
            r#"{
                var body = JObject.Parse("{\"name\":\"x\",\"items\":[1,2,3]}");
                body["name"] = "y";
                body.Add("count", ((JArray)body["items"]).Count);
                var items = (JArray)body["items"];
                items.Add(4);
                body.Remove("missing");
                return body.ToString(Formatting.None);
            }"#,
            r#"{"name":"y","items":[1,2,3,4],"count":3}"#,
        ),
        (
            r#"new JObject(new JProperty("a", 1), new JProperty("b", new JArray("x", "y"))).ToString()"#,
            "{\n  \"a\": 1,\n  \"b\": [\n    \"x\",\n    \"y\"\n  ]\n}",
        ),
        (
            r#"JObject.Parse("{\"a\":{\"b\":[{\"c\":5}]}}").SelectToken("a.b[0].c")"#,
            "5",
        ),
        (r#"JObject.Parse("{\"n\":\"5\"}").Value<int>("n") + 1"#, "6"),
        (r#"(string)JObject.Parse("{\"n\":5}")["n"]"#, "5"),
        (r#"JObject.Parse("{\"a\":1}")["missing"] == null"#, "True"),
        (r#"JsonConvert.SerializeObject(new { id = 1, name = "n", ok = true })"#, r#"{"id":1,"name":"n","ok":true}"#),
        (r#"JsonConvert.SerializeObject("a\"b")"#, r#""a\"b""#),
        // an anonymous object's fields read as members
        (r#"new { Id = 7, Name = "n" }.Name + new { Id = 7 }.Id"#, "n7"),
        (r#"new[] { new { Id = "a" }, new { Id = "b" } }.Select(g => g.Id).Last()"#, "b"),
        (
            r#"{ var o = new JObject(); o["list"] = new JArray(); ((JArray)o["list"]).Add(new JObject(new JProperty("k", "v"))); return o.ToString(Formatting.None); }"#,
            r#"{"list":[{"k":"v"}]}"#,
        ),
        (
            r#"{ var o = JObject.Parse("{\"a\":1,\"b\":2}"); var names = o.Properties().Select(p => p.Name); return string.Join("|", names); }"#,
            "a|b",
        ),
        (
            r#"{ var a = JArray.Parse("[{\"v\":3},{\"v\":1},{\"v\":2}]"); return string.Join(",", a.OrderBy(x => (int)x["v"]).Select(x => x["v"])); }"#,
            "1,2,3",
        ),
        (
            r#"{ var d = JsonConvert.DeserializeObject<Dictionary<string, string>>("{\"a\":\"1\",\"b\":\"2\"}"); return d["b"] + d.Count; }"#,
            "22",
        ),
        (
            r#"{ var o = JObject.Parse("{\"a\":{\"x\":1},\"l\":[1]}"); o.Merge(JObject.Parse("{\"a\":{\"y\":2},\"l\":[2],\"n\":null}")); return o.ToString(Formatting.None); }"#,
            r#"{"a":{"x":1,"y":2},"l":[1,2]}"#,
        ),
        (r#"JObject.Parse("{\"a\":1}").ContainsKey("a")"#, "True"),
        (r#"JObject.Parse("[1]")"#, "error: Error reading JObject from JsonReader. Current JsonReader item is not an object"),
        (r#"JObject.Parse("{\"a\":")"#, "error: Unexpected end of JSON content"),
        (r#"{ var o = new JObject(); o["self"] = o; return o; }"#, "error: Can not add a JSON container to itself or to one inside it"),
        (
            r#"{ var o = new JObject(); for (var i = 0; i < 1000; i++) { o = new JObject(new JProperty("a", o)); } return o.ToString(); }"#,
            "error: values nested too deeply (more than 256 levels)",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// LINQ with lambdas, collections and their initialisers.
#[test]
fn linq_and_collections() {
    let cases = [
        (
            r#"string.Join(",", new[] { 3, 1, 2 }.OrderBy(x => x).Select(x => x * 10))"#,
            "10,20,30",
        ),
        (
            r#"new[] { 3, 1, 2 }.OrderByDescending(x => x).First()"#,
            "3",
        ),
        (
            r#"new List<string> { "a", "bb", "ccc" }.Where(s => s.Length > 1).Count()"#,
            "2",
        ),
        (
            r#"new List<string> { "a", "bb" }.Any(s => s == "bb")"#,
            "True",
        ),
        (
            r#"new List<string> { "a", "bb" }.All(s => s.Length == 1)"#,
            "False",
        ),
        (r#"new[] { 1, 2, 3 }.Sum()"#, "6"),
        (r#"new[] { 1, 2, 3 }.Max(x => x * 2)"#, "6"),
        (r#"new[] { 1, 2, 4 }.Average()"#, "2.3333333333333335"),
        (
            r#"new[] { "a", "b" }.FirstOrDefault(s => s == "z") ?? "none""#,
            "none",
        ),
        (
            r#"new[] { "a", "b" }.First(s => s == "z")"#,
            "error: Sequence contains no matching element",
        ),
        (r#"string.Join("", "hello".Reverse())"#, "olleh"),
        (r#"new[] { 1, 2, 2, 3 }.Distinct().Count()"#, "3"),
        // headers are a string[] dictionary (the example of Microsoft's expressions page)
        (
            r#"{ string[] value; if (context.Request.Headers.TryGetValue("Authorization", out value)) { if (value != null && value.Length > 0) { return Encoding.UTF8.GetString(Convert.FromBase64String(Convert.ToBase64String(Encoding.UTF8.GetBytes(value[0])))); } } return null; }"#,
            "Bearer abc",
        ),
        (
            r#"context.Request.Headers.First(h => h.Key == "X-Tier").Value.Contains("Gold")"#,
            "True",
        ),
        (
            r#"string.Join(";", context.Request.Headers.Where(h => h.Key == "X-Tier").Select(h => h.Value.First()))"#,
            "Gold",
        ),
        // a lambda makes Count LINQ's, even on a type with a Count of its own
        (
            r#"context.Request.Headers.Count(h => h.Key.StartsWith("X-"))"#,
            "1",
        ),
        (r#"new List<int> { 1, 2, 3 }.Count(x => x > 1)"#, "2"),
        (
            r#"string.Join(",", new[] { 1, 2, 3, 4, 5 }.Skip(1).Take(3))"#,
            "2,3,4",
        ),
        (r#"new[] { 1, 2, 3 }.Aggregate((a, b) => a * b)"#, "6"),
        (r#"new[] { "x", "y" }.Select((s, i) => s + i).Last()"#, "y1"),
        (
            r#"new[] { "a=1", "b=2" }.ToDictionary(p => p.Split('=')[0], p => p.Split('=')[1])["b"]"#,
            "2",
        ),
        (
            r#"{ var d = new Dictionary<string, string> { { "a", "1" }, ["b"] = "2" }; return d.ContainsKey("a") && d["b"] == "2" && d.GetValueOrDefault("c", "z") == "z"; }"#,
            "True",
        ),
        (
            r#"{ var d = new Dictionary<string, int>(); d.Add("k", 1); d.Add("k", 2); return 0; }"#,
            "error: An item with the same key has already been added. Key: k",
        ),
        (
            r#"{ var l = new List<int>(); l.Add(1); l.AddRange(new[] { 2, 3 }); l.Remove(2); return string.Join("+", l) + "=" + l.Sum(); }"#,
            "1+3=4",
        ),
        (
            r#"{ var l = new List<object>(); l.Add(l); return 0; }"#,
            "error: Can not add a collection to itself or to one inside it",
        ),
        (
            r#"context.Request.Headers.Where(h => h.Key.StartsWith("X-")).Count()"#,
            "1",
        ),
        (
            r#"{ int n; return int.TryParse("42", out n) ? n + 1 : -1; }"#,
            "43",
        ),
        (r#"int.TryParse("x", out var n) ? n : -1"#, "-1"),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// Strings, numbers and conversions beyond the first subset.
#[test]
fn strings_numbers_and_conversions() {
    let cases = [
        (
            r#"$"{3.14159:F2}|{42,5}|{7:D3}|{"x",-3}|""#,
            "3.14|   42|007|x  |",
        ),
        (
            r#"string.Format("{0:N0} items, {1:P0}", 1234567, 0.25)"#,
            "1,234,567 items, 25 %",
        ),
        (
            r#"Encoding.UTF8.GetString(Convert.FromBase64String(Convert.ToBase64String(Encoding.UTF8.GetBytes("héllo"))))"#,
            "héllo",
        ),
        (
            r#"Convert.ToBase64String(Encoding.UTF8.GetBytes("user:pass"))"#,
            "dXNlcjpwYXNz",
        ),
        (
            r#"Convert.FromBase64String("!!")"#,
            "error: The input is not a valid Base-64 string",
        ),
        (r#""a,b;c".Split(new[] { ',', ';' }).Length"#, "3"),
        (
            r#"" a , b ".Split(',', StringSplitOptions.TrimEntries)[1]"#,
            "b",
        ),
        (
            r#""a,,b".Split(new[] { "," }, StringSplitOptions.RemoveEmptyEntries).Length"#,
            "2",
        ),
        (r#""k=v=w".Split('=', 2)[1]"#, "v=w"),
        (
            r#""abc".PadLeft(5, '*') + "x".PadRight(3) + "|""#,
            "**abcx  |",
        ),
        (r#""hello".Insert(0, "[").Remove(3, 2)"#, "[heo"),
        (
            r#""ABC".StartsWith("ab", StringComparison.OrdinalIgnoreCase)"#,
            "True",
        ),
        (
            r#""Hello".IndexOf("L", StringComparison.OrdinalIgnoreCase)"#,
            "2",
        ),
        (
            r#"string.Equals("A", "a", StringComparison.OrdinalIgnoreCase)"#,
            "True",
        ),
        (r#""abc"[1]"#, "b"),
        (r#"char.IsDigit("a1"[1])"#, "True"),
        (r#"1.5 + 2"#, "3.5"),
        (r#"7 / 2.0"#, "3.5"),
        (r#"(int)3.9"#, "3"),
        (r#"Math.Max(3, 9) + Math.Abs(-2)"#, "11"),
        (r#"Math.Round(2.5)"#, "2"),
        (r#"double.Parse("1.25") * 4"#, "5"),
        (r#"Convert.ToInt32("12") + 0x10"#, "28"),
        (r#"10L + 1"#, "11"),
        (r#"Uri.EscapeDataString("a b&c/é")"#, "a%20b%26c%2F%C3%A9"),
        (r#"Uri.UnescapeDataString("a%20b%26c")"#, "a b&c"),
        (r#"WebUtility.UrlEncode("a b&c")"#, "a+b%26c"),
        (r#"(object)"x" is string"#, "True"),
        (r#"("x" as string) + "y""#, "xy"),
        (r#"int.MaxValue"#, "2147483647"),
        (r#"context.Variables["n"] is int"#, "True"),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// Budgets stop runaway expressions with an error no catch can hold.
#[test]
fn budgets_bound_steps_and_memory() {
    let memory = Expr::parse(
        r#"var s = "x"; while (true) { s = s + s; } return s;"#,
        true,
    )
    .unwrap();
    assert_eq!(memory.eval(&env()).unwrap_err(), BUDGET_MEMORY);
    let linq = Expr::parse(
        "var l = new List<int>(); for (var i = 0; i < 1000; i++) { l.Add(i); } return l.Select(a => l.Select(b => a * b).Sum()).Sum();",
        true,
    )
    .unwrap();
    assert_eq!(linq.eval(&env()).unwrap_err(), BUDGET_STEPS);
    // the budget is the request's: what one expression spends, the next cannot
    struct Budgeted(TestEnv, Budget);
    impl Env for Budgeted {
        fn field(&self, f: Field) -> Val<'_> {
            self.0.field(f)
        }
        fn lookup(&self, l: Lookup, name: &str) -> Option<Val<'_>> {
            self.0.lookup(l, name)
        }
        fn budget(&self) -> Option<&Budget> {
            Some(&self.1)
        }
    }
    let env = Budgeted(env(), Budget::new(2000, 1 << 20));
    let spend = Expr::parse(
        "var n = 0; for (var i = 0; i < 100; i++) { n += i; } return n;",
        true,
    )
    .unwrap();
    assert_eq!(spend.eval(&env).unwrap(), Val::Int(4950));
    let left = env.1.steps.get();
    assert!(left < 1000 && left > 0, "{left}");
    assert_eq!(spend.eval(&env).unwrap_err(), BUDGET_STEPS);
}

/// DateTime, DateTimeOffset and TimeSpan as APIM documents use them.
#[test]
fn dates_and_time_spans() {
    let cases = [
        (
            r#"new DateTime(2024, 2, 29, 13, 5, 9, DateTimeKind.Utc).ToString("o")"#,
            "2024-02-29T13:05:09.0000000Z",
        ),
        (
            r#"new DateTime(2024, 2, 29).AddDays(1).ToString("yyyy-MM-dd")"#,
            "2024-03-01",
        ),
        (r#"new DateTime(2024, 1, 31).AddMonths(1).Day"#, "29"),
        (
            r#"DateTime.Parse("2024-05-01T10:20:30Z").ToUniversalTime().ToString("s")"#,
            "2024-05-01T10:20:30",
        ),
        (
            r#"DateTime.ParseExact("20240501", "yyyyMMdd", CultureInfo.InvariantCulture).DayOfWeek"#,
            "Wednesday",
        ),
        (
            r#"DateTime.Parse("2024-05-01") < DateTime.Parse("2024-05-02")"#,
            "True",
        ),
        (
            r#"(DateTime.Parse("2024-05-02T12:00:00") - DateTime.Parse("2024-05-01")).TotalHours"#,
            "36",
        ),
        (
            r#"(DateTime.Parse("2024-05-02T12:00:00") - DateTime.Parse("2024-05-01")).ToString()"#,
            "1.12:00:00",
        ),
        (
            r#"DateTime.Parse("2024-05-01") + TimeSpan.FromMinutes(90)"#,
            "05/01/2024 01:30:00",
        ),
        (
            r#"DateTimeOffset.FromUnixTimeSeconds(1714558830).ToString("o")"#,
            "2024-05-01T10:20:30.0000000+00:00",
        ),
        (
            r#"DateTimeOffset.Parse("2024-05-01T10:20:30+02:00").ToUnixTimeSeconds()"#,
            "1714551630",
        ),
        (
            r#"new DateTimeOffset(new DateTime(1970, 1, 2, 0, 0, 0, DateTimeKind.Utc)).ToUnixTimeMilliseconds()"#,
            "86400000",
        ),
        (r#"TimeSpan.FromSeconds(90).TotalMinutes"#, "1.5"),
        (r#"new TimeSpan(1, 2, 3).ToString()"#, "01:02:03"),
        (r#"TimeSpan.Parse("1.02:03:04").TotalSeconds"#, "93784"),
        (
            r#"DateTime.Parse("Wed, 01 May 2024 10:20:30 GMT").ToString("r")"#,
            "Wed, 01 May 2024 10:20:30 GMT",
        ),
        (
            r#"{ DateTime d; return DateTime.TryParse("nope", out d) ? "yes" : "no"; }"#,
            "no",
        ),
        (
            r#"DateTime.UtcNow.Year >= 2024 && DateTime.UtcNow.Kind == "Utc""#,
            "True",
        ),
        (
            r#"(DateTime.UtcNow - DateTime.UtcNow).TotalSeconds < 1"#,
            "True",
        ),
        (
            r#"JsonConvert.SerializeObject(new { at = new DateTime(2024, 5, 1, 10, 0, 0, DateTimeKind.Utc) })"#,
            r#"{"at":"2024-05-01T10:00:00Z"}"#,
        ),
        (
            r#"(DateTime)JObject.Parse("{\"d\":\"2024-05-01T00:00:00\"}")["d"] > DateTime.MinValue"#,
            "True",
        ),
        (
            r#"DateTime.Parse("2024-05-01T10:00:00", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal).ToString("o")"#,
            "2024-05-01T10:00:00.0000000Z",
        ),
        (
            r#"DateTime.Parse("2024-05-01T10:00:00+02:00", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal).ToString("o")"#,
            "2024-05-01T08:00:00.0000000Z",
        ),
        (
            r#"DateTime.ParseExact("20240501", "yyyyMMdd", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal).Kind"#,
            "Local",
        ),
        (r#"DateTime.Parse("2024-05-01").Kind"#, "Unspecified"),
        (
            r#"DateTime.Parse("2024-13-01")"#,
            "error: String was not recognized as a valid DateTime",
        ),
        (
            r#"DateTime.MaxValue.AddDays(1)"#,
            "error: The added or subtracted value results in an un-representable DateTime",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// System.Text.RegularExpressions as documents use it.
#[test]
fn regular_expressions() {
    let cases = [
        (r#"Regex.IsMatch("order-123", @"^order-\d+$")"#, "True"),
        (
            r#"Regex.IsMatch("ORDER", "^order$", RegexOptions.IgnoreCase)"#,
            "True",
        ),
        (
            r#"Regex.Match("id=42;x=7", @"id=(\d+)").Groups[1].Value"#,
            "42",
        ),
        (
            r#"Regex.Match("v2/users", @"v(?<ver>\d+)/(?<rest>.*)").Groups["rest"].Value"#,
            "users",
        ),
        (r#"Regex.Match("abc", @"\d").Success"#, "False"),
        (r#"Regex.Match("xx42", @"\d+").Index"#, "2"),
        (
            r#"Regex.Replace("2024-05-01", @"(\d+)-(\d+)-(\d+)", "$3/$2/$1")"#,
            "01/05/2024",
        ),
        (
            r#"Regex.Replace("a1b22", @"\d+", m => "[" + m.Value.Length + "]")"#,
            "a[1]b[2]",
        ),
        (
            r#"string.Join("|", Regex.Split("a, b;c", @"[,;]\s*"))"#,
            "a|b|c",
        ),
        (r#"Regex.Matches("a1b22c333", @"\d+").Count"#, "3"),
        (
            r#"string.Join(",", Regex.Matches("a1b22", @"\d+").Select(m => m.Value))"#,
            "1,22",
        ),
        (
            r#"{ var r = new Regex(@"^Bearer\s+(.+)$", RegexOptions.IgnoreCase | RegexOptions.Multiline); return r.Match("bearer abc").Groups[1].Value; }"#,
            "abc",
        ),
        (r#"Regex.Escape("a.b(c)")"#, r"a\.b\(c\)"),
        (
            r#"Regex.IsMatch("x", context.Request.Headers.GetValueOrDefault("X-Tier", "") + "(")"#,
            "error: the regular expression is not supported: unclosed group",
        ),
        ("(1 | 4) + (6 & 3) + (5 ^ 1)", "11"),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
    // a literal pattern the engine cannot run is a load error with its column
    let e = Expr::parse(r#"Regex.IsMatch("ab", "(?<=a)b")"#, false).unwrap_err();
    assert_eq!(e.offset, 6);
    assert!(e.message.contains("look-around"), "{e}");
}

/// APIM's extension methods: AsJwt / TryParseJwt with the Jwt members, AsBasic /
/// TryParseBasic, and string[] dictionaries read with GetValueOrDefault.
#[test]
fn jwt_and_basic_credentials() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let part = |json: &str| URL_SAFE_NO_PAD.encode(json);
    let token = format!(
        "{}.{}.c2ln",
        part(r#"{"alg":"RS256","typ":"JWT"}"#),
        part(
            r#"{"sub":"user-7","iss":"https://idp","aud":["api","web"],"exp":1714558830,"roles":["reader","writer"],"tid":"t1"}"#
        )
    );
    let cases = [
        ("{T}.AsJwt().Subject", "user-7"),
        ("(\"Bearer \" + {T}).AsJwt()?.Issuer", "https://idp"),
        ("{T}.AsJwt().Algorithm + \"/\" + {T}.AsJwt().Type", "RS256/JWT"),
        ("string.Join(\"|\", {T}.AsJwt().Audiences)", "api|web"),
        ("{T}.AsJwt().Claims.GetValueOrDefault(\"roles\", \"\")", "reader,writer"),
        ("{T}.AsJwt().Claims[\"roles\"].Contains(\"writer\")", "True"),
        ("{T}.AsJwt().Claims.GetValueOrDefault(\"missing\", \"none\")", "none"),
        ("{T}.AsJwt().ExpirationTime.Value.ToString(\"o\")", "2024-05-01T10:20:30.0000000Z"),
        ("{T}.AsJwt().NotBefore == null", "True"),
        ("\"not a token\".AsJwt() == null", "True"),
        ("{ Jwt jwt; return {T}.TryParseJwt(out jwt) ? jwt.Claims.GetValueOrDefault(\"tid\", \"\") : \"no\"; }", "t1"),
        ("\"Basic dXNlcjpwYTpzcw==\".AsBasic().Password", "pa:ss"),
        ("{ BasicAuthCredentials c; return \"Bearer x\".TryParseBasic(out c) ? c.Username : \"none\"; }", "none"),
    ];
    for (code, want) in cases {
        let code = code.replace("{T}", &format!("\"{token}\""));
        assert_eq!(text(&code), want, "{code}");
    }
}

/// Hashes and HMACs as documents compute signatures and cache keys.
#[test]
fn hashes_and_hmacs() {
    let cases = [
        (
            r#"{ using (var hmac = new HMACSHA256(Encoding.UTF8.GetBytes("Jefe"))) { return BitConverter.ToString(hmac.ComputeHash(Encoding.UTF8.GetBytes("what do ya want for nothing?"))).Replace("-", "").ToLower(); } }"#,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            r#"Convert.ToBase64String(SHA256.Create().ComputeHash(Encoding.UTF8.GetBytes("abc")))"#,
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        ),
        (
            r#"Convert.ToHexString(MD5.Create().ComputeHash(Encoding.UTF8.GetBytes("")))"#,
            "D41D8CD98F00B204E9800998ECF8427E",
        ),
        (
            r#"Convert.ToHexString(SHA1.HashData(Encoding.UTF8.GetBytes("abc"))).ToLower()"#,
            "a9993e364706816aba3e25717850c26c9cd0d89d",
        ),
        (
            r#"{ using var h = new HMACSHA512(Encoding.UTF8.GetBytes("k")); return h.ComputeHash(Encoding.UTF8.GetBytes("m")).Length; }"#,
            "64",
        ),
        (
            r#"SHA256.Create().ComputeHash("text")"#,
            "error: ComputeHash takes a byte[] (Encoding.UTF8.GetBytes(text))",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// System.Xml.Linq as APIM documents use it on SOAP bodies: parse, navigate with and
/// without namespaces, read values and attributes, build with namespaces, edit, print
/// as .NET does.
#[test]
fn xml_documents_and_elements() {
    let soap = r#"XDocument.Parse("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><GetPrice xmlns=\"urn:shop\"><Item id=\"7\">tea</Item><Item id=\"8\">milk</Item><Qty>3</Qty></GetPrice></s:Body></s:Envelope>")"#;
    let cases: Vec<(String, &str)> = vec![
        (format!("{soap}.Root.Name.LocalName"), "Envelope"),
        (format!("{soap}.Root.Name.NamespaceName"), "http://schemas.xmlsoap.org/soap/envelope/"),
        // a document's descendants include its root
        (format!("{soap}.Descendants().Count()"), "6"),
        (format!("{soap}.Root.Descendants().Count()"), "5"),
        // a name without its namespace matches nothing, as in .NET
        (format!("{soap}.Descendants(\"Item\").Count()"), "0"),
        (format!("{{ XNamespace shop = \"urn:shop\"; return {soap}.Descendants(shop + \"Item\").Count(); }}"), "2"),
        (format!("{soap}.Descendants().First(e => e.Name.LocalName == \"Item\").Value"), "tea"),
        (format!("{soap}.Descendants().Where(e => e.Name.LocalName == \"Item\").Select(e => (string)e.Attribute(\"id\")).Last()"), "8"),
        (format!("(int){soap}.Descendants(\"{{urn:shop}}Qty\").First() * 2"), "6"),
        (format!("{soap}.Root.Element(XName.Get(\"Body\", \"http://schemas.xmlsoap.org/soap/envelope/\")).Elements().First().Name"), "{urn:shop}GetPrice"),
        (format!("{soap}.Root.Attribute(\"missing\") == null"), "True"),
        (format!("{soap}.Descendants(\"{{urn:shop}}Item\").First().Parent.Name.LocalName"), "GetPrice"),
        // printed as .NET prints it: indented, the declarations where they were
        (
            format!("{soap}.ToString()"),
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\n  <s:Body>\n    <GetPrice xmlns=\"urn:shop\">\n      <Item id=\"7\">tea</Item>\n      <Item id=\"8\">milk</Item>\n      <Qty>3</Qty>\n    </GetPrice>\n  </s:Body>\n</s:Envelope>",
        ),
        // a part printed alone carries the declarations it needs
        (
            format!("{soap}.Descendants(\"{{urn:shop}}Qty\").First().ToString()"),
            "<Qty xmlns=\"urn:shop\">3</Qty>",
        ),
        (
            r#"XElement.Parse("<a><b x='1'>t</b><c/></a>").ToString(SaveOptions.DisableFormatting)"#.to_string(),
            r#"<a><b x="1">t</b><c /></a>"#,
        ),
        // building with namespaces and attributes
        (
            r#"{ XNamespace soap = "http://schemas.xmlsoap.org/soap/envelope/"; XNamespace m = "urn:m";
                 var doc = new XDocument(new XElement(soap + "Envelope", new XAttribute(XNamespace.Xmlns + "soap", soap.NamespaceName),
                     new XElement(soap + "Body", new XElement(m + "Order", new XAttribute("id", 7), new XElement(m + "Item", "tea & milk")))));
                 return doc.ToString(SaveOptions.DisableFormatting); }"#.to_string(),
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><Order id="7" xmlns="urn:m"><Item>tea &amp; milk</Item></Order></soap:Body></soap:Envelope>"#,
        ),
        // editing
        (
            r#"{ var e = XElement.Parse("<o><a>1</a><b>2</b></o>"); e.Element("a").SetValue("one"); e.Element("b").Remove();
                 e.SetAttributeValue("v", 2); e.SetElementValue("c", "3"); e.Add(new XElement("d")); return e.ToString(SaveOptions.DisableFormatting); }"#.to_string(),
            r#"<o v="2"><a>one</a><c>3</c><d /></o>"#,
        ),
        (
            r#"{ var e = XElement.Parse("<o><a>1</a></o>"); e.Element("a").ReplaceWith(new XElement("z", "9")); return e.ToString(SaveOptions.DisableFormatting); }"#.to_string(),
            "<o><z>9</z></o>",
        ),
        (r#"{ var e = new XElement("x"); e.Add(e); return "no"; }"#.to_string(), "error: An element cannot be added to itself or its descendants"),
        (r#"XDocument.Parse("<a>").Root"#.to_string(), "error: The XML is not well-formed: the root node was opened but never closed"),
        (r#"XDocument.Parse("<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>").Root"#.to_string(), "error: The XML is not well-formed: XML with DTD detected"),
        (r#"new XElement("bad name")"#.to_string(), "error: The 'bad name' name is not a valid XML name"),
    ];
    for (code, want) in &cases {
        assert_eq!(text(code), *want, "{code}");
    }
}

/// System.Uri and the members real documents were found to use that the language
/// lacked: JObject.GetValue and Descendants, new string, byte[] initialisers.
#[test]
fn uris_and_members_found_in_real_documents() {
    let cases: &[(&str, &str)] = &[
        (
            r#"new Uri("HTTPS://Api.Example.com:443/v1/items/7?x=1#top").ToString()"#,
            "https://api.example.com/v1/items/7?x=1#top",
        ),
        (r#"new Uri("http://h:8080/a/b").Authority"#, "h:8080"),
        (r#"new Uri("http://h/a/b/").Segments.Count()"#, "3"),
        (
            r#"string.Join("|", new Uri("http://h/a/b").Segments)"#,
            "/|a/|b",
        ),
        (r#"new Uri("http://h/a/b?q=1").PathAndQuery"#, "/a/b?q=1"),
        (r#"new Uri("http://h").AbsolutePath"#, "/"),
        (r#"new Uri("https://h/x").Port"#, "443"),
        (r#"new Uri("http://u:p@h/x").UserInfo"#, "u:p"),
        (
            r#"new Uri(new Uri("http://h/a/b/c"), "../d?e=1").AbsoluteUri"#,
            "http://h/a/d?e=1",
        ),
        (
            r#"new Uri(new Uri("http://h/a/b"), "/z").ToString()"#,
            "http://h/z",
        ),
        (
            r#"new Uri("not a uri")"#,
            "error: Invalid URI: The format of the URI could not be determined: 'not a uri'",
        ),
        (
            r#"Uri.TryCreate("http://h/p", UriKind.Absolute, out Uri u) ? u.Host : "no""#,
            "h",
        ),
        (
            r#"Uri.TryCreate("nope", UriKind.Absolute, out var u) ? "yes" : "no""#,
            "no",
        ),
        (
            r#"Uri.IsWellFormedUriString("https://h/p", UriKind.Absolute)"#,
            "True",
        ),
        (r#"new Uri("http://h/p") == new Uri("HTTP://H/p")"#, "True"),
        (
            r#"JObject.Parse("{\"Name\":1}").GetValue("name", StringComparison.OrdinalIgnoreCase)"#,
            "1",
        ),
        (
            r#"JObject.Parse("{\"Name\":1}").GetValue("name") == null"#,
            "True",
        ),
        (
            r#"JObject.Parse("{\"a\":{\"b\":1},\"c\":[2]}").Descendants().Count()"#,
            "7",
        ),
        (
            r#"new string('-', 3) + new string(new[] { 'a', 'b' })"#,
            "---ab",
        ),
        (r#"new string("abc".Reverse().ToArray())"#, "cba"),
        (r#"BitConverter.ToString(new byte[] { 1, 171 })"#, "01-AB"),
        (r#"Convert.ToBase64String(new byte[] { 104, 105 })"#, "aGk="),
        (
            r#"context.Request.Certificate?.Thumbprint ?? "none""#,
            "none",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), *want, "{code}");
    }
}

/// Statements and library calls a probe of real-document blocks found missing:
/// switch, typed catches, `is T name`, method groups, Enumerable's statics,
/// List.Sort, dates in composite formats.
#[test]
fn switch_typed_catches_patterns_and_method_groups() {
    let cases: &[(&str, &str)] = &[
        (r#"{ var x = "b"; switch (x) { case "a": return "1"; case "b": case "c": return "2"; default: return "0"; } }"#, "2"),
        (r#"{ var x = 5; switch (x) { case 1: return "one"; default: return "many"; } }"#, "many"),
        (r#"{ var r = ""; switch (3) { case 3: r = "three"; break; default: r = "other"; break; } return r; }"#, "three"),
        (r#"{ var n = 0; for (var i = 0; i < 3; i++) { switch (i) { case 1: break; default: n++; break; } } return n.ToString(); }"#, "2"),
        // a catch takes its type and the types derived from it, and nothing else
        (r#"{ try { JObject.Parse("{bad"); return "ok"; } catch (JsonReaderException ex) { return "json: " + ex.Message; } }"#, "json: Invalid character after parsing property name (JSON)"),
        (r#"{ try { JObject.Parse("{bad"); return "ok"; } catch (FormatException) { return "format"; } catch (Newtonsoft.Json.JsonException e) { return "json"; } }"#, "json"),
        (r#"{ try { throw new ArgumentNullException("x"); } catch (ArgumentException e) { return e.ToString(); } }"#, "System.ArgumentNullException: x"),
        (r#"{ try { try { int.Parse("x"); return "no"; } catch (KeyNotFoundException) { return "key"; } } catch (FormatException f) { return "outer " + f.Message; } }"#, "outer Input string was not in a correct format (int.Parse)"),
        (r#"{ try { string s = null; return s.Length.ToString(); } catch (NullReferenceException) { return "null"; } }"#, "null"),
        (r#"{ try { return "x"; } catch (WebException) { return "y"; } }"#, "error: expression error at column 29: 'WebException' is not an exception type expressions can catch"),
        (r#"{ object v = "abc"; return (v is string s && s.Length == 3).ToString(); }"#, "True"),
        (r#"{ object v = 5; return (v is string s ? s : "not a string"); }"#, "not a string"),
        (r#""12a".All(char.IsDigit).ToString() + "x1".Any(char.IsDigit)"#, "FalseTrue"),
        (r#"string.Join(",", "a B".Split(' ').Select(char.IsUpper))"#, "False,True"),
        (r#"string.Join(",", Enumerable.Range(3, 3))"#, "3,4,5"),
        (r#"string.Join("", Enumerable.Repeat("ab", 2)) + Enumerable.Empty<string>().Count()"#, "abab0"),
        (r#"{ var l = new List<string> { "b", "a" }; l.Sort(); return string.Join(",", l); }"#, "a,b"),
        (r#"string.Format("{0:yyyy-MM-dd}", new DateTime(2024, 1, 2))"#, "2024-01-02"),
        (r#"$"{new DateTime(2024, 1, 2):yyyy}""#, "2024"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(code, want)| text(code) != *want)
        .map(|(code, want)| format!("{code}\n  got {}\n want {want}", text(code)))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
