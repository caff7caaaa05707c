//! Running a plan's steps for one call. Pure: the request and response come in as views
//! (borrowed heads), the counters and the clock as `Io`; the result is a `Flow` and the
//! changes gathered in `State` (header edits, new method/path/query/backend, bodies,
//! variables), which the connection applies as it writes heads. This is the config's
//! side of `crate::policy::call::Host`: who is calling what, the expression
//! environment (`View`), mock examples and computed backend URLs. No XML, no parsing of
//! expression text, no I/O.
//! Must not touch: sockets, buffers, the loop's scheduling.

use crate::policy::schema::{Contract, SchemaSet};
use std::borrow::Cow;
use std::net::SocketAddr;

use crate::config::{Api, Group, Operation, Product, Runtime, Subscription, User};
use crate::policy::call::{fail_outside, Call, Host};
use crate::policy::expr::certs::Cert;
use crate::policy::expr::{Budget, Env, EvalError, Field, Lookup, Val};
use crate::policy::limits::Counters;
use crate::policy::request::{decode, join_query, opt, query_value};
use crate::policy::{self, Named, Step};

pub use crate::policy::call::{ClientTls, Flow, LastError, Phase, State, Target};
pub use crate::policy::request::{HeaderSrc, OwnedRequest, RequestView, ResponseView};

/// Who is calling what.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub api: &'a Api,
    pub op: &'a Operation,
    pub product: Option<&'a Product>,
    pub subscription: Option<&'a Subscription>,
    /// The subscription's owner, if it has one.
    pub user: Option<&'a User>,
    /// Every group of the config (users and products name them by index).
    pub groups: &'a [Group],
    /// The key the caller presented (for `context.Subscription.Key`).
    pub key: &'a str,
    pub gateway_id: &'a str,
    /// The CA certificates client certificates are judged by.
    pub client_trust: Option<&'a crate::config::tls::ClientTrust>,
}

impl Who<'_> {
    /// The API as a limit's `<api name="…">` matches it.
    pub fn api_named(&self) -> policy::Named<'_> {
        policy::Named {
            id: &self.api.id,
            name: &self.api.name,
        }
    }
    /// The operation as a limit's `<operation name="…">` matches it.
    pub fn op_named(&self) -> policy::Named<'_> {
        policy::Named {
            id: &self.op.id,
            name: self.op.name(),
        }
    }
}

/// What steps may use besides the call's own state.
pub struct Io<'a> {
    pub counters: &'a mut Counters,
    pub now_ms: u64,
    pub runtime: &'a Runtime,
    /// `context.Deployment.GatewayId`.
    pub gateway_id: &'a str,
}

/// The environment expressions read: request, response, identities, variables.
struct View<'v> {
    req: &'v RequestView<'v>,
    resp: Option<&'v ResponseView<'v>>,
    who: &'v Who<'v>,
    st: &'v State,
}

/// A string as an owned value, or null.
fn owned(s: Option<&str>) -> Val<'static> {
    s.map_or(Val::Null, |s| Val::Str(Cow::Owned(s.to_string())))
}

/// `context.User.Identities`: records of Provider and Id.
fn identities(u: &User) -> Val<'static> {
    Val::list_from(
        u.identities
            .iter()
            .map(|(provider, id)| {
                Val::record(vec![
                    ("Provider", owned(Some(provider))),
                    ("Id", owned(Some(id))),
                ])
            })
            .collect(),
    )
}

impl View<'_> {
    /// Groups by index as IGroup records (Id, Name, Description).
    fn group_list(&self, indexes: Option<&[u32]>) -> Val<'static> {
        let groups = indexes
            .unwrap_or_default()
            .iter()
            .filter_map(|i| self.who.groups.get(*i as usize))
            .map(|g| {
                Val::record(vec![
                    ("Id", owned(Some(&g.id))),
                    ("Name", owned(Some(&g.name))),
                    ("Description", owned(Some(&g.description))),
                ])
            })
            .collect();
        Val::list_from(groups)
    }

    /// The fields of the call's account: its user, product groups, subscription keys.
    fn account_field(&self, f: Field) -> Val<'_> {
        let user = self.who.user;
        let subscription = self.who.subscription;
        match f {
            Field::ProductGroups => self.group_list(self.who.product.map(|p| p.groups.as_slice())),
            Field::UserGroups => self.group_list(user.map(|u| u.groups.as_slice())),
            Field::UserObject => user.map_or(Val::Null, |u| self.user_record(u)),
            Field::UserId => opt(user.map(|u| u.id.as_str())),
            Field::UserEmail => opt(user.and_then(|u| u.email.as_deref())),
            Field::UserFirstName => opt(user.and_then(|u| u.first_name.as_deref())),
            Field::UserLastName => opt(user.and_then(|u| u.last_name.as_deref())),
            Field::UserNote => opt(user.and_then(|u| u.note.as_deref())),
            Field::UserRegistrationDate => match user.and_then(|u| u.registered) {
                Some(secs) => Val::utc_ms(secs.saturating_mul(1000)),
                None => Val::Null,
            },
            Field::UserIdentities => user.map_or(Val::list_from(Vec::new()), identities),
            Field::SubscriptionPrimaryKey => {
                opt(subscription.and_then(|s| s.primary_key.as_deref()))
            }
            Field::SubscriptionSecondaryKey => {
                opt(subscription.and_then(|s| s.secondary_key.as_deref()))
            }
            _ => Val::Null,
        }
    }

    /// `context.Response` as a value: null before the backend answered.
    /// `context.Request.Body` as a value: null unless the request has a body (its
    /// framing says so, or a policy set one).
    fn request_body_object(&self) -> Val<'static> {
        let r = self.req;
        let has = self.st.req.body.as_ref().is_some_and(|b| !b.is_empty())
            || r.headers.get("transfer-encoding").is_some()
            || r.headers
                .get("content-length")
                .is_some_and(|l| l.trim() != "0");
        match has {
            true => Val::Str(Cow::Borrowed("IMessageBody")),
            false => Val::Null,
        }
    }

    fn response_object(&self) -> Val<'static> {
        let (resp, status) = (self.resp, self.st.resp.status);
        if resp.is_none() && status.is_none() {
            return Val::Null;
        }
        let code = status.or(resp.map(|r| r.status)).unwrap_or(200);
        let reason = self.st.resp.reason.as_deref().or(resp.map(|r| r.reason));
        Val::record(vec![
            ("StatusCode", Val::Int(i64::from(code))),
            ("StatusReason", owned(reason)),
        ])
    }

    /// `context.User` as an IUser record.
    fn user_record(&self, u: &User) -> Val<'static> {
        Val::record(vec![
            ("Id", owned(Some(&u.id))),
            ("Email", owned(u.email.as_deref())),
            ("FirstName", owned(u.first_name.as_deref())),
            ("LastName", owned(u.last_name.as_deref())),
            ("Note", owned(u.note.as_deref())),
            (
                "RegistrationDate",
                u.registered
                    .map_or(Val::Null, |s| Val::utc_ms(s.saturating_mul(1000))),
            ),
            ("Groups", self.group_list(Some(&u.groups))),
            ("Identities", identities(u)),
        ])
    }
}

impl Env for View<'_> {
    fn field(&self, f: Field) -> Val<'_> {
        let s = |v: &str| Val::Str(Cow::Owned(v.to_string()));
        let r = self.req;
        let le = self.st.last_error.as_ref();
        let err = |pick: fn(&LastError) -> &String| match le {
            Some(e) => Val::Str(Cow::Borrowed(pick(e).as_str())),
            None => Val::Null,
        };
        match f {
            Field::RequestMethod => Val::Str(Cow::Borrowed(
                self.st.req.method.as_deref().unwrap_or(r.method),
            )),
            Field::RequestIp => Val::Str(Cow::Borrowed(r.ip)),
            Field::RequestCertificate => match r.certificate {
                Some(p) => Val::Cert(std::rc::Rc::new(Cert {
                    presented: std::sync::Arc::clone(p),
                    verified: crate::config::tls::judge(self.who.client_trust, p),
                })),
                None => Val::Null,
            },
            Field::RequestPath => Val::Str(Cow::Borrowed(r.path)),
            Field::RequestHost => Val::Str(Cow::Borrowed(crate::http::request::host_without_port(
                r.host,
            ))),
            Field::RequestScheme => Val::Str(Cow::Borrowed(if r.https { "https" } else { "http" })),
            Field::RequestPort => Val::Int(
                r.host
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .unwrap_or(if r.https { 443 } else { 80 }),
            ),
            Field::RequestQueryString => match &self.st.req.query {
                Some(q) => Val::Str(Cow::Owned(join_query(q))),
                None => Val::Str(Cow::Borrowed(r.query.unwrap_or(""))),
            },
            Field::OriginalQueryString => Val::Str(Cow::Borrowed(r.query.unwrap_or(""))),
            Field::RequestUrl | Field::OriginalUrl => {
                let query = match (&self.st.req.query, f) {
                    (Some(q), Field::RequestUrl) => Cow::Owned(join_query(q)),
                    _ => Cow::Borrowed(r.query.unwrap_or("")),
                };
                let scheme = if r.https { "https" } else { "http" };
                let mut url = format!("{scheme}://{}{}", r.host, r.path);
                if !query.is_empty() {
                    url.push('?');
                    url.push_str(&query);
                }
                Val::Str(Cow::Owned(url))
            }
            Field::ResponseObject => self.response_object(),
            Field::RequestBodyObject => self.request_body_object(),
            Field::ResponseStatus => Val::Int(i64::from(
                self.st
                    .resp
                    .status
                    .or(self.resp.map(|x| x.status))
                    .unwrap_or(200),
            )),
            Field::ResponseReason => match (&self.st.resp.reason, self.resp) {
                (Some(r), _) => Val::Str(Cow::Borrowed(r)),
                (None, Some(x)) => Val::Str(Cow::Borrowed(x.reason)),
                _ => Val::Str(Cow::Borrowed("OK")),
            },
            Field::SubscriptionId | Field::SubscriptionObject => {
                opt(self.who.subscription.map(|s| s.id.as_str()))
            }
            Field::SubscriptionKey => match self.who.subscription {
                Some(_) => Val::Str(Cow::Borrowed(self.who.key)),
                None => Val::Null,
            },
            Field::SubscriptionName => opt(self.who.subscription.map(|s| s.name.as_str())),
            Field::ApiId => Val::Str(Cow::Borrowed(&self.who.api.id)),
            Field::ApiName => Val::Str(Cow::Borrowed(&self.who.api.name)),
            Field::ApiPath => s(&format!("/{}", self.who.api.path)),
            Field::OperationId => Val::Str(Cow::Borrowed(&self.who.op.id)),
            Field::OperationName => Val::Str(Cow::Borrowed(self.who.op.name())),
            Field::ApiServiceUrl => {
                let b = &self.who.api.backend;
                let scheme = if b.tls.is_some() { "https" } else { "http" };
                Val::uri(format!("{scheme}://{}{}", b.authority, b.base_path))
            }
            Field::ApiProtocols => {
                let mut p = Vec::new();
                if self.who.api.http {
                    p.push("http");
                }
                if self.who.api.https {
                    p.push("https");
                }
                Val::list_of(p)
            }
            Field::ApiKeyHeaderName => Val::Str(Cow::Borrowed(&self.who.api.key_header)),
            Field::ApiKeyQueryName => Val::Str(Cow::Borrowed(&self.who.api.key_query)),
            Field::ApiVersion | Field::ProductSubscriptionLimit | Field::SubscriptionDate => {
                Val::Null
            }
            Field::ApiRevision => Val::Str(Cow::Borrowed("1")),
            Field::ApiIsCurrentRevision => Val::Bool(true),
            Field::ProductState => match self.who.product {
                Some(p) => Val::Str(Cow::Borrowed(if p.published {
                    "published"
                } else {
                    "notPublished"
                })),
                None => Val::Null,
            },
            Field::ProductSubscriptionRequired => match self.who.product {
                Some(p) => Val::Bool(p.subscription_required),
                None => Val::Null,
            },
            Field::ProductApprovalRequired => match self.who.product {
                Some(_) => Val::Bool(false),
                None => Val::Null,
            },
            Field::ProductGroups
            | Field::UserGroups
            | Field::UserObject
            | Field::UserId
            | Field::UserEmail
            | Field::UserFirstName
            | Field::UserLastName
            | Field::UserNote
            | Field::UserRegistrationDate
            | Field::UserIdentities
            | Field::SubscriptionPrimaryKey
            | Field::SubscriptionSecondaryKey => self.account_field(f),
            Field::DeploymentRegion => Val::Str(Cow::Borrowed("")),
            Field::DeploymentServiceName | Field::DeploymentServiceId => {
                Val::Str(Cow::Borrowed(self.who.gateway_id))
            }
            Field::Tracing => Val::Bool(false),
            Field::OperationMethod => Val::Str(Cow::Borrowed(&self.who.op.method)),
            Field::OperationTemplate => Val::Str(Cow::Borrowed(self.who.op.template.text())),
            Field::ProductId | Field::ProductObject => opt(self.who.product.map(|p| p.id.as_str())),
            Field::ProductName => opt(self.who.product.map(|p| p.name.as_str())),
            Field::RequestId => Val::Str(Cow::Borrowed(&self.st.request_id)),
            Field::Timestamp => Val::utc_ms(self.st.started_ms),
            Field::Elapsed => {
                Val::span_ms(self.st.now_ms.saturating_sub(self.st.started_ms) as i64)
            }
            Field::GatewayId => Val::Str(Cow::Borrowed(self.who.gateway_id)),
            Field::LastErrorSource => err(|e| &e.source),
            Field::LastErrorReason => err(|e| &e.reason),
            Field::LastErrorMessage => err(|e| &e.message),
            Field::LastErrorScope => err(|e| &e.scope),
            Field::LastErrorSection => err(|e| &e.section),
            Field::LastErrorPolicyId => err(|e| &e.policy_id),
            Field::LastErrorPath => err(|e| &e.path),
        }
    }

    fn lookup(&self, l: Lookup, name: &str) -> Option<Val<'_>> {
        match l {
            Lookup::RequestHeader => match self.st.req.headers.get(name) {
                Some(Some(values)) => Some(Val::Str(Cow::Owned(values.join(", ")))),
                Some(None) => None,
                None => self.req.headers.get(name).map(Val::Str),
            },
            Lookup::RequestQuery => match &self.st.req.query {
                Some(q) => q
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Val::Str(Cow::Borrowed(v.as_str()))),
                None => query_value(self.req.query, name).map(|v| Val::Str(decode(v))),
            },
            Lookup::OriginalQuery => query_value(self.req.query, name).map(|v| Val::Str(decode(v))),
            Lookup::MatchedParameter => {
                let t = self
                    .who
                    .op
                    .template
                    .param(self.req.rest, self.req.query, name)?;
                Some(Val::Str(decode(t)))
            }
            Lookup::ResponseHeader => match self.st.resp.headers.get(name) {
                Some(Some(values)) => Some(Val::Str(Cow::Owned(values.join(", ")))),
                Some(None) => None,
                None => self.resp?.headers.get(name).map(Val::Str),
            },
            Lookup::Variable => self
                .st
                .vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.borrowed()),
        }
    }

    fn entries(&self, l: Lookup) -> Vec<(String, Val<'_>)> {
        let text = |(k, v): (String, String)| (k, Val::Str(Cow::Owned(v)));
        match l {
            Lookup::RequestHeader => header_entries(self.req.headers, &self.st.req.headers)
                .into_iter()
                .map(text)
                .collect(),
            Lookup::ResponseHeader => match self.resp {
                Some(r) => header_entries(r.headers, &self.st.resp.headers),
                None => header_entries(HeaderSrc::Empty, &self.st.resp.headers),
            }
            .into_iter()
            .map(text)
            .collect(),
            Lookup::RequestQuery => match &self.st.req.query {
                Some(q) => q.clone(),
                None => crate::policy::request::parse_query(self.req.query),
            }
            .into_iter()
            .map(text)
            .collect(),
            Lookup::OriginalQuery => crate::policy::request::parse_query(self.req.query)
                .into_iter()
                .map(text)
                .collect(),
            Lookup::MatchedParameter => self
                .who
                .op
                .template
                .params(self.req.rest, self.req.query)
                .into_iter()
                .map(|(k, v)| (k.to_string(), Val::Str(decode(v))))
                .collect(),
            Lookup::Variable => self
                .st
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), v.borrowed()))
                .collect(),
        }
    }

    fn body(&self, response: bool) -> Option<&[u8]> {
        if self.st.body_consumed[usize::from(response)].get() {
            return Some(&[]);
        }
        if response {
            self.st.resp.body.as_deref()
        } else {
            self.st.req.body.as_deref()
        }
    }

    fn consume_body(&self, response: bool) {
        self.st.body_consumed[usize::from(response)].set(true);
    }

    fn trace(&self, message: &str) {
        // as a verbose trace: kept only at log level debug
        if log::max_level() >= log::LevelFilter::Debug {
            let mut pending = self.st.expr_traces.borrow_mut();
            if pending.len() + self.st.traces.len() < crate::policy::kinds::trace::MAX_TRACES {
                pending.push(message.to_string());
            }
        }
    }

    fn budget(&self) -> Option<&Budget> {
        Some(&self.st.budget)
    }

    fn now_ms(&self) -> u64 {
        self.st.now_ms
    }
}

/// Headers as a dictionary: the message's, repeated names joined by ", " (as APIM's
/// dictionary shows them), with the policies' edits applied.
fn header_entries(
    base: HeaderSrc,
    edits: &crate::http::forward::HeaderEdits,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in base.to_owned_list() {
        match out.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&k)) {
            Some((_, joined)) => {
                joined.push_str(", ");
                joined.push_str(&v);
            }
            None => out.push((k, v)),
        }
    }
    for (name, values) in &edits.list {
        out.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(values) = values {
            out.push((name.clone(), values.join(", ")));
        }
    }
    out
}

/// What the config answers for a running policy: the call's request and response,
/// who is calling what, and the runtime's backends.
struct Scene<'v> {
    req: &'v RequestView<'v>,
    resp: Option<&'v ResponseView<'v>>,
    who: &'v Who<'v>,
    runtime: &'v Runtime,
}

impl Host for Scene<'_> {
    fn request(&self) -> &RequestView<'_> {
        self.req
    }
    fn response(&self) -> Option<&ResponseView<'_>> {
        self.resp
    }
    fn with_env(&self, st: &State, f: &mut dyn FnMut(&dyn Env)) {
        f(&view(self.req, self.resp, self.who, st))
    }
    fn subscription_id(&self) -> Option<&str> {
        self.who.subscription.map(|s| s.id.as_str())
    }
    fn api(&self) -> Named<'_> {
        self.who.api_named()
    }
    fn operation(&self) -> Named<'_> {
        self.who.op_named()
    }
    fn template_param(&self, name: &str) -> Option<&str> {
        self.who
            .op
            .template
            .param(self.req.rest, self.req.query, name)
    }
    fn template_query_key(&self, key: &str) -> bool {
        self.who.op.template.query().any(|(k, _)| k == key)
    }
    fn mock_example<'h>(
        &'h self,
        status: Option<u16>,
        content_type: Option<&'h str>,
    ) -> (u16, Option<&'h str>, &'h str) {
        mock(self.who.op, status, content_type)
    }
    fn contract(&self) -> (&Contract, &SchemaSet) {
        (&self.who.op.contract, &self.who.api.schemas)
    }
    fn target_of(&self, url: &str) -> Option<Target> {
        target_of(url, self.runtime)
    }
    fn backend_named(&self, id: &str) -> Option<Target> {
        self.runtime
            .backend_ids
            .get(id)
            .map(|i| Target::Backend(*i))
    }
    fn developer(&self) -> Option<&str> {
        match (self.who.user, self.who.subscription) {
            (Some(u), _) => Some(&u.id),
            (None, Some(s)) => Some(&s.id),
            (None, None) => None,
        }
    }
    fn developer_groups(&self) -> Vec<&str> {
        let Some(user) = self.who.user else {
            return Vec::new();
        };
        user.groups
            .iter()
            .filter_map(|i| self.who.groups.get(*i as usize))
            .map(|g| g.id.as_str())
            .collect()
    }
    fn ca_certificates(&self) -> &[(String, crate::x509::Certificate)] {
        self.runtime
            .client_trust
            .as_ref()
            .map_or(&[], |t| t.authorities.as_slice())
    }
    fn certificate_trusted(&self, presented: &crate::x509::Presented) -> bool {
        crate::config::tls::judge(self.runtime.client_trust.as_deref(), presented)
    }
    fn client_identity(
        &self,
        which: crate::policy::kinds::authentication_certificate::Named<'_>,
    ) -> Result<ClientTls, String> {
        crate::config::tls::client_identity(&self.runtime.client_keys, which)
    }
    fn request_url(&self, st: &State) -> String {
        let (authority, base_path, https) = match &st.req.target {
            Some(Target::Backend(i)) => match self.runtime.backends.get(*i as usize) {
                Some(b) => (b.authority.as_str(), b.base_path.as_str(), b.tls.is_some()),
                None => ("", "", false),
            },
            Some(Target::Addr {
                authority,
                base_path,
                tls,
                ..
            }) => (authority.as_str(), base_path.as_str(), tls.is_some()),
            None => {
                let b = &self.who.api.backend;
                (b.authority.as_str(), b.base_path.as_str(), b.tls.is_some())
            }
        };
        let scheme = if https { "https" } else { "http" };
        let rest = st.req.rest.as_deref().unwrap_or(self.req.rest);
        let query = match &st.req.query {
            Some(q) => Some(join_query(q)).filter(|q| !q.is_empty()),
            None => self.req.query.map(str::to_string),
        };
        match query {
            Some(q) => format!("{scheme}://{authority}{base_path}{rest}?{q}"),
            None => format!("{scheme}://{authority}{base_path}{rest}"),
        }
    }
}

/// How often steps that cannot wait go on after asking (a retry's 50 attempts, with a
/// lookup each).
const MAX_ROUNDS: usize = 128;

/// Runs `steps` in order where the call cannot wait (between the attempts of a retry
/// around forward-request, on-error after a refused key): the external cache is
/// unavailable there (a miss, local counting), and a send-request fails the call.
pub fn run(
    steps: &[Step],
    phase: Phase,
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    let mut flow = run_resumable(steps, phase, req, resp, who, st, io);
    // only the external cache was asked: here it is unavailable (a miss, or local
    // counting), and the steps go on where they stopped
    let mut rounds = 0;
    while flow == Flow::Suspend && st.outgoing.is_empty() && rounds < MAX_ROUNDS {
        rounds += 1;
        // retry's wait between attempts does not happen here
        st.sleep_ms = None;
        for ask in std::mem::take(&mut st.external) {
            st.answered(ask.purpose, Err(()));
        }
        flow = run_resumable(steps, phase, req, resp, who, st, io);
    }
    match flow {
        Flow::Suspend => {
            st.external.clear();
            st.sleep_ms = None;
            st.outgoing.clear();
            st.cursor.clear();
            st.answer(500, "Internal server error");
            let section = match phase {
                Phase::Request => "backend",
                Phase::Response => "outbound",
            };
            fail_outside(
                st,
                "send-request",
                "NotSupported",
                "a call cannot wait for send-request here (between the attempts of a retry around forward-request, or in on-error after a refused key)",
                section,
            );
            Flow::Error
        }
        flow => flow,
    }
}

/// Runs `steps` in order (the pipeline's one entry into the policies); `Suspend`: the
/// call waits for `State::outgoing` and resumes with the same steps.
pub fn run_resumable(
    steps: &[Step],
    phase: Phase,
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    st.now_ms = io.now_ms;
    if st.started_ms == 0 {
        st.started_ms = io.now_ms;
    }
    let scene = Scene {
        req,
        resp,
        who,
        runtime: io.runtime,
    };
    let mut call = Call {
        phase,
        host: &scene,
        st,
        counters: io.counters,
        now_ms: io.now_ms,
    };
    call.run(steps)
}

/// The expression environment for a step.
fn view<'v>(
    req: &'v RequestView<'v>,
    resp: Option<&'v ResponseView<'v>>,
    who: &'v Who<'v>,
    st: &'v State,
) -> View<'v> {
    View { req, resp, who, st }
}

/// Applies the increments that rate-limit-by-key / quota-by-key deferred until the
/// response was known. Call once the response status and headers are known.
pub fn settle(
    req: &RequestView,
    resp: Option<&ResponseView>,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) {
    let deferred = std::mem::take(&mut st.deferred);
    let scene = Scene {
        req,
        resp,
        who,
        runtime: io.runtime,
    };
    let mut call = Call {
        phase: Phase::Response,
        host: &scene,
        st,
        counters: io.counters,
        now_ms: io.now_ms,
    };
    for (step, key) in deferred {
        step.policy.settle(key, &mut call);
    }
}

/// The backend section reached forward-request: computes its numbers (timeout, retry)
/// into `State::forward` and takes the limit-concurrency slot around it (held in
/// `State::slots` until the call ends).
pub fn enter_forward(
    fwd: &policy::Forward,
    req: &RequestView,
    who: &Who,
    st: &mut State,
    io: &mut Io,
) -> Flow {
    let scene = Scene {
        req,
        resp: None,
        who,
        runtime: io.runtime,
    };
    let mut call = Call {
        phase: Phase::Request,
        host: &scene,
        st,
        counters: io.counters,
        now_ms: io.now_ms,
    };
    let (terms, slot) = match forward_numbers(fwd, &mut call) {
        Ok(numbers) => numbers,
        Err((source, e)) => {
            call.st.answer(500, "Internal server error");
            let message = format!("Expression evaluation failed. {}", e.0);
            fail_outside(
                call.st,
                source,
                "ExpressionValueEvaluationFailure",
                &message,
                "backend",
            );
            return Flow::Error;
        }
    };
    call.st.forward = Some(terms);
    let Some((c, key, max)) = slot else {
        return Flow::Continue;
    };
    match call.counters.acquire(c.counter, &key, max, call.now_ms) {
        Some(slot) => {
            call.st.slots.push(slot);
            Flow::Continue
        }
        None => {
            call.st
                .answer(429, "Too many concurrent requests. Try again later.");
            fail_outside(
                call.st,
                "limit-concurrency",
                "ConcurrencyLimitExceeded",
                "Too many concurrent requests.",
                "backend",
            );
            Flow::Error
        }
    }
}

type Numbers<'f> = (
    policy::ForwardTerms,
    Option<(&'f policy::Concurrency, String, u32)>,
);

/// Evaluates forward-request's, retry's and limit-concurrency's settings; an error
/// names the policy whose expression failed.
fn forward_numbers<'f>(
    fwd: &'f policy::Forward,
    call: &mut Call,
) -> Result<Numbers<'f>, (&'static str, EvalError)> {
    let at = |source: &'static str| move |e| (source, e);
    let timeout_secs = match &fwd.timeout_secs {
        Some(t) => Some(call.setting(t).map_err(at("forward-request"))?),
        None => None,
    };
    let retry = match &fwd.retry {
        Some(r) => Some(r.terms(call).map_err(at("retry"))?),
        None => None,
    };
    let slot = match &fwd.concurrency {
        Some(c) => {
            let key = call.text(&c.key).map_err(at("limit-concurrency"))?;
            let max = call.setting(&c.max).map_err(at("limit-concurrency"))?;
            Some((c, key, u32::try_from(max).unwrap_or(u32::MAX)))
        }
        None => None,
    };
    Ok((
        policy::ForwardTerms {
            timeout_secs,
            retry,
        },
        slot,
    ))
}

/// Whether `<retry>` sends the request again after an attempt that ended with `resp`
/// (a backend that could not be reached or did not answer is seen as the gateway's
/// 502 / 504 with no headers). A condition that fails to evaluate means no retry.
pub fn retry_wanted(
    condition: &crate::policy::expr::Expr,
    req: &RequestView,
    resp: &ResponseView,
    who: &Who,
    st: &State,
) -> bool {
    condition
        .eval_bool(&view(req, Some(resp), who, st))
        .unwrap_or(false)
}

/// Counts the call against its quotas (at its end, when its size is known).
pub fn finish(st: &mut State, counters: &mut Counters, bytes: u64, now_ms: u64) {
    let now_s = now_ms / 1000;
    for q in st.quotas.drain(..) {
        if counters.external.shares_counts() {
            // counted where every gateway counts
            let start = crate::policy::limits::window_start(q.start, q.period, now_s);
            let ends_ms = (start + q.period)
                .saturating_sub(now_s)
                .saturating_mul(1000);
            counters
                .external
                .send(crate::policy::external::Command::QuotaAdd {
                    key: crate::policy::external::quota_key(&q.label, &q.key, start),
                    bytes,
                    ttl_ms: ends_ms.max(1000),
                });
            continue;
        }
        counters.quota_add(&q.label, &q.key, q.period, q.start, bytes, now_s);
    }
    st.slots.clear();
}

fn target_of(url: &str, rt: &Runtime) -> Option<Target> {
    let b = crate::config::compile::parse_service_url(url).ok()?;
    if let Some(ip) = b.ip_literal() {
        return Some(Target::Addr {
            addr: SocketAddr::new(ip, b.port),
            authority: b.authority,
            base_path: b.base_path,
            tls: b.tls,
        });
    }
    rt.backends
        .iter()
        .position(|k| k.authority == b.authority && k.base_path == b.base_path)
        .map(|i| Target::Backend(i as u32))
}

/// The example for mock-response: the response with `status` (else the first 2xx,
/// else 200) and representation with `content_type` (else the first).
pub fn mock<'o>(
    op: &'o Operation,
    status: Option<u16>,
    content_type: Option<&'o str>,
) -> (u16, Option<&'o str>, &'o str) {
    let r = match status {
        Some(s) => op.responses.iter().find(|r| r.status == s),
        None => op.responses.iter().find(|r| (200..300).contains(&r.status)),
    };
    let code = status.or(r.map(|r| r.status)).unwrap_or(200);
    let Some(r) = r else {
        return (code, content_type, "");
    };
    let rep = match content_type {
        Some(ct) => r.representations.iter().find(|(c, _)| c == ct),
        None => r.representations.first(),
    };
    match rep {
        Some((ct, ex)) => (code, Some(ct.as_str()), ex.as_str()),
        None => (code, content_type, ""),
    }
}
