//! `ip-filter`: allows or forbids callers by address and address range (IPv4-mapped
//! IPv6 addresses compare as IPv4).
//! Must not touch: anything but the caller's address.

use std::net::IpAddr;

use roxmltree::Node;

use super::{policy, Compiled, Kind, INBOUND};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{
    element_text, elements, no_attributes, only_children, required, setting, setting_of, Cx, R,
};
use crate::policy::{Setting, Step};

pub const KIND: Kind = Kind {
    element: "ip-filter",
    sections: INBOUND,
    children: true,
    compile,
};

#[derive(Debug, Clone)]
pub struct IpFilter {
    pub allow: Setting<bool>,
    pub addresses: Vec<Setting<IpAddr>>,
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

fn action(v: &str) -> Option<bool> {
    match v {
        "allow" => Some(true),
        "forbid" => Some(false),
        _ => None,
    }
}

fn address(v: &str) -> Option<IpAddr> {
    v.parse().ok()
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["action"])?;
    only_children(cx, n, &["address", "address-range"])?;
    let allow = setting(cx, n, "action", None, action, "allow or forbid")?;
    let mut addresses = Vec::new();
    let mut ranges = Vec::new();
    for el in elements(n) {
        let ip = |s: &str| -> R<IpAddr> {
            s.trim()
                .parse()
                .map_err(|_| cx.err(el, format!("'{s}' is not an IP address")))
        };
        if el.has_tag_name("address") {
            no_attributes(cx, el, &[])?;
            let raw = element_text(el);
            addresses.push(setting_of(
                cx,
                el,
                "its content",
                raw,
                address,
                "an IP address",
            )?);
        } else {
            no_attributes(cx, el, &["from", "to"])?;
            let from = ip(required(cx, el, "from")?)?;
            let to = ip(required(cx, el, "to")?)?;
            if from.is_ipv4() != to.is_ipv4() || from > to {
                return Err(cx.err(
                    el,
                    "<address-range>: 'from' must not exceed 'to' (same family)",
                ));
            }
            ranges.push((from, to));
        }
    }
    policy(IpFilter {
        allow,
        addresses,
        ranges,
    })
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Behaviour for IpFilter {
    fn name(&self) -> &'static str {
        "ip-filter"
    }
    fn facts(&self) -> Facts {
        let addresses = self.addresses.iter().filter_map(Setting::text);
        Facts::reading(self.allow.text().into_iter().chain(addresses))
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let allow = or_fail!(call, step, call.setting(&self.allow));
        let ip: Option<IpAddr> = call.host.request().ip.parse().ok().map(canonical);
        let mut listed = false;
        if let Some(ip) = ip {
            // each address in turn (no list built per request)
            for a in &self.addresses {
                if canonical(or_fail!(call, step, call.setting(a))) == ip {
                    listed = true;
                    break;
                }
            }
            listed = listed
                || self
                    .ranges
                    .iter()
                    .any(|(f, t)| (canonical(*f)..=canonical(*t)).contains(&ip));
        }
        let req = call.host.request();
        if listed != allow {
            let msg = format!(
                "Caller IP address {} is not allowed. Access denied.",
                req.ip
            );
            call.st.answer(403, "Forbidden");
            return call.st.fail(step, "ip-filter", "CallerIpNotAllowed", &msg);
        }
        Flow::Continue
    }
}
