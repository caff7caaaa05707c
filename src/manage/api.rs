//! The management plane's HTTP API. Admin endpoints under `/admin/` need
//! `Authorization: Bearer <admin token>`; gateway endpoints under `/gateway/` need a
//! `GatewayKey` token. Every mutation bumps the revision and wakes long polls.
//! Must not touch: sockets (http.rs), SQL (store.rs).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use miniserde::json::{self, Array, Object, Value};

use super::audit::{self, Audit};
use super::entities::Kind;
use super::http::{Request, Response};
use super::import::ImportOptions;
use super::openapi::{self, RequiredQuery};
use super::store::{now_unix, PlaneError, PlaneResult, PlaneStore};
use crate::config::compile::valid_id;
use crate::config::{compile, ConfigError, ConfigSource};
use crate::federation::{self, token};
use crate::telemetry::{push_json_str, rfc3339};

/// A gateway's document and its version, shared by the polls (and the gateways) that
/// ask for it: answers point at it rather than copy it.
#[derive(Clone)]
struct Built {
    document: Arc<str>,
    version: Arc<str>,
}

/// Longest `?wait=N` honoured, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

pub struct Plane {
    store: Mutex<PlaneStore>,
    /// The revision long polls wait on; bumped after every committed mutation.
    revision: Mutex<u64>,
    changed: Condvar,
    admin_token: String,
    /// Each gateway's document at the revision it was built for: long polls of many
    /// gateways (and repeated polls of one) build it once per change.
    documents: Mutex<HashMap<String, (u64, Built)>>,
    /// Instances not heard from for this long are forgotten.
    prune_after: Duration,
    audit: Audit,
    /// Per gateway: the last document that compiled (served while a newer one does not)
    /// and why the newest one did not, if it did not.
    published: Mutex<HashMap<String, Published>>,
    /// The last refused gateway token per gateway id: (unix seconds, reason), so the
    /// fleet view can say why an instance went quiet.
    refusals: Mutex<HashMap<String, (u64, String)>>,
}

/// What a gateway was last given, and what was held back from it.
#[derive(Default)]
struct Published {
    good: Option<Built>,
    /// (revision, first compile error) of a document that was not published.
    refused: Option<(u64, String)>,
}

/// Most gateway ids whose last refused token is remembered.
const REFUSALS_MAX: usize = 1024;

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

fn secs_to_rfc3339(secs: u64) -> String {
    rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

fn plane_error(e: PlaneError) -> Response {
    match e {
        PlaneError::NotFound(what) => Response::error(404, &format!("{what} not found")),
        PlaneError::Conflict(why) => Response::error(409, &why),
        PlaneError::Unpublishable(why) => Response::error(
            503,
            &format!("this gateway's config document does not compile and is not published: {why}"),
        ),
        PlaneError::Invalid(errors) => {
            let mut body = String::from("{\"statusCode\": 400, \"message\": ");
            let first = errors.first().map(ToString::to_string).unwrap_or_default();
            push_json_str(&mut body, &format!("Invalid entity: {first}"));
            body.push_str(", \"errors\": [");
            for (i, e) in errors.iter().enumerate() {
                if i > 0 {
                    body.push_str(", ");
                }
                body.push_str("{\"path\": ");
                push_json_str(&mut body, &e.path);
                body.push_str(", \"message\": ");
                push_json_str(&mut body, &e.message);
                body.push('}');
            }
            body.push_str("]}");
            Response::json(400, body)
        }
        PlaneError::Sql(e) => {
            log::error!("management store: {e}");
            Response::error(500, "Internal server error")
        }
    }
}

fn body_object(req: &Request) -> Result<Object, Response> {
    if req.body.is_empty() {
        return Ok(Object::new());
    }
    let text =
        std::str::from_utf8(&req.body).map_err(|_| Response::error(400, "Body is not UTF-8"))?;
    // the config parser names the line and column of a syntax error; miniserde none
    if let Err((line, column, problem)) = crate::config::json::parse(text) {
        return Err(Response::error(
            400,
            &format!("Body is not valid JSON: {problem} at line {line} column {column}"),
        ));
    }
    match json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(Response::error(400, "Body must be a JSON object")),
    }
}

/// A `?limit=N` query parameter: `default` when absent, at most `max`; 400 otherwise.
fn limit_param(req: &Request, default: u32, max: u32) -> Result<u32, Response> {
    match req.query_param("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Response::error(
                400,
                &format!("limit must be a whole number from 1 to {max}"),
            )),
        },
    }
}

/// The methods the admin API answers on a path shaped like `path`, for 405 + Allow.
fn allowed_methods(path: &[&str]) -> Option<&'static str> {
    let entity = |kind: &str| Kind::from_segment(kind).is_some();
    Some(match path {
        ["apis"] | ["gateways"] | ["apis", _, "operations"] | ["gateways", _, "apis"] => "GET",
        ["gateways", _, "metrics" | "telemetry" | "certificates"] => "GET",
        ["apis", _] | ["apis", _, "operations", _] | ["gateways", _] | ["policy"] => {
            "GET, PUT, DELETE"
        }
        ["gateways", _, "apis" | "certificates", _] => "PUT, DELETE",
        ["gateways", _, "token" | "listKeys"] | ["gateways", _, "keys", "regenerate"] => "POST",
        [kind] if entity(kind) => "GET",
        [kind, _] if entity(kind) => "GET, PUT, DELETE",
        [kind, _, "listSecrets" | "listValue"] if entity(kind) => "POST",
        ["products", _, "apis"] => "GET",
        ["products", _, "apis", _] => "PUT, DELETE",
        _ => return None,
    })
}

/// Resource not found, or 405 with `Allow` when the path exists for other methods.
fn unrouted(path: &[&str]) -> Response {
    match allowed_methods(path) {
        Some(allow) => {
            let mut r = Response::error(405, "Method not allowed");
            r.headers.push(("Allow", allow.to_string()));
            r
        }
        None => Response::error(404, "Resource not found"),
    }
}

fn created_or_ok(created: bool, entity: Value) -> Response {
    Response::json(if created { 201 } else { 200 }, json::to_string(&entity))
}

/// Drops `value` on a short-lived thread (here when none can be started).
fn drop_elsewhere<T: Send + 'static>(value: T) {
    let spawned = std::thread::Builder::new()
        .name("edgegate-free".into())
        .spawn(move || drop(value));
    // on failure the closure, and the value with it, is dropped here
    drop(spawned);
}

impl Plane {
    pub fn new(
        store: PlaneStore,
        admin_token: String,
        prune_after: Duration,
        audit: Audit,
    ) -> Result<Plane, String> {
        let revision = store
            .revision()
            .map_err(|_| "cannot read the revision".to_string())?;
        Ok(Plane {
            store: Mutex::new(store),
            revision: Mutex::new(revision),
            changed: Condvar::new(),
            admin_token,
            documents: Mutex::new(HashMap::new()),
            prune_after,
            audit,
            published: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn store(&self) -> MutexGuard<'_, PlaneStore> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The version of the document `gateway` should be running now (what the fleet
    /// view compares each instance's `configVersion` with).
    pub(super) fn current_version(&self, gateway: &str) -> Option<String> {
        self.document(gateway).ok().map(|b| b.version.to_string())
    }

    /// Whether `token` is the admin token (constant time).
    pub(super) fn is_admin_token(&self, token: &str) -> bool {
        constant_time_eq(token.as_bytes(), self.admin_token.as_bytes())
    }

    /// Records a mutation made through the portal or the console in the audit trail.
    pub(super) fn audit(&self, req: &Request, actor: &str, status: u16) {
        self.audit.record(req, actor, status);
    }

    pub(super) fn bumped(&self) {
        let rev = self.store().revision().unwrap_or(0);
        let mut current = self.revision.lock().unwrap_or_else(|p| p.into_inner());
        *current = rev;
        self.changed.notify_all();
    }

    /// Waits until the revision differs from `seen` or `deadline` passes.
    fn wait_change(&self, seen: u64, deadline: Instant) {
        let mut current = self.revision.lock().unwrap_or_else(|p| p.into_inner());
        while *current == seen {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            current = match self.changed.wait_timeout(current, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// A gateway's document and version, built once per revision.
    /// The document `gateway` is served: built once per revision (gateways serving the
    /// same APIs share one copy) and checked with the gateway's own compiler before it
    /// is published. One that does not compile is never sent: the gateway keeps the last
    /// one that did, and the fleet view says why (`documentError`).
    fn document(&self, gateway: &str) -> Result<Built, PlaneError> {
        let store = self.store();
        let revision = store.revision()?;
        let cached = self
            .documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway)
            .filter(|(r, _)| *r == revision)
            .map(|(_, d)| d.clone());
        if let Some(d) = cached {
            return Ok(d);
        }
        let (document, version) = store.document(gateway)?;
        drop(store);
        let shared = {
            let mut docs = self.documents.lock().unwrap_or_else(|p| p.into_inner());
            // a deleted gateway's entry goes when the next one is built
            docs.retain(|_, (r, _)| *r == revision);
            docs.values()
                .find(|(_, d)| *d.version == *version)
                .map(|(_, d)| d.clone())
        };
        let built = match shared {
            // the same document already passed the check for another gateway
            Some(same) => same,
            None => {
                match compile(&document, ConfigSource::Service) {
                    Err(errors) => return self.held_back(gateway, revision, &errors),
                    // freeing a large runtime takes a while: not while the gateway waits
                    Ok(checked) => drop_elsewhere(checked),
                }
                Built {
                    document: Arc::from(document),
                    version: Arc::from(version),
                }
            }
        };
        self.documents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(gateway.to_string(), (revision, built.clone()));
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let entry = published.entry(gateway.to_string()).or_default();
        entry.good = Some(built.clone());
        entry.refused = None;
        Ok(built)
    }

    /// A document that does not compile: recorded and logged once per revision; the
    /// gateway is given its last good one, or an error (it keeps serving what it has).
    fn held_back(
        &self,
        gateway: &str,
        revision: u64,
        errors: &[ConfigError],
    ) -> Result<Built, PlaneError> {
        let first = errors.first().map(ToString::to_string).unwrap_or_default();
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        let entry = published.entry(gateway.to_string()).or_default();
        if entry.refused.as_ref().map(|(r, _)| *r) != Some(revision) {
            log::error!(
                "gateway '{gateway}': the document at revision {revision} does not compile ({} error(s)), not published; first: {first}",
                errors.len()
            );
            entry.refused = Some((revision, first.clone()));
        }
        match &entry.good {
            Some(good) => Ok(good.clone()),
            None => Err(PlaneError::Unpublishable(first)),
        }
    }

    /// Why the newest document of `gateway` was held back, if it was.
    fn document_error(&self, gateway: &str) -> Option<String> {
        let published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        published
            .get(gateway)
            .and_then(|p| p.refused.as_ref().map(|(_, e)| e.clone()))
    }

    fn current_revision(&self) -> u64 {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn handle(&self, req: &Request) -> Response {
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        match segments.first() {
            Some(&"admin") => {
                let authorized = req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), self.admin_token.as_bytes()));
                let actor = match req
                    .header("authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                {
                    Some(t) => format!("admin:{}", audit::token_fingerprint(t)),
                    None => "anonymous".to_string(),
                };
                let response = if authorized {
                    self.admin(req, &segments[1..])
                } else {
                    Response::error(401, "Access denied due to missing or invalid admin token")
                };
                if Audit::audited(&req.method) {
                    self.audit.record(req, &actor, response.status);
                }
                response
            }
            Some(&"gateway") => self.gateway(req, &segments[1..]),
            _ => Response::error(404, "Resource not found"),
        }
    }

    fn mutation(&self, result: Result<Response, PlaneError>) -> Response {
        match result {
            Ok(r) => {
                if r.status < 300 {
                    self.bumped();
                }
                r
            }
            Err(e) => plane_error(e),
        }
    }

    fn admin(&self, req: &Request, path: &[&str]) -> Response {
        let method = req.method.as_str();
        if let Some(id) = path.get(1) {
            if !valid_id(id) {
                return Response::error(
                    400,
                    "Ids may hold only letters, digits and - _ . ~ (at most 256)",
                );
            }
        }
        match (method, path) {
            (_, ["apis", ..]) => self.apis_admin(req, path),
            (_, ["gateways", ..]) => self.gateways_admin(req, path),
            ("GET" | "PUT" | "DELETE", ["policy"]) => self.global_policy(req),
            ("GET" | "PUT", ["portal"]) => self.portal_design(req),
            (_, [segment, rest @ ..]) => match Kind::from_segment(segment) {
                Some(kind) => self.entity(req, kind, rest, path),
                None => unrouted(path),
            },
            _ => unrouted(path),
        }
    }

    /// `/admin/apis…`: APIs and their operations.
    fn apis_admin(&self, req: &Request, path: &[&str]) -> Response {
        match (req.method.as_str(), path) {
            ("GET", ["apis"]) => match self.store().list_apis() {
                Ok(apis) => Response::json(
                    200,
                    json::to_string(&Value::Array(apis.into_iter().collect())),
                ),
                Err(e) => plane_error(e),
            },
            ("GET", ["apis", id]) if req.query_param("export").is_some() => {
                self.export_api(req, id)
            }
            ("PUT", ["apis", id]) if req.query_param("import").is_some() => {
                self.import_api(req, id)
            }
            ("GET", ["apis", id]) => self
                .store()
                .get_api(id)
                .map_or_else(plane_error, |v| Response::json(200, json::to_string(&v))),
            ("PUT", ["apis", id]) => {
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let result = (|| {
                    let mut store = self.store();
                    let created = store.put_api(id, body)?;
                    Ok(created_or_ok(created, store.get_api(id)?))
                })();
                self.mutation(result)
            }
            ("DELETE", ["apis", id]) => {
                let cascade = req.query_param("deleteSubscriptions") == Some("true");
                let result = self
                    .store()
                    .delete_api(id, cascade)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            ("GET", ["apis", id, "operations"]) => match self.store().get_api(id) {
                Ok(Value::Object(o)) => Response::json(
                    200,
                    json::to_string(o.get("operations").unwrap_or(&Value::Null)),
                ),
                Ok(_) => Response::error(404, "Resource not found"),
                Err(e) => plane_error(e),
            },
            ("GET", ["apis", api, "operations", op]) => self
                .store()
                .get_operation(api, op)
                .map_or_else(plane_error, |v| Response::json(200, json::to_string(&v))),
            ("PUT", ["apis", api, "operations", op]) => {
                if !valid_id(op) {
                    return Response::error(
                        400,
                        "Ids may hold only letters, digits and - _ . ~ (at most 256)",
                    );
                }
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let result = (|| {
                    let mut store = self.store();
                    let created = store.put_operation(api, op, body)?;
                    Ok(created_or_ok(created, store.get_operation(api, op)?))
                })();
                self.mutation(result)
            }
            ("DELETE", ["apis", api, "operations", op]) => {
                let result = self
                    .store()
                    .delete_operation(api, op)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            _ => unrouted(path),
        }
    }

    /// `PUT /admin/apis/{id}?import=openapi`: the body is an OpenAPI 3.0 / 3.1 document
    /// (JSON or YAML) or a Swagger 2.0 one; `path`, `serviceUrl` and
    /// `translateRequiredQueryParameters=query` are optional. Answers with what changed.
    fn import_api(&self, req: &Request, id: &str) -> Response {
        if req.query_param("import") != Some("openapi") {
            return Response::error(
                400,
                "import= takes 'openapi' (OpenAPI 3.0, 3.1 or Swagger 2.0)",
            );
        }
        let param = |name: &str| req.query_param(name).map(crate::telemetry::percent_decoded);
        let required_query = match param("translateRequiredQueryParameters").as_deref() {
            None | Some("template") => RequiredQuery::Template,
            Some("query") => RequiredQuery::Query,
            Some(_) => {
                return Response::error(
                    400,
                    "translateRequiredQueryParameters takes 'template' or 'query'",
                )
            }
        };
        let Ok(text) = std::str::from_utf8(&req.body) else {
            return Response::error(400, "Body is not UTF-8");
        };
        let options = ImportOptions {
            path: param("path"),
            service_url: param("serviceUrl"),
        };
        let result = self
            .store()
            .import_text(id, text, required_query, options)
            .map(|report| {
                Response::json(if report.created { 201 } else { 200 }, report.to_json(id))
            });
        self.mutation(result)
    }

    /// `GET /admin/apis/{id}?export=openapi[&format=yaml]`: the API as OpenAPI 3.0.
    fn export_api(&self, req: &Request, id: &str) -> Response {
        if req.query_param("export") != Some("openapi") {
            return Response::error(400, "export= takes 'openapi'");
        }
        let api = match self.store().get_api(id) {
            Ok(api) => api,
            Err(e) => return plane_error(e),
        };
        let doc = openapi::export::document(&api);
        match req.query_param("format") {
            None | Some("json") => Response::json(200, json::to_string(&doc)),
            Some("yaml") => {
                let mut r = Response::json(200, openapi::export::to_yaml(&doc));
                r.headers = vec![("Content-Type", "application/yaml; charset=utf-8".into())];
                r
            }
            Some(_) => Response::error(400, "format= takes 'json' or 'yaml'"),
        }
    }

    /// `/admin/gateways…`: gateways, their APIs, certificates, tokens, keys, and what
    /// their instances reported.
    fn gateways_admin(&self, req: &Request, path: &[&str]) -> Response {
        match (req.method.as_str(), path) {
            ("GET", ["gateways"]) => {
                // the store guard must be gone before gateway_view takes it again
                let ids = self.store().list_gateways();
                self.list_gateways(ids)
            }
            ("GET", ["gateways", id]) => self
                .gateway_view(id)
                .map_or_else(plane_error, |v| Response::json(200, json::to_string(&v))),
            ("PUT", ["gateways", id]) => {
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let result = self.store().put_gateway(id, body);
                let result =
                    result.and_then(|created| Ok(created_or_ok(created, self.gateway_view(id)?)));
                self.mutation(result)
            }
            ("DELETE", ["gateways", id]) => {
                let result = self
                    .store()
                    .delete_gateway(id)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            ("GET", ["gateways", id, "apis"]) => match self.store().gateway_apis(id) {
                Ok(ids) => Response::json(
                    200,
                    json::to_string(&Value::Array(ids.iter().map(|i| string(i)).collect())),
                ),
                Err(e) => plane_error(e),
            },
            ("PUT", ["gateways", id, "apis", api]) => {
                let result = self
                    .store()
                    .link(id, api)
                    .map(|created| Response::empty(if created { 201 } else { 204 }));
                self.mutation(result)
            }
            ("DELETE", ["gateways", id, "apis", api]) => {
                let result = self.store().unlink(id, api).map(|()| Response::empty(204));
                self.mutation(result)
            }
            ("POST", ["gateways", id, "token"]) => self.generate_token(req, id),
            ("GET", ["gateways", id, "metrics"]) => {
                let result = self.store().metrics(id);
                match result {
                    Ok(list) => {
                        let items: Array = list
                            .into_iter()
                            .map(|(instance, received, text)| {
                                let mut o = Object::new();
                                o.insert("instanceId".into(), Value::String(instance));
                                o.insert(
                                    "received".into(),
                                    Value::String(secs_to_rfc3339(received)),
                                );
                                o.insert("metrics".into(), Value::String(text));
                                Value::Object(o)
                            })
                            .collect();
                        Response::json(200, json::to_string(&Value::Array(items)))
                    }
                    Err(e) => plane_error(e),
                }
            }
            ("GET", ["gateways", id, "telemetry"]) => {
                let limit = match limit_param(req, 100, 10_000) {
                    Ok(l) => l,
                    Err(r) => return r,
                };
                let result = self.store().telemetry(id, limit);
                match result {
                    Ok((records, dropped)) => {
                        // records were validated as JSON objects when stored
                        let body = format!(
                            "{{\"dropped\": {dropped}, \"records\": [{}]}}",
                            records.join(",")
                        );
                        Response::json(200, body)
                    }
                    Err(e) => plane_error(e),
                }
            }
            ("POST", ["gateways", id, "keys", "regenerate"]) => {
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let (primary, secondary) = match body.get("keyType") {
                    None => (true, true),
                    Some(Value::String(k)) if k == "primary" => (true, false),
                    Some(Value::String(k)) if k == "secondary" => (false, true),
                    _ => return Response::error(400, "keyType must be primary or secondary"),
                };
                {
                    let result = self
                        .store()
                        .regenerate_keys(id, primary, secondary)
                        .map(|()| Response::empty(204));
                    self.mutation(result)
                }
            }
            ("POST", ["gateways", id, "listKeys"]) => match self.store().gateway_keys(id) {
                // APIM's Gateway - List Keys: the only way keys leave the plane
                Ok((primary, secondary)) => {
                    let mut o = Object::new();
                    o.insert("primary".into(), Value::String(primary));
                    o.insert("secondary".into(), Value::String(secondary));
                    Response::json(200, json::to_string(&Value::Object(o)))
                }
                Err(e) => plane_error(e),
            },
            ("GET", ["gateways", id, "certificates"]) => {
                match self.store().gateway_certificates(id) {
                    Ok(ids) => Response::json(
                        200,
                        json::to_string(&Value::Array(ids.iter().map(|i| string(i)).collect())),
                    ),
                    Err(e) => plane_error(e),
                }
            }
            ("PUT", ["gateways", id, "certificates", cert]) => {
                let result = self
                    .store()
                    .link_certificate(id, cert)
                    .map(|created| Response::empty(if created { 201 } else { 204 }));
                self.mutation(result)
            }
            ("DELETE", ["gateways", id, "certificates", cert]) => {
                let result = self
                    .store()
                    .unlink_certificate(id, cert)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            _ => unrouted(path),
        }
    }

    /// Products, subscriptions, named values and backends: `rest` is the path after
    /// the kind's segment.
    fn entity(&self, req: &Request, kind: Kind, rest: &[&str], path: &[&str]) -> Response {
        let json_of = |v: PlaneResult<Value>| {
            v.map_or_else(plane_error, |v| Response::json(200, json::to_string(&v)))
        };
        match (req.method.as_str(), kind, rest) {
            ("GET", _, []) => json_of(
                self.store()
                    .list_entities(kind)
                    .map(|l| Value::Array(l.into_iter().collect())),
            ),
            ("GET", _, [id]) => json_of(self.store().get_entity(kind, id)),
            ("PUT", _, [id]) => {
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let result = (|| {
                    let mut store = self.store();
                    let created = store.put_entity(kind, id, body)?;
                    Ok(created_or_ok(created, store.get_entity(kind, id)?))
                })();
                self.mutation(result)
            }
            ("DELETE", _, [id]) => {
                let cascade = req.query_param("deleteSubscriptions") == Some("true");
                let result = self
                    .store()
                    .delete_entity(kind, id, cascade)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            // secrets are read one entity at a time, by POST, as in APIM
            ("POST", Kind::Subscription, [id, "listSecrets"])
            | ("POST", Kind::NamedValue, [id, "listValue"]) => {
                json_of(self.store().secrets(kind, id))
            }
            ("GET", Kind::Product, [id, "apis"]) => json_of(
                self.store()
                    .product_apis(id)
                    .map(|ids| Value::Array(ids.iter().map(|i| string(i)).collect())),
            ),
            ("PUT", Kind::Product, [id, "apis", api]) => {
                let result = self
                    .store()
                    .link_product(id, api)
                    .map(|created| Response::empty(if created { 201 } else { 204 }));
                self.mutation(result)
            }
            ("DELETE", Kind::Product, [id, "apis", api]) => {
                let result = self
                    .store()
                    .unlink_product(id, api)
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            _ => unrouted(path),
        }
    }

    /// `/admin/portal`: the developer portal's title, logo, colours and pages.
    fn portal_design(&self, req: &Request) -> Response {
        let result = match req.method.as_str() {
            "PUT" => match body_object(req) {
                Ok(body) => self.store().put_design(&body),
                Err(r) => return r,
            },
            _ => self.store().design(),
        };
        result.map_or_else(plane_error, |d| Response::json(200, d.to_json()))
    }

    /// `/admin/policy`: the global policy as `{"value": "<policies>…</policies>"}`.
    fn global_policy(&self, req: &Request) -> Response {
        match req.method.as_str() {
            "PUT" => {
                let body = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let result = self.store().put_global_policy(&body).map(|created| {
                    let status = if created { 201 } else { 200 };
                    let mut o = Object::new();
                    o.insert(
                        "value".into(),
                        body.get("value").cloned().unwrap_or(Value::Null),
                    );
                    Response::json(status, json::to_string(&Value::Object(o)))
                });
                self.mutation(result)
            }
            "DELETE" => {
                let result = self
                    .store()
                    .delete_global_policy()
                    .map(|()| Response::empty(204));
                self.mutation(result)
            }
            _ => match self.store().global_policy() {
                Ok(Some(v)) => {
                    let mut o = Object::new();
                    o.insert("value".into(), Value::String(v));
                    Response::json(200, json::to_string(&Value::Object(o)))
                }
                Ok(None) => Response::error(404, "global policy not found"),
                Err(e) => plane_error(e),
            },
        }
    }

    fn list_gateways(&self, ids: Result<Vec<String>, PlaneError>) -> Response {
        match ids {
            Ok(ids) => {
                let list: Array = ids
                    .iter()
                    .map(|id| self.gateway_view(id))
                    .filter_map(Result::ok)
                    .collect();
                Response::json(200, json::to_string(&Value::Array(list)))
            }
            Err(e) => plane_error(e),
        }
    }

    fn generate_token(&self, req: &Request, id: &str) -> Response {
        let body = match body_object(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let Some(Value::String(expiry)) = body.get("expiry") else {
            return Response::error(400, "expiry is required, e.g. \"2026-12-31T00:00:00Z\"");
        };
        let Some(expiry) = crate::telemetry::parse_rfc3339(expiry) else {
            return Response::error(
                400,
                "expiry must be an RFC 3339 UTC time such as 2026-12-31T00:00:00Z",
            );
        };
        let keys = match self.store().gateway_keys(id) {
            Ok(k) => k,
            Err(e) => return plane_error(e),
        };
        let key = match body.get("keyType") {
            None => keys.0,
            Some(Value::String(k)) if k == "primary" => keys.0,
            Some(Value::String(k)) if k == "secondary" => keys.1,
            _ => return Response::error(400, "keyType must be primary or secondary"),
        };
        match token::generate(key.as_bytes(), id, expiry, now_unix()) {
            Ok(value) => {
                let mut o = Object::new();
                o.insert("value".into(), Value::String(value));
                Response::json(200, json::to_string(&Value::Object(o)))
            }
            Err(e) => Response::error(400, &e.to_string()),
        }
    }

    /// A gateway with its APIs and, per instance, what it last reported.
    pub(super) fn gateway_view(&self, id: &str) -> Result<Value, PlaneError> {
        let store = self.store();
        let mut view = store.gateway(id)?;
        view.insert(
            "apis".into(),
            Value::Array(store.gateway_apis(id)?.iter().map(|a| string(a)).collect()),
        );
        let now = now_unix();
        view.insert(
            "documentError".into(),
            self.document_error(id).map_or(Value::Null, Value::String),
        );
        let refusal = self.refusal(id);
        if let Some((at, reason)) = &refusal {
            let mut o = Object::new();
            o.insert("at".into(), Value::String(secs_to_rfc3339(*at)));
            o.insert("reason".into(), string(reason));
            view.insert("lastTokenRefusal".into(), Value::Object(o));
        }
        let mut instances = Array::new();
        for inst in store.instances(id)? {
            let mut o = inst.report.clone();
            let quiet = now.saturating_sub(inst.last_seen);
            let (state, why) = if federation::is_stopping(&o) {
                ("stopped", None)
            } else if quiet <= 2 * federation::interval_of(&o) {
                ("connected", None)
            } else {
                let why = match &refusal {
                    Some((at, reason)) if *at >= inst.last_seen => {
                        format!("its token was refused: {reason}")
                    }
                    _ => format!("no heartbeat for {quiet} s"),
                };
                ("disconnected", Some(why))
            };
            o.insert("instanceId".into(), Value::String(inst.instance));
            o.insert(
                "lastHeartbeat".into(),
                Value::String(secs_to_rfc3339(inst.last_seen)),
            );
            o.insert("state".into(), string(state));
            o.insert(
                "disconnectReason".into(),
                why.map_or(Value::Null, Value::String),
            );
            instances.push(Value::Object(o));
        }
        view.insert("instances".into(), Value::Array(instances));
        Ok(Value::Object(view))
    }

    /// The gateway id behind a `GatewayKey` token, or the 401 to answer (remembered
    /// for the fleet view when the token names a gateway).
    fn authenticate(&self, req: &Request) -> Result<String, Response> {
        let header = req.header("authorization").unwrap_or("");
        let presented = token::parse(header).map_err(|e| Response::error(401, &e.to_string()))?;
        let verified = match self.store().gateway_keys(presented.gateway_id) {
            Ok(keys) => token::verify(
                &presented,
                &[keys.0.as_bytes(), keys.1.as_bytes()],
                now_unix(),
            ),
            Err(_) => Err(token::TokenError::BadSignature),
        };
        match verified {
            Ok(_) => Ok(presented.gateway_id.to_string()),
            Err(e) => {
                self.refused(presented.gateway_id, &e.to_string());
                Err(Response::error(401, &e.to_string()))
            }
        }
    }

    fn refused(&self, gateway: &str, reason: &str) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        if refusals.len() >= REFUSALS_MAX && !refusals.contains_key(gateway) {
            return;
        }
        refusals.insert(gateway.to_string(), (now_unix(), reason.to_string()));
    }

    fn refusal(&self, gateway: &str) -> Option<(u64, String)> {
        let refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        refusals.get(gateway).cloned()
    }

    fn gateway(&self, req: &Request, path: &[&str]) -> Response {
        let gateway_id = match self.authenticate(req) {
            Ok(id) => id,
            Err(r) => return r,
        };
        match (req.method.as_str(), path) {
            ("GET", ["config"]) => {
                let wait = req
                    .query_param("wait")
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0)
                    .min(MAX_WAIT_SECONDS);
                let deadline = Instant::now() + Duration::from_secs(wait);
                let known = req
                    .header("if-none-match")
                    .map(|v| v.trim().trim_matches('"').to_string());
                loop {
                    let seen = self.current_revision();
                    let built = match self.document(&gateway_id) {
                        Ok(d) => d,
                        Err(e) => return plane_error(e),
                    };
                    let version = &*built.version;
                    if known.as_deref() != Some(version) {
                        let mut r = Response::shared_json(200, Arc::clone(&built.document));
                        r.headers.push(("ETag", format!("\"{version}\"")));
                        return r;
                    }
                    if Instant::now() >= deadline {
                        let mut r = Response::empty(304);
                        r.headers.push(("ETag", format!("\"{version}\"")));
                        return r;
                    }
                    self.wait_change(seen, deadline);
                    // a change may be the gateway's keys: a held poll on a voided token
                    // ends now, with the reason
                    if let Err(refused) = self.authenticate(req) {
                        return refused;
                    }
                }
            }
            ("POST", ["heartbeat"]) => {
                let report = match body_object(req) {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let Some(instance) = federation::instance_id_of(&report).map(str::to_string) else {
                    return Response::error(400, "instanceId is required");
                };
                let before = now_unix().saturating_sub(self.prune_after.as_secs());
                let mut store = self.store();
                match store.record_heartbeat(&gateway_id, &instance, &report) {
                    Ok(()) => {
                        if let Ok(n @ 1..) = store.prune_instances(before) {
                            log::info!(
                                "forgot {n} gateway instance(s) not heard from since {}",
                                secs_to_rfc3339(before)
                            );
                        }
                        Response::empty(204)
                    }
                    Err(e) => plane_error(e),
                }
            }
            ("POST", ["metrics"]) => {
                let Ok(text) = std::str::from_utf8(&req.body) else {
                    return Response::error(400, "Body is not UTF-8");
                };
                let instance = req
                    .header(federation::INSTANCE_HEADER)
                    .unwrap_or("")
                    .to_string();
                if instance.is_empty() || instance.len() > federation::INSTANCE_ID_MAX {
                    return Response::error(400, "X-Instance-Id is required");
                }
                let result = self.store().record_metrics(&gateway_id, &instance, text);
                match result {
                    Ok(()) => Response::empty(204),
                    Err(e) => plane_error(e),
                }
            }
            ("POST", ["telemetry"]) => {
                let Ok(text) = std::str::from_utf8(&req.body) else {
                    return Response::error(400, "Body is not UTF-8");
                };
                let dropped = req
                    .header(federation::DROPPED_HEADER)
                    .and_then(|d| d.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let result = self.store().record_telemetry(&gateway_id, text, dropped);
                match result {
                    Ok(_) => Response::empty(204),
                    Err(e) => plane_error(e),
                }
            }
            _ => Response::error(404, "Resource not found"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::store::tests::{obj, store};

    #[test]
    fn documents_are_built_once_per_revision_and_shared_between_gateways() {
        let mut s = store("api-docs");
        s.put_api(
            "echo",
            obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9"}"#),
        )
        .unwrap();
        for g in ["g1", "g2", "g3"] {
            s.put_gateway(g, Object::new()).unwrap();
        }
        s.link("g1", "echo").unwrap();
        s.link("g2", "echo").unwrap();
        let audit = Audit::open(None).unwrap();
        let plane = Plane::new(s, "t".into(), Duration::from_secs(60), audit).unwrap();
        let a = plane.document("g1").unwrap();
        let again = plane.document("g1").unwrap();
        assert!(Arc::ptr_eq(&a.document, &again.document), "cached");
        let b = plane.document("g2").unwrap();
        assert!(
            Arc::ptr_eq(&a.document, &b.document),
            "the same APIs: one copy"
        );
        let c = plane.document("g3").unwrap();
        assert_ne!(c.version, a.version, "g3 serves nothing");
        // a change makes a new revision and a new document
        plane.store().unlink("g2", "echo").unwrap();
        let b2 = plane.document("g2").unwrap();
        assert_eq!(b2.version, c.version);
        assert!(!Arc::ptr_eq(&b2.document, &b.document));
    }
}
