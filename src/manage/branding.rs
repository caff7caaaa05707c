//! The developer portal's design, set through the admin API (`/admin/portal`): its title,
//! a logo (an inline `data:` image, so nothing is fetched from elsewhere), three colours,
//! and Markdown pages (public or for signed-in developers). Checked whole before it is
//! stored, every error with its JSON path; it does not concern gateways, so storing it
//! does not move the revision.
//! Must not touch: HTML (web/ renders), the catalogue.

use miniserde::json::{self, Array, Object, Value};
use rusqlite::{params, OptionalExtension};

use super::store::{PlaneError, PlaneResult, PlaneStore};
use crate::config::ConfigError;

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS portal_design (id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL);
";

/// Largest logo (the whole `data:` URL).
pub const MAX_LOGO: usize = 256 * 1024;
/// Largest Markdown page.
pub const MAX_PAGE: usize = 256 * 1024;
/// Most pages.
pub const MAX_PAGES: usize = 50;

#[derive(Debug, Clone, PartialEq)]
pub struct Colors {
    pub accent: String,
    pub background: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub id: String,
    pub title: String,
    pub markdown: String,
    /// Shown to anonymous visitors too (else only to signed-in developers).
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Design {
    pub title: String,
    pub logo: Option<String>,
    pub colors: Colors,
    pub pages: Vec<Page>,
}

impl Default for Design {
    fn default() -> Self {
        Design {
            title: "Developer portal".into(),
            logo: None,
            colors: Colors {
                accent: "#1f5fbf".into(),
                background: "#ffffff".into(),
                text: "#1d2430".into(),
            },
            pages: Vec::new(),
        }
    }
}

fn is_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|h| {
        matches!(h.len(), 3 | 4 | 6 | 8) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn is_logo(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("data:image/") else {
        return false;
    };
    let Some((kind, data)) = rest.split_once(";base64,") else {
        return false;
    };
    matches!(kind, "png" | "jpeg" | "gif" | "webp" | "svg+xml")
        && !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

impl Design {
    /// The design a `PUT /admin/portal` body describes (fields left out take their
    /// defaults), or every error in it.
    pub fn from_json(body: &Object) -> Result<Design, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: &str| {
            errors.push(ConfigError {
                path: path.to_string(),
                message: message.to_string(),
            })
        };
        let mut d = Design::default();
        for key in body.keys() {
            if !matches!(key.as_str(), "title" | "logo" | "colors" | "pages") {
                err(
                    key,
                    "is not a field of the portal's design (title, logo, colors, pages)",
                );
            }
        }
        match body.get("title") {
            None => {}
            Some(Value::String(t)) if !t.trim().is_empty() && t.chars().count() <= 100 => {
                d.title = t.trim().to_string()
            }
            Some(_) => err("title", "must be a text of 1 to 100 characters"),
        }
        match body.get("logo") {
            None | Some(Value::Null) => {}
            Some(Value::String(l)) if l.len() <= MAX_LOGO && is_logo(l) => d.logo = Some(l.clone()),
            Some(_) => err(
                "logo",
                "must be a data:image/(png|jpeg|gif|webp|svg+xml);base64,… URL of at most 256 KiB",
            ),
        }
        match body.get("colors") {
            None => {}
            Some(Value::Object(c)) => {
                for (key, v) in c {
                    let slot = match key.as_str() {
                        "accent" => &mut d.colors.accent,
                        "background" => &mut d.colors.background,
                        "text" => &mut d.colors.text,
                        _ => {
                            err(
                                &format!("colors.{key}"),
                                "is not accent, background or text",
                            );
                            continue;
                        }
                    };
                    match v {
                        Value::String(s) if is_color(s) => *slot = s.clone(),
                        _ => err(
                            &format!("colors.{key}"),
                            "must be a #rgb, #rgba, #rrggbb or #rrggbbaa colour",
                        ),
                    }
                }
            }
            Some(_) => err("colors", "must be an object"),
        }
        match body.get("pages") {
            None => {}
            Some(Value::Array(list)) if list.len() <= MAX_PAGES => {
                for (i, p) in list.iter().enumerate() {
                    match page(p, &format!("pages[{i}]"), &mut err) {
                        Some(p) if d.pages.iter().any(|x| x.id == p.id) => {
                            err(&format!("pages[{i}].id"), "is used by an earlier page")
                        }
                        Some(p) => d.pages.push(p),
                        None => {}
                    }
                }
            }
            Some(_) => err("pages", "must be a list of at most 50 pages"),
        }
        if errors.is_empty() {
            Ok(d)
        } else {
            Err(errors)
        }
    }

    pub fn to_json(&self) -> String {
        let s = |v: &str| Value::String(v.to_string());
        let mut o = Object::new();
        o.insert("title".into(), s(&self.title));
        o.insert("logo".into(), self.logo.as_deref().map_or(Value::Null, s));
        let mut c = Object::new();
        c.insert("accent".into(), s(&self.colors.accent));
        c.insert("background".into(), s(&self.colors.background));
        c.insert("text".into(), s(&self.colors.text));
        o.insert("colors".into(), Value::Object(c));
        let pages: Array = self
            .pages
            .iter()
            .map(|p| {
                let mut po = Object::new();
                po.insert("id".into(), s(&p.id));
                po.insert("title".into(), s(&p.title));
                po.insert("markdown".into(), s(&p.markdown));
                po.insert(
                    "visibility".into(),
                    s(if p.public { "public" } else { "signedIn" }),
                );
                Value::Object(po)
            })
            .collect();
        o.insert("pages".into(), Value::Array(pages));
        json::to_string(&Value::Object(o))
    }
}

fn page(v: &Value, path: &str, err: &mut impl FnMut(&str, &str)) -> Option<Page> {
    let Value::Object(o) = v else {
        err(path, "must be an object with id, title and markdown");
        return None;
    };
    let text = |key: &str| match o.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let id = text("id").filter(|id| {
        !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let title = text("title").filter(|t| !t.trim().is_empty() && t.chars().count() <= 200);
    let markdown = text("markdown").filter(|m| m.len() <= MAX_PAGE);
    let public = match text("visibility").as_deref() {
        None | Some("public") => Some(true),
        Some("signedIn") => Some(false),
        Some(_) => None,
    };
    if id.is_none() {
        err(
            &format!("{path}.id"),
            "must be 1 to 64 letters, digits, - or _",
        );
    }
    if title.is_none() {
        err(
            &format!("{path}.title"),
            "must be a text of 1 to 200 characters",
        );
    }
    if markdown.is_none() {
        err(
            &format!("{path}.markdown"),
            "must be a Markdown text of at most 256 KiB",
        );
    }
    if public.is_none() {
        err(&format!("{path}.visibility"), "must be public or signedIn");
    }
    Some(Page {
        id: id?,
        title: title?.trim().to_string(),
        markdown: markdown?,
        public: public?,
    })
}

impl PlaneStore {
    pub fn design(&self) -> PlaneResult<Design> {
        let body: Option<String> = self
            .conn
            .query_row("SELECT body FROM portal_design WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(body
            .and_then(|b| match json::from_str::<Value>(&b) {
                Ok(Value::Object(o)) => Design::from_json(&o).ok(),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Replaces the design; refused whole (400 with every error) when invalid.
    pub fn put_design(&mut self, body: &Object) -> PlaneResult<Design> {
        let design = Design::from_json(body).map_err(PlaneError::Invalid)?;
        self.conn.execute(
            "INSERT INTO portal_design (id, body) VALUES (1, ?1)
             ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            params![design.to_json()],
        )?;
        Ok(design)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::store::tests::{obj, store};

    #[test]
    fn a_design_is_checked_whole_and_kept() {
        let mut s = store("design");
        assert_eq!(s.design().unwrap(), Design::default());
        let bad = obj(
            r##"{"title": "", "logo": "https://cdn.example/logo.png", "colors": {"accent": "red", "link": "#fff"},
                "pages": [{"id": "a b", "title": "T", "markdown": "x", "visibility": "friends"}], "theme": 1}"##,
        );
        let Err(PlaneError::Invalid(errors)) = s.put_design(&bad) else {
            panic!("accepted")
        };
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "theme",
                "title",
                "logo",
                "colors.accent",
                "colors.link",
                "pages[0].id",
                "pages[0].visibility"
            ]
        );
        assert_eq!(s.design().unwrap(), Design::default(), "nothing stored");
        let good = obj(
            r##"{"title": "Contoso APIs", "logo": "data:image/png;base64,iVBORw0KGgo=", "colors": {"accent": "#0a7"},
                "pages": [{"id": "start", "title": "Getting started", "markdown": "# Hi", "visibility": "signedIn"}]}"##,
        );
        let d = s.put_design(&good).unwrap();
        assert_eq!(s.design().unwrap(), d);
        assert_eq!(
            (d.colors.accent.as_str(), d.colors.text.as_str()),
            ("#0a7", "#1d2430")
        );
        assert!(!d.pages[0].public);
    }
}
