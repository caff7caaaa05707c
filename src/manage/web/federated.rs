//! The portal's pages of an OpenID Connect sign-in: leaving for the provider (a form post,
//! so another site cannot start a sign-in) and coming back to the callback, whose `state`
//! must be the one this browser's cookie holds and is used once. The protocol is in
//! oidc.rs; who may then sign in (an active user) is decided as for local accounts.
//! Must not touch: passwords, the protocol's checks.

use super::portal::{show, signin_page};
use super::{redirect, server_error, Area, Visit, Web};
use crate::manage::accounts::{random_token, FederatedIdentity, Principal};
use crate::manage::http::Response;

const STATE_COOKIE: &str = "edgegate-oidc";
const CALLBACK: &str = "/portal/signin/oidc/callback";

fn cookie_name(web: &Web) -> String {
    if web.settings().tls {
        format!("__Secure-{STATE_COOKIE}")
    } else {
        STATE_COOKIE.to_string()
    }
}

fn state_cookie(web: &Web, value: &str, max_age: u64) -> String {
    format!(
        "{}={value}; Path=/portal/signin/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        cookie_name(web),
        if web.settings().tls { "; Secure" } else { "" }
    )
}

pub fn begin(web: &Web, visit: &Visit) -> Response {
    let Some(oidc) = web.oidc() else {
        return super::portal::not_found(web, visit);
    };
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let redirect_uri = format!("{}{CALLBACK}", web.public_base(visit.req));
    let url = match oidc.authorization_url(&redirect_uri, &state, &nonce, &verifier) {
        Ok(u) => u,
        Err(e) => {
            log::warn!("OpenID Connect sign-in: {e}");
            return signin_page(
                web,
                visit,
                502,
                "The identity provider cannot be reached now; try again later.",
            );
        }
    };
    let begun = web.store().begin_oidc(&state, &nonce, &verifier);
    if let Err(e) = begun {
        return server_error(&e);
    }
    let mut r = redirect(&url);
    r.headers.push((
        "Set-Cookie",
        state_cookie(web, &state, crate::manage::accounts::OIDC_FLOW_SECS),
    ));
    r
}

pub fn callback(web: &Web, visit: &Visit) -> Response {
    let Some(oidc) = web.oidc() else {
        return super::portal::not_found(web, visit);
    };
    let q = &visit.form;
    if !q.get("error").is_empty() {
        return signin_page(
            web,
            visit,
            401,
            &format!(
                "The identity provider did not sign you in ({}).",
                q.get("error")
            ),
        );
    }
    let state = q.get("state");
    let bound = super::form::cookie(visit.req, &cookie_name(web)).is_some_and(|c| {
        !state.is_empty() && crate::manage::api::constant_time_eq(c.as_bytes(), state.as_bytes())
    });
    let pending = if bound {
        web.store().take_oidc(state)
    } else {
        Ok(None)
    };
    let (nonce, verifier) = match pending {
        Ok(Some(p)) => p,
        Ok(None) => {
            return signin_page(
                web,
                visit,
                403,
                "This sign-in was not started here, or it took too long; start again.",
            )
        }
        Err(e) => return server_error(&e),
    };
    let redirect_uri = format!("{}{CALLBACK}", web.public_base(visit.req));
    let claims = match oidc.finish(q.get("code"), &redirect_uri, &nonce, &verifier) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("OpenID Connect sign-in refused: {e}");
            return signin_page(
                web,
                visit,
                401,
                "The identity provider's answer could not be verified; the sign-in was refused.",
            );
        }
    };
    let user = web.store().federated_user(&FederatedIdentity {
        provider: super::oidc::PROVIDER,
        subject: &claims.subject,
        email: &claims.email,
        first_name: &claims.given_name,
        last_name: &claims.family_name,
    });
    let id = match user {
        Ok(id) => id,
        Err(e) => return server_error(&e),
    };
    web.plane().bumped();
    let state_of_user = web.store().user_state(&id);
    let mut r = match state_of_user {
        Ok(Some(s)) if s == "active" => {
            web.sign_in(&Principal::User { id }, Area::Portal, "/portal/profile")
        }
        Ok(Some(s)) if s == "pending" => show(
            web,
            visit,
            403,
            "Awaiting approval",
            "<p class=\"notice warn\" id=\"pending\">You are known now; an administrator approves new accounts, and you can sign in once yours is approved.</p>",
        ),
        Ok(_) => signin_page(web, visit, 403, "Your account is blocked; ask an administrator."),
        Err(e) => server_error(&e),
    };
    r.headers.push(("Set-Cookie", state_cookie(web, "", 0)));
    r
}
