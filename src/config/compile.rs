//! Validates a config document whole and builds the `Runtime`. Every problem is reported
//! with its JSON path; one bad field rejects the document (the caller keeps the running
//! config). Pure: text in, value out; no DNS (see `Runtime::resolve`), no clock but the
//! `applied_at` stamp.
//! Must not touch: sockets, files, the loop.

use std::collections::HashMap;
use std::time::SystemTime;

use super::entities;
use super::json::{self, Errors, Fields, Json};
use super::{Api, Backend, ConfigError, ConfigSource, Operation, Runtime};
use crate::route::{ApiKey, ApiTable, OpTable, Template};

const TOP_FIELDS: &[&str] = &[
    "schemaVersion",
    "version",
    "apis",
    "products",
    "subscriptions",
    "namedValues",
    "backends",
    "certificates",
    "caCertificates",
    "fragments",
    "users",
    "groups",
    "policies",
];
const API_FIELDS: &[&str] = &[
    "id",
    "name",
    "displayName",
    "description",
    "path",
    "serviceUrl",
    "protocols",
    "hostnames",
    "subscriptionRequired",
    "subscriptionKeyParameterNames",
    "policies",
    "operations",
    // from an OpenAPI import: the API-scoped schemas (validate-content's, the portal's)
    "schemas",
    // the developer portal's catalogue: tags to search and filter by
    "tags",
];
const KEY_NAME_FIELDS: &[&str] = &["header", "query"];
const OP_FIELDS: &[&str] = &[
    "id",
    "name",
    "displayName",
    "description",
    "method",
    "urlTemplate",
    "policies",
    "responses",
    // from an OpenAPI import: documentation for the portal and the export
    "templateParameters",
    "request",
];

/// Parses and validates `text`. Backend addresses are left empty (see `Runtime::resolve`).
///
/// ```
/// use edgegate::config::{compile, ConfigSource};
///
/// let doc = r#"{"schemaVersion": 1, "apis": [{"id": "a", "path": "a", "serviceUrl": "http://h:81",
///   "operations": [{"id": "o", "method": "GET", "urlTemplate": "items"}]}]}"#;
/// let errors = compile(doc, ConfigSource::Local).err().unwrap();
/// assert_eq!(errors[0].to_string(), "apis[0].operations[0].urlTemplate: must start with '/'");
///
/// let rt = compile(&doc.replace("\"items\"", "\"/items\""), ConfigSource::Local).unwrap();
/// let found = rt.api_table.find("/a/items", "any-host", false).unwrap();
/// assert_eq!(rt.apis[0].op_table.find(&"/a/items"[found.rest_offset..], None, "GET"), Some(0));
/// ```
pub fn compile(text: &str, source: ConfigSource) -> Result<Runtime, Vec<ConfigError>> {
    let doc = match json::parse(text) {
        Ok(v) => v,
        Err((line, column, problem)) => {
            return Err(vec![ConfigError {
                path: String::new(),
                message: format!("invalid JSON at line {line} column {column}: {problem}"),
            }]);
        }
    };
    let mut errors = Errors::default();
    let runtime = compile_value(&doc, source, &mut errors);
    match runtime {
        Some(r) if errors.0.is_empty() => Ok(r),
        _ => Err(errors.0),
    }
}

fn compile_value(doc: &Json, source: ConfigSource, errors: &mut Errors) -> Option<Runtime> {
    let top = Fields::of(doc, "", TOP_FIELDS, errors)?;
    match top.u64("schemaVersion", errors) {
        Some(1) => {}
        Some(n) => errors.push(
            "schemaVersion",
            format!("unsupported schema version {n} (this gateway reads 1)"),
        ),
        None if top.get("schemaVersion").is_none() => errors.push("schemaVersion", "required"),
        None => {}
    }
    let version = match top.get("version") {
        None => None,
        Some(Json::String(s)) if !s.is_empty() && s.len() <= 128 => Some(s.to_string()),
        Some(Json::Number(n)) => Some(n.to_string()),
        Some(_) => {
            errors.push(
                "version",
                "expected a non-empty string of at most 128 characters",
            );
            None
        }
    };
    let certificates = super::tls::certificates(&top, errors);
    let named = entities::named_values(&top, errors);
    let fragments = entities::fragments(&top, errors);
    let (backends, backend_ids) = entities::backends(&top, errors);

    let mut apis = Vec::new();
    let mut api_texts = Vec::new();
    let mut ids: HashMap<&str, String> = HashMap::new();
    let mut paths: HashMap<(String, Option<String>), String> = HashMap::new();
    for (path, value) in top.array("apis", errors) {
        let Some((api, texts)) = compile_api(value, &path, errors) else {
            continue;
        };
        api_texts.push(texts);
        if let Some(first) = ids.get(api.id.as_str()) {
            errors.push(
                &format!("{path}.id"),
                format!("duplicate id '{}' (first at {first})", api.id),
            );
        }
        let hosts: Vec<Option<String>> = if api.hostnames.is_empty() {
            vec![None]
        } else {
            api.hostnames
                .iter()
                .map(|h| Some(h.to_ascii_lowercase()))
                .collect()
        };
        for host in hosts {
            if let Some(other) = paths.insert((api.path.clone(), host), api.id.clone()) {
                if other != api.id {
                    errors.push(
                        &format!("{path}.path"),
                        format!("path '{}' is already used by api '{other}'", api.path),
                    );
                }
            }
        }
        ids.entry(value_id(value)).or_insert(path);
        apis.push(api);
    }
    let groups = super::users::groups(&top, errors);
    let users = super::users::users(&top, &groups, errors);
    let (products, product_texts) = entities::products(&top, &apis, &groups, errors);
    let (subscriptions, keys) = entities::subscriptions(&top, &apis, &products, &users, errors);
    if !errors.0.is_empty() {
        return None;
    }
    entities::link_products(&mut apis, &products);
    let mut env = entities::PlanEnv {
        named,
        fragments,
        backend_ids,
        backends,
        references: Default::default(),
    };
    let texts = entities::PolicyTexts {
        global: top.str("policies", errors),
        products: product_texts,
        apis: api_texts,
    };
    let (policies, unmatched_plan) =
        entities::build_plans(&texts, &mut apis, &products, &mut env, errors);
    if !errors.0.is_empty() {
        return None;
    }
    let api_table = ApiTable::build(apis.iter().map(|a: &Api| ApiKey {
        path: &a.path,
        hostnames: &a.hostnames,
        http: a.http,
        https: a.https,
    }));
    let version =
        version.unwrap_or_else(|| format!("{:016x}", fnv(doc_fingerprint(&apis).as_bytes())));
    let redaction = crate::telemetry::Redaction::with(
        apis.iter()
            .map(|a| a.key_query.as_str())
            .chain(env.references.token_query_params()),
    );
    Some(Runtime {
        version,
        source,
        applied_at: SystemTime::now(),
        apis,
        api_table,
        products,
        subscriptions,
        users,
        groups,
        keys,
        backends: env.backends,
        backend_ids: env.backend_ids,
        policies,
        tls: certificates.listener,
        client_keys: certificates.keys,
        client_trust: certificates.trust,
        backend_tls: None,
        unmatched: unmatched_plan.map(|p| Box::new(Api::unmatched(p))),
        redaction,
        references: env.references,
    })
}

fn value_id<'v>(value: &'v Json) -> &'v str {
    value.get("id").and_then(Json::as_str).unwrap_or("")
}

fn fnv(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = crate::route::Fnv::default();
    h.write(bytes);
    h.finish()
}

fn doc_fingerprint(apis: &[Api]) -> String {
    let mut s = String::new();
    for a in apis {
        s.push_str(&a.id);
        s.push('\n');
        s.push_str(&a.path);
        s.push('\n');
        s.push_str(&a.backend.authority);
        s.push_str(&a.backend.base_path);
        for o in &a.operations {
            s.push_str(&o.id);
            s.push_str(&o.method);
            s.push_str(o.template.text());
        }
    }
    s
}

/// Ids of APIs, operations and gateways: letters, digits and `-_.~`, at most 256.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
}

fn compile_api<'d>(
    value: &'d Json<'d>,
    path: &str,
    errors: &mut Errors,
) -> Option<(Api, entities::ApiTexts<'d>)> {
    let f = Fields::of(value, path, API_FIELDS, errors)?;
    let before = errors.0.len();
    let id = f.required_str("id", errors).unwrap_or_default();
    if !id.is_empty() && !valid_id(id) {
        errors.push(
            &f.path("id"),
            "may hold only letters, digits and - _ . ~ (at most 256)",
        );
    }
    // "" is a valid API path (the API serves from the root), so not `required_str`.
    if f.get("path").is_none() {
        errors.push(&f.path("path"), "required");
    }
    let api_path = f
        .str("path", errors)
        .map(normalise_api_path)
        .unwrap_or(Ok(String::new()));
    let api_path = api_path.unwrap_or_else(|e| {
        errors.push(&f.path("path"), e);
        String::new()
    });
    let backend =
        f.required_str("serviceUrl", errors)
            .and_then(|url| match parse_service_url(url) {
                Ok(b) => Some(b),
                Err(e) => {
                    errors.push(&f.path("serviceUrl"), e);
                    None
                }
            });
    let (http, https) = protocols(&f, errors);
    let hostnames = hostnames(&f, errors);
    let subscription_required = f.bool("subscriptionRequired", errors).unwrap_or(true);
    let (key_header, key_query) = key_names(&f, errors);
    let api_policies = f.str("policies", errors);
    let name = f.display_name(id, errors);

    let schemas = super::contract::schemas(f.get("schemas"), &f.path("schemas"), errors);
    // only the portal reads them; checked here so a bad document is refused whole
    let _ = f.str_array("tags", errors);
    let (operations, op_texts) = operations(&f, &schemas, errors);
    if errors.0.len() > before {
        return None;
    }
    let op_table = OpTable::build(operations.iter().map(|o| (&*o.method, &o.template)));
    // (the API's path also names errors of plans merged from global and product scopes)
    let texts = (f.path("policies"), api_policies, op_texts);
    let api = Api {
        id: id.to_string(),
        name: name.to_string(),
        path: api_path,
        hostnames,
        http,
        https,
        subscription_required,
        key_header,
        key_query,
        backend: backend?,
        operations,
        op_table,
        schemas,
        products: Vec::new(),
        open_product: None,
    };
    Some((api, texts))
}

/// `protocols`: which of http and https the API serves (both when absent).
fn protocols(f: &Fields, errors: &mut Errors) -> (bool, bool) {
    let (mut http, mut https) = (true, true);
    if let Some(list) = f.str_array("protocols", errors) {
        (http, https) = (false, false);
        for (i, p) in list.iter().enumerate() {
            match *p {
                "http" => http = true,
                "https" => https = true,
                other => errors.push(
                    &format!("{}[{i}]", f.path("protocols")),
                    format!("unknown protocol '{other}'"),
                ),
            }
        }
        if list.is_empty() {
            errors.push(&f.path("protocols"), "must name http, https or both");
        }
    }
    (http, https)
}

/// `hostnames`: the host names the API answers on (lower-cased), any when empty.
fn hostnames(f: &Fields, errors: &mut Errors) -> Vec<String> {
    let mut hostnames = Vec::new();
    for (i, h) in f
        .str_array("hostnames", errors)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if h.is_empty()
            || h.len() > 253
            || !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            errors.push(
                &format!("{}[{i}]", f.path("hostnames")),
                "not a valid host name",
            );
        } else {
            hostnames.push(h.to_ascii_lowercase());
        }
    }
    hostnames
}

/// `subscriptionKeyParameterNames`: the header and query parameter carrying the key.
fn key_names(f: &Fields, errors: &mut Errors) -> (String, String) {
    let (mut key_header, mut key_query) = (
        "ocp-apim-subscription-key".to_string(),
        "subscription-key".to_string(),
    );
    if let Some(v) = f.get("subscriptionKeyParameterNames") {
        if let Some(k) = Fields::of(
            v,
            &f.path("subscriptionKeyParameterNames"),
            KEY_NAME_FIELDS,
            errors,
        ) {
            if let Some(h) = k.str("header", errors) {
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                {
                    errors.push(&k.path("header"), "not a valid header name");
                }
                key_header = h.to_ascii_lowercase();
            }
            if let Some(q) = k.str("query", errors) {
                if q.is_empty() {
                    errors.push(&k.path("query"), "must not be empty");
                }
                key_query = q.to_string();
            }
        }
    }
    (key_header, key_query)
}

/// Policy documents of an API's operations: (JSON path, text) in operation order.
type OpTexts<'d> = Vec<(String, Option<&'d str>)>;

/// `operations`: each checked (id, method, template, responses) and kept; an id or a
/// method + template shape seen twice is an error naming the first.
fn operations<'d>(
    f: &Fields<'d>,
    schemas: &crate::policy::schema::SchemaSet,
    errors: &mut Errors,
) -> (Vec<Operation>, OpTexts<'d>) {
    let mut op_texts = Vec::new();
    // per operation, only what it keeps is allocated: paths are made for errors only
    let mut operations = Vec::new();
    // first seen at: the operation's path (made for errors only)
    let mut seen_ids: HashMap<&str, usize> = HashMap::new();
    let mut seen_shapes: HashMap<(&str, String), usize> = HashMap::new();
    let path_of = |i: usize| crate::config::json::index(&f.path("operations"), i);
    for (index, (op_path, op_value)) in f.array("operations", errors).into_iter().enumerate() {
        let Some(o) = Fields::of(op_value, &op_path, OP_FIELDS, errors) else {
            continue;
        };
        let op_id = o.required_str("id", errors).unwrap_or_default();
        if !op_id.is_empty() && !valid_id(op_id) {
            errors.push(
                &o.path("id"),
                "may hold only letters, digits and - _ . ~ (at most 256)",
            );
        }
        if let Some(first) = seen_ids.insert(op_id, index) {
            if !op_id.is_empty() {
                errors.push(
                    &o.path("id"),
                    format!("duplicate id '{op_id}' (first at {})", path_of(first)),
                );
            }
        }
        let method = o.required_str("method", errors).unwrap_or_default();
        if !method.is_empty() && method != "*" && !method.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(
                &o.path("method"),
                "expected an upper-case HTTP method such as GET, or *",
            );
        }
        let template_text = o.required_str("urlTemplate", errors).unwrap_or_default();
        let template = match Template::parse(template_text) {
            Ok(t) => Some(t),
            Err(e) => {
                if o.get("urlTemplate").is_some() {
                    errors.push(&o.path("urlTemplate"), e);
                }
                None
            }
        };
        let op_policies = o.str("policies", errors);
        if o.get("responses").is_some() && !matches!(o.get("responses"), Some(Json::Array(_))) {
            errors.push(&o.path("responses"), "expected an array");
        }
        let responses = match o.get("responses") {
            None => Vec::new(),
            some => entities::responses(some, &o.path("responses"), errors),
        };
        let op_name = o.display_name(op_id, errors);
        let contract = super::contract::operation(&o, schemas, errors);
        if let Some(t) = template {
            if let Some(first) = seen_shapes.insert((method, t.shape()), index) {
                let first = path_of(first);
                errors.push(
                    &o.path("urlTemplate"),
                    format!("{method} {template_text} can never match: {first} has the same method and template"),
                );
            }
            let policies_path = op_policies.map(|_| o.path("policies"));
            op_texts.push((policies_path.unwrap_or_default(), op_policies));
            operations.push(Operation {
                id: op_id.to_string(),
                display_name: (op_name != op_id).then(|| op_name.into()),
                method: Operation::method_text(method),
                template: t,
                responses,
                contract,
                plans: Vec::new(),
            });
        }
    }
    operations.shrink_to_fit();
    (operations, op_texts)
}

fn normalise_api_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    for seg in trimmed.split('/') {
        if trimmed.is_empty() {
            break;
        }
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!("bad segment '{seg}'"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()+,;=:@".contains(&b))
        {
            return Err(format!(
                "segment '{seg}' has a character that is not allowed in a path"
            ));
        }
    }
    Ok(trimmed.to_string())
}

/// An absolute `http(s)://host[:port][/path][?query][#fragment]` URL, as the gateway
/// calls it itself (policies' requests, OpenID key fetches): the origin as a Backend
/// (addresses unresolved) and the request target (path and query, "/" when empty; the
/// fragment is dropped).
pub fn parse_absolute_url(url: &str) -> Result<(Backend, String), String> {
    let url = url.split('#').next().unwrap_or("");
    let after_scheme = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("'{url}' is not an http:// or https:// URL"))?;
    let split = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let target = &after_scheme[split..];
    let origin = &url[..url.len() - after_scheme.len() + split];
    let b = parse_service_url(origin).map_err(|why| format!("'{url}': {why}"))?;
    if target.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(format!("'{url}' has spaces or control characters"));
    }
    let target = match target {
        "" => "/".to_string(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    Ok((b, target))
}

/// `http://host[:port][/base]` → Backend (addresses unresolved).
pub fn parse_service_url(url: &str) -> Result<Backend, String> {
    let (rest, default_port, https) = if let Some(r) = url.strip_prefix("http://") {
        (r, 80, false)
    } else if let Some(r) = url.strip_prefix("https://") {
        (r, 443, true)
    } else {
        return Err("expected an http:// or https:// URL".into());
    };
    if rest.contains(['?', '#']) {
        return Err("must not have a query or fragment".into());
    }
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("must not carry user information".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']').ok_or("unclosed '[' in host")?;
        let host = &authority[..end + 2];
        let after = &v6[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| "bad port")?,
            None if after.is_empty() => default_port,
            None => return Err("bad host".into()),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| "bad port".to_string())?),
            None => (authority, default_port),
        }
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
    {
        return Err("bad host".into());
    }
    if port == 0 {
        return Err("bad port".into());
    }
    if base.split('/').any(|s| s == "." || s == "..") || base.contains("//") {
        return Err("path must not hold '.', '..' or empty segments".into());
    }
    let authority = if port == default_port {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let tls = if https {
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = rustls_pki_types::ServerName::try_from(name.to_string())
            .map_err(|_| "the host is not a name a certificate can carry".to_string())?;
        Some(std::sync::Arc::new(server_name))
    } else {
        None
    };
    Ok(Backend {
        host: host.to_string(),
        port,
        authority,
        base_path: base.trim_end_matches('/').to_string(),
        addrs: Vec::new(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        match compile(text, ConfigSource::Local) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    const GOOD: &str = r#"{"schemaVersion": 1, "version": "7", "apis": [
        {"id": "echo", "path": "/echo/", "serviceUrl": "http://127.0.0.1:9000/v1/", "subscriptionRequired": false,
         "operations": [{"id": "get", "method": "GET", "urlTemplate": "/items/{id}"},
                        {"id": "any", "method": "*", "urlTemplate": "/*"}]}]}"#;

    #[test]
    fn compiles_a_good_document() {
        let mut rt = compile(GOOD, ConfigSource::Local).unwrap();
        assert_eq!(rt.version, "7");
        let api = &rt.apis[0];
        assert_eq!(api.path, "echo");
        assert_eq!(api.backend.base_path, "/v1");
        assert_eq!(api.backend.authority, "127.0.0.1:9000");
        assert!(rt.resolve().is_empty());
        assert_eq!(
            rt.apis[0].backend.addrs,
            vec!["127.0.0.1:9000".parse().unwrap()]
        );
        let m = rt.api_table.find("/echo/items/3", "h", false).unwrap();
        assert_eq!(
            rt.apis[0]
                .op_table
                .find(&"/echo/items/3"[m.rest_offset..], None, "GET"),
            Some(0)
        );
    }

    #[test]
    fn every_error_has_its_path() {
        let text = r#"{"schemaVersion": 2, "apis": [
          {"id": "a", "path": "x", "serviceUrl": "http://h"},
          {"id": "b", "path": "y", "serviceUrl": "ftp://h", "bogus": 1,
           "operations": [{"id": "o", "method": "get", "urlTemplate": "items"},
                          {"id": "o", "method": "GET", "urlTemplate": "/a/{p}"},
                          {"id": "p", "method": "GET", "urlTemplate": "/a/{q}"}]},
          {"id": "a", "path": "/x/", "serviceUrl": "http://h:99999"},
          {"path": "z", "serviceUrl": "https://secure/", "protocols": ["ftp"]}]}"#;
        let errs = errors_of(text);
        let want = [
            "schemaVersion: unsupported schema version 2 (this gateway reads 1)",
                        "apis[1].bogus: unknown field",
            "apis[1].serviceUrl: expected an http:// or https:// URL",
            "apis[1].operations[0].method: expected an upper-case HTTP method such as GET, or *",
            "apis[1].operations[0].urlTemplate: must start with '/'",
            "apis[1].operations[1].id: duplicate id 'o' (first at apis[1].operations[0])",
            "apis[1].operations[2].urlTemplate: GET /a/{q} can never match: apis[1].operations[1] has the same method and template",
            "apis[2].serviceUrl: bad port",
            "apis[3].id: required",
            "apis[3].protocols[0]: unknown protocol 'ftp'",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
        }
    }

    #[test]
    fn duplicate_api_id_and_path() {
        let errs = errors_of(
            r#"{"schemaVersion": 1, "apis": [
              {"id": "a", "path": "x", "serviceUrl": "http://h"},
              {"id": "a", "path": "/x", "serviceUrl": "http://h"}]}"#,
        );
        assert!(
            errs.contains(&"apis[1].id: duplicate id 'a' (first at apis[0])".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"apis[1].path: path 'x' is already used by api 'a'".to_string())
                || errs.len() == 1
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        assert_eq!(
            errors_of("{\"schemaVersion\": 1,\n}"),
            vec!["invalid JSON at line 2 column 1: expected a string"]
        );
    }

    #[test]
    fn service_urls() {
        let b = parse_service_url("http://[::1]:8080/a/b").unwrap();
        assert_eq!(
            (b.host.as_str(), b.port, b.base_path.as_str()),
            ("[::1]", 8080, "/a/b")
        );
        let b = parse_service_url("http://example.com").unwrap();
        assert_eq!(
            (b.authority.as_str(), b.port, b.base_path.as_str()),
            ("example.com", 80, "")
        );
        assert!(parse_service_url("http://u@h/").is_err());
        assert!(parse_service_url("http://h/a/../b").is_err());
        assert!(parse_service_url("http://h/?q").is_err());
    }
}
