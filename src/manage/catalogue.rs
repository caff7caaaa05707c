//! The read model of the developer portal and the console: the catalogue (API and
//! product cards, without the APIs' schemas and policies, so a page over a thousand APIs
//! reads kilobytes, not every stored document), who may see what, a user's
//! subscriptions, and usage and traffic aggregated from the telemetry gateways upload.
//! Must not touch: HTTP, HTML (web/ renders), mutations (entities.rs and accounts.rs).

use std::collections::HashMap;

use miniserde::json::{self, Object, Value};
use rusqlite::{params, OptionalExtension};

use super::entities::Kind;
use super::store::{now_unix, PlaneResult, PlaneStore};

/// An API as the catalogue lists it.
#[derive(Debug, Clone)]
pub struct ApiCard {
    pub id: String,
    pub name: String,
    pub description: String,
    pub path: String,
    pub tags: Vec<String>,
}

/// A product as the catalogue lists it.
#[derive(Debug, Clone)]
pub struct ProductCard {
    pub id: String,
    pub name: String,
    pub description: String,
    pub terms: String,
    pub published: bool,
    pub subscription_required: bool,
    pub approval_required: bool,
    /// Most subscriptions one user may hold to it.
    pub subscriptions_limit: Option<u64>,
    /// The groups it is visible to; none = everyone.
    pub groups: Vec<String>,
    pub apis: Vec<String>,
}

/// The published catalogue at one revision of the plane.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub revision: u64,
    /// Sorted by name (then id).
    pub apis: Vec<ApiCard>,
    pub products: Vec<ProductCard>,
}

/// Who is looking: what they may see follows APIM's product visibility.
pub enum Viewer<'a> {
    Anonymous,
    /// A signed-in developer and the groups they belong to.
    Developer {
        groups: &'a [String],
    },
}

impl ProductCard {
    /// Published, and open to everyone, or (through its groups) to guests when nobody
    /// is signed in and to developers or a group of theirs when someone is.
    pub fn visible_to(&self, viewer: &Viewer) -> bool {
        if !self.published {
            return false;
        }
        if self.groups.is_empty() {
            return true;
        }
        match viewer {
            Viewer::Anonymous => self.groups.iter().any(|g| g == "guests"),
            Viewer::Developer { groups } => self
                .groups
                .iter()
                .any(|g| g == "developers" || groups.contains(g)),
        }
    }
}

impl Catalogue {
    pub fn visible_products<'c>(
        &'c self,
        viewer: &'c Viewer,
    ) -> impl Iterator<Item = &'c ProductCard> {
        self.products.iter().filter(move |p| p.visible_to(viewer))
    }

    /// APIs in at least one product the viewer sees, matching `query` (in name,
    /// description or path, case-insensitive) and carrying `tag` when one is given.
    pub fn visible_apis<'c>(
        &'c self,
        viewer: &'c Viewer,
        query: &'c str,
        tag: &'c str,
    ) -> impl Iterator<Item = &'c ApiCard> {
        let visible: std::collections::HashSet<&str> = self
            .visible_products(viewer)
            .flat_map(|p| p.apis.iter().map(String::as_str))
            .collect();
        let needle = query.to_lowercase();
        self.apis.iter().filter(move |a| {
            visible.contains(a.id.as_str())
                && (tag.is_empty() || a.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)))
                && (needle.is_empty()
                    || [&a.name, &a.description, &a.path, &a.id]
                        .iter()
                        .any(|f| f.to_lowercase().contains(&needle)))
        })
    }

    pub fn api(&self, id: &str) -> Option<&ApiCard> {
        self.apis.iter().find(|a| a.id == id)
    }

    pub fn product(&self, id: &str) -> Option<&ProductCard> {
        self.products.iter().find(|p| p.id == id)
    }

    /// Whether the viewer sees API `id` (through a product).
    pub fn api_visible(&self, viewer: &Viewer, id: &str) -> bool {
        self.visible_products(viewer)
            .any(|p| p.apis.iter().any(|a| a == id))
    }
}

/// A string member of an entity's object (`""` when absent or not a string): the one
/// reader the portal's and console's pages use too.
pub fn text(o: &Object, key: &str) -> String {
    match o.get(key) {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn strings(o: &Object, key: &str) -> Vec<String> {
    match o.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A subscription of a user, as the portal's profile lists it.
#[derive(Debug, Clone)]
pub struct SubscriptionCard {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub state: String,
}

/// Calls of one subscription (or gateway, or API) in a time range.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub calls: u64,
    /// Calls answered with a status of 400 or more.
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Each minute with calls, in order.
    pub per_minute: Vec<Minute>,
}

/// One minute of calls.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Minute {
    /// Its start, unix seconds.
    pub at: u64,
    pub calls: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Minute {
    /// The share of calls answered with 400 or more, in percent.
    pub fn error_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.calls as f64
        }
    }
}

/// Most telemetry rows one usage view reads.
const USAGE_ROWS: usize = 200_000;

/// The `q` quantile (nearest rank) of sorted `values`.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty())
        .then(|| sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1])
}

impl Usage {
    /// One value per minute, for a chart: (minute's start, `f` of it).
    pub fn series(&self, f: fn(&Minute) -> f64) -> Vec<(f64, f64)> {
        self.per_minute
            .iter()
            .map(|m| (m.at as f64, f(m)))
            .collect()
    }

    fn from_rows(rows: impl Iterator<Item = (u64, u16, f64)>) -> Usage {
        let mut u = Usage::default();
        let mut latencies = Vec::new();
        let mut minutes: std::collections::BTreeMap<u64, (u64, Vec<f64>)> = Default::default();
        for (received, status, ms) in rows.take(USAGE_ROWS) {
            u.calls += 1;
            let error = status >= 400;
            u.errors += u64::from(error);
            latencies.push(ms);
            let m = minutes.entry(received / 60).or_default();
            m.0 += u64::from(error);
            m.1.push(ms);
        }
        latencies.sort_by(f64::total_cmp);
        u.p50_ms = quantile(&latencies, 0.50);
        u.p99_ms = quantile(&latencies, 0.99);
        u.per_minute = minutes
            .into_iter()
            .map(|(m, (errors, mut ms))| {
                ms.sort_by(f64::total_cmp);
                Minute {
                    at: m * 60,
                    calls: ms.len() as u64,
                    errors,
                    p50_ms: quantile(&ms, 0.50).unwrap_or(0.0),
                    p99_ms: quantile(&ms, 0.99).unwrap_or(0.0),
                }
            })
            .collect();
        u
    }
}

impl PlaneStore {
    /// The catalogue: API cards read with SQLite's JSON functions (no schema or policy
    /// text is copied out), products with their APIs.
    pub fn catalogue(&self) -> PlaneResult<Catalogue> {
        let revision = self.revision()?;
        let mut stmt = self.conn.prepare(
            "SELECT id, json_extract(body, '$.displayName'), json_extract(body, '$.name'),
                    json_extract(body, '$.description'), json_extract(body, '$.path'),
                    json_extract(body, '$.tags')
             FROM apis",
        )?;
        let rows = stmt.query_map([], |r| {
            let id: String = r.get(0)?;
            let display: Option<String> = r.get(1)?;
            let name: Option<String> = r.get(2)?;
            let tags: Option<String> = r.get(5)?;
            Ok(ApiCard {
                name: display.or(name).unwrap_or_else(|| id.clone()),
                id,
                description: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                path: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                tags: tags
                    .and_then(|t| json::from_str::<Vec<String>>(&t).ok())
                    .unwrap_or_default(),
            })
        })?;
        let mut apis = rows.collect::<Result<Vec<_>, _>>()?;
        apis.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare("SELECT product, api FROM product_apis ORDER BY product, api")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (p, a) = row?;
            members.entry(p).or_default().push(a);
        }
        let products = self
            .list_entities(Kind::Product)?
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })
            .map(|o| {
                let id = text(&o, "id");
                let flag = |key: &str, default: bool| match o.get(key) {
                    Some(Value::Bool(b)) => *b,
                    _ => default,
                };
                ProductCard {
                    name: match text(&o, "displayName") {
                        n if n.is_empty() => id.clone(),
                        n => n,
                    },
                    description: text(&o, "description"),
                    terms: text(&o, "terms"),
                    published: text(&o, "state") != "notPublished",
                    subscription_required: flag("subscriptionRequired", true),
                    approval_required: flag("approvalRequired", false),
                    subscriptions_limit: match o.get("subscriptionsLimit") {
                        Some(Value::Number(n)) => json::to_string(n).parse().ok(),
                        _ => None,
                    },
                    groups: strings(&o, "groups"),
                    apis: members.remove(&id).unwrap_or_default(),
                    id,
                }
            })
            .collect();
        Ok(Catalogue {
            revision,
            apis,
            products,
        })
    }

    /// The groups user `id` is in (as stored; every user is also a developer).
    pub fn user_groups(&self, id: &str) -> PlaneResult<Vec<String>> {
        Ok(match self.get_entity(Kind::User, id) {
            Ok(Value::Object(o)) => strings(&o, "groups"),
            _ => Vec::new(),
        })
    }

    /// The subscriptions `ownerId` names user `id` in, by id.
    pub fn subscriptions_of(&self, user: &str) -> PlaneResult<Vec<SubscriptionCard>> {
        // SQLite narrows to owners ending in the user's id (LIKE may match more: `_` in
        // an id is a wildcard), the exact check is below; no other subscription is read
        let mut stmt = self.conn.prepare(
            "SELECT id, body FROM entities WHERE kind = 'subscription'
             AND json_extract(body, '$.ownerId') LIKE '%/users/' || ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![user], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let o = super::store::parse_object(&body);
            let owner = text(&o, "ownerId");
            if owner.rsplit_once("/users/").is_some_and(|(_, u)| u == user) {
                out.push(SubscriptionCard {
                    name: match text(&o, "displayName") {
                        n if n.is_empty() => id.clone(),
                        n => n,
                    },
                    scope: text(&o, "scope"),
                    state: match text(&o, "state") {
                        s if s.is_empty() => "active".into(),
                        s => s,
                    },
                    id,
                });
            }
        }
        Ok(out)
    }

    /// Calls made with subscription `id` since `since` (unix seconds).
    pub fn subscription_usage(&self, id: &str, since: u64) -> PlaneResult<Usage> {
        let mut stmt = self.conn.prepare(
            "SELECT received, json_extract(record, '$.responseCode'), json_extract(record, '$.totalTimeMs')
             FROM telemetry
             WHERE json_extract(record, '$.subscriptionId') = ?1 AND received >= ?2
             ORDER BY received LIMIT ?3",
        )?;
        let rows = stmt
            .query_map(params![id, since as i64, USAGE_ROWS as i64], usage_row)?
            .filter_map(Result::ok);
        Ok(Usage::from_rows(rows))
    }

    /// Traffic since `since`, per gateway and per API: `(gateway, api) → usage`.
    pub fn traffic(&self, since: u64) -> PlaneResult<Vec<((String, String), Usage)>> {
        let mut stmt = self.conn.prepare(
            "SELECT received, json_extract(record, '$.responseCode'), json_extract(record, '$.totalTimeMs'),
                    gateway, json_extract(record, '$.apiId')
             FROM telemetry WHERE received >= ?1 ORDER BY received LIMIT ?2",
        )?;
        let mut groups: HashMap<(String, String), Vec<UsageRow>> = HashMap::new();
        let rows = stmt.query_map(params![since as i64, USAGE_ROWS as i64], |r| {
            Ok((
                usage_row(r)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?.unwrap_or_default(),
            ))
        })?;
        for (row, gateway, api) in rows.filter_map(Result::ok) {
            groups.entry((gateway, api)).or_default().push(row);
        }
        let mut out: Vec<_> = groups
            .into_iter()
            .map(|(k, rows)| (k, Usage::from_rows(rows.into_iter())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// An operation as an API's page lists it.
#[derive(Debug, Clone)]
pub struct OperationCard {
    pub id: String,
    pub method: String,
    pub url_template: String,
    pub name: String,
}

/// What the reference pages need of an API beyond its card.
#[derive(Debug, Clone, Default)]
pub struct ApiDetail {
    pub service_url: String,
    /// The header a subscription key goes in.
    pub key_header: String,
    pub subscription_required: bool,
}

impl PlaneStore {
    /// An API's operations in the order they were written (import order).
    pub fn operation_cards(&self, api: &str) -> PlaneResult<Vec<OperationCard>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, json_extract(body, '$.method'), json_extract(body, '$.urlTemplate'),
                    json_extract(body, '$.displayName'), json_extract(body, '$.name')
             FROM operations WHERE api = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![api], |r| {
            let id: String = r.get(0)?;
            let display: Option<String> = r.get(3)?;
            let name: Option<String> = r.get(4)?;
            Ok(OperationCard {
                method: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                url_template: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                name: display.or(name).unwrap_or_else(|| id.clone()),
                id,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The schemas of one API (only when a page shows an operation of it).
    pub fn api_schemas(&self, api: &str) -> PlaneResult<Vec<Value>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT json_extract(body, '$.schemas') FROM apis WHERE id = ?1",
                params![api],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(text
            .and_then(|t| json::from_str::<Vec<Value>>(&t).ok())
            .unwrap_or_default())
    }

    pub fn api_detail(&self, api: &str) -> PlaneResult<ApiDetail> {
        let row: Option<(Option<String>, Option<String>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT json_extract(body, '$.serviceUrl'),
                        json_extract(body, '$.subscriptionKeyParameterNames.header'),
                        json_extract(body, '$.subscriptionRequired')
                 FROM apis WHERE id = ?1",
                params![api],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let (url, header, required) = row.unwrap_or_default();
        Ok(ApiDetail {
            service_url: url.unwrap_or_default(),
            key_header: header.unwrap_or_else(|| "Ocp-Apim-Subscription-Key".into()),
            subscription_required: required != Some(0),
        })
    }
}

/// (received unix seconds, status, total milliseconds) of one record.
type UsageRow = (u64, u16, f64);

fn usage_row(r: &rusqlite::Row) -> rusqlite::Result<UsageRow> {
    Ok((
        r.get::<_, i64>(0)?.max(0) as u64,
        r.get::<_, Option<i64>>(1)?.unwrap_or(0).clamp(0, 999) as u16,
        r.get::<_, Option<f64>>(2)?.unwrap_or(0.0),
    ))
}

/// The usage ranges a page offers, shortest first (the default).
pub const RANGES: &[&str] = &["1h", "24h", "7d", "30d"];

/// The start of a usage range named in a query string (one of `RANGES`).
pub fn range_start(range: &str) -> (u64, &'static str) {
    let (secs, label) = match range {
        "24h" => (86_400, RANGES[1]),
        "7d" => (7 * 86_400, RANGES[2]),
        "30d" => (30 * 86_400, RANGES[3]),
        _ => (3600, RANGES[0]),
    };
    (now_unix().saturating_sub(secs), label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::store::tests::{obj, store};

    #[test]
    fn products_are_visible_by_state_and_groups() {
        let card = |published: bool, groups: &[&str]| ProductCard {
            id: "p".into(),
            name: "P".into(),
            description: String::new(),
            terms: String::new(),
            published,
            subscription_required: true,
            approval_required: false,
            subscriptions_limit: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            apis: vec![],
        };
        let gold = ["gold".to_string()];
        let dev = Viewer::Developer { groups: &gold };
        let other = Viewer::Developer { groups: &[] };
        assert!(card(true, &[]).visible_to(&Viewer::Anonymous));
        assert!(!card(false, &[]).visible_to(&dev));
        assert!(card(true, &["guests"]).visible_to(&Viewer::Anonymous));
        assert!(!card(true, &["developers"]).visible_to(&Viewer::Anonymous));
        assert!(card(true, &["developers"]).visible_to(&other));
        assert!(card(true, &["gold"]).visible_to(&dev));
        assert!(!card(true, &["gold"]).visible_to(&other));
    }

    #[test]
    fn the_catalogue_lists_cards_and_usage_counts_one_subscription() {
        let mut s = store("catalogue");
        s.put_api(
            "pets",
            obj(r#"{"displayName": "Pet Store", "path": "pets", "serviceUrl": "http://h", "tags": ["animals"], "description": "Pets."}"#),
        )
        .unwrap();
        s.put_api("zoo", obj(r#"{"path": "zoo", "serviceUrl": "http://h"}"#))
            .unwrap();
        s.put_entity(
            Kind::Product,
            "starter",
            obj(r#"{"displayName": "Starter", "subscriptionsLimit": 1, "approvalRequired": true}"#),
        )
        .unwrap();
        s.link_product("starter", "pets").unwrap();
        let c = s.catalogue().unwrap();
        let names: Vec<&str> = c.apis.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Pet Store", "zoo"]);
        assert_eq!(c.apis[0].tags, ["animals"]);
        let p = c.product("starter").unwrap();
        assert_eq!(
            (p.subscriptions_limit, p.approval_required),
            (Some(1), true)
        );
        let anyone = Viewer::Anonymous;
        let seen: Vec<&str> = c
            .visible_apis(&anyone, "", "")
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(seen, ["pets"], "zoo is in no product");
        assert_eq!(c.visible_apis(&anyone, "PET", "animals").count(), 1);
        assert_eq!(c.visible_apis(&anyone, "", "birds").count(), 0);

        let record = |sub: &str, status: u16, ms: f64| {
            format!(
                r#"{{"subscriptionId":"{sub}","apiId":"pets","responseCode":{status},"totalTimeMs":{ms}}}"#
            )
        };
        let lines = [
            record("s1", 200, 2.0),
            record("s1", 200, 4.0),
            record("s1", 502, 10.0),
            record("s2", 200, 1.0),
        ]
        .join("\n");
        s.put_gateway("g", Object::new()).unwrap();
        s.record_telemetry("g", &lines, 0).unwrap();
        let u = s.subscription_usage("s1", 0).unwrap();
        assert_eq!(
            (u.calls, u.errors, u.p50_ms, u.p99_ms),
            (3, 1, Some(4.0), Some(10.0))
        );
        assert_eq!(u.per_minute.len(), 1);
        let m = &u.per_minute[0];
        assert_eq!((m.calls, m.errors, m.p50_ms, m.p99_ms), (3, 1, 4.0, 10.0));
        assert!((m.error_rate() - 100.0 / 3.0).abs() < 1e-9);
        let t = s.traffic(0).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].0 .0.as_str(), t[0].1.calls), ("g", 4));
    }
}
