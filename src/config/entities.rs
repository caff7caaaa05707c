//! The entities of the config document besides APIs — named values, backends, products,
//! subscriptions — and the step that turns every scope's policy document into the
//! per-operation plans (`build_plans`). Validation reports JSON paths (and, inside a
//! policy document, the line and column). Secret named values are substituted into
//! policies here and never appear in an error message.
//! Must not touch: sockets, files, the loop.

use std::collections::HashMap;
use std::sync::Arc;

use super::compile::{parse_service_url, valid_id};
use super::json::{self, Errors, Fields, Json};
use super::{Api, Backend, Group, Product, Subscription, SubscriptionScope, User};
use crate::policy::parse::{parse, Context};
use crate::policy::{self, Plan, Scope, ScopeDoc};

const NAMED_VALUE_FIELDS: &[&str] = &["id", "name", "displayName", "value", "secret", "tags"];
const BACKEND_FIELDS: &[&str] = &["id", "url", "description", "title", "protocol"];
const PRODUCT_FIELDS: &[&str] = &[
    "id",
    "name",
    "displayName",
    "description",
    "apis",
    "subscriptionRequired",
    "approvalRequired",
    "state",
    "policies",
    "terms",
    "groups",
    // the portal's limit on one user's subscriptions to the product
    "subscriptionsLimit",
];
const SUBSCRIPTION_FIELDS: &[&str] = &[
    "id",
    "name",
    "displayName",
    "scope",
    "state",
    "primaryKey",
    "secondaryKey",
    "ownerId",
    "allowTracing",
];

/// The `id` field: required, well-formed, unique among `seen` (id → JSON path).
pub(super) fn unique_id<'a>(
    f: &Fields<'a>,
    path: &str,
    seen: &mut HashMap<String, String>,
    errors: &mut Errors,
) -> &'a str {
    let id = f.required_str("id", errors).unwrap_or_default();
    if !id.is_empty() && !valid_id(id) {
        errors.push(
            &f.path("id"),
            "may hold only letters, digits and - _ . ~ (at most 256)",
        );
    }
    if let Some(first) = seen.insert(id.to_string(), path.to_string()) {
        errors.push(
            &f.path("id"),
            format!("duplicate id '{id}' (first at {first})"),
        );
    }
    id
}

/// `{{name}}` → value.
#[derive(Default)]
pub struct NamedValues {
    values: HashMap<String, String>,
    secrets: Vec<String>,
}

impl NamedValues {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    /// `text` with every secret value replaced by its `{{name}}` (for error messages).
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for name in &self.secrets {
            if let Some(v) = self.values.get(name).filter(|v| !v.is_empty()) {
                out = out.replace(v.as_str(), &format!("{{{{{name}}}}}"));
            }
        }
        out
    }
}

const FRAGMENT_FIELDS: &[&str] = &["id", "description", "policy"];

/// Policy fragments: id → `<fragment>` XML, each checked on its own (well-formed, at
/// most 32 KiB); a policy that includes one compiles it where it stands.
pub fn fragments(top: &Fields, errors: &mut Errors) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (path, v) in top.array("fragments", errors) {
        let Some(f) = Fields::of(v, &path, FRAGMENT_FIELDS, errors) else {
            continue;
        };
        let id = f.required_str("id", errors).unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(&f.path("id"), "1 to 80 letters, digits and - _ .");
            continue;
        }
        let _ = f.str("description", errors);
        let policy = f.required_str("policy", errors).unwrap_or_default();
        if let Err(e) = crate::policy::parse::check_fragment(policy) {
            errors.push(&f.path("policy"), e.to_string());
        }
        if out.insert(id.to_string(), policy.to_string()).is_some() {
            errors.push(&f.path("id"), format!("duplicate fragment '{id}'"));
        }
    }
    out
}

pub fn named_values(top: &Fields, errors: &mut Errors) -> NamedValues {
    let mut out = NamedValues::default();
    for (path, v) in top.array("namedValues", errors) {
        let Some(f) = Fields::of(v, &path, NAMED_VALUE_FIELDS, errors) else {
            continue;
        };
        let name = f
            .str("name", errors)
            .or_else(|| f.str("id", errors))
            .unwrap_or_default();
        if name.is_empty() {
            errors.push(&f.path("name"), "required");
            continue;
        }
        if name.len() > 256
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(
                &f.path("name"),
                "may hold only letters, digits and - _ . (at most 256)",
            );
        }
        if f.bool("secret", errors).unwrap_or(false) {
            out.secrets.push(name.to_string());
        }
        let value = f.required_str("value", errors).unwrap_or_default();
        if out
            .values
            .insert(name.to_string(), value.to_string())
            .is_some()
        {
            errors.push(&f.path("name"), format!("duplicate named value '{name}'"));
        }
    }
    out
}

pub fn backends(top: &Fields, errors: &mut Errors) -> (Vec<Backend>, HashMap<String, u32>) {
    let mut list = Vec::new();
    let mut ids = HashMap::new();
    for (path, v) in top.array("backends", errors) {
        let Some(f) = Fields::of(v, &path, BACKEND_FIELDS, errors) else {
            continue;
        };
        let id = f.required_str("id", errors).unwrap_or_default();
        if !id.is_empty() && !valid_id(id) {
            errors.push(
                &f.path("id"),
                "may hold only letters, digits and - _ . ~ (at most 256)",
            );
        }
        if let Some(p) = f.str("protocol", errors) {
            if p != "http" {
                errors.push(&f.path("protocol"), "only \"http\" is supported");
            }
        }
        let Some(url) = f.required_str("url", errors) else {
            continue;
        };
        match parse_service_url(url) {
            Ok(b) => {
                if ids.insert(id.to_string(), list.len() as u32).is_some() {
                    errors.push(&f.path("id"), format!("duplicate backend id '{id}'"));
                }
                list.push(b);
            }
            Err(e) => errors.push(&f.path("url"), e),
        }
    }
    (list, ids)
}

/// Products (with the index of each API they include) and their policy texts.
pub fn products<'d>(
    top: &Fields<'d>,
    apis: &[Api],
    groups: &[Group],
    errors: &mut Errors,
) -> (Vec<Product>, Vec<(String, Option<&'d str>)>) {
    let api_index: HashMap<&str, u32> = apis
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i as u32))
        .collect();
    let mut list = Vec::new();
    let mut policies = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (path, v) in top.array("products", errors) {
        let Some(f) = Fields::of(v, &path, PRODUCT_FIELDS, errors) else {
            continue;
        };
        let id = unique_id(&f, &path, &mut seen, errors);
        let mut members = Vec::new();
        for (i, a) in f
            .str_array("apis", errors)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match api_index.get(a) {
                Some(ix) => members.push(*ix),
                None => errors.push(
                    &format!("{}[{i}]", f.path("apis")),
                    format!("api '{a}' is not in apis"),
                ),
            }
        }
        let published = match f.str("state", errors).unwrap_or("published") {
            "published" => true,
            "notPublished" => false,
            other => {
                errors.push(
                    &f.path("state"),
                    format!("'{other}' is not published or notPublished"),
                );
                false
            }
        };
        let _ = f.u64("subscriptionsLimit", errors);
        let _ = f.str("terms", errors);
        let name = f.display_name(id, errors);
        list.push(Product {
            id: id.to_string(),
            name: name.to_string(),
            apis: members,
            subscription_required: f.bool("subscriptionRequired", errors).unwrap_or(true),
            published,
            groups: super::users::group_indexes(&f, "groups", groups, errors),
        });
        policies.push((f.path("policies"), f.str("policies", errors)));
    }
    (list, policies)
}

/// Subscriptions and the key map (primary and secondary keys → subscription index).
pub fn subscriptions(
    top: &Fields,
    apis: &[Api],
    products: &[Product],
    users: &[User],
    errors: &mut Errors,
) -> (Vec<Subscription>, HashMap<Box<str>, u32>) {
    let mut list = Vec::new();
    let mut keys: HashMap<Box<str>, u32> = HashMap::new();
    let mut key_paths: HashMap<Box<str>, String> = HashMap::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (path, v) in top.array("subscriptions", errors) {
        let Some(f) = Fields::of(v, &path, SUBSCRIPTION_FIELDS, errors) else {
            continue;
        };
        let id = unique_id(&f, &path, &mut seen, errors);
        let scope_text = f.required_str("scope", errors).unwrap_or_default();
        let scope = if scope_text == "/apis" {
            Some(SubscriptionScope::AllApis)
        } else if let Some(a) = scope_text.strip_prefix("/apis/") {
            match apis.iter().position(|x| x.id == a) {
                Some(i) => Some(SubscriptionScope::Api(i as u32)),
                None => {
                    errors.push(&f.path("scope"), format!("api '{a}' is not in apis"));
                    None
                }
            }
        } else if let Some(p) = scope_text.strip_prefix("/products/") {
            match products.iter().position(|x| x.id == p) {
                Some(i) => Some(SubscriptionScope::Product(i as u32)),
                None => {
                    errors.push(
                        &f.path("scope"),
                        format!("product '{p}' is not in products"),
                    );
                    None
                }
            }
        } else {
            if !scope_text.is_empty() {
                errors.push(
                    &f.path("scope"),
                    "expected /apis, /apis/{apiId} or /products/{productId}",
                );
            }
            None
        };
        let active = match f.str("state", errors).unwrap_or("active") {
            "active" => true,
            "suspended" | "submitted" | "rejected" | "cancelled" | "expired" => false,
            other => {
                errors.push(
                    &f.path("state"),
                    format!("'{other}' is not one of active, suspended, submitted, rejected, cancelled, expired"),
                );
                false
            }
        };
        let owner = super::users::owner(&f, users, errors);
        let active = active && owner.is_none_or(|u| users[u as usize].active);
        let index = list.len() as u32;
        let mut any_key = false;
        let mut written: [Option<Box<str>>; 2] = [None, None];
        for (slot, field) in ["primaryKey", "secondaryKey"].into_iter().enumerate() {
            let Some(k) = f.str(field, errors) else {
                continue;
            };
            any_key = true;
            if k.len() < 8 || k.len() > 256 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                // the key itself is never echoed
                errors.push(
                    &f.path(field),
                    "must be 8 to 256 printable characters without spaces",
                );
                continue;
            }
            if let Some(first) = key_paths.get(k) {
                errors.push(
                    &f.path(field),
                    format!("the same key is already used at {first}"),
                );
                continue;
            }
            key_paths.insert(Box::from(k), f.path(field));
            keys.insert(Box::from(k), index);
            written[slot] = Some(Box::from(k));
        }
        if !any_key {
            errors.push(
                &f.path("primaryKey"),
                "a primaryKey or secondaryKey is required",
            );
        }
        let name = f.display_name(id, errors);
        if let Some(scope) = scope {
            let [primary_key, secondary_key] = written;
            list.push(Subscription {
                id: id.to_string(),
                name: name.to_string(),
                scope,
                active,
                owner,
                primary_key,
                secondary_key,
            });
        }
    }
    (list, keys)
}

/// Where each scope's policy document is, for `build_plans`.
pub struct PolicyTexts<'d> {
    pub global: Option<&'d str>,
    /// Per product: (JSON path, text).
    pub products: Vec<(String, Option<&'d str>)>,
    /// Per API: (JSON path, text, per operation (JSON path, text)).
    pub apis: Vec<ApiTexts<'d>>,
}

pub type ApiTexts<'d> = (String, Option<&'d str>, Vec<(String, Option<&'d str>)>);

fn doc_of(
    text: Option<&str>,
    path: &str,
    scope: Scope,
    owner: &str,
    env: &mut PlanEnv,
    errors: &mut Errors,
) -> Option<ScopeDoc> {
    let t = text.filter(|t| !t.trim().is_empty())?;
    let backend_ids = &env.backend_ids;
    let lookup_id = |id: &str| backend_ids.get(id).copied();
    let named = &env.named;
    let lookup_named = |n: &str| named.get(n);
    let fragments = &env.fragments;
    let lookup_fragment = |id: &str| fragments.get(id).map(String::as_str);
    let backends = &mut env.backends;
    let mut add_url = |url: &str| -> Result<u32, String> {
        let b = parse_service_url(url)?;
        if let Some(i) = backends
            .iter()
            .position(|x| x.authority == b.authority && x.base_path == b.base_path)
        {
            return Ok(i as u32);
        }
        backends.push(b);
        Ok((backends.len() - 1) as u32)
    };
    let mut ctx = Context {
        scope,
        named_value: &lookup_named,
        backend_id: &lookup_id,
        fragment: &lookup_fragment,
        add_backend_url: &mut add_url,
        owner,
        uses: Default::default(),
    };
    let parsed = parse(t, &mut ctx);
    let uses = std::mem::take(&mut ctx.uses);
    env.references.by_owner.insert(owner.to_string(), uses);
    match parsed {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(path, env.named.mask(&e.to_string()));
            None
        }
    }
}

/// What plan building reads and extends.
pub struct PlanEnv {
    pub named: NamedValues,
    /// Policy fragments by id.
    pub fragments: HashMap<String, String>,
    pub backend_ids: HashMap<String, u32>,
    pub backends: Vec<Backend>,
    /// Filled as each document is compiled.
    pub references: super::References,
}

fn plan_of(doc: &ScopeDoc, trivial: bool, path: &str, errors: &mut Errors) -> Arc<Plan> {
    match Plan::from_doc(doc, trivial) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            errors.push(path, e);
            Arc::new(Plan::default())
        }
    }
}

/// Compiles every policy document and gives each operation its plans (no product
/// first, then one per product that includes the API). Returns whether any plan does
/// anything beyond plain forwarding, and the global plan when it has an on-error section
/// (for requests that match no API, as APIM runs it for them).
pub fn build_plans(
    texts: &PolicyTexts,
    apis: &mut [Api],
    products: &[Product],
    env: &mut PlanEnv,
    errors: &mut Errors,
) -> (bool, Option<Arc<Plan>>) {
    let global_doc = doc_of(
        texts.global,
        "policies",
        Scope::Global,
        "global",
        env,
        errors,
    );
    let base = policy::default_global();
    let global = match &global_doc {
        Some(d) => policy::merge(&base, d),
        None => base,
    };
    let unmatched = global_doc
        .as_ref()
        .map(|_| plan_of(&global, false, "policies", errors))
        // requests that match no API still meet on-error, and cross-domain's policy file
        .filter(|p| {
            !p.on_error.is_empty() || p.inbound.iter().any(|s| s.policy.name() == "cross-domain")
        });
    let product_docs: Vec<Option<ScopeDoc>> = texts
        .products
        .iter()
        .zip(products)
        .map(|((path, t), p)| {
            let owner = format!("product:{}", p.id);
            doc_of(*t, path, Scope::Product, &owner, env, errors)
        })
        .collect();
    let product_eff: Vec<ScopeDoc> = product_docs
        .iter()
        .map(|d| match d {
            Some(d) => policy::merge(&global, d),
            None => global.clone(),
        })
        .collect();
    let trivial_plan = Arc::new(Plan {
        trivial: true,
        ..Plan::default()
    });
    let any_global = global_doc.is_some();
    let mut any = false;
    for (ai, api) in apis.iter_mut().enumerate() {
        let Some((api_path, api_text, op_texts)) = texts.apis.get(ai) else {
            continue;
        };
        let owner = format!("api:{}", api.id);
        let api_doc = doc_of(*api_text, api_path, Scope::Api, &owner, env, errors);
        let mut contexts: Vec<(Option<u32>, ScopeDoc, bool)> = Vec::new();
        let none_eff = match &api_doc {
            Some(d) => policy::merge(&global, d),
            None => global.clone(),
        };
        contexts.push((None, none_eff, any_global || api_doc.is_some()));
        for (pi, p) in products.iter().enumerate() {
            if !p.apis.contains(&(ai as u32)) {
                continue;
            }
            let eff = match &api_doc {
                Some(d) => policy::merge(&product_eff[pi], d),
                None => product_eff[pi].clone(),
            };
            let touched = any_global || api_doc.is_some() || product_docs[pi].is_some();
            contexts.push((Some(pi as u32), eff, touched));
        }
        let shared: Vec<Arc<Plan>> = contexts
            .iter()
            .map(|(_, eff, touched)| {
                if *touched {
                    plan_of(eff, false, api_path, errors)
                } else {
                    Arc::clone(&trivial_plan)
                }
            })
            .collect();
        for (oi, op) in api.operations.iter_mut().enumerate() {
            let (op_path, op_text) = op_texts
                .get(oi)
                .map(|(p, t)| (p.as_str(), *t))
                .unwrap_or(("", None));
            let owner = match op_text {
                Some(_) => format!("operation:{}/{}", api.id, op.id),
                None => String::new(),
            };
            let op_doc = doc_of(op_text, op_path, Scope::Operation, &owner, env, errors);
            op.plans = contexts
                .iter()
                .zip(shared.iter())
                .map(|((product, eff, _), plan)| {
                    let plan = match &op_doc {
                        Some(d) => plan_of(&policy::merge(eff, d), false, op_path, errors),
                        None => Arc::clone(plan),
                    };
                    any |= !plan.trivial;
                    (*product, plan)
                })
                .collect();
        }
    }
    (any, unmatched)
}

/// Marks each API's products and its open product.
pub fn link_products(apis: &mut [Api], products: &[Product]) {
    for (pi, p) in products.iter().enumerate() {
        for a in &p.apis {
            if let Some(api) = apis.get_mut(*a as usize) {
                api.products.push(pi as u32);
                if p.published && !p.subscription_required && api.open_product.is_none() {
                    api.open_product = Some(pi as u32);
                }
            }
        }
    }
}

/// Parses an operation's `responses` (for mock-response).
pub fn responses(
    value: Option<&Json>,
    path: &str,
    errors: &mut Errors,
) -> Vec<super::ResponseExample> {
    let mut out = Vec::new();
    let Some(Json::Array(list)) = value else {
        return out;
    };
    for (i, r) in list.iter().enumerate() {
        let rp = format!("{path}[{i}]");
        let Some(f) = Fields::of(
            r,
            &rp,
            &["statusCode", "description", "representations", "headers"],
            errors,
        ) else {
            continue;
        };
        let status = f.u64("statusCode", errors).unwrap_or(0);
        if !(100..=599).contains(&status) {
            errors.push(&f.path("statusCode"), "expected a status code 100..599");
            continue;
        }
        let mut reps = Vec::new();
        for (rpath, rep) in f.array("representations", errors) {
            let Some(g) = Fields::of(
                rep,
                &rpath,
                &[
                    "contentType",
                    "example",
                    "examples",
                    "schemaId",
                    "typeName",
                    "sample",
                ],
                errors,
            ) else {
                continue;
            };
            let ct = g.required_str("contentType", errors).unwrap_or_default();
            // APIM's order: the example, else the sample made from the schema
            let example = match g.get("example").or_else(|| g.get("sample")) {
                None => String::new(),
                Some(Json::String(s)) => s.to_string(),
                Some(other) => {
                    let mut text = String::new();
                    json::to_text(other, &mut text);
                    text
                }
            };
            reps.push((ct.to_string(), example));
        }
        out.push(super::ResponseExample {
            status: status as u16,
            representations: reps,
        });
    }
    out
}
