//! `trace`: a message (with metadata) from the policy into the call's request-log record
//! and the telemetry the plane receives. Severity `verbose` is kept only when the log
//! level is `debug`, as APIM keeps verbose traces only at verbose diagnostics; a call
//! keeps at most `MAX_TRACES` traces of at most `MAX_MESSAGE` bytes each.
//! Must not touch: the request, the response.

use roxmltree::Node;

use super::{policy, Compiled, Kind, ALL};
use crate::policy::call::{or_fail, Behaviour, Call, Facts, Flow};
use crate::policy::parse::{
    attr, element_text, elements, no_attributes, only_children, required, text_value, Cx, R,
};
use crate::policy::{Step, Text};
use crate::telemetry::Trace as Record;

pub const KIND: Kind = Kind {
    element: "trace",
    sections: ALL,
    children: true,
    compile,
};

/// Most traces one call keeps, and most bytes of one message.
pub const MAX_TRACES: usize = 32;
pub const MAX_MESSAGE: usize = 8 * 1024;

#[derive(Debug, Clone)]
pub struct TracePolicy {
    pub source: String,
    pub severity: &'static str,
    pub message: Text,
    pub metadata: Vec<(Text, Text)>,
}

fn compile(cx: &mut Cx, n: Node) -> R<Compiled> {
    no_attributes(cx, n, &["source", "severity"])?;
    only_children(cx, n, &["message", "metadata"])?;
    let severity = match attr(n, "severity").unwrap_or("verbose") {
        "verbose" => "verbose",
        "information" => "information",
        "error" => "error",
        other => {
            return Err(cx.err(
                n,
                format!("<trace>: severity \"{other}\" is not verbose, information or error"),
            ))
        }
    };
    let mut message = None;
    let mut metadata = Vec::new();
    for c in elements(n) {
        if c.tag_name().name() == "message" {
            message = Some(text_value(cx, c, element_text(c))?);
        } else {
            no_attributes(cx, c, &["name", "value"])?;
            metadata.push((
                text_value(cx, c, required(cx, c, "name")?)?,
                text_value(cx, c, required(cx, c, "value")?)?,
            ));
        }
    }
    // the older form has the message as the element's own text
    let own_text = element_text(n).trim();
    let message = match message {
        Some(m) => m,
        None if !own_text.is_empty() => text_value(cx, n, own_text)?,
        None => return Err(cx.err(n, "<trace>: a <message> is required")),
    };
    policy(TracePolicy {
        source: required(cx, n, "source")?.to_string(),
        severity,
        message,
        metadata,
    })
}

impl Behaviour for TracePolicy {
    fn name(&self) -> &'static str {
        "trace"
    }
    fn facts(&self) -> Facts {
        Facts::reading(
            std::iter::once(&self.message).chain(self.metadata.iter().flat_map(|(k, v)| [k, v])),
        )
    }
    fn run(&self, step: &Step, call: &mut Call) -> Flow {
        let wanted = match self.severity {
            "verbose" => log::max_level() >= log::LevelFilter::Debug,
            _ => true,
        };
        if !wanted || call.st.traces.len() >= MAX_TRACES {
            return Flow::Continue;
        }
        let mut message = or_fail!(call, step, call.text(&self.message));
        truncate(&mut message);
        let mut metadata = Vec::with_capacity(self.metadata.len());
        for (k, v) in &self.metadata {
            let (k, mut v) = (
                or_fail!(call, step, call.text(k)),
                or_fail!(call, step, call.text(v)),
            );
            truncate(&mut v);
            metadata.push((k, v));
        }
        call.st.traces.push(Record {
            source: self.source.clone(),
            severity: self.severity,
            message,
            metadata,
        });
        Flow::Continue
    }
}

/// Keeps a verbose trace that `context.Trace(message)` wrote from an expression.
pub(crate) fn keep(st: &mut crate::policy::call::State, source: &str, mut message: String) {
    if st.traces.len() < MAX_TRACES {
        truncate(&mut message);
        st.traces.push(Record {
            source: source.to_string(),
            severity: "verbose",
            message,
            metadata: Vec::new(),
        });
    }
}

/// Cuts `s` to `MAX_MESSAGE` bytes at a character boundary.
fn truncate(s: &mut String) {
    if s.len() > MAX_MESSAGE {
        let mut at = MAX_MESSAGE;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
}
