//! Developer-portal accounts beside the users they sign in as, browser sessions of the
//! portal and the console, and invitations. A user (the entity gateways see) holds no
//! credential: the password hash lives in `portal_accounts`, never in a user's body, a
//! listing or a gateway's document. Session and invitation tokens are stored as their
//! SHA-256 only, so a copy of the database opens no session.
//! Must not touch: HTTP, how a password is hashed (web/password.rs does that).

use miniserde::json::{Object, Value};
use rusqlite::{params, OptionalExtension};

use super::entities::Kind;
use super::store::{now_unix, PlaneError, PlaneResult, PlaneStore};

pub(super) const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS portal_accounts (
        user TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE COLLATE NOCASE, password TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS web_sessions (
        token_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, csrf TEXT NOT NULL, expires INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS portal_invitations (
        token_hash TEXT PRIMARY KEY, email TEXT NOT NULL COLLATE NOCASE, expires INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS oidc_pending (
        state_hash TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL, expires INTEGER NOT NULL);
";

/// How long an OpenID Connect sign-in may take from leaving for the provider to coming
/// back.
pub const OIDC_FLOW_SECS: u64 = 600;

/// Who an identity provider says signed in.
pub struct FederatedIdentity<'a> {
    pub provider: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

/// How long a session lasts from sign-in.
pub const SESSION_SECS: u64 = 8 * 3600;
/// How long an invitation can be used.
pub const INVITATION_SECS: u64 = 7 * 86_400;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator, signed in to the console with the admin token or as an administrator.
    Admin { name: String },
    /// A developer account of the portal (the user's id).
    User { id: String },
}

impl Principal {
    fn stored(&self) -> String {
        match self {
            Principal::Admin { name } => format!("admin:{name}"),
            Principal::User { id } => format!("user:{id}"),
        }
    }
    fn from_stored(s: &str) -> Option<Principal> {
        match s.split_once(':')? {
            ("admin", name) => Some(Principal::Admin { name: name.into() }),
            ("user", id) => Some(Principal::User { id: id.into() }),
            _ => None,
        }
    }
}

/// A signed-in browser: who, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
}

/// What sign-up needs to know about the new account.
pub struct NewAccount<'a> {
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: String,
    /// Active at once (an invitation) or pending an administrator's approval.
    pub active: bool,
}

/// 32 random bytes, URL-safe base64 (session, CSRF and invitation tokens).
pub fn random_token() -> String {
    use base64::Engine as _;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    // SystemRandom only fails if the OS has no randomness source at all.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new user's id: the e-mail's local part (lower case, other characters as `-`) and a
/// random suffix.
fn new_user_id(email: &str) -> String {
    let local: String = email
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let suffix = &digest(&random_token())[..8];
    match local.trim_matches('-') {
        "" => format!("user-{suffix}"),
        local => format!("{local}-{suffix}"),
    }
}

impl PlaneStore {
    /// Creates the user (pending or active) and its credential. The user's id is made
    /// from the e-mail's local part and a random suffix. 409 when the e-mail is taken.
    pub fn create_account(&mut self, account: NewAccount) -> PlaneResult<String> {
        let taken: Option<String> = self
            .conn
            .query_row(
                "SELECT user FROM portal_accounts WHERE email = ?1",
                params![account.email],
                |r| r.get(0),
            )
            .optional()?;
        if taken.is_some() {
            return Err(PlaneError::Conflict(
                "An account with this e-mail address exists.".into(),
            ));
        }
        let id = new_user_id(account.email);
        let mut body = Object::new();
        let text = |s: &str| Value::String(s.to_string());
        body.insert("email".into(), text(account.email));
        body.insert("firstName".into(), text(account.first_name));
        body.insert("lastName".into(), text(account.last_name));
        body.insert(
            "state".into(),
            text(if account.active { "active" } else { "pending" }),
        );
        body.insert(
            "registrationDate".into(),
            text(&crate::telemetry::rfc3339(std::time::SystemTime::now())),
        );
        body.insert(
            "identities".into(),
            Value::Array(
                std::iter::once({
                    let mut i = Object::new();
                    i.insert("provider".into(), text("Basic"));
                    i.insert("id".into(), text(account.email));
                    Value::Object(i)
                })
                .collect(),
            ),
        );
        self.put_entity(Kind::User, &id, body)?;
        let inserted = self.conn.execute(
            "INSERT INTO portal_accounts (user, email, password) VALUES (?1, ?2, ?3)",
            params![id, account.email, account.password_hash],
        );
        if let Err(e) = inserted {
            // the e-mail was taken in between: the user made above goes again
            let _ = self.delete_entity(Kind::User, &id, false);
            return Err(e.into());
        }
        Ok(id)
    }

    /// Remembers an OpenID Connect sign-in under way (its state as a digest only).
    pub fn begin_oidc(&mut self, state: &str, nonce: &str, verifier: &str) -> PlaneResult<()> {
        let now = now_unix() as i64;
        self.conn
            .execute("DELETE FROM oidc_pending WHERE expires < ?1", params![now])?;
        self.conn.execute(
            "INSERT INTO oidc_pending (state_hash, nonce, verifier, expires) VALUES (?1, ?2, ?3, ?4)",
            params![digest(state), nonce, verifier, now + OIDC_FLOW_SECS as i64],
        )?;
        Ok(())
    }

    /// The nonce and PKCE verifier of the sign-in `state` names, used up.
    pub fn take_oidc(&mut self, state: &str) -> PlaneResult<Option<(String, String)>> {
        let key = digest(state);
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT nonce, verifier FROM oidc_pending WHERE state_hash = ?1 AND expires >= ?2",
                params![key, now_unix() as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        self.conn.execute(
            "DELETE FROM oidc_pending WHERE state_hash = ?1",
            params![key],
        )?;
        Ok(row)
    }

    /// The user with this provider's identity, made (pending approval) when there is
    /// none. Returns the user's id.
    pub fn federated_user(&mut self, who: &FederatedIdentity) -> PlaneResult<String> {
        for v in self.list_entities(Kind::User)? {
            let Value::Object(o) = v else { continue };
            let known = match o.get("identities") {
                Some(Value::Array(list)) => list.iter().any(|i| {
                    let field = |k: &str| match i {
                        Value::Object(i) => match i.get(k) {
                            Some(Value::String(v)) => Some(v.as_str()),
                            _ => None,
                        },
                        _ => None,
                    };
                    field("provider") == Some(who.provider) && field("id") == Some(who.subject)
                }),
                _ => false,
            };
            if let (true, Some(Value::String(id))) = (known, o.get("id")) {
                return Ok(id.clone());
            }
        }
        let id = new_user_id(who.email);
        let mut body = Object::new();
        let text = |s: &str| Value::String(s.to_string());
        body.insert("email".into(), text(who.email));
        body.insert("firstName".into(), text(who.first_name));
        body.insert("lastName".into(), text(who.last_name));
        body.insert("state".into(), text("pending"));
        body.insert(
            "registrationDate".into(),
            text(&crate::telemetry::rfc3339(std::time::SystemTime::now())),
        );
        let mut identity = Object::new();
        identity.insert("provider".into(), text(who.provider));
        identity.insert("id".into(), text(who.subject));
        body.insert(
            "identities".into(),
            Value::Array(std::iter::once(Value::Object(identity)).collect()),
        );
        self.put_entity(Kind::User, &id, body)?;
        Ok(id)
    }

    /// The user id and password hash of the account with `email`.
    pub fn credential(&self, email: &str) -> PlaneResult<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, password FROM portal_accounts WHERE email = ?1",
                params![email],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// A user's `state` (active, pending, blocked, deleted), `None` when it is gone.
    pub fn user_state(&self, id: &str) -> PlaneResult<Option<String>> {
        match self.get_entity(Kind::User, id) {
            Ok(Value::Object(o)) => Ok(Some(match o.get("state") {
                Some(Value::String(s)) => s.clone(),
                _ => "active".into(),
            })),
            Ok(_) | Err(PlaneError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Starts a session; returns its token (for the cookie only) and CSRF token.
    pub fn new_session(&mut self, principal: &Principal) -> PlaneResult<(String, String)> {
        let now = now_unix() as i64;
        let (token, csrf) = (random_token(), random_token());
        self.conn
            .execute("DELETE FROM web_sessions WHERE expires < ?1", params![now])?;
        self.conn.execute(
            "INSERT INTO web_sessions (token_hash, principal, csrf, expires) VALUES (?1, ?2, ?3, ?4)",
            params![digest(&token), principal.stored(), csrf, now + SESSION_SECS as i64],
        )?;
        Ok((token, csrf))
    }

    /// The live session behind a cookie's token.
    pub fn session(&self, token: &str) -> PlaneResult<Option<Session>> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT principal, csrf FROM web_sessions WHERE token_hash = ?1 AND expires >= ?2",
                params![digest(token), now_unix() as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.and_then(|(p, csrf)| {
            Principal::from_stored(&p).map(|principal| Session { principal, csrf })
        }))
    }

    pub fn end_session(&mut self, token: &str) -> PlaneResult<()> {
        self.conn.execute(
            "DELETE FROM web_sessions WHERE token_hash = ?1",
            params![digest(token)],
        )?;
        Ok(())
    }

    /// Ends every session of a user (blocked, deleted, password changed).
    pub fn end_sessions_of(&mut self, principal: &Principal) -> PlaneResult<()> {
        self.conn.execute(
            "DELETE FROM web_sessions WHERE principal = ?1",
            params![principal.stored()],
        )?;
        Ok(())
    }

    /// An invitation for `email`; the token goes into the link handed to the person.
    pub fn invite(&mut self, email: &str) -> PlaneResult<String> {
        let token = random_token();
        let now = now_unix() as i64;
        self.conn.execute(
            "DELETE FROM portal_invitations WHERE expires < ?1",
            params![now],
        )?;
        self.conn.execute(
            "INSERT INTO portal_invitations (token_hash, email, expires) VALUES (?1, ?2, ?3)",
            params![digest(&token), email, now + INVITATION_SECS as i64],
        )?;
        Ok(token)
    }

    /// Uses up an invitation: true when `token` invites `email` and has not expired.
    pub fn redeem_invitation(&mut self, token: &str, email: &str) -> PlaneResult<bool> {
        let n = self.conn.execute(
            "DELETE FROM portal_invitations WHERE token_hash = ?1 AND email = ?2 AND expires >= ?3",
            params![digest(token), email, now_unix() as i64],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manage::store::tests::store;

    fn account<'a>(email: &'a str, active: bool) -> NewAccount<'a> {
        NewAccount {
            email,
            first_name: "Ada",
            last_name: "Lovelace",
            password_hash: "pbkdf2-sha256$1$AA$AA".into(),
            active,
        }
    }

    #[test]
    fn accounts_make_pending_users_without_credentials_in_their_body() {
        let mut s = store("accounts");
        let id = s.create_account(account("Ada@Example.org", false)).unwrap();
        assert!(id.starts_with("ada-"), "{id}");
        assert_eq!(s.user_state(&id).unwrap().as_deref(), Some("pending"));
        let body = miniserde::json::to_string(&s.get_entity(Kind::User, &id).unwrap());
        assert!(!body.contains("pbkdf2"), "{body}");
        assert!(body.contains("\"email\":\"Ada@Example.org\""), "{body}");
        // e-mails are unique whatever their case
        let again = s.create_account(account("ada@example.org", true));
        assert!(matches!(again, Err(PlaneError::Conflict(_))));
        assert_eq!(s.credential("ADA@example.org").unwrap().unwrap().0, id);
    }

    #[test]
    fn sessions_are_found_by_token_only_and_end() {
        let mut s = store("sessions");
        let who = Principal::User { id: "u1".into() };
        let (token, csrf) = s.new_session(&who).unwrap();
        let found = s.session(&token).unwrap().unwrap();
        assert_eq!((found.principal, found.csrf), (who.clone(), csrf));
        let stored: String = s
            .conn
            .query_row("SELECT token_hash FROM web_sessions", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, token, "only the digest is kept");
        assert!(s.session("forged").unwrap().is_none());
        s.end_sessions_of(&who).unwrap();
        assert!(s.session(&token).unwrap().is_none());
    }

    #[test]
    fn invitations_are_used_once_for_their_address() {
        let mut s = store("invitations");
        let token = s.invite("new@example.org").unwrap();
        assert!(!s.redeem_invitation(&token, "other@example.org").unwrap());
        assert!(s.redeem_invitation(&token, "NEW@example.org").unwrap());
        assert!(!s.redeem_invitation(&token, "new@example.org").unwrap());
    }
}
