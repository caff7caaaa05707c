//! Expression tests for library members that a probe of typical policy expressions
//! found missing: JSONPath with filters and recursive descent, ThenBy, Random, Guid
//! parsing, NumberStyles and culture arguments, number bases, JToken.DeepEquals and
//! namespace-qualified type names.

use super::tests::text;

#[test]
fn json_paths_values_and_deep_equals() {
    let doc = r#"JObject.Parse("{\"items\":[{\"id\":1,\"tag\":\"a\"},{\"id\":2,\"tag\":\"b\"},{\"id\":3}],\"id\":0}")"#;
    let cases = [
        (format!(r#"{doc}.SelectTokens("$..id").Count()"#), "4"),
        (
            format!(r#"string.Join(",", {doc}.SelectTokens("$..id"))"#),
            "1,2,3,0",
        ),
        (
            format!(r#"(string){doc}.SelectToken("$.items[?(@.id == 2)].tag")"#),
            "b",
        ),
        (
            format!(r#"string.Join(",", {doc}.SelectTokens("$.items[?(@.tag)].id"))"#),
            "1,2",
        ),
        (
            format!(r#"string.Join(",", {doc}.SelectTokens("items[1:].id"))"#),
            "2,3",
        ),
        (format!(r#"{doc}["items"].Values<int>("id").Sum()"#), "6"),
        (
            format!(r#"{doc}.SelectToken("items[*].id")"#),
            "error: Path returned multiple tokens (SelectToken)",
        ),
        (
            r#"JToken.DeepEquals(JObject.Parse("{\"a\":[1,{\"b\":2}]}"), JObject.Parse("{ \"a\": [1, {\"b\": 2}] }"))"#.to_string(),
            "True",
        ),
        (
            r#"JToken.DeepEquals(JToken.Parse("[1]"), JToken.Parse("[2]"))"#.to_string(),
            "False",
        ),
        // JValue compares numbers approximately (Newtonsoft's ApproxEquals), NaN = NaN
        (
            r#"JToken.DeepEquals(JToken.Parse("[0.30000000000000004, NaN, 1]"), JToken.Parse("[0.3, NaN, 1.0]"))"#.to_string(),
            "True",
        ),
        (
            r#"JToken.DeepEquals(JToken.Parse("[0.3001]"), JToken.Parse("[0.3]"))"#.to_string(),
            "False",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(&code), want, "{code}");
    }
}

#[test]
fn then_by_random_guids_and_number_forms() {
    let cases = [
        (
            r#"string.Join(",", new[] { "bb", "a", "cc", "b" }.OrderBy(s => s.Length).ThenByDescending(s => s))"#,
            "b,a,cc,bb",
        ),
        (
            r#"string.Join(",", new[] { 3, 1, 2, 11 }.OrderByDescending(x => x % 2).ThenBy(x => x))"#,
            "1,3,11,2",
        ),
        (
            r#"new[] { 1 }.Where(x => x > 0).ThenBy(x => x)"#,
            "error: ThenBy follows OrderBy, OrderByDescending or ThenBy",
        ),
        (
            r#"{ var r = new Random(); var n = r.Next(5, 7); var d = r.NextDouble(); return n >= 5 && n < 7 && d >= 0 && d < 1 && r.Next(1) == 0; }"#,
            "True",
        ),
        (
            r#"new Random(42).Next(1000) == new Random(42).Next(1000)"#,
            "True",
        ),
        (r#"new Random().Next(3, 1)"#, "error: 'minValue' cannot be greater than maxValue, and maxValue must not be negative (Random.Next)"),
        (
            r#"Guid.Parse("{6F9619FF-8B86-D011-B42D-00C04FC964FF}")"#,
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ),
        (
            r#"Guid.TryParse("6f9619ff8b86d011b42d00c04fc964ff", out var g) ? g : "no""#,
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ),
        (r#"Guid.TryParse("nope", out var g) ? g : "no""#, "no"),
        (
            r#"double.Parse("1,234.5", System.Globalization.CultureInfo.InvariantCulture)"#,
            "1234.5",
        ),
        (
            r#"int.Parse("ff", System.Globalization.NumberStyles.HexNumber)"#,
            "255",
        ),
        (
            r#"int.TryParse("1,000", NumberStyles.AllowThousands, CultureInfo.InvariantCulture, out var n) ? n : -1"#,
            "1000",
        ),
        (r#"int.TryParse("1,000", out var n) ? n : -1"#, "-1"),
        (r#"double.TryParse("nan", out var d) ? 1 : 0"#, "0"),
        (r#"Convert.ToString(255, 16)"#, "ff"),
        (r#"Convert.ToString(5, 2)"#, "101"),
        (r#"Convert.ToInt32("ff", 16) + Convert.ToInt32("0x10", 16)"#, "271"),
        (r#"Convert.ToString(12, CultureInfo.InvariantCulture)"#, "12"),
        (r#"double.IsNaN(double.NaN) || double.NaN != double.NaN"#, "True"),
        (
            r#"System.Text.RegularExpressions.Regex.IsMatch("abc", "^a")"#,
            "True",
        ),
        (
            r#"new System.Xml.Linq.XElement("a", 1).ToString()"#,
            "<a>1</a>",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

#[test]
fn shifts_unchecked_default_html_and_aes() {
    let cases = [
        ("Math.Round(2.5) + Math.Round(3.5)", "6"),
        ("Math.Round(2.5, MidpointRounding.AwayFromZero)", "3"),
        ("Math.Round(-2.45, 1, MidpointRounding.AwayFromZero)", "-2.5"),
        ("Math.Round(2.47, 1, MidpointRounding.ToZero)", "2.4"),
        ("Math.Round(2.41, 1, MidpointRounding.ToPositiveInfinity)", "2.5"),
        ("(byte)300 + (sbyte)200 + (short)70000", "4452"),
        ("(int)4294967297L + (uint)(-1)", "4294967296"),
        ("(byte)(2.9)", "2"),
        (
            "{ var dst = new byte[6]; Array.Copy(new byte[] { 1, 2, 3, 4 }, 1, dst, 2, 3); return string.Join(\",\", dst); }",
            "0,0,2,3,4,0",
        ),
        ("{ var d = new int[2]; Array.Copy(new[] { 7 }, d, 2); return 0; }", "error: Source array was not long enough. Check the source index, length, and the array's lower bounds. (Parameter 'sourceArray')"),
        ("Array.IndexOf(new[] { \"a\", \"b\" }, \"b\")", "1"),
        ("{ var l = new[] { 1, 2, 3 }; Array.Reverse(l); return string.Join(\"\", l); }", "321"),
        (
            "new Guid(Guid.Parse(\"00112233-4455-6677-8899-aabbccddeeff\").ToByteArray()).ToString()",
            "00112233-4455-6677-8899-aabbccddeeff",
        ),
        (
            "string.Join(\";\", new[] { \"apple\", \"avocado\", \"banana\", \"cherry\", \"blueberry\" }.GroupBy(s => s[0]).Select(g => g.Key + \"=\" + g.Count() + \":\" + string.Join(\"|\", g)))",
            "a=2:apple|avocado;b=2:banana|blueberry;c=1:cherry",
        ),
        (
            "new[] { 1, 2, 3, 4, 5 }.GroupBy(x => x % 2, x => x * 10).First(g => g.Key == 0).Sum()",
            "60",
        ),
        (
            "JArray.Parse(\"[{\\\"c\\\":\\\"x\\\",\\\"n\\\":1},{\\\"c\\\":\\\"x\\\",\\\"n\\\":2},{\\\"c\\\":\\\"y\\\",\\\"n\\\":5}]\").GroupBy(t => (string)t[\"c\"]).Count()",
            "2",
        ),
        ("nameof(context.Request.Method) + nameof(x)", "Methodx"),
        ("new { total = 1, label = \"a\" }.label", "a"),
        ("{ var t = new { Foo = 2 }; return t.Foo + 1; }", "3"),
        ("Tuple.Create(\"a\", 1).Item1 + Tuple.Create(\"a\", 1).Item2", "a1"),
        ("new { a = 1 }.b", "error: The given key 'b' was not present in the dictionary"),
        ("1 << 3", "8"),
        ("(300 >> 1) & 0xFF", "150"),
        ("-16 >> 2", "-4"),
        ("1 << 2 + 1", "8"),
        ("3 < 1 << 2", "True"),
        ("{ int x; unchecked { x = (int)(7L >> 1); } return checked(x + 1); }", "4"),
        ("default(string) ?? \"d\"", "d"),
        ("default(int) + 1", "1"),
        (
            "System.Net.WebUtility.HtmlEncode(\"<a href='x'>&</a>\")",
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;",
        ),
        ("WebUtility.HtmlDecode(\"&lt;b&gt; &#65;&#x42; &amp;c &unknown;\")", "<b> AB &c &unknown;"),
        (
            "BitConverter.ToString(Guid.Parse(\"00112233-4455-6677-8899-aabbccddeeff\").ToByteArray())",
            "33-22-11-00-55-44-77-66-88-99-AA-BB-CC-DD-EE-FF",
        ),
        // APIM's byte[].Encrypt / Decrypt: AES-CBC with PKCS#7, as .NET computes it
        (
            r#"{ var key = Convert.FromBase64String("K34VFiiu0qar9xWICc9PPA=="); var iv = new byte[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 }; var c = Encoding.UTF8.GetBytes("attack at dawn").Encrypt("Aes", key, iv); return Convert.ToBase64String(c) + "|" + Encoding.UTF8.GetString(c.Decrypt("Aes", key, iv)); }"#,
            // what `openssl enc -aes-128-cbc` gives for the same key, IV and text
            "ifwuoUMzp0xjGauNdj0oKQ==|attack at dawn",
        ),
        (
            r#"Encoding.UTF8.GetBytes("x").Encrypt("Aes", new byte[] { 1, 2 }, new byte[16])"#,
            "error: Specified key is not a valid size for this algorithm.",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), want, "{code}");
    }
}

/// What production policy documents (pagopa-infra) used and the language lacked: array
/// initializers in declarations, `Guid` as a declared type, Array's predicate helpers,
/// XContainer.FirstNode, Regex's match timeout, `context.Request.Body` compared with
/// null.
#[test]
fn what_production_documents_use() {
    let cases: &[(&str, &str)] = &[
        (
            r#"{ String[] separator = {"PSP"}; var r = "a<PSP>b<PSP>c".Split(separator, StringSplitOptions.RemoveEmptyEntries); return r.Length + " " + r[1]; }"#,
            "3 >b<",
        ),
        (r#"{ int[] n = { 3, 4 }; return n.Sum().ToString(); }"#, "7"),
        (
            r#"{ Guid id = Guid.Parse("00112233-4455-6677-8899-aabbccddeeff"); return id.ToString().Replace("-", ""); }"#,
            "00112233445566778899aabbccddeeff",
        ),
        (r#"Array.Exists("a,b,c".Split(','), x => x == "b")"#, "True"),
        (
            r#"Array.TrueForAll("1,2".Split(','), x => x.Length == 1)"#,
            "True",
        ),
        (
            r#"Array.Find("a,bb,cc".Split(','), x => x.Length == 2)"#,
            "bb",
        ),
        (
            r#"Array.FindAll("a,bb,cc".Split(','), x => x.Length == 2).Length"#,
            "2",
        ),
        (
            r#"{ var d = XDocument.Parse("<e><b>
  <op><x>7</x></op>
</b></e>"); var body = d.Root.Element("b"); XElement op = (XElement) body.FirstNode; return op.Name.LocalName + op.Element("x").Value + ((XElement)d.FirstNode).Name; }"#,
            "op7e",
        ),
        (
            r#"Regex.IsMatch("/dona/", @"\/dona\/?$", RegexOptions.IgnoreCase, TimeSpan.FromMilliseconds(500))"#,
            "True",
        ),
        (r#"(context.Request.Body != null).ToString()"#, "False"),
        (
            r#"{ bool Allowed(string list, string ip) { if (list == "*") { return true; } return list.Split(',').Contains(ip); } return Allowed("10.0.0.1,10.0.0.2", "10.0.0.2") + " " + Allowed("*", "x") + " " + Allowed("a", "b"); }"#,
            "True True False",
        ),
        (
            r#"{ int Twice(int n) => n * 2; var k = 5; return Twice(k + 1).ToString(); }"#,
            "12",
        ),
        // TimeZoneInfo from the built-in table: the EU's and the US's daylight changes
        (
            r#"{ TimeZoneInfo zone = TimeZoneInfo.FindSystemTimeZoneById("Central European Standard Time"); return TimeZoneInfo.ConvertTimeToUtc(new DateTime(2024, 1, 15, 10, 0, 0), zone).ToString("HH:mm") + " " + TimeZoneInfo.ConvertTimeToUtc(new DateTime(2024, 7, 15, 10, 0, 0), zone).ToString("HH:mm"); }"#,
            "09:00 08:00",
        ),
        (
            r#"{ var z = TimeZoneInfo.FindSystemTimeZoneById("Europe/Rome"); return TimeZoneInfo.ConvertTimeFromUtc(new DateTime(2024, 3, 31, 0, 59, 0, DateTimeKind.Utc), z).ToString("HH:mm") + " " + TimeZoneInfo.ConvertTimeFromUtc(new DateTime(2024, 3, 31, 1, 0, 0, DateTimeKind.Utc), z).ToString("HH:mm") + " " + TimeZoneInfo.ConvertTimeFromUtc(new DateTime(2024, 10, 27, 1, 0, 0, DateTimeKind.Utc), z).ToString("HH:mm"); }"#,
            "01:59 03:00 02:00",
        ),
        (
            r#"{ var z = TimeZoneInfo.FindSystemTimeZoneById("Eastern Standard Time"); string at(int mo, int d, int h, int mi) => TimeZoneInfo.ConvertTimeFromUtc(new DateTime(2024, mo, d, h, mi, 0, DateTimeKind.Utc), z).ToString("HH:mm"); return at(3, 10, 6, 59) + " " + at(3, 10, 7, 0) + " " + at(11, 3, 5, 59) + " " + at(11, 3, 6, 0); }"#,
            "01:59 03:00 01:59 01:00",
        ),
        (
            r#"TimeZoneInfo.ConvertTimeBySystemTimeZoneId(new DateTime(2024, 5, 1, 12, 0, 0, DateTimeKind.Utc), "Tokyo Standard Time").ToString("HH:mm")"#,
            "21:00",
        ),
        (
            r#"TimeZoneInfo.FindSystemTimeZoneById("Mars/Olympus")"#,
            "error: The time zone ID 'Mars/Olympus' was not found on the local computer.",
        ),
        (
            r#"{ string Tag(string s) { return "<" + s + ">"; } return string.Join("", new[] { "a", "b" }.Select(x => Tag(x))); }"#,
            "<a><b>",
        ),
        (
            r#"{ var e = XElement.Parse("<r><b/></r>"); e.AddFirst(new XElement("a"), new XElement("a2")); return e.ToString(SaveOptions.DisableFormatting); }"#,
            "<r><a /><a2 /><b /></r>",
        ),
        (
            r#"{ var e = XElement.Parse("<r><a/><b/></r>"); e.Element("a").AddAfterSelf(new XElement("x"), "t"); e.Element("b").AddBeforeSelf(new XElement("y")); return e.ToString(SaveOptions.DisableFormatting); }"#,
            "<r><a /><x />t<y /><b /></r>",
        ),
        (
            r#"{ var e = XElement.Parse("<r/>"); e.AddAfterSelf(new XElement("x")); return "no"; }"#,
            "error: The parent is missing.",
        ),
    ];
    for (code, want) in cases {
        assert_eq!(text(code), *want, "{code}");
    }
}
