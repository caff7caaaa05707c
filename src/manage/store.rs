//! The management plane's data in SQLite: APIs, their operations, gateways (with their
//! keys), which APIs each gateway serves, and what each gateway instance last reported
//! (products, subscriptions, named values, backends and the global policy: entities.rs).
//! Every mutation bumps the revision in the same transaction. A gateway's config document
//! is computed from the entities; its `version` is a hash of its content, so a change
//! that does not concern a gateway does not make it re-apply anything.
//! Must not touch: HTTP (api.rs maps requests to these calls), the gateway's code paths.

use std::collections::{HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use miniserde::json::{self, Array, Object, Value};
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::{compile, ConfigError, ConfigSource, References};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0);
    CREATE TABLE IF NOT EXISTS apis (id TEXT PRIMARY KEY, body TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS operations (
        api TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (api, id));
    CREATE TABLE IF NOT EXISTS gateways (
        id TEXT PRIMARY KEY, body TEXT NOT NULL, primary_key TEXT NOT NULL, secondary_key TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS gateway_apis (
        gateway TEXT NOT NULL, api TEXT NOT NULL, PRIMARY KEY (gateway, api));
    CREATE TABLE IF NOT EXISTS telemetry (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT NOT NULL, received INTEGER NOT NULL, record TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS telemetry_by_gateway ON telemetry (gateway, seq);
    CREATE INDEX IF NOT EXISTS telemetry_by_time ON telemetry (received);
    CREATE INDEX IF NOT EXISTS telemetry_by_request
        ON telemetry (gateway, json_extract(record, '$.requestId'));
    CREATE INDEX IF NOT EXISTS telemetry_by_subscription
        ON telemetry (json_extract(record, '$.subscriptionId'), received);
    CREATE TABLE IF NOT EXISTS telemetry_dropped (gateway TEXT PRIMARY KEY, dropped INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS metrics (
        gateway TEXT NOT NULL, instance TEXT NOT NULL, received INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (gateway, instance));
    CREATE TABLE IF NOT EXISTS instances (
        gateway TEXT NOT NULL, instance TEXT NOT NULL, report TEXT NOT NULL, last_seen INTEGER NOT NULL,
        PRIMARY KEY (gateway, instance));
    CREATE TABLE IF NOT EXISTS entities (
        kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, id));
    CREATE TABLE IF NOT EXISTS product_apis (
        product TEXT NOT NULL, api TEXT NOT NULL, PRIMARY KEY (product, api));
    CREATE INDEX IF NOT EXISTS product_apis_by_api ON product_apis (api);
    CREATE TABLE IF NOT EXISTS gateway_certificates (
        gateway TEXT NOT NULL, certificate TEXT NOT NULL, PRIMARY KEY (gateway, certificate));
    CREATE TABLE IF NOT EXISTS subscription_keys (key TEXT PRIMARY KEY, subscription TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS policy_refs (
        owner TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (owner, kind, name));
    CREATE INDEX IF NOT EXISTS policy_refs_by_name ON policy_refs (kind, name);
    CREATE INDEX IF NOT EXISTS subscription_keys_by_subscription ON subscription_keys (subscription);
";

#[derive(Debug)]
pub enum PlaneError {
    NotFound(String),
    /// The entity is still used (409).
    Conflict(String),
    Invalid(Vec<ConfigError>),
    /// A gateway's document does not compile and none was published before (503).
    Unpublishable(String),
    Sql(String),
}

impl From<rusqlite::Error> for PlaneError {
    fn from(e: rusqlite::Error) -> Self {
        PlaneError::Sql(e.to_string())
    }
}

pub type PlaneResult<T> = Result<T, PlaneError>;

pub struct PlaneStore {
    pub(super) conn: Connection,
    /// Each served API as it goes into gateways' documents (its stored text with its id
    /// and operations spliced in), kept until the API or one of its operations changes:
    /// a one-API change re-renders one API, not all of them. Dropped whole when another
    /// connection has written to the file (`PRAGMA data_version` changed).
    rendered: std::cell::RefCell<HashMap<String, String>>,
    rendered_at: std::cell::Cell<Option<i64>>,
}

/// Up to this many APIs missing from the rendered cache are rendered one by one; more
/// in one pass over the tables.
const RENDER_ONE_BY_ONE: usize = 64;

/// Request records kept by the plane (all gateways together), newest first.
pub const TELEMETRY_KEEP: i64 = 1_000_000;

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(super) fn parse_object(text: &str) -> Object {
    match json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        _ => Object::new(),
    }
}

/// The `id` field of an entity object.
pub(super) fn id_of(value: &Value) -> Option<&str> {
    match value {
        Value::Object(o) => match o.get("id") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// An API's path as routing sees it (no outer '/') and its lower-cased hostnames.
fn path_and_hosts(api: &Value) -> (String, Vec<String>) {
    let Value::Object(o) = api else {
        return (String::new(), Vec::new());
    };
    let path = match o.get("path") {
        Some(Value::String(p)) => p.trim_matches('/').to_string(),
        _ => String::new(),
    };
    let hosts = match o.get("hostnames") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|h| match h {
                Value::String(h) => Some(h.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (path, hosts)
}

/// The tables linking an owner to entities.
#[derive(Debug, Clone, Copy)]
pub(super) enum Links {
    /// Which APIs a gateway serves.
    Gateway,
    /// Which APIs a product holds.
    Product,
    /// Which certificates a gateway presents on its HTTPS listener.
    GatewayCertificate,
}

impl Links {
    /// (table, owner column, target column, owner label, target label): constants,
    /// never caller input.
    fn names(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            Links::Gateway => ("gateway_apis", "gateway", "api", "gateway", "api"),
            Links::Product => ("product_apis", "product", "api", "product", "api"),
            Links::GatewayCertificate => (
                "gateway_certificates",
                "gateway",
                "certificate",
                "gateway",
                "certificate",
            ),
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::telemetry::push_json_str(&mut out, s);
    out
}

/// A stored entity's JSON object text with `fields` (name, JSON text) put first. The
/// stored text is one this store wrote (an object without these fields); anything else
/// (or a text that merely mentions a field name) is parsed and written again first.
fn splice(stored: &str, fields: &[(&str, &str)]) -> String {
    let trimmed = stored.trim();
    let clean = trimmed.len() >= 2
        && trimmed.starts_with('{')
        && trimmed.ends_with('}')
        && !fields
            .iter()
            .any(|(name, _)| trimmed.contains(&format!("\"{name}\"")));
    let rewritten;
    let object = if clean {
        trimmed
    } else {
        let mut o = parse_object(stored);
        for (name, _) in fields {
            o.remove(*name);
        }
        rewritten = json::to_string(&Value::Object(o));
        rewritten.as_str()
    };
    // '{' and '}' are one byte each
    let inner = object[1..object.len() - 1].trim();
    let mut out = String::with_capacity(object.len() + 64);
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(name));
        out.push(':');
        out.push_str(value);
    }
    if !inner.is_empty() {
        if !fields.is_empty() {
            out.push(',');
        }
        out.push_str(inner);
    }
    out.push('}');
    out
}

/// A policy-bearing entity, as the reference table names it. An API's operations are
/// part of its owner: they are stored and checked with it.
pub enum Owner<'a> {
    Global,
    Product(&'a str),
    Api(&'a str),
}

impl Owner<'_> {
    pub fn key(&self) -> String {
        match self {
            Owner::Global => "global".into(),
            Owner::Product(id) => format!("product:{id}"),
            Owner::Api(id) => format!("api:{id}"),
        }
    }

    /// Whether a compiler owner ("operation:{api}/{op}" included) is this entity's.
    fn holds(&self, compiled: &str) -> bool {
        match self {
            Owner::Api(id) => {
                compiled == format!("api:{id}")
                    || compiled
                        .strip_prefix("operation:")
                        .and_then(|rest| rest.strip_prefix(*id))
                        .is_some_and(|rest| rest.starts_with('/'))
            }
            other => compiled == other.key(),
        }
    }
}

/// Reference kinds in the `policy_refs` table.
pub const REF_NAMED_VALUE: &str = "namedValue";
pub const REF_BACKEND: &str = "backend";
pub const REF_FRAGMENT: &str = "fragment";
pub const REF_CERTIFICATE: &str = "certificate";

/// A gateway instance's last report, for `GET /admin/gateways/{id}`.
pub struct Instance {
    pub instance: String,
    pub report: Object,
    pub last_seen: u64,
}

impl PlaneStore {
    pub fn open(path: &std::path::Path) -> Result<PlaneStore, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let conn = crate::sqlite::open_durable(path, crate::sqlite::DbKind::Plane)
            .map_err(|e| format!("database {} {e}", path.display()))?;
        conn.execute_batch(SCHEMA).map_err(|e| e.to_string())?;
        conn.execute_batch(super::accounts::SCHEMA)
            .map_err(|e| e.to_string())?;
        conn.execute_batch(super::branding::SCHEMA)
            .map_err(|e| e.to_string())?;
        let mut store = PlaneStore {
            conn,
            rendered: Default::default(),
            rendered_at: Default::default(),
        };
        store.index_references_once().map_err(|e| {
            format!(
                "database {}: indexing policy references: {e:?}",
                path.display()
            )
        })?;
        Ok(store)
    }

    pub fn revision(&self) -> PlaneResult<u64> {
        let r: i64 =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                    r.get(0)
                })?;
        Ok(r as u64)
    }

    /// Replaces what `owner`'s policies refer to with what the compiler found in
    /// `references` (for that owner's documents).
    pub(super) fn record_refs(
        tx: &rusqlite::Transaction,
        owner: &Owner,
        references: &References,
    ) -> PlaneResult<()> {
        let key = owner.key();
        tx.execute("DELETE FROM policy_refs WHERE owner = ?1", params![key])?;
        let mut insert = tx
            .prepare("INSERT OR IGNORE INTO policy_refs (owner, kind, name) VALUES (?1, ?2, ?3)")?;
        for (compiled, uses) in &references.by_owner {
            if !owner.holds(compiled) {
                continue;
            }
            for name in &uses.named_values {
                insert.execute(params![key, REF_NAMED_VALUE, name])?;
            }
            for id in &uses.backends {
                insert.execute(params![key, REF_BACKEND, id])?;
            }
            for id in &uses.fragments {
                insert.execute(params![key, REF_FRAGMENT, id])?;
            }
            for id in &uses.certificates {
                insert.execute(params![key, REF_CERTIFICATE, id])?;
            }
        }
        Ok(())
    }

    /// The owners whose policies refer to `name` (a named value or backend id).
    pub(super) fn users_of(&self, kind: &str, name: &str) -> PlaneResult<Vec<String>> {
        let mut stmt = self.conn.prepare(
            "SELECT owner FROM policy_refs WHERE kind = ?1 AND name = ?2 ORDER BY owner",
        )?;
        let owners = stmt
            .query_map(params![kind, name], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(owners)
    }

    /// What `owners` refer to, of `kind` (one pass over the references of that kind,
    /// not one query per owner: a gateway document names thousands of owners).
    pub(super) fn used_by(&self, kind: &str, owners: &[String]) -> PlaneResult<HashSet<String>> {
        let owners: HashSet<&str> = owners.iter().map(String::as_str).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT owner, name FROM policy_refs WHERE kind = ?1")?;
        let mut out = HashSet::new();
        let rows = stmt.query_map(params![kind], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (owner, name) = row?;
            if owners.contains(owner.as_str()) {
                out.insert(name);
            }
        }
        Ok(out)
    }

    pub(super) fn bump(tx: &rusqlite::Transaction) -> PlaneResult<()> {
        tx.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision'",
            [],
        )?;
        Ok(())
    }

    // ---------------------------------------------------------------- APIs

    fn api_value(&self, id: &str, body: &str) -> PlaneResult<Value> {
        let mut api = parse_object(body);
        api.insert("id".into(), Value::String(id.to_string()));
        let mut ops = Array::new();
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM operations WHERE api = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (op_id, op_body) = row?;
            let mut op = parse_object(&op_body);
            op.insert("id".into(), Value::String(op_id));
            ops.push(Value::Object(op));
        }
        api.insert("operations".into(), Value::Array(ops));
        Ok(Value::Object(api))
    }

    /// Drops an API's rendered text after a change made outside this file's methods.
    pub(super) fn forget_rendered(&mut self, id: &str) {
        self.rendered.get_mut().remove(id);
    }

    pub fn get_api(&self, id: &str) -> PlaneResult<Value> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM apis WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()?;
        let body = body.ok_or_else(|| PlaneError::NotFound(format!("api '{id}'")))?;
        self.api_value(id, &body)
    }

    pub fn list_apis(&self) -> PlaneResult<Vec<Value>> {
        let mut stmt = self.conn.prepare("SELECT id, body FROM apis ORDER BY id")?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        rows.iter()
            .map(|(id, body)| self.api_value(id, body))
            .collect()
    }

    /// Validates `candidate` (an API with its operations) with the gateway's own compiler,
    /// and checks that no other API already serves its path on an overlapping set of
    /// hostnames. Errors carry paths relative to the API. Cost: one compile of the
    /// candidate plus a scan of the other APIs' paths, not a compile of everything.
    pub(super) fn validate_api(&self, candidate: Value) -> PlaneResult<References> {
        let id = id_of(&candidate).unwrap_or_default().to_string();
        let (path, hosts) = path_and_hosts(&candidate);
        // with the named values and backends its policies may use
        let mut doc = self.references()?;
        doc.insert(
            "apis".into(),
            Value::Array(std::iter::once(candidate).collect()),
        );
        let mut references = References::default();
        let mut errors: Vec<ConfigError> =
            match compile(&json::to_string(&Value::Object(doc)), ConfigSource::Service) {
                Ok(rt) => {
                    references = rt.references;
                    Vec::new()
                }
                Err(errors) => errors
                    .into_iter()
                    .map(|e| ConfigError {
                        path: e
                            .path
                            .strip_prefix("apis[0]")
                            .unwrap_or(&e.path)
                            .trim_start_matches('.')
                            .to_string(),
                        message: e.message,
                    })
                    .collect(),
            };
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM apis WHERE id != ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (other, body) = row?;
            let (other_path, other_hosts) = path_and_hosts(&Value::Object(parse_object(&body)));
            let overlap = (hosts.is_empty() && other_hosts.is_empty())
                || hosts.iter().any(|h| other_hosts.contains(h));
            if other_path == path && overlap {
                errors.push(ConfigError {
                    path: "path".into(),
                    message: format!("path '{path}' is already used by api '{other}'"),
                });
                break;
            }
        }
        if errors.is_empty() {
            Ok(references)
        } else {
            Err(PlaneError::Invalid(errors))
        }
    }

    /// Creates or replaces an API (its operations are kept). Returns true if created.
    pub fn put_api(&mut self, id: &str, mut body: Object) -> PlaneResult<bool> {
        for managed in ["id", "operations"] {
            body.remove(managed);
        }
        let exists = self.get_api(id).ok();
        let mut candidate = body.clone();
        candidate.insert("id".into(), Value::String(id.to_string()));
        let ops = match &exists {
            Some(Value::Object(o)) => o
                .get("operations")
                .cloned()
                .unwrap_or(Value::Array(Array::new())),
            _ => Value::Array(Array::new()),
        };
        candidate.insert("operations".into(), ops);
        let references = self.validate_api(Value::Object(candidate))?;
        self.rendered.get_mut().remove(id);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO apis (id, body) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            params![id, json::to_string(&Value::Object(body))],
        )?;
        Self::record_refs(&tx, &Owner::Api(id), &references)?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(exists.is_none())
    }

    /// Deletes an API with its operations, gateway and product links; refused (409)
    /// while subscriptions are scoped to it, unless `with_subscriptions` (then they go).
    pub fn delete_api(&mut self, id: &str, with_subscriptions: bool) -> PlaneResult<()> {
        self.get_api(id)?;
        let scoped = self.api_subscriptions(id, with_subscriptions)?;
        self.rendered.get_mut().remove(id);
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM apis WHERE id = ?1", params![id])?;
        tx.execute("DELETE FROM operations WHERE api = ?1", params![id])?;
        tx.execute("DELETE FROM gateway_apis WHERE api = ?1", params![id])?;
        tx.execute("DELETE FROM product_apis WHERE api = ?1", params![id])?;
        Self::record_refs(&tx, &Owner::Api(id), &References::default())?;
        Self::drop_subscriptions(&tx, scoped.iter().map(String::as_str))?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub fn put_operation(&mut self, api: &str, id: &str, mut body: Object) -> PlaneResult<bool> {
        body.remove("id");
        let Value::Object(mut candidate) = self.get_api(api)? else {
            return Err(PlaneError::NotFound(format!("api '{api}'")));
        };
        let mut op = body.clone();
        op.insert("id".into(), Value::String(id.to_string()));
        let mut ops = match candidate.remove("operations") {
            Some(Value::Array(a)) => a,
            _ => Array::new(),
        };
        let before = ops.len();
        ops.retain(|o| id_of(o) != Some(id));
        let created = ops.len() == before;
        ops.push(Value::Object(op));
        candidate.insert("operations".into(), Value::Array(ops));
        let references = self.validate_api(Value::Object(candidate))?;
        self.rendered.get_mut().remove(api);
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO operations (api, id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(api, id) DO UPDATE SET body = excluded.body",
            params![api, id, json::to_string(&Value::Object(body))],
        )?;
        Self::record_refs(&tx, &Owner::Api(api), &references)?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(created)
    }

    pub fn get_operation(&self, api: &str, id: &str) -> PlaneResult<Value> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM operations WHERE api = ?1 AND id = ?2",
                params![api, id],
                |r| r.get(0),
            )
            .optional()?;
        let mut op = parse_object(
            &body.ok_or_else(|| PlaneError::NotFound(format!("operation '{api}/{id}'")))?,
        );
        op.insert("id".into(), Value::String(id.to_string()));
        Ok(Value::Object(op))
    }

    pub fn delete_operation(&mut self, api: &str, id: &str) -> PlaneResult<()> {
        // what the API refers to without this operation
        let references = match self.get_api(api)? {
            Value::Object(mut candidate) => {
                if let Some(Value::Array(ops)) = candidate.get_mut("operations") {
                    ops.retain(|o| id_of(o) != Some(id));
                }
                self.validate_api(Value::Object(candidate))
                    .unwrap_or_default()
            }
            _ => References::default(),
        };
        self.rendered.get_mut().remove(api);
        let tx = self.conn.transaction()?;
        Self::record_refs(&tx, &Owner::Api(api), &references)?;
        if tx.execute(
            "DELETE FROM operations WHERE api = ?1 AND id = ?2",
            params![api, id],
        )? == 0
        {
            return Err(PlaneError::NotFound(format!("operation '{api}/{id}'")));
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- gateways

    pub fn put_gateway(&mut self, id: &str, mut body: Object) -> PlaneResult<bool> {
        body.remove("id");
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            "UPDATE gateways SET body = ?2 WHERE id = ?1",
            params![id, json::to_string(&Value::Object(body.clone()))],
        )?;
        if updated == 0 {
            tx.execute(
                "INSERT INTO gateways (id, body, primary_key, secondary_key) VALUES (?1, ?2, ?3, ?4)",
                params![id, json::to_string(&Value::Object(body)), crate::federation::token::new_key(), crate::federation::token::new_key()],
            )?;
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(updated == 0)
    }

    pub fn gateway(&self, id: &str) -> PlaneResult<Object> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM gateways WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        let mut o =
            parse_object(&body.ok_or_else(|| PlaneError::NotFound(format!("gateway '{id}'")))?);
        o.insert("id".into(), Value::String(id.to_string()));
        Ok(o)
    }

    pub fn list_gateways(&self) -> PlaneResult<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM gateways ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    pub fn delete_gateway(&mut self, id: &str) -> PlaneResult<()> {
        let tx = self.conn.transaction()?;
        if tx.execute("DELETE FROM gateways WHERE id = ?1", params![id])? == 0 {
            return Err(PlaneError::NotFound(format!("gateway '{id}'")));
        }
        tx.execute("DELETE FROM gateway_apis WHERE gateway = ?1", params![id])?;
        tx.execute(
            "DELETE FROM gateway_certificates WHERE gateway = ?1",
            params![id],
        )?;
        tx.execute("DELETE FROM instances WHERE gateway = ?1", params![id])?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// (primary, secondary) keys, base64.
    pub fn gateway_keys(&self, id: &str) -> PlaneResult<(String, String)> {
        self.conn
            .query_row(
                "SELECT primary_key, secondary_key FROM gateways WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| PlaneError::NotFound(format!("gateway '{id}'")))
    }

    /// Replaces one key (or both); tokens signed with a replaced key stop working.
    pub fn regenerate_keys(&mut self, id: &str, primary: bool, secondary: bool) -> PlaneResult<()> {
        self.gateway_keys(id)?;
        let tx = self.conn.transaction()?;
        if primary {
            tx.execute(
                "UPDATE gateways SET primary_key = ?2 WHERE id = ?1",
                params![id, crate::federation::token::new_key()],
            )?;
        }
        if secondary {
            tx.execute(
                "UPDATE gateways SET secondary_key = ?2 WHERE id = ?1",
                params![id, crate::federation::token::new_key()],
            )?;
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub fn link(&mut self, gateway: &str, api: &str) -> PlaneResult<bool> {
        self.gateway(gateway)?;
        self.get_api(api)?;
        self.add_link(Links::Gateway, gateway, api)
    }

    pub fn unlink(&mut self, gateway: &str, api: &str) -> PlaneResult<()> {
        self.remove_link(Links::Gateway, gateway, api)
    }

    pub fn gateway_apis(&self, gateway: &str) -> PlaneResult<Vec<String>> {
        self.linked(Links::Gateway, gateway)
    }

    /// Links `owner` to `target` (both checked by the caller); true if the link is new.
    pub(super) fn add_link(
        &mut self,
        links: Links,
        owner: &str,
        target: &str,
    ) -> PlaneResult<bool> {
        let (table, column, to, _, _) = links.names();
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            &format!("INSERT OR IGNORE INTO {table} ({column}, {to}) VALUES (?1, ?2)"),
            params![owner, target],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub(super) fn remove_link(
        &mut self,
        links: Links,
        owner: &str,
        target: &str,
    ) -> PlaneResult<()> {
        let (table, column, to, label, what) = links.names();
        let tx = self.conn.transaction()?;
        if tx.execute(
            &format!("DELETE FROM {table} WHERE {column} = ?1 AND {to} = ?2"),
            params![owner, target],
        )? == 0
        {
            return Err(PlaneError::NotFound(format!(
                "{what} '{target}' on {label} '{owner}'"
            )));
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn linked(&self, links: Links, owner: &str) -> PlaneResult<Vec<String>> {
        let (table, column, to, _, _) = links.names();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {to} FROM {table} WHERE {column} = ?1 ORDER BY {to}"
        ))?;
        let ids = stmt
            .query_map(params![owner], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(ids)
    }

    /// The config document for `gateway` and its version (a content hash). The stored
    /// API and operation texts are spliced in, not parsed and written again: a document
    /// of 10,000 APIs is built in milliseconds (see `splice`).
    pub fn document(&self, gateway: &str) -> PlaneResult<(String, String)> {
        self.gateway(gateway)?;
        let served: Vec<String> = {
            let mut stmt = self.conn.prepare(
                "SELECT a.id FROM apis a JOIN gateway_apis g ON g.api = a.id
                 WHERE g.gateway = ?1 ORDER BY a.id",
            )?;
            let rows = stmt.query_map(params![gateway], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut rendered = self.rendered.borrow_mut();
        // what other connections wrote (an operator's sqlite3, a restore) is not in it
        let data_version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.rendered_at.replace(Some(data_version)) != Some(data_version) {
            rendered.clear();
        }
        let missing: Vec<&String> = served
            .iter()
            .filter(|id| !rendered.contains_key(*id))
            .collect();
        if missing.len() > RENDER_ONE_BY_ONE {
            self.render_apis(gateway, &mut rendered)?;
        } else {
            for id in missing {
                let text = self.render_api(id)?;
                rendered.insert(id.clone(), text);
            }
        }
        let mut apis_text = String::with_capacity(
            2 + served
                .iter()
                .map(|id| rendered.get(id).map_or(0, |t| t.len() + 1))
                .sum::<usize>(),
        );
        apis_text.push('[');
        for (i, id) in served.iter().enumerate() {
            if i > 0 {
                apis_text.push(',');
            }
            apis_text.push_str(rendered.get(id).map_or("{}", String::as_str));
        }
        apis_text.push(']');
        drop(rendered);
        let mut catalogue = Object::new();
        self.catalogue_for(gateway, &served, &mut catalogue)?;
        // {"apis": …, <catalogue>, "schemaVersion": 1} without, then with, the version
        let mut fields = format!("\"apis\":{apis_text},");
        for (key, value) in catalogue.iter() {
            fields.push_str(&json_string(key));
            fields.push(':');
            fields.push_str(&json::to_string(value));
            fields.push(',');
        }
        fields.push_str("\"schemaVersion\":1");
        let version =
            crate::sqlite::sha256_hex(format!("{{{fields}}}").as_bytes())[..16].to_string();
        let doc = format!("{{{fields},\"version\":{}}}", json_string(&version));
        Ok((doc, version))
    }

    /// One API as it goes into documents: its stored text with its id and operations.
    fn render_api(&self, id: &str) -> PlaneResult<String> {
        let body: String =
            self.conn
                .query_row("SELECT body FROM apis WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })?;
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM operations WHERE api = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut ops_text = String::from("[");
        for (i, row) in rows.enumerate() {
            let (op, op_body) = row?;
            if i > 0 {
                ops_text.push(',');
            }
            ops_text.push_str(&splice(&op_body, &[("id", &json_string(&op))]));
        }
        ops_text.push(']');
        Ok(splice(
            &body,
            &[("id", &json_string(id)), ("operations", &ops_text)],
        ))
    }

    /// Renders the served APIs of `gateway` that are not rendered yet, in one pass over
    /// the tables (a cold cache, or many changes at once).
    fn render_apis(
        &self,
        gateway: &str,
        rendered: &mut HashMap<String, String>,
    ) -> PlaneResult<()> {
        let mut ops: HashMap<String, Vec<(String, String)>> = HashMap::new();
        {
            let mut stmt = self.conn.prepare(
                "SELECT o.api, o.id, o.body FROM operations o JOIN gateway_apis g ON g.api = o.api
                 WHERE g.gateway = ?1 ORDER BY o.api, o.id",
            )?;
            let rows = stmt.query_map(params![gateway], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })?;
            for row in rows {
                let (api, id, body) = row?;
                if !rendered.contains_key(&api) {
                    ops.entry(api).or_default().push((id, body));
                }
            }
        }
        let mut stmt = self.conn.prepare(
            "SELECT a.id, a.body FROM apis a JOIN gateway_apis g ON g.api = a.id
             WHERE g.gateway = ?1",
        )?;
        let rows = stmt.query_map(params![gateway], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (id, body) = row?;
            if rendered.contains_key(&id) {
                continue;
            }
            let mut ops_text = String::from("[");
            for (i, (op, op_body)) in ops.remove(&id).unwrap_or_default().iter().enumerate() {
                if i > 0 {
                    ops_text.push(',');
                }
                ops_text.push_str(&splice(op_body, &[("id", &json_string(op))]));
            }
            ops_text.push(']');
            let text = splice(
                &body,
                &[("id", &json_string(&id)), ("operations", &ops_text)],
            );
            rendered.insert(id, text);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- telemetry

    /// Stores request records (one JSON object per line) and the count the gateway had
    /// to drop; keeps the newest `TELEMETRY_KEEP` records overall. Lines that are not JSON
    /// objects are counted as dropped; a record with a request id this gateway already
    /// sent is skipped (a batch sent again). Returns (stored, dropped).
    pub fn record_telemetry(
        &mut self,
        gateway: &str,
        ndjson: &str,
        dropped: u64,
    ) -> PlaneResult<(u64, u64)> {
        let now = now_unix() as i64;
        let tx = self.conn.transaction()?;
        let (mut stored, mut bad) = (0u64, 0u64);
        {
            // delivery is at least once (a batch whose answer was lost with the plane
            // comes again from the spool): a record whose request id this gateway already
            // sent is stored once
            let mut insert = tx.prepare(
                "INSERT INTO telemetry (gateway, received, record)
                 SELECT ?1, ?2, ?3 WHERE ?4 IS NULL OR NOT EXISTS (
                     SELECT 1 FROM telemetry WHERE gateway = ?1
                     AND json_extract(record, '$.requestId') = ?4)",
            )?;
            for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
                match json::from_str::<Value>(line) {
                    Ok(Value::Object(o)) => {
                        let id = match o.get(crate::telemetry::field::REQUEST_ID) {
                            Some(Value::String(id)) if !id.is_empty() => Some(id.as_str()),
                            _ => None,
                        };
                        stored += insert.execute(params![gateway, now, line, id])? as u64;
                    }
                    _ => bad += 1,
                }
            }
        }
        let lost = dropped + bad;
        if lost > 0 {
            tx.execute(
                "INSERT INTO telemetry_dropped (gateway, dropped) VALUES (?1, ?2)
                 ON CONFLICT(gateway) DO UPDATE SET dropped = dropped + excluded.dropped",
                params![gateway, lost as i64],
            )?;
        }
        tx.execute(
            "DELETE FROM telemetry WHERE seq <= (SELECT MAX(seq) FROM telemetry) - ?1",
            params![TELEMETRY_KEEP],
        )?;
        tx.commit()?;
        Ok((stored, lost))
    }

    /// The newest `limit` records of a gateway, oldest first, and its dropped total.
    pub fn telemetry(&self, gateway: &str, limit: u32) -> PlaneResult<(Vec<String>, u64)> {
        self.gateway(gateway)?;
        let mut stmt = self.conn.prepare(
            "SELECT record FROM (SELECT seq, record FROM telemetry WHERE gateway = ?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq",
        )?;
        let records = stmt
            .query_map(params![gateway, limit], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let dropped: Option<i64> = self
            .conn
            .query_row(
                "SELECT dropped FROM telemetry_dropped WHERE gateway = ?1",
                params![gateway],
                |r| r.get(0),
            )
            .optional()?;
        Ok((records, dropped.unwrap_or(0).max(0) as u64))
    }

    /// Keeps the latest metrics snapshot of a gateway instance.
    pub fn record_metrics(&mut self, gateway: &str, instance: &str, text: &str) -> PlaneResult<()> {
        self.conn.execute(
            "INSERT INTO metrics (gateway, instance, received, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(gateway, instance) DO UPDATE SET received = excluded.received, body = excluded.body",
            params![gateway, instance, now_unix() as i64, text],
        )?;
        Ok(())
    }

    /// The latest snapshot of each instance: (instance, received, text).
    pub fn metrics(&self, gateway: &str) -> PlaneResult<Vec<(String, u64, String)>> {
        self.gateway(gateway)?;
        let mut stmt = self.conn.prepare(
            "SELECT instance, received, body FROM metrics WHERE gateway = ?1 ORDER BY instance",
        )?;
        let rows = stmt.query_map(params![gateway], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    // ---------------------------------------------------------------- instances

    /// Stores an instance's report, unless a newer one of it is stored already (a report
    /// that was in flight when a later one, such as the last before a stop, arrived).
    pub fn record_heartbeat(
        &mut self,
        gateway: &str,
        instance: &str,
        report: &Object,
    ) -> PlaneResult<()> {
        let stored: Option<String> = self
            .conn
            .query_row(
                "SELECT report FROM instances WHERE gateway = ?1 AND instance = ?2",
                params![gateway, instance],
                |r| r.get(0),
            )
            .optional()?;
        if stored.is_some_and(|s| crate::federation::is_older(report, &parse_object(&s))) {
            return Ok(());
        }
        self.conn.execute(
            "INSERT INTO instances (gateway, instance, report, last_seen) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(gateway, instance) DO UPDATE SET report = excluded.report, last_seen = excluded.last_seen",
            params![gateway, instance, json::to_string(&Value::Object(report.clone())), now_unix() as i64],
        )?;
        Ok(())
    }

    /// Forgets instances (of every gateway) last heard from before `before` (unix
    /// seconds), and metrics snapshots last received before it. Returns how many
    /// instances went.
    pub fn prune_instances(&mut self, before: u64) -> PlaneResult<usize> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let tx = self.conn.transaction()?;
        let gone = tx.execute(
            "DELETE FROM instances WHERE last_seen < ?1",
            params![before],
        )?;
        tx.execute("DELETE FROM metrics WHERE received < ?1", params![before])?;
        tx.commit()?;
        Ok(gone)
    }

    pub fn instances(&self, gateway: &str) -> PlaneResult<Vec<Instance>> {
        let mut stmt =
            self.conn.prepare("SELECT instance, report, last_seen FROM instances WHERE gateway = ?1 ORDER BY instance")?;
        let rows = stmt.query_map(params![gateway], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (instance, report, last_seen) = row?;
            out.push(Instance {
                instance,
                report: parse_object(&report),
                last_seen: last_seen.max(0) as u64,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::manage) fn obj(text: &str) -> Object {
        parse_object(text)
    }

    /// A fresh store in its own temp directory.
    pub(in crate::manage) fn store(name: &str) -> PlaneStore {
        let dir =
            std::env::temp_dir().join(format!("edgegate-plane-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        PlaneStore::open(&dir.join("plane.db")).unwrap()
    }

    /// Before, a heartbeat that was in flight when an instance's last one (stopping)
    /// arrived replaced it, and the fleet view said "connected" for a stopped gateway.
    #[test]
    fn a_batch_sent_again_is_stored_once() {
        let mut s = store("telemetry-once");
        s.put_gateway("g", Object::new()).unwrap();
        s.put_gateway("h", Object::new()).unwrap();
        let batch = "{\"requestId\":\"a-1\",\"url\":\"/x\"}\n{\"requestId\":\"a-2\",\"url\":\"/y\"}\n{\"url\":\"/no-id\"}";
        assert_eq!(s.record_telemetry("g", batch, 0).unwrap(), (3, 0));
        assert_eq!(
            s.record_telemetry("g", batch, 0).unwrap(),
            (1, 0),
            "only the record without an id again"
        );
        assert_eq!(
            s.record_telemetry("h", batch, 0).unwrap(),
            (3, 0),
            "ids are per gateway"
        );
        assert_eq!(s.telemetry("g", 100).unwrap().0.len(), 4);
    }

    #[test]
    fn a_late_heartbeat_does_not_replace_a_newer_one() {
        let mut s = store("late-heartbeat");
        s.put_gateway("g", Object::new()).unwrap();
        let report = |started: u64, sequence: u64, stopping: bool| {
            let hb = crate::federation::Heartbeat {
                instance_id: "i".into(),
                started_at_ms: started,
                sequence,
                stopping,
                ..Default::default()
            };
            parse_object(&hb.to_json())
        };
        let stopping =
            |s: &PlaneStore| crate::federation::is_stopping(&s.instances("g").unwrap()[0].report);
        s.record_heartbeat("g", "i", &report(1_000, 2, true))
            .unwrap();
        s.record_heartbeat("g", "i", &report(1_000, 1, false))
            .unwrap();
        assert!(stopping(&s), "the first report, arriving late, is ignored");
        // the same installation started again: its reports are newer
        s.record_heartbeat("g", "i", &report(2_000, 1, false))
            .unwrap();
        assert!(!stopping(&s));
        // a gateway that does not order its reports is taken as it comes
        s.record_heartbeat(
            "g",
            "i",
            &parse_object(r#"{"instanceId": "i", "stopping": true}"#),
        )
        .unwrap();
        assert!(stopping(&s));
    }

    /// Before, instances and metrics rows were never forgotten, and a gateway made a
    /// new instance at every start.
    #[test]
    fn instances_not_heard_from_are_pruned_with_their_metrics() {
        let mut s = store("prune");
        s.put_gateway("g", Object::new()).unwrap();
        for (instance, seen) in [("old", 1_000), ("fresh", 9_000)] {
            s.record_heartbeat("g", instance, &obj(r#"{"instanceId": "x"}"#))
                .unwrap();
            s.record_metrics(
                "g",
                &format!("{instance}.run"),
                "edgegate_connections_open 1\n",
            )
            .unwrap();
            s.conn
                .execute(
                    "UPDATE instances SET last_seen = ?1 WHERE instance = ?2",
                    params![seen, instance],
                )
                .unwrap();
            s.conn
                .execute(
                    "UPDATE metrics SET received = ?1 WHERE instance = ?2",
                    params![seen, format!("{instance}.run")],
                )
                .unwrap();
        }
        assert_eq!(s.prune_instances(5_000).unwrap(), 1);
        let left: Vec<String> = s
            .instances("g")
            .unwrap()
            .into_iter()
            .map(|i| i.instance)
            .collect();
        assert_eq!(left, ["fresh"]);
        let metrics: Vec<String> = s.metrics("g").unwrap().into_iter().map(|m| m.0).collect();
        assert_eq!(metrics, ["fresh.run"]);
    }

    #[test]
    fn entities_revisions_and_documents() {
        let mut s = store("docs");
        assert_eq!(s.revision().unwrap(), 0);
        assert!(s.put_api("echo", obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9000", "subscriptionRequired": false}"#)).unwrap());
        assert!(s
            .put_operation(
                "echo",
                "all",
                obj(r#"{"method": "*", "urlTemplate": "/*"}"#)
            )
            .unwrap());
        assert!(s.put_gateway("gw1", Object::new()).unwrap());
        assert!(s.link("gw1", "echo").unwrap());
        assert_eq!(s.revision().unwrap(), 4);
        let (doc, version) = s.document("gw1").unwrap();
        let rt = compile(&doc, ConfigSource::Service).unwrap();
        assert_eq!(rt.version, version);
        assert_eq!(rt.apis[0].operations[0].template.text(), "/*");
        // a change that does not concern gw1 leaves its document alone
        s.put_gateway("gw2", Object::new()).unwrap();
        s.put_api(
            "other",
            obj(r#"{"path": "other", "serviceUrl": "http://h"}"#),
        )
        .unwrap();
        assert_eq!(s.document("gw1").unwrap().1, version);
        // one that does changes it
        s.put_operation(
            "echo",
            "one",
            obj(r#"{"method": "GET", "urlTemplate": "/one"}"#),
        )
        .unwrap();
        let with_one = s.document("gw1").unwrap();
        assert_ne!(with_one.1, version);
        assert!(
            with_one.0.contains("\"urlTemplate\":\"/one\""),
            "{}",
            with_one.0
        );
        // each change re-renders the API it touches (documents are built from a cache)
        s.delete_operation("echo", "one").unwrap();
        assert_eq!(s.document("gw1").unwrap().1, version);
        s.put_api(
            "echo",
            obj(r#"{"path": "echo", "serviceUrl": "http://h2"}"#),
        )
        .unwrap();
        let moved = s.document("gw1").unwrap().0;
        assert!(moved.contains("http://h2"), "{moved}");
        // and what another connection writes to the file is seen too
        let dir = std::env::temp_dir().join(format!("edgegate-plane-docs-{}", std::process::id()));
        let other = rusqlite::Connection::open(dir.join("plane.db")).unwrap();
        other
            .execute(
                "UPDATE apis SET body = replace(body, 'http://h2', 'http://h3') WHERE id = 'echo'",
                [],
            )
            .unwrap();
        let edited = s.document("gw1").unwrap().0;
        assert!(edited.contains("http://h3"), "{edited}");
        s.delete_api("echo", false).unwrap();
        assert!(s.gateway_apis("gw1").unwrap().is_empty());
    }

    #[test]
    fn splicing_puts_fields_first_and_keeps_the_rest() {
        let id = json_string("a\"b");
        assert_eq!(splice("{}", &[("id", &id)]), r#"{"id":"a\"b"}"#);
        assert_eq!(
            splice(
                r#" {"path": "x", "n": 1} "#,
                &[("id", "\"i\""), ("operations", "[]")]
            ),
            r#"{"id":"i","operations":[],"path": "x", "n": 1}"#
        );
        // a stored text that already holds the field (or is not an object) is rewritten
        assert_eq!(
            splice(r#"{"id":"old","a":true}"#, &[("id", "\"new\"")]),
            r#"{"id":"new","a":true}"#
        );
        assert_eq!(splice("garbage", &[("id", "\"i\"")]), r#"{"id":"i"}"#);
        // what comes out is JSON
        let v = splice(r#"{"a": {"b": [1, 2]}}"#, &[("id", "\"x\"")]);
        assert!(
            matches!(json::from_str::<Value>(&v), Ok(Value::Object(_))),
            "{v}"
        );
    }

    #[test]
    fn invalid_entities_are_refused_with_relative_paths() {
        let mut s = store("invalid");
        let Err(PlaneError::Invalid(e)) = s.put_api(
            "a",
            obj(r#"{"path": "a", "serviceUrl": "ftp://x", "bogus": 1}"#),
        ) else {
            panic!("accepted")
        };
        let texts: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(
            texts,
            [
                "bogus: unknown field",
                "serviceUrl: expected an http:// or https:// URL"
            ]
        );
        s.put_api("a", obj(r#"{"path": "a", "serviceUrl": "http://x"}"#))
            .unwrap();
        let Err(PlaneError::Invalid(e)) =
            s.put_api("b", obj(r#"{"path": "/a/", "serviceUrl": "http://x"}"#))
        else {
            panic!("accepted")
        };
        assert_eq!(
            e[0].to_string(),
            "path: path 'a' is already used by api 'a'"
        );
        let Err(PlaneError::Invalid(e)) =
            s.put_operation("a", "o", obj(r#"{"method": "GET", "urlTemplate": "x"}"#))
        else {
            panic!("accepted")
        };
        assert_eq!(
            e[0].to_string(),
            "operations[0].urlTemplate: must start with '/'"
        );
        assert!(matches!(
            s.put_operation("zz", "o", Object::new()),
            Err(PlaneError::NotFound(_))
        ));
        assert_eq!(s.revision().unwrap(), 1, "refused mutations change nothing");
    }

    #[test]
    fn keys_regenerate() {
        let mut s = store("keys");
        s.put_gateway("g", Object::new()).unwrap();
        let (p1, s1) = s.gateway_keys("g").unwrap();
        s.regenerate_keys("g", true, false).unwrap();
        let (p2, s2) = s.gateway_keys("g").unwrap();
        assert_ne!(p1, p2);
        assert_eq!(s1, s2);
    }
}
