//! The parser's side of APIM's IResponse: `r.StatusCode`, `r.StatusReason`,
//! `r.Headers` and `r.Body.As<T>(preserveContent)` on a value of type IResponse.
//! Must not touch: the rest of the grammar (parse.rs), evaluation (message.rs).

use super::*;
use crate::policy::expr::message::Part;

impl Parser {
    /// A member of an IResponse value.
    pub(super) fn message_member(
        &mut self,
        v: Node,
        name: &str,
        at: usize,
        safe: bool,
    ) -> Result<Node, ParseError> {
        if let Some(part) = Part::named(name) {
            return Ok(Node::Message(Box::new(v), part, safe));
        }
        if name != "Body" {
            return Err(self.err_at(
                at,
                format!("'{name}' is not a member of IResponse (StatusCode, StatusReason, Headers and Body are)"),
            ));
        }
        if !self.eat(".") {
            return Err(self.err_at(
                at,
                "an IResponse's Body is read with .As<T>(preserveContent)",
            ));
        }
        let read_at = self.offset();
        let read = self.ident("As after Body.")?;
        let (ty, preserve) = self.body_form(&read, read_at)?;
        Ok(Node::MessageBody {
            target: Box::new(v),
            ty,
            preserve: Box::new(preserve),
            safe,
        })
    }
}
