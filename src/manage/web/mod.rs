//! The browser side of the management plane: the developer portal at `/portal` and the
//! operator console at `/console`, server-rendered HTML with no script and no external
//! asset (an air-gapped host serves everything itself). This module owns what every
//! page shares: sessions and their cookies, CSRF checks, the security headers, and the
//! catalogue snapshot pages read.
//! Must not touch: the admin API's routes (api.rs), the gateway's code paths.

pub mod console;
pub mod editor;
pub mod entity_editor;
pub mod federated;
pub mod form;
pub mod html;
pub mod manage_catalogue;
pub mod markdown;
pub mod oidc;
pub mod password;
pub mod portal;
pub mod reference;
pub mod relay;

use std::sync::{Arc, Mutex, MutexGuard};

use super::accounts::{Principal, Session};
use super::api::Plane;
use super::catalogue::Catalogue;
use super::http::{Body, Request, Response};
use super::store::PlaneStore;
use form::Form;

/// The stylesheet, served by the plane itself.
const STYLE: &str = include_str!("assets/style.css");
pub const STYLE_PATH: &str = "/portal/assets/style.css";
/// The design's colours as a stylesheet (inline styles are not allowed by the CSP).
pub const THEME_PATH: &str = "/portal/assets/theme.css";

/// Every page's Content-Security-Policy: no script at all, styles and images only from
/// the plane (and inline `data:` images for a logo), forms only to the plane, never
/// framed.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The portal's settings (`manage.portal.*`).
#[derive(Debug, Clone, Default)]
pub struct PortalSettings {
    /// Where try-it calls go: a gateway's base URL (`http://127.0.0.1:8080`).
    pub gateway_url: Option<String>,
    /// Whether the plane's listener has TLS: cookies are then `Secure` and pages send
    /// HSTS.
    pub tls: bool,
    /// The portal's public base URL (for OpenID Connect redirects); else the request's.
    pub public_url: Option<String>,
    /// OpenID Connect sign-in, when configured.
    pub oidc: Option<oidc::OidcSettings>,
}

/// Which part of the site a request is for: each has its own session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Portal,
    Console,
}

impl Area {
    fn cookie(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Area::Portal, false) => "edgegate-portal",
            (Area::Portal, true) => "__Secure-edgegate-portal",
            (Area::Console, false) => "edgegate-console",
            (Area::Console, true) => "__Secure-edgegate-console",
        }
    }
    fn csrf_cookie(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Area::Portal, false) => "edgegate-portal-csrf",
            (Area::Portal, true) => "__Secure-edgegate-portal-csrf",
            (Area::Console, false) => "edgegate-console-csrf",
            (Area::Console, true) => "__Secure-edgegate-console-csrf",
        }
    }
    fn path(self) -> &'static str {
        match self {
            Area::Portal => "/portal",
            Area::Console => "/console",
        }
    }
}

/// One browser request as the pages see it: the request, the session it carries (if
/// live) and the CSRF token its forms must echo.
pub struct Visit<'r> {
    pub req: &'r Request,
    pub area: Area,
    pub session: Option<Session>,
    /// The session's CSRF token, or for a visitor without one the pre-session token of
    /// the CSRF cookie (made now when absent: `new_csrf_cookie`).
    pub csrf: String,
    new_csrf_cookie: bool,
    pub form: Form,
}

impl Visit<'_> {
    pub fn user_id(&self) -> Option<&str> {
        match &self.session {
            Some(Session {
                principal: Principal::User { id },
                ..
            }) => Some(id),
            _ => None,
        }
    }
    pub fn is_admin(&self) -> bool {
        matches!(
            &self.session,
            Some(Session {
                principal: Principal::Admin { .. },
                ..
            })
        )
    }
}

pub struct Web {
    plane: Arc<Plane>,
    settings: PortalSettings,
    throttle: password::Throttle,
    /// The catalogue at the plane's last revision (rebuilt when it moved).
    catalogue: Mutex<Arc<Catalogue>>,
    oidc: Option<oidc::Oidc>,
}

impl Web {
    pub fn new(plane: Arc<Plane>, settings: PortalSettings) -> Web {
        Web {
            plane,
            oidc: settings.oidc.clone().map(oidc::Oidc::new),
            settings,
            throttle: password::Throttle::default(),
            catalogue: Mutex::new(Arc::new(Catalogue::default())),
        }
    }

    pub(super) fn store(&self) -> MutexGuard<'_, PlaneStore> {
        self.plane.store()
    }

    /// The catalogue as of now; rebuilt only when the plane's revision moved.
    pub fn catalogue(&self) -> Arc<Catalogue> {
        let mut cached = self.catalogue.lock().unwrap_or_else(|p| p.into_inner());
        let store = self.store();
        let revision = store.revision().unwrap_or(0);
        if revision != cached.revision || (revision == 0 && cached.apis.is_empty()) {
            match store.catalogue() {
                Ok(c) => *cached = Arc::new(c),
                Err(e) => log::warn!("portal catalogue: {e:?}"),
            }
        }
        cached.clone()
    }

    /// Whether this request is for the portal or the console.
    pub fn handles(path: &str) -> bool {
        ["/portal", "/console"].iter().any(|p| {
            path == *p
                || path
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    pub fn handle(&self, req: &Request) -> Response {
        let area = if req.path.starts_with("/console") {
            Area::Console
        } else {
            Area::Portal
        };
        let mut response = if req.path == STYLE_PATH {
            let mut r = Response {
                status: 200,
                headers: vec![("Content-Type", "text/css; charset=utf-8".into())],
                body: Body::Owned(STYLE.as_bytes().to_vec()),
            };
            r.headers
                .push(("Cache-Control", "public, max-age=3600".into()));
            r
        } else if req.path == THEME_PATH {
            let c = self.design().colors;
            Response {
                status: 200,
                headers: vec![
                    ("Content-Type", "text/css; charset=utf-8".into()),
                    ("Cache-Control", "no-cache".into()),
                ],
                body: Body::Owned(
                    format!(
                        ":root {{ --accent: {}; --bg: {}; --fg: {}; }}\n",
                        c.accent, c.background, c.text
                    )
                    .into_bytes(),
                ),
            }
        } else {
            let visit = self.visit(req, area);
            let mut r = match self.forged(&visit) {
                Some(refusal) => refusal,
                None => match area {
                    Area::Portal => portal::route(self, &visit),
                    Area::Console => console::route(self, &visit),
                },
            };
            if visit.new_csrf_cookie {
                r.headers.push((
                    "Set-Cookie",
                    self.cookie(area.csrf_cookie(self.settings.tls), &visit.csrf, area),
                ));
            }
            r.headers.push(("Cache-Control", "no-store".into()));
            if super::audit::Audit::audited(&req.method) {
                let actor = match &visit.session {
                    Some(Session {
                        principal: Principal::Admin { name },
                        ..
                    }) => format!("console:{name}"),
                    Some(Session {
                        principal: Principal::User { id },
                        ..
                    }) => format!("portal:{id}"),
                    None => "anonymous".into(),
                };
                self.plane.audit(req, &actor, r.status);
            }
            r
        };
        self.secure(&mut response);
        response
    }

    /// The headers every page and asset carries.
    fn secure(&self, r: &mut Response) {
        r.headers.push(("Content-Security-Policy", CSP.into()));
        r.headers.push(("X-Frame-Options", "DENY".into()));
        r.headers.push(("X-Content-Type-Options", "nosniff".into()));
        r.headers.push(("Referrer-Policy", "same-origin".into()));
        r.headers
            .push(("Cross-Origin-Opener-Policy", "same-origin".into()));
        if self.settings.tls {
            r.headers
                .push(("Strict-Transport-Security", "max-age=31536000".into()));
        }
    }

    fn visit<'r>(&self, req: &'r Request, area: Area) -> Visit<'r> {
        let tls = self.settings.tls;
        let session = form::cookie(req, area.cookie(tls))
            .and_then(|token| self.store().session(token).ok().flatten())
            .filter(|s| match (&s.principal, area) {
                (Principal::Admin { .. }, Area::Console) => true,
                // a developer whose account was blocked or deleted is signed out
                (Principal::User { id }, Area::Portal) => {
                    self.store().user_state(id).ok().flatten().as_deref() == Some("active")
                }
                _ => false,
            });
        let pre = form::cookie(req, area.csrf_cookie(tls))
            .filter(|t| {
                t.len() == 43
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_string);
        let (csrf, new_csrf_cookie) = match (&session, pre) {
            (Some(s), _) => (s.csrf.clone(), false),
            (None, Some(t)) => (t, false),
            (None, None) => (super::accounts::random_token(), true),
        };
        Visit {
            req,
            area,
            session,
            csrf,
            new_csrf_cookie,
            form: if req.method == "POST" {
                Form::body(req)
            } else {
                Form::query(req)
            },
        }
    }

    /// A POST without this visitor's CSRF token, or from another origin, is refused
    /// before any page sees it.
    fn forged(&self, visit: &Visit) -> Option<Response> {
        if visit.req.method != "POST" {
            return None;
        }
        let same_origin = match (visit.req.header("origin"), visit.req.header("host")) {
            (Some(origin), Some(host)) => origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
            // browsers send Origin with every POST; its absence is not proof of forgery
            _ => true,
        };
        let token_ok =
            super::api::constant_time_eq(visit.form.get("csrf").as_bytes(), visit.csrf.as_bytes())
                && !visit.new_csrf_cookie;
        (!same_origin || !token_ok).then(|| {
            page_response(
                403,
                "<p class=\"notice error\">This form has expired or did not come from this site. \
                 Go back, reload the page and try again.</p>",
            )
        })
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Secure with TLS, scoped to its area.
    pub fn cookie(&self, name: &str, value: &str, area: Area) -> String {
        format!(
            "{name}={value}; Path={}; HttpOnly; SameSite=Lax{}",
            area.path(),
            if self.settings.tls { "; Secure" } else { "" }
        )
    }

    /// Starts a session for `principal` and answers with a redirect that sets it.
    pub fn sign_in(&self, principal: &Principal, area: Area, to: &str) -> Response {
        match self.store().new_session(principal) {
            Ok((token, _)) => {
                let mut r = redirect(to);
                r.headers.push((
                    "Set-Cookie",
                    self.cookie(area.cookie(self.settings.tls), &token, area),
                ));
                r
            }
            Err(e) => server_error(&e),
        }
    }

    /// Ends the visit's session and clears its cookie.
    pub fn sign_out(&self, visit: &Visit, to: &str) -> Response {
        let tls = self.settings.tls;
        if let Some(token) = form::cookie(visit.req, visit.area.cookie(tls)) {
            let _ = self.store().end_session(token);
        }
        let mut r = redirect(to);
        r.headers.push((
            "Set-Cookie",
            format!(
                "{}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0{}",
                visit.area.cookie(tls),
                visit.area.path(),
                if tls { "; Secure" } else { "" }
            ),
        ));
        r
    }

    /// The portal's design as stored now (the default one when the read fails).
    pub fn design(&self) -> super::branding::Design {
        self.store().design().unwrap_or_default()
    }

    pub fn oidc(&self) -> Option<&oidc::Oidc> {
        self.oidc.as_ref()
    }

    /// Where the portal is reached from outside: the setting, else this request's
    /// scheme and `Host`.
    pub fn public_base(&self, req: &Request) -> String {
        match &self.settings.public_url {
            Some(u) => u.clone(),
            None => format!(
                "{}://{}",
                if self.settings.tls { "https" } else { "http" },
                req.header("host").unwrap_or("localhost")
            ),
        }
    }

    pub fn settings(&self) -> &PortalSettings {
        &self.settings
    }

    pub fn throttle(&self) -> &password::Throttle {
        &self.throttle
    }

    pub fn plane(&self) -> &Plane {
        &self.plane
    }
}

/// An HTML page with `status`.
pub fn page_response(status: u16, html: impl Into<String>) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "text/html; charset=utf-8".into())],
        body: Body::Owned(html.into().into_bytes()),
    }
}

/// 303 See Other to `to` (after a form post, so a reload does not post again). Control
/// characters are dropped: a location that came from elsewhere (an identity provider's
/// discovery document) cannot add a header line.
pub fn redirect(to: &str) -> Response {
    Response {
        status: 303,
        headers: vec![("Location", to.chars().filter(|c| !c.is_control()).collect())],
        body: Body::Owned(Vec::new()),
    }
}

/// A store failure, logged with its cause; the page says only that it failed.
pub fn server_error(e: &super::store::PlaneError) -> Response {
    log::error!("web page: {e:?}");
    page_response(
        500,
        "<p class=\"notice error\">Something went wrong on the server; it has been logged.</p>",
    )
}
