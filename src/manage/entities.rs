//! The management plane's catalogue beside the APIs: products (and which APIs each
//! holds), subscriptions, named values, backends, certificates (and which gateways
//! present them), policy fragments and the global policy, in SQLite. Every
//! mutation is checked with the gateway's own compiler (errors relative to the entity),
//! keeps references whole (a named value, backend, product or API still in use cannot be
//! deleted), and bumps the revision in its transaction. Secrets (subscription keys, the
//! values of secret named values) come out only through `secrets`; `view` leaves them
//! out, and a certificate's private key never comes out at all.
//! `catalogue_for` picks what one gateway's document needs.
//! Must not touch: HTTP (api.rs), the gateway's code paths.

use std::collections::HashSet;

use miniserde::json::{self, Array, Object, Value};
use rusqlite::{params, OptionalExtension};

use super::store::{
    parse_object, Links, Owner, PlaneError, PlaneResult, PlaneStore, REF_BACKEND, REF_CERTIFICATE,
    REF_FRAGMENT, REF_NAMED_VALUE,
};
use crate::config::{compile, ConfigError, ConfigSource, References};
use crate::policy::parse::ANY_BACKEND;

/// An entity kind of the admin API, by its URL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Product,
    Subscription,
    NamedValue,
    Backend,
    Certificate,
    CaCertificate,
    Fragment,
    User,
    Group,
}

impl Kind {
    pub fn from_segment(segment: &str) -> Option<Kind> {
        match segment {
            "products" => Some(Kind::Product),
            "subscriptions" => Some(Kind::Subscription),
            "named-values" => Some(Kind::NamedValue),
            "backends" => Some(Kind::Backend),
            "certificates" => Some(Kind::Certificate),
            "ca-certificates" => Some(Kind::CaCertificate),
            "policy-fragments" => Some(Kind::Fragment),
            "users" => Some(Kind::User),
            "groups" => Some(Kind::Group),
            _ => None,
        }
    }

    /// The `kind` column of the `entities` table.
    fn stored(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Subscription => "subscription",
            Kind::NamedValue => "namedValue",
            Kind::Backend => "backend",
            Kind::Certificate => "certificate",
            Kind::CaCertificate => "caCertificate",
            Kind::Fragment => "fragment",
            Kind::User => "user",
            Kind::Group => "group",
        }
    }

    /// The array of the config document that holds this kind.
    fn document_key(self) -> &'static str {
        match self {
            Kind::Product => "products",
            Kind::Subscription => "subscriptions",
            Kind::NamedValue => "namedValues",
            Kind::Backend => "backends",
            Kind::Certificate => "certificates",
            Kind::CaCertificate => "caCertificates",
            Kind::Fragment => "fragments",
            Kind::User => "users",
            Kind::Group => "groups",
        }
    }

    /// The field naming an entity in the document (named values are named, not ids).
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::NamedValue => "name",
            _ => "id",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Subscription => "subscription",
            Kind::NamedValue => "named value",
            Kind::Backend => "backend",
            Kind::Certificate => "certificate",
            Kind::CaCertificate => "CA certificate",
            Kind::Fragment => "policy fragment",
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

fn str_field<'o>(o: &'o Object, key: &str) -> Option<&'o str> {
    match o.get(key) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn invalid(path: &str, message: impl Into<String>) -> PlaneError {
    PlaneError::Invalid(vec![ConfigError {
        path: path.to_string(),
        message: message.into(),
    }])
}

/// A new subscription key: 32 hex characters, as APIM makes them.
pub(super) fn new_subscription_key() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // SystemRandom only fails if the OS has no randomness source at all.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiles `doc` with the gateway's compiler; errors under `prefix` (the candidate's
/// place in `doc`) are made relative to the entity, others are left whole.
/// On success, what each policy document in `doc` refers to.
fn check(doc: Object, prefix: &str) -> PlaneResult<References> {
    let text = json::to_string(&Value::Object(doc));
    match compile(&text, ConfigSource::Service) {
        Ok(rt) => Ok(rt.references),
        Err(errors) => Err(PlaneError::Invalid(
            errors
                .into_iter()
                .map(|e| ConfigError {
                    path: match e.path.strip_prefix(prefix) {
                        Some(rest) => rest.trim_start_matches('.').to_string(),
                        None => e.path,
                    },
                    message: e.message,
                })
                .collect(),
        )),
    }
}

/// The reference kind an entity kind is known by in `policy_refs`.
fn ref_kind(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::NamedValue => Some(REF_NAMED_VALUE),
        Kind::Backend => Some(REF_BACKEND),
        Kind::Fragment => Some(REF_FRAGMENT),
        _ => None,
    }
}

/// "api 'x'", "product 'p'", "the global policy", for an owner key of `policy_refs`.
fn owner_label(owner: &str) -> String {
    match owner.split_once(':') {
        Some((kind, id)) => format!("{kind} '{id}'"),
        None => "the global policy".into(),
    }
}

impl PlaneStore {
    /// The stored entity with its id field, secrets included.
    fn raw(&self, kind: Kind, id: &str) -> PlaneResult<Option<Object>> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM entities WHERE kind = ?1 AND id = ?2",
                params![kind.stored(), id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.map(|b| {
            let mut o = parse_object(&b);
            o.insert(kind.id_field().into(), string(id));
            o
        }))
    }

    /// Every entity of a kind, with its id field, secrets included; ordered by id.
    fn all(&self, kind: Kind) -> PlaneResult<Vec<Object>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, body FROM entities WHERE kind = ?1 ORDER BY id")?;
        let rows = stmt.query_map(params![kind.stored()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let mut o = parse_object(&body);
            o.insert(kind.id_field().into(), string(&id));
            out.push(o);
        }
        Ok(out)
    }

    fn not_found(kind: Kind, id: &str) -> PlaneError {
        PlaneError::NotFound(format!("{} '{id}'", kind.label()))
    }

    /// An entity as the admin API shows it: secrets left out, a product with its APIs.
    fn view(&self, kind: Kind, mut o: Object) -> PlaneResult<Value> {
        match kind {
            Kind::Subscription => {
                o.remove("primaryKey");
                o.remove("secondaryKey");
            }
            Kind::NamedValue => {
                if matches!(o.get("secret"), Some(Value::Bool(true))) {
                    o.remove("value");
                }
            }
            Kind::Product => {
                let id = str_field(&o, "id").unwrap_or_default().to_string();
                let apis = self.product_apis(&id)?;
                o.insert(
                    "apis".into(),
                    Value::Array(apis.iter().map(|a| string(a)).collect()),
                );
            }
            Kind::Certificate => {
                o.remove("keyPem");
            }
            Kind::Backend | Kind::Fragment | Kind::User | Kind::Group | Kind::CaCertificate => {}
        }
        Ok(Value::Object(o))
    }

    pub fn get_entity(&self, kind: Kind, id: &str) -> PlaneResult<Value> {
        let o = self
            .raw(kind, id)?
            .ok_or_else(|| Self::not_found(kind, id))?;
        self.view(kind, o)
    }

    pub fn list_entities(&self, kind: Kind) -> PlaneResult<Vec<Value>> {
        self.all(kind)?
            .into_iter()
            .map(|o| self.view(kind, o))
            .collect()
    }

    /// The secrets of a subscription (its keys) or a named value (its value).
    pub fn secrets(&self, kind: Kind, id: &str) -> PlaneResult<Value> {
        let o = self
            .raw(kind, id)?
            .ok_or_else(|| Self::not_found(kind, id))?;
        let fields: &[&str] = match kind {
            Kind::Subscription => &["primaryKey", "secondaryKey"],
            Kind::NamedValue => &["value"],
            _ => return Err(PlaneError::NotFound("secrets".into())),
        };
        let mut out = Object::new();
        for f in fields {
            if let Some(v) = o.get(*f) {
                out.insert((*f).into(), v.clone());
            }
        }
        Ok(Value::Object(out))
    }

    /// Named values, backends, fragments and groups: what policies, products and users
    /// under validation may refer to.
    pub(super) fn references(&self) -> PlaneResult<Object> {
        let mut doc = Object::new();
        doc.insert("schemaVersion".into(), Value::Number(json::Number::U64(1)));
        for kind in [Kind::NamedValue, Kind::Backend, Kind::Fragment, Kind::Group] {
            let all = self.all(kind)?;
            doc.insert(
                kind.document_key().into(),
                Value::Array(all.into_iter().map(Value::Object).collect()),
            );
        }
        Ok(doc)
    }

    /// A product as a document holds it, with its APIs (`links`).
    fn product_in_document(mut o: Object, links: &[String]) -> Value {
        o.insert(
            "apis".into(),
            Value::Array(links.iter().map(|a| string(a)).collect()),
        );
        Value::Object(o)
    }

    /// Checks a candidate entity with the gateway's compiler, in a document that holds
    /// what it refers to (and, for a named value, the policies that use it). Returns what
    /// the policies in that document refer to.
    fn validate_entity(&self, kind: Kind, candidate: &Object) -> PlaneResult<References> {
        let id = str_field(candidate, kind.id_field())
            .unwrap_or_default()
            .to_string();
        let mut doc = self.references()?;
        let key = kind.document_key();
        match kind {
            Kind::Product => {
                let links = self.product_apis(&id)?;
                let mut apis = Array::new();
                for a in &links {
                    apis.push(self.get_api(a)?);
                }
                doc.insert("apis".into(), Value::Array(apis));
                doc.insert(
                    key.into(),
                    Value::Array(
                        std::iter::once(Self::product_in_document(candidate.clone(), &links))
                            .collect(),
                    ),
                );
            }
            Kind::Subscription => {
                let scope = str_field(candidate, "scope").unwrap_or_default();
                if let Some(api) = scope.strip_prefix("/apis/") {
                    if let Ok(v) = self.get_api(api) {
                        doc.insert("apis".into(), Value::Array(std::iter::once(v).collect()));
                    }
                } else if let Some(p) = scope.strip_prefix("/products/") {
                    if let Some(product) = self.raw(Kind::Product, p)? {
                        let v = Self::product_in_document(product, &[]);
                        doc.insert(
                            "products".into(),
                            Value::Array(std::iter::once(v).collect()),
                        );
                    }
                }
                if let Some(user) = self.owner_of(candidate)? {
                    doc.insert(
                        "users".into(),
                        Value::Array(std::iter::once(Value::Object(user)).collect()),
                    );
                }
                doc.insert(
                    key.into(),
                    Value::Array(std::iter::once(Value::Object(candidate.clone())).collect()),
                );
            }
            Kind::Certificate | Kind::CaCertificate | Kind::User => {
                doc.insert(
                    key.into(),
                    Value::Array(std::iter::once(Value::Object(candidate.clone())).collect()),
                );
            }
            Kind::NamedValue | Kind::Backend | Kind::Fragment | Kind::Group => {
                // the candidate first (so its errors are at index 0), then the others
                let mut list: Array = std::iter::once(Value::Object(candidate.clone())).collect();
                list.extend(
                    self.all(kind)?
                        .into_iter()
                        .filter(|o| str_field(o, kind.id_field()) != Some(&id))
                        .map(Value::Object),
                );
                doc.insert(key.into(), Value::Array(list));
                // the policies that use it must still compile with its new value
                match kind {
                    Kind::NamedValue => self.add_users_of(REF_NAMED_VALUE, &id, &mut doc)?,
                    Kind::Fragment => self.add_users_of(REF_FRAGMENT, &id, &mut doc)?,
                    _ => {}
                }
            }
        }
        check(doc, &format!("{key}[0]"))
    }

    /// Adds to `doc` every API, product and the global policy that use the named value
    /// or fragment `name` (as the compiler found them: the reference table).
    fn add_users_of(&self, kind: &str, name: &str, doc: &mut Object) -> PlaneResult<()> {
        let users = self.users_of(kind, name)?;
        let mut apis = Array::new();
        let mut products = Array::new();
        for owner in &users {
            if let Some(api) = owner.strip_prefix("api:") {
                apis.push(self.get_api(api)?);
            } else if let Some(p) = owner.strip_prefix("product:") {
                if let Some(product) = self.raw(Kind::Product, p)? {
                    products.push(Self::product_in_document(product, &[]));
                }
            } else if let Some(policy) = self.global_policy()? {
                doc.insert("policies".into(), Value::String(policy));
            }
        }
        doc.insert("apis".into(), Value::Array(apis));
        doc.insert("products".into(), Value::Array(products));
        Ok(())
    }

    /// Fills the reference table from the stored policies once, for a database written
    /// before the table existed (the mark is a `meta` row).
    pub(super) fn index_references_once(&mut self) -> PlaneResult<()> {
        let done: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'refs_indexed'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            return Ok(());
        }
        let mut found: Vec<(String, References)> = Vec::new();
        for api in self.list_apis()? {
            let id = super::store::id_of(&api).unwrap_or_default().to_string();
            // an API that no longer compiles keeps no references (it cannot be served)
            found.push((
                format!("api:{id}"),
                self.validate_api(api).unwrap_or_default(),
            ));
        }
        for p in self.all(Kind::Product)? {
            let id = str_field(&p, "id").unwrap_or_default().to_string();
            let refs = self.validate_entity(Kind::Product, &p).unwrap_or_default();
            found.push((format!("product:{id}"), refs));
        }
        if let Some(policy) = self.global_policy()? {
            let mut doc = self.references()?;
            doc.insert("policies".into(), string(&policy));
            found.push(("global".into(), check(doc, "policies").unwrap_or_default()));
        }
        let tx = self.conn.transaction()?;
        for (key, refs) in &found {
            let owner = match key.split_once(':') {
                Some(("api", id)) => Owner::Api(id),
                Some(("product", id)) => Owner::Product(id),
                _ => Owner::Global,
            };
            Self::record_refs(&tx, &owner, refs)?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('refs_indexed', 1)",
            [],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The owners of `policy_refs` whose documents `references` holds: the users of a
    /// named value checked together with it.
    fn refresh_refs(tx: &rusqlite::Transaction, references: &References) -> PlaneResult<()> {
        let mut owners: Vec<String> = Vec::new();
        for compiled in references.by_owner.keys() {
            let key = match compiled.split_once(':') {
                Some(("operation", rest)) => {
                    format!("api:{}", rest.split('/').next().unwrap_or_default())
                }
                _ => compiled.clone(),
            };
            if !owners.contains(&key) {
                owners.push(key);
            }
        }
        for key in owners {
            let owner = match key.split_once(':') {
                Some(("api", id)) => Owner::Api(id),
                Some(("product", id)) => Owner::Product(id),
                _ => Owner::Global,
            };
            Self::record_refs(tx, &owner, references)?;
        }
        Ok(())
    }

    /// Creates or replaces an entity. Returns true if created.
    pub fn put_entity(&mut self, kind: Kind, id: &str, mut body: Object) -> PlaneResult<bool> {
        body.remove("id");
        body.remove(kind.id_field());
        let existing = self.raw(kind, id)?;
        if kind == Kind::Product && body.contains_key("apis") {
            return Err(invalid(
                "apis",
                format!("a product's APIs are linked with PUT /admin/products/{id}/apis/{{apiId}}"),
            ));
        }
        if kind == Kind::Subscription {
            // keys left out keep their current value, or are made for a new subscription
            for field in ["primaryKey", "secondaryKey"] {
                if !body.contains_key(field) {
                    let kept = existing.as_ref().and_then(|o| o.get(field)).cloned();
                    body.insert(
                        field.into(),
                        kept.unwrap_or_else(|| Value::String(new_subscription_key())),
                    );
                }
            }
        }
        let mut candidate = body.clone();
        candidate.insert(kind.id_field().into(), string(id));
        let references = self.validate_entity(kind, &candidate)?;
        let keys: Vec<String> = ["primaryKey", "secondaryKey"]
            .iter()
            .filter_map(|f| str_field(&body, f).map(str::to_string))
            .collect();
        let tx = self.conn.transaction()?;
        if kind == Kind::Subscription {
            for k in &keys {
                let owner: Option<String> = tx
                    .query_row(
                        "SELECT subscription FROM subscription_keys WHERE key = ?1 AND subscription != ?2",
                        params![k, id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if owner.is_some() {
                    // which subscription holds it is not said: that would confirm a key
                    return Err(invalid(
                        "primaryKey",
                        "a key is already used by another subscription",
                    ));
                }
            }
            tx.execute(
                "DELETE FROM subscription_keys WHERE subscription = ?1",
                params![id],
            )?;
            for k in &keys {
                tx.execute(
                    "INSERT OR IGNORE INTO subscription_keys (key, subscription) VALUES (?1, ?2)",
                    params![k, id],
                )?;
            }
        }
        tx.execute(
            "INSERT INTO entities (kind, id, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
            params![kind.stored(), id, json::to_string(&Value::Object(body))],
        )?;
        match kind {
            Kind::Product => Self::record_refs(&tx, &Owner::Product(id), &references)?,
            // its users were compiled with its new value: a backend-id="{{name}}" may
            // now name another backend, a fragment may use other names
            Kind::NamedValue | Kind::Fragment => Self::refresh_refs(&tx, &references)?,
            _ => {}
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(existing.is_none())
    }

    /// The stored user a subscription's `ownerId` names, if it names one that exists.
    fn owner_of(&self, subscription: &Object) -> PlaneResult<Option<Object>> {
        match str_field(subscription, "ownerId").and_then(|o| o.rsplit_once("/users/")) {
            Some((_, user)) => self.raw(Kind::User, user),
            None => Ok(None),
        }
    }

    /// Subscriptions that belong to user `user`.
    fn subscriptions_owned(&self, user: &str) -> PlaneResult<Vec<String>> {
        Ok(self
            .all(Kind::Subscription)?
            .into_iter()
            .filter(|s| {
                str_field(s, "ownerId")
                    .and_then(|o| o.rsplit_once("/users/"))
                    .is_some_and(|(_, u)| u == user)
            })
            .filter_map(|s| str_field(&s, "id").map(str::to_string))
            .collect())
    }

    /// The first user or product that lists group `group`.
    fn group_member(&self, group: &str) -> PlaneResult<Option<String>> {
        for kind in [Kind::User, Kind::Product] {
            for o in self.all(kind)? {
                let listed = match o.get("groups") {
                    Some(Value::Array(a)) => a
                        .iter()
                        .any(|g| matches!(g, Value::String(s) if s == group)),
                    _ => false,
                };
                if listed {
                    let id = str_field(&o, "id").unwrap_or_default();
                    return Ok(Some(format!("{} '{id}'", kind.label())));
                }
            }
        }
        Ok(None)
    }

    /// Subscriptions whose scope is `scope`.
    fn subscriptions_scoped(&self, scope: &str) -> PlaneResult<Vec<String>> {
        Ok(self
            .all(Kind::Subscription)?
            .into_iter()
            .filter(|s| str_field(s, "scope") == Some(scope))
            .filter_map(|s| str_field(&s, "id").map(str::to_string))
            .collect())
    }

    /// Deletes an entity. Refused (409) while it is in use; a product's subscriptions go
    /// with it only when `with_subscriptions` is set.
    /// `put_entity` from an editor that never saw the secrets: a secret named value's
    /// value and a certificate's private key that the body leaves out keep what is
    /// stored (subscription keys already do).
    pub fn put_entity_keeping_secrets(
        &mut self,
        kind: Kind,
        id: &str,
        mut body: Object,
    ) -> PlaneResult<bool> {
        let field = match kind {
            Kind::NamedValue => Some("value"),
            Kind::Certificate => Some("keyPem"),
            _ => None,
        };
        if let (Some(field), Some(stored)) = (field, self.raw(kind, id)?) {
            if !body.contains_key(field) {
                if let Some(v) = stored.get(field) {
                    body.insert(field.into(), v.clone());
                }
            }
        }
        self.put_entity(kind, id, body)
    }

    pub fn delete_entity(
        &mut self,
        kind: Kind,
        id: &str,
        with_subscriptions: bool,
    ) -> PlaneResult<()> {
        if self.raw(kind, id)?.is_none() {
            return Err(Self::not_found(kind, id));
        }
        let in_use = match (kind, ref_kind(kind)) {
            (_, Some(r)) => self.users_of(r, id)?.first().map(|o| owner_label(o)),
            (Kind::Certificate, _) => match self.presenter_of(id)? {
                Some(g) => Some(format!("gateway '{g}'")),
                None => self
                    .users_of(REF_CERTIFICATE, id)?
                    .first()
                    .map(|o| owner_label(o)),
            },
            (Kind::Group, _) => self.group_member(id)?,
            _ => None,
        };
        if let Some(user) = in_use {
            return Err(PlaneError::Conflict(format!(
                "{} '{id}' is used by {user}",
                kind.label()
            )));
        }
        let scoped = match kind {
            Kind::Product => self.subscriptions_scoped(&format!("/products/{id}"))?,
            Kind::User => self.subscriptions_owned(id)?,
            _ => Vec::new(),
        };
        if !scoped.is_empty() && !with_subscriptions {
            return Err(PlaneError::Conflict(format!(
                "{} '{id}' has {} subscription(s); delete them first or add ?deleteSubscriptions=true",
                kind.label(),
                scoped.len()
            )));
        }
        let tx = self.conn.transaction()?;
        let own = std::iter::once(id).filter(|_| kind == Kind::Subscription);
        Self::drop_subscriptions(&tx, scoped.iter().map(String::as_str).chain(own))?;
        tx.execute(
            "DELETE FROM entities WHERE kind = ?1 AND id = ?2",
            params![kind.stored(), id],
        )?;
        if kind == Kind::Product {
            tx.execute("DELETE FROM product_apis WHERE product = ?1", params![id])?;
            Self::record_refs(&tx, &Owner::Product(id), &References::default())?;
        }
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// The subscriptions that go with API `api` when it is deleted; refused (409) when
    /// there are any and `with_subscriptions` is not set.
    pub(super) fn api_subscriptions(
        &self,
        api: &str,
        with_subscriptions: bool,
    ) -> PlaneResult<Vec<String>> {
        let scoped = self.subscriptions_scoped(&format!("/apis/{api}"))?;
        if !scoped.is_empty() && !with_subscriptions {
            return Err(PlaneError::Conflict(format!(
                "api '{api}' has {} subscription(s); delete them first or add ?deleteSubscriptions=true",
                scoped.len()
            )));
        }
        Ok(scoped)
    }

    /// Deletes subscriptions and their keys, in the caller's transaction.
    pub(super) fn drop_subscriptions<'i>(
        tx: &rusqlite::Transaction,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> PlaneResult<()> {
        for s in ids {
            tx.execute(
                "DELETE FROM entities WHERE kind = 'subscription' AND id = ?1",
                params![s],
            )?;
            tx.execute(
                "DELETE FROM subscription_keys WHERE subscription = ?1",
                params![s],
            )?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- product links

    pub fn product_apis(&self, product: &str) -> PlaneResult<Vec<String>> {
        self.linked(Links::Product, product)
    }

    pub fn link_product(&mut self, product: &str, api: &str) -> PlaneResult<bool> {
        if self.raw(Kind::Product, product)?.is_none() {
            return Err(Self::not_found(Kind::Product, product));
        }
        self.get_api(api)?;
        self.add_link(Links::Product, product, api)
    }

    pub fn unlink_product(&mut self, product: &str, api: &str) -> PlaneResult<()> {
        self.remove_link(Links::Product, product, api)
    }

    // ---------------------------------------------------------------- gateway certificates

    /// The certificates a gateway presents on its HTTPS listener.
    pub fn gateway_certificates(&self, gateway: &str) -> PlaneResult<Vec<String>> {
        self.linked(Links::GatewayCertificate, gateway)
    }

    /// A gateway that presents certificate `id`, if any.
    fn presenter_of(&self, id: &str) -> PlaneResult<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT gateway FROM gateway_certificates WHERE certificate = ?1 ORDER BY gateway LIMIT 1",
                params![id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn link_certificate(&mut self, gateway: &str, certificate: &str) -> PlaneResult<bool> {
        self.gateway(gateway)?;
        if self.raw(Kind::Certificate, certificate)?.is_none() {
            return Err(Self::not_found(Kind::Certificate, certificate));
        }
        self.add_link(Links::GatewayCertificate, gateway, certificate)
    }

    pub fn unlink_certificate(&mut self, gateway: &str, certificate: &str) -> PlaneResult<()> {
        self.remove_link(Links::GatewayCertificate, gateway, certificate)
    }

    // ---------------------------------------------------------------- global policy

    pub fn global_policy(&self) -> PlaneResult<Option<String>> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM entities WHERE kind = 'policy' AND id = 'global'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(body.and_then(|b| str_field(&parse_object(&b), "value").map(str::to_string)))
    }

    /// Sets the global policy from `{"value": "<policies>…</policies>"}`. Returns true if
    /// there was none.
    pub fn put_global_policy(&mut self, body: &Object) -> PlaneResult<bool> {
        let Some(value) = str_field(body, "value") else {
            return Err(invalid(
                "value",
                "required: the policy document as a string",
            ));
        };
        if let Some(extra) = body
            .keys()
            .find(|k| k.as_str() != "value" && k.as_str() != "format")
        {
            return Err(invalid(extra, "unknown field"));
        }
        if str_field(body, "format").is_some_and(|f| f != "rawxml" && f != "xml") {
            return Err(invalid("format", "expected rawxml or xml"));
        }
        let mut doc = self.references()?;
        doc.insert("policies".into(), string(value));
        let references = check(doc, "policies")?;
        let existed = self.global_policy()?.is_some();
        let mut stored = Object::new();
        stored.insert("value".into(), string(value));
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO entities (kind, id, body) VALUES ('policy', 'global', ?1)
             ON CONFLICT(kind, id) DO UPDATE SET body = excluded.body",
            params![json::to_string(&Value::Object(stored))],
        )?;
        Self::record_refs(&tx, &Owner::Global, &references)?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(!existed)
    }

    pub fn delete_global_policy(&mut self) -> PlaneResult<()> {
        let tx = self.conn.transaction()?;
        if tx.execute(
            "DELETE FROM entities WHERE kind = 'policy' AND id = 'global'",
            [],
        )? == 0
        {
            return Err(PlaneError::NotFound("global policy".into()));
        }
        Self::record_refs(&tx, &Owner::Global, &References::default())?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- documents

    /// What `gateway`, serving `apis` (whose policy texts are `policies`), needs besides
    /// them: the products that hold any of them (limited to them), the subscriptions that
    /// can call them, the global policy, the named values and backends those policies
    /// use, and the certificates linked to the gateway. Added to `doc`.
    pub(super) fn catalogue_for(
        &self,
        gateway: &str,
        apis: &[String],
        doc: &mut Object,
    ) -> PlaneResult<()> {
        let served: HashSet<&str> = apis.iter().map(String::as_str).collect();
        // the policy documents in this gateway's document, as the reference table names them
        let mut owners: Vec<String> = apis.iter().map(|a| Owner::Api(a).key()).collect();
        let mut products = Array::new();
        let mut product_ids = HashSet::new();
        for p in self.all(Kind::Product)? {
            let id = str_field(&p, "id").unwrap_or_default().to_string();
            let links: Vec<String> = self
                .product_apis(&id)?
                .into_iter()
                .filter(|a| served.contains(a.as_str()))
                .collect();
            if links.is_empty() {
                continue;
            }
            owners.push(Owner::Product(&id).key());
            products.push(Self::product_in_document(p, &links));
            product_ids.insert(id);
        }
        let subscriptions: Array = self
            .all(Kind::Subscription)?
            .into_iter()
            .filter(|s| {
                let scope = str_field(s, "scope").unwrap_or_default();
                scope == "/apis"
                    || scope
                        .strip_prefix("/apis/")
                        .is_some_and(|a| served.contains(a))
                    || scope
                        .strip_prefix("/products/")
                        .is_some_and(|p| product_ids.contains(p))
            })
            .map(Value::Object)
            .collect();
        // the users who own those subscriptions, and the groups (few) users and
        // products name
        let mut users = Array::new();
        let mut owner_ids = HashSet::new();
        for s in subscriptions.iter() {
            let Value::Object(s) = s else { continue };
            if let Some(user) = self.owner_of(s)? {
                if owner_ids.insert(str_field(&user, "id").unwrap_or_default().to_string()) {
                    users.push(Value::Object(user));
                }
            }
        }
        let groups: Array = match users.is_empty() && products.is_empty() {
            true => Array::new(),
            false => self
                .all(Kind::Group)?
                .into_iter()
                .map(Value::Object)
                .collect(),
        };
        if let Some(global) = self.global_policy()? {
            owners.push(Owner::Global.key());
            doc.insert("policies".into(), Value::String(global));
        }
        let used_names = self.used_by(REF_NAMED_VALUE, &owners)?;
        let named: Array = self
            .all(Kind::NamedValue)?
            .into_iter()
            .filter(|nv| used_names.contains(str_field(nv, "name").unwrap_or_default()))
            .map(Value::Object)
            .collect();
        let used_fragments = self.used_by(REF_FRAGMENT, &owners)?;
        let fragments: Array = self
            .all(Kind::Fragment)?
            .into_iter()
            .filter(|f| used_fragments.contains(str_field(f, "id").unwrap_or_default()))
            .map(Value::Object)
            .collect();
        let used_backends = self.used_by(REF_BACKEND, &owners)?;
        let backends: Array = self
            .all(Kind::Backend)?
            .into_iter()
            .filter(|b| {
                used_backends.contains(ANY_BACKEND)
                    || used_backends.contains(str_field(b, "id").unwrap_or_default())
            })
            .map(Value::Object)
            .collect();
        // the certificates linked to this gateway, keys included: its HTTPS listener;
        // and those its policies present to backends (authentication-certificate),
        // which the listener does not serve
        let mut certificates = Array::new();
        let linked = self.gateway_certificates(gateway)?;
        for id in &linked {
            if let Some(c) = self.raw(Kind::Certificate, id)? {
                certificates.push(Value::Object(c));
            }
        }
        let mut presented: Vec<String> = self
            .used_by(REF_CERTIFICATE, &owners)?
            .into_iter()
            .collect();
        presented.sort_unstable();
        for id in presented {
            if linked.contains(&id) {
                continue;
            }
            if let Some(mut c) = self.raw(Kind::Certificate, &id)? {
                c.insert("listener".into(), Value::Bool(false));
                c.remove("hostnames");
                c.remove("negotiateClientCertificate");
                certificates.push(Value::Object(c));
            }
        }
        // CA certificates: public, and few; every gateway checks client certificates
        // with all of them
        let ca_certificates: Array = self
            .all(Kind::CaCertificate)?
            .into_iter()
            .map(Value::Object)
            .collect();
        for (key, list) in [
            ("products", products),
            ("subscriptions", subscriptions),
            ("users", users),
            ("groups", groups),
            ("namedValues", named),
            ("backends", backends),
            ("fragments", fragments),
            ("certificates", certificates),
            ("caCertificates", ca_certificates),
        ] {
            if !list.is_empty() {
                doc.insert(key.into(), Value::Array(list));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::store::tests::obj;

    /// A store with APIs "echo" (subscription required) and "other".
    fn store(name: &str) -> PlaneStore {
        let mut s = crate::manage::store::tests::store(&format!("entities-{name}"));
        s.put_api(
            "echo",
            obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9", "subscriptionRequired": true}"#),
        )
        .unwrap();
        s.put_api(
            "other",
            obj(r#"{"path": "other", "serviceUrl": "http://127.0.0.1:9"}"#),
        )
        .unwrap();
        s
    }

    fn errors(e: PlaneError) -> Vec<String> {
        match e {
            PlaneError::Invalid(list) => list.iter().map(ToString::to_string).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn entities_are_checked_with_paths_relative_to_them() {
        let mut s = store("checked");
        let e = s
            .put_entity(Kind::Product, "p", obj(r#"{"state": "live"}"#))
            .unwrap_err();
        assert_eq!(
            errors(e),
            ["state: 'live' is not published or notPublished"]
        );
        let e = s
            .put_entity(
                Kind::Subscription,
                "s",
                obj(r#"{"scope": "/products/none"}"#),
            )
            .unwrap_err();
        assert_eq!(errors(e), ["scope: product 'none' is not in products"]);
        let e = s
            .put_entity(Kind::Backend, "b", obj(r#"{"url": "ftp://x"}"#))
            .unwrap_err();
        assert_eq!(errors(e).len(), 1);
        assert!(errors(
            s.put_global_policy(&obj(
                r#"{"value": "<policies><inbound><nope /></inbound></policies>"}"#
            ))
            .unwrap_err()
        )[0]
        .starts_with("line 1 column 20: policy <nope> is not supported"));
        // a policy may only use named values that exist
        let e = s
            .put_api(
                "echo",
                obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9", "policies": "<policies><inbound><set-header name=\"a\" exists-action=\"override\"><value>{{missing}}</value></set-header></inbound></policies>"}"#),
            )
            .unwrap_err();
        assert!(errors(e)[0].contains("missing"), "named value named");
    }

    #[test]
    fn secrets_stay_out_of_views_and_keys_are_unique() {
        let mut s = store("secrets");
        assert!(s
            .put_entity(Kind::Subscription, "s1", obj(r#"{"scope": "/apis/echo"}"#))
            .unwrap());
        let shown = json::to_string(&s.get_entity(Kind::Subscription, "s1").unwrap());
        assert!(!shown.contains("Key"), "{shown}");
        let Value::Object(keys) = s.secrets(Kind::Subscription, "s1").unwrap() else {
            panic!()
        };
        let primary = str_field(&keys, "primaryKey").unwrap().to_string();
        assert_eq!(primary.len(), 32);
        // a PUT without keys keeps them
        s.put_entity(
            Kind::Subscription,
            "s1",
            obj(r#"{"scope": "/apis", "state": "suspended"}"#),
        )
        .unwrap();
        let Value::Object(again) = s.secrets(Kind::Subscription, "s1").unwrap() else {
            panic!()
        };
        assert_eq!(str_field(&again, "primaryKey"), Some(primary.as_str()));
        // another subscription may not reuse a key
        let e = s
            .put_entity(
                Kind::Subscription,
                "s2",
                obj(&format!(
                    r#"{{"scope": "/apis", "secondaryKey": "{primary}"}}"#
                )),
            )
            .unwrap_err();
        assert_eq!(
            errors(e),
            ["primaryKey: a key is already used by another subscription"]
        );
        s.put_entity(
            Kind::NamedValue,
            "token",
            obj(r#"{"value": "hunter2-secret", "secret": true}"#),
        )
        .unwrap();
        let listed = json::to_string(&Value::Array(
            s.list_entities(Kind::NamedValue)
                .unwrap()
                .into_iter()
                .collect(),
        ));
        assert!(!listed.contains("hunter2"), "{listed}");
        assert_eq!(
            json::to_string(&s.secrets(Kind::NamedValue, "token").unwrap()),
            r#"{"value":"hunter2-secret"}"#
        );
    }

    #[test]
    fn references_stay_whole() {
        let mut s = store("refs");
        s.put_entity(Kind::NamedValue, "who", obj(r#"{"value": "edge"}"#))
            .unwrap();
        s.put_entity(Kind::Backend, "b1", obj(r#"{"url": "http://127.0.0.1:9"}"#))
            .unwrap();
        s.put_api(
            "echo",
            obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9", "policies": "<policies><inbound><set-header name=\"x\" exists-action=\"override\"><value>{{who}}</value></set-header><set-backend-service backend-id=\"b1\" /></inbound></policies>"}"#),
        )
        .unwrap();
        let conflict = |e: PlaneError| match e {
            PlaneError::Conflict(why) => why,
            other => format!("{other:?}"),
        };
        assert_eq!(
            conflict(s.delete_entity(Kind::NamedValue, "who", false).unwrap_err()),
            "named value 'who' is used by api 'echo'"
        );
        assert_eq!(
            conflict(s.delete_entity(Kind::Backend, "b1", false).unwrap_err()),
            "backend 'b1' is used by api 'echo'"
        );
        // a named value whose new value breaks a policy that uses it is refused
        assert!(s
            .put_entity(Kind::NamedValue, "who", obj(r#"{"value": "</value>"}"#))
            .is_err());
        // products and APIs with subscriptions go only with them
        s.put_entity(Kind::Product, "p", obj(r#"{"subscriptionRequired": true}"#))
            .unwrap();
        s.link_product("p", "echo").unwrap();
        s.put_entity(Kind::Subscription, "sp", obj(r#"{"scope": "/products/p"}"#))
            .unwrap();
        s.put_entity(Kind::Subscription, "sa", obj(r#"{"scope": "/apis/other"}"#))
            .unwrap();
        assert!(
            conflict(s.delete_entity(Kind::Product, "p", false).unwrap_err())
                .starts_with("product 'p' has 1 subscription(s)")
        );
        assert!(conflict(s.delete_api("other", false).unwrap_err())
            .starts_with("api 'other' has 1 subscription(s)"));
        s.delete_entity(Kind::Product, "p", true).unwrap();
        s.delete_api("other", true).unwrap();
        assert!(s.list_entities(Kind::Subscription).unwrap().is_empty());
        assert!(s.product_apis("p").unwrap().is_empty());
    }

    /// Users and groups: checked with the compiler, kept whole (a group in use, a user
    /// with subscriptions), and a gateway's document carries the owners of its
    /// subscriptions and the groups.
    #[test]
    fn users_and_groups_are_checked_kept_whole_and_sent() {
        let mut s = store("users");
        let e = s
            .put_entity(
                Kind::User,
                "ann",
                obj(r#"{"email": "ann@example.com", "groups": ["gold"]}"#),
            )
            .unwrap_err();
        assert_eq!(errors(e), ["groups[0]: group 'gold' is not in groups"]);
        s.put_entity(Kind::Group, "gold", obj(r#"{"displayName": "Gold"}"#))
            .unwrap();
        s.put_entity(
            Kind::User,
            "ann",
            obj(r#"{"email": "ann@example.com", "groups": ["gold"]}"#),
        )
        .unwrap();
        let e = s
            .put_entity(
                Kind::Subscription,
                "s1",
                obj(r#"{"scope": "/apis/echo", "ownerId": "/users/nobody"}"#),
            )
            .unwrap_err();
        assert_eq!(errors(e), ["ownerId: user 'nobody' is not in users"]);
        s.put_entity(
            Kind::Subscription,
            "s1",
            obj(r#"{"scope": "/apis/echo", "ownerId": "/users/ann"}"#),
        )
        .unwrap();
        s.put_entity(Kind::Product, "p", obj(r#"{"groups": ["gold"]}"#))
            .unwrap();
        match s.delete_entity(Kind::Group, "gold", false) {
            Err(PlaneError::Conflict(m)) => assert_eq!(m, "group 'gold' is used by user 'ann'"),
            other => panic!("{other:?}"),
        }
        match s.delete_entity(Kind::User, "ann", false) {
            Err(PlaneError::Conflict(m)) => assert_eq!(
                m,
                "user 'ann' has 1 subscription(s); delete them first or add ?deleteSubscriptions=true"
            ),
            other => panic!("{other:?}"),
        }
        s.put_gateway("g", Object::new()).unwrap();
        s.link("g", "echo").unwrap();
        let (doc, _) = s.document("g").unwrap();
        let doc = parse_object(&doc);
        let ids = |key: &str| -> Vec<String> {
            match doc.get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| match v {
                        Value::Object(o) => str_field(o, "id").map(str::to_string),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        assert_eq!(ids("users"), ["ann"]);
        assert_eq!(ids("groups"), ["gold"]);
        // deleting the user takes its subscriptions when asked to
        s.delete_entity(Kind::User, "ann", true).unwrap();
        assert!(matches!(
            s.get_entity(Kind::Subscription, "s1"),
            Err(PlaneError::NotFound(_))
        ));
        s.put_entity(Kind::Product, "p", obj("{}")).unwrap();
        s.delete_entity(Kind::Group, "gold", false).unwrap();
    }

    #[test]
    fn a_gateway_document_holds_only_what_its_apis_need() {
        let mut s = store("catalogue");
        for (nv, value) in [("used", "yes"), ("unused", "no")] {
            s.put_entity(
                Kind::NamedValue,
                nv,
                obj(&format!(r#"{{"value": "{value}"}}"#)),
            )
            .unwrap();
        }
        for b in ["b-used", "b-unused"] {
            s.put_entity(Kind::Backend, b, obj(r#"{"url": "http://127.0.0.1:9"}"#))
                .unwrap();
        }
        s.put_entity(
            Kind::Product,
            "gold",
            obj(r#"{"policies": "<policies><inbound><base /><set-backend-service backend-id=\"b-used\" /></inbound></policies>"}"#),
        )
        .unwrap();
        s.put_entity(Kind::Product, "silver", obj("{}")).unwrap();
        s.link_product("gold", "echo").unwrap();
        s.link_product("gold", "other").unwrap();
        s.link_product("silver", "other").unwrap();
        for (id, scope) in [
            ("all", "/apis"),
            ("on-echo", "/apis/echo"),
            ("on-other", "/apis/other"),
            ("gold-sub", "/products/gold"),
            ("silver-sub", "/products/silver"),
        ] {
            s.put_entity(
                Kind::Subscription,
                id,
                obj(&format!(r#"{{"scope": "{scope}"}}"#)),
            )
            .unwrap();
        }
        s.put_global_policy(&obj(r#"{"value": "<policies><inbound><set-header name=\"g\" exists-action=\"override\"><value>{{used}}</value></set-header></inbound></policies>"}"#))
            .unwrap();
        s.put_gateway("g", Object::new()).unwrap();
        s.link("g", "echo").unwrap();
        let (doc, _) = s.document("g").unwrap();
        let ids = |key: &str| -> Vec<String> {
            match parse_object(&doc).get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| match v {
                        Value::Object(o) => str_field(o, "id")
                            .or(str_field(o, "name"))
                            .map(str::to_string),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        assert_eq!(ids("products"), ["gold"]);
        assert!(
            doc.contains(r#""apis":["echo"]"#),
            "gold limited to echo: {doc}"
        );
        assert_eq!(ids("subscriptions"), ["all", "gold-sub", "on-echo"]);
        assert_eq!(ids("namedValues"), ["used"]);
        assert_eq!(ids("backends"), ["b-used"]);
        // and it compiles as the gateway will
        assert!(compile(&doc, ConfigSource::Service).is_ok(), "{doc}");
    }

    /// The plane finds what a policy uses as the compiler does (`{{ who }}` trimmed,
    /// `backend-id = "b1"`, a backend named through a named value), so the gateway's
    /// document holds it and deleting it is refused. Text search missed all three.
    #[test]
    fn references_are_found_as_the_compiler_resolves_them() {
        let mut s = store("compiler-refs");
        for (name, value) in [("who", "edge"), ("target", "b2")] {
            s.put_entity(
                Kind::NamedValue,
                name,
                obj(&format!(r#"{{"value": "{value}"}}"#)),
            )
            .unwrap();
        }
        for b in ["b1", "b2", "b3"] {
            s.put_entity(Kind::Backend, b, obj(r#"{"url": "http://127.0.0.1:9"}"#))
                .unwrap();
        }
        s.put_api(
            "echo",
            obj(r#"{"path": "echo", "serviceUrl": "http://127.0.0.1:9", "policies": "<policies><inbound><set-header name=\"x\" exists-action=\"override\"><value>{{ who }}</value></set-header><set-backend-service backend-id = \"b1\" /></inbound></policies>"}"#),
        )
        .unwrap();
        s.put_operation(
            "echo",
            "op",
            obj(r#"{"method": "GET", "urlTemplate": "/x", "policies": "<policies><inbound><base /><set-backend-service backend-id=\"{{target}}\" /></inbound></policies>"}"#),
        )
        .unwrap();
        s.put_gateway("g", Object::new()).unwrap();
        s.link("g", "echo").unwrap();
        let listed = |s: &PlaneStore, key: &str, field: &str| -> Vec<String> {
            let (doc, _) = s.document("g").unwrap();
            assert!(compile(&doc, ConfigSource::Service).is_ok(), "{doc}");
            match parse_object(&doc).get(key) {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| match v {
                        Value::Object(o) => str_field(o, field).map(str::to_string),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        assert_eq!(listed(&s, "namedValues", "name"), ["target", "who"]);
        assert_eq!(listed(&s, "backends", "id"), ["b1", "b2"]);
        let conflict = |e: PlaneError| match e {
            PlaneError::Conflict(why) => why,
            other => format!("{other:?}"),
        };
        for (kind, id) in [
            (Kind::NamedValue, "who"),
            (Kind::Backend, "b1"),
            (Kind::Backend, "b2"),
        ] {
            let e = s.delete_entity(kind, id, false).unwrap_err();
            assert_eq!(
                conflict(e),
                format!("{} '{id}' is used by api 'echo'", kind.label())
            );
        }
        // the named value now names b3: b3 is in use, b2 is free
        s.put_entity(Kind::NamedValue, "target", obj(r#"{"value": "b3"}"#))
            .unwrap();
        assert_eq!(listed(&s, "backends", "id"), ["b1", "b3"]);
        s.delete_entity(Kind::Backend, "b2", false).unwrap();
        assert!(s.delete_entity(Kind::Backend, "b3", false).is_err());
        // deleting the operation frees what only it used
        s.delete_operation("echo", "op").unwrap();
        s.delete_entity(Kind::Backend, "b3", false).unwrap();
        assert_eq!(listed(&s, "namedValues", "name"), ["who"]);
    }
}
