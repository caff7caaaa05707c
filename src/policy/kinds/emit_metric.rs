//! `emit-metric`: a custom metric value (default 1) under a namespace and a name, with
//! one to five dimensions, counted into the gateway's Prometheus exposition as a sum and
//! a count per series (`edgegate_custom_metric_sum` / `_count`; at most 1,000 series).
//! A dimension without a value must be one of APIM's defaults (API ID, Operation ID,
//! Product ID, User ID, Subscription ID, Location, Gateway ID), filled from the call.
//! Must not touch: the request, the response.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::expr::{err, Expr};
use crate::policy::parse::{
    attr, elements, no_attributes, only_children, required, text_value, Cx, R,
};
use crate::policy::{Step, Text};
use crate::telemetry::CustomMetric;

pub const KIND: Kind = Kind {
    element: "emit-metric",
    sections: ALL,
    children: true,
    compile,
};

/// Most custom metric values one call may emit.
pub const MAX_PER_CALL: usize = 32;

#[derive(Debug, Clone)]
pub struct EmitMetric {
    pub name: String,
    pub namespace: String,
    pub value: Option<Text>,
    pub dimensions: Vec<(String, Text)>,
}

/// APIM's default dimensions and the expression that fills each.
const DEFAULTS: &[(&str, &str)] = &[
    ("API ID", "context.Api.Id"),
    ("Operation ID", "context.Operation.Id"),
    ("Product ID", "context.Product.Id"),
    ("User ID", "context.User.Id"),
    ("Subscription ID", "context.Subscription.Id"),
    ("Location", "context.Deployment.Region"),
    ("Gateway ID", "context.Deployment.GatewayId"),
];

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["name", "value", "namespace"])?;
    only_children(cx, n, &["dimension"])?;
    let mut dimensions = Vec::new();
    for d in elements(n) {
        no_attributes(cx, d, &["name", "value"])?;
        let name = required(cx, d, "name")?.to_string();
        let value = match attr(d, "value") {
            Some(v) => text_value(cx, d, v)?,
            None => match DEFAULTS.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)) {
                Some((_, e)) => Text::Expr(Expr::parse(e, false).map_err(|e| cx.err(d, e.to_string()))?),
                None => {
                    return Err(cx.err(
                        d,
                        format!("<dimension>: '{name}' needs a value (only APIM's default dimensions fill themselves)"),
                    ))
                }
            },
        };
        dimensions.push((name, value));
    }
    if dimensions.is_empty() || dimensions.len() > 5 {
        return Err(cx.err(n, "<emit-metric>: one to five <dimension> elements"));
    }
    policy(EmitMetric {
        name: required(cx, n, "name")?.to_string(),
        namespace: attr(n, "namespace").unwrap_or("API Management").to_string(),
        value: attr(n, "value").map(|v| text_value(cx, n, v)).transpose()?,
        dimensions,
    })
}

impl Behaviour for EmitMetric {
    fn name(&self) -> &'static str {
        "emit-metric"
    }
    fn facts(&self) -> Facts {
        Facts::reading(
            self.value
                .iter()
                .chain(self.dimensions.iter().map(|(_, v)| v)),
        )
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        if call.st.metrics.len() >= MAX_PER_CALL {
            return Flow::Continue;
        }
        let value = match &self.value {
            None => 1.0,
            Some(t) => {
                let text = or_fail!(call, step, call.text(t));
                let parsed = text.trim().parse::<f64>().ok().filter(|v| v.is_finite());
                or_fail!(
                    call,
                    step,
                    parsed.ok_or(err("an emit-metric value is not a number"))
                )
            }
        };
        let mut dimensions = Vec::with_capacity(self.dimensions.len());
        for (k, v) in &self.dimensions {
            let v = or_fail!(call, step, call.text(v));
            dimensions.push((k.clone(), v));
        }
        call.st.metrics.push(CustomMetric {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            value,
            dimensions,
        });
        Flow::Continue
    }
}
