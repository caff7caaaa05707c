//! What a finished exchange leaves behind: its quota and concurrency accounting, its
//! request-log record and its metrics; request ids and reason names as the log spells them.
//! Must not touch: sockets, the backend pool, config loading.

use super::*;

/// Counts the finished call against its quotas and frees its concurrency slots.
pub(super) fn end_call(x: &mut Exchange, ctx: &mut Ctx) {
    if let Some(c) = x.call.as_mut() {
        c.finish(x.bytes_in + x.bytes_out, &mut ctx.pipeline_io(&x.rt));
    }
}

pub(super) fn log_exchange(x: &Exchange, peer: SocketAddr, ctx: &mut Ctx, error: Option<&str>) {
    let api = x.rt.apis.get(x.api as usize);
    let api_id = api.map_or("", |a| a.id.as_str());
    let operation = api
        .and_then(|a| a.operations.get(x.op as usize))
        .map_or("", |o| o.id.as_str());
    let total_ms = ms(ctx.now.duration_since(x.started));
    let backend_ms = x.backend_started.map(|s| ms(ctx.now.duration_since(s)));
    if let Some(m) = ctx.metrics.as_deref_mut() {
        // waiting on the client: its request body, then the response after the
        // backend's last byte
        let upload = x
            .request_read
            .map_or(total_ms, |t| ms(t.duration_since(x.started)));
        let download = match x.backend_started {
            Some(_) => ms(ctx.now.duration_since(x.last_backend)),
            None => 0.0,
        };
        let timings = crate::metrics::Timings {
            total: total_ms,
            backend: backend_ms,
            client: (upload + download).min(total_ms),
            gateway: (total_ms - backend_ms.unwrap_or(0.0) - upload).max(0.0),
        };
        let subscription = x
            .subscription
            .and_then(|s| x.rt.subscriptions.get(s as usize));
        let product = subscription.and_then(|s| match s.scope {
            crate::config::SubscriptionScope::Product(p) => x.rt.products.get(p as usize),
            _ => None,
        });
        let call = crate::metrics::Call {
            api: api_id,
            operation,
            product: product.map_or("", |p| p.id.as_str()),
            subscription: subscription.map_or("", |s| s.id.as_str()),
            status: x.status,
            reason: error,
        };
        m.observe(&call, timings);
        if let Some(c) = x.call.as_ref() {
            for metric in &c.st.metrics {
                m.custom(metric);
            }
        }
    }
    let Some(t) = x.trace.as_ref() else { return };
    ctx.log.push(&Record {
        time: t.wall,
        request_id: &t.id,
        client_ip: peer.ip(),
        method: &t.method,
        url: &t.url,
        api: api_id,
        operation,
        subscription: x
            .subscription
            .and_then(|s| x.rt.subscriptions.get(s as usize))
            .map_or("", |s| s.id.as_str()),
        status: x.status,
        backend_status: x.backend_status,
        bytes_in: x.client_head + x.bytes_in,
        bytes_out: x.response_head_out + x.bytes_out,
        total_ms,
        backend_ms,
        error,
        probe: false,
        traces: x.call.as_ref().map_or(&[], |c| c.st.traces.as_slice()),
    });
}

/// APIM's error reasons (`RateLimitExceeded`) as the log names its own
/// (`rate_limit_exceeded`).
pub(super) fn snake_case(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len() + 4);
    for (i, c) in reason.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `{prefix:08x}-{seq:016x}`, written digit by digit (the formatting machinery costs
/// more than the rest of a plain request's bookkeeping).
pub(super) fn request_id(prefix: u32, seq: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(25);
    for shift in (0..8).rev() {
        out.push(char::from(HEX[(prefix >> (4 * shift)) as usize & 15]));
    }
    out.push('-');
    for shift in (0..16).rev() {
        out.push(char::from(HEX[(seq >> (4 * shift)) as usize & 15]));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_the_prefix_and_sequence_in_fixed_width_hex() {
        assert_eq!(
            super::request_id(0xdead_beef, 0x1a),
            "deadbeef-000000000000001a"
        );
        assert_eq!(super::request_id(0, 0), "00000000-0000000000000000");
        assert_eq!(
            super::request_id(u32::MAX, u64::MAX),
            format!("{:08x}-{:016x}", u32::MAX, u64::MAX)
        );
    }
}
