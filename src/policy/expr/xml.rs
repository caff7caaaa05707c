//! System.Xml.Linq in expressions: XDocument, XElement, XAttribute, XName and XNamespace
//! as APIM's expressions use them on SOAP and XML bodies — parse (`XDocument.Parse`,
//! `Body.As<XDocument>()`), navigate (`Root`, `Element`, `Elements`, `Descendants`,
//! `Attribute`, `Value`, `Name.LocalName`), build and edit (`new XElement(ns + "x",
//! content…)`, `Add`, `SetValue`, `SetAttributeValue`, `SetElementValue`, `Remove`,
//! `ReplaceWith`) and print (`ToString()` indented by two spaces as .NET does, or
//! `SaveOptions.DisableFormatting`). Elements are shared handles with a parent link, as
//! in .NET; namespace declarations are attributes (`xmlns`, `{http://www.w3.org/2000/
//! xmlns/}p`), and printing finds each name's prefix from the declarations in scope,
//! declaring what it must. Parsing refuses DTDs (no entity expansion) and nesting past
//! `MAX_DEPTH`; every node built is charged to the request's memory budget and every
//! node a walk visits to its step budget. Comments and processing instructions are not
//! kept.
//! Must not touch: syntax, the request.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use super::eval::Machine;
use super::members::M;
use super::value::{list, Flag, Val};
use super::{err, EvalError, Node};
use crate::policy::xmljson::escape;

/// Elements nest at most this deep (parsed or printed).
pub(super) const MAX_DEPTH: usize = 128;
const XMLNS: &str = "http://www.w3.org/2000/xmlns/";
/// What a node costs the memory budget besides its text.
const NODE_BYTES: usize = 64;

pub type El = Rc<RefCell<XElem>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XName {
    pub ns: Rc<str>,
    pub local: Rc<str>,
}

impl XName {
    /// `"{ns}local"` or `"local"`, as .NET converts a string to an XName.
    pub(super) fn parse(s: &str) -> Result<XName, EvalError> {
        let (ns, local) = match s.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((ns, local)) => (ns, local),
            None => ("", s),
        };
        if local.is_empty() || local.contains([':', '<', '>', ' ', '"', '\'']) {
            return Err(EvalError(Cow::Owned(format!(
                "The '{s}' name is not a valid XML name"
            ))));
        }
        Ok(XName {
            ns: Rc::from(ns),
            local: Rc::from(local),
        })
    }
    fn text(&self) -> String {
        match self.ns.is_empty() {
            true => self.local.to_string(),
            false => format!("{{{}}}{}", self.ns, self.local),
        }
    }
    fn is_declaration(&self) -> bool {
        &*self.ns == XMLNS || (self.ns.is_empty() && &*self.local == "xmlns")
    }
}

#[derive(Debug)]
pub struct XAttr {
    pub name: XName,
    pub value: String,
}

#[derive(Debug, Clone)]
pub enum XNode {
    Elem(El),
    Text(String),
}

#[derive(Debug)]
pub struct XElem {
    pub name: XName,
    pub attrs: Vec<Rc<RefCell<XAttr>>>,
    pub nodes: Vec<XNode>,
    pub parent: Weak<RefCell<XElem>>,
}

/// An XML value of an expression.
#[derive(Debug, Clone)]
pub enum Xv {
    /// An XDocument: its root element, if it has one.
    Doc(Rc<RefCell<Option<El>>>),
    /// An element, and the root of its tree, held so that its ancestors live as long
    /// as it does (parents are weak links, as a tree must not own itself).
    Elem(El, Keep),
    Attr {
        attr: Rc<RefCell<XAttr>>,
        owner: Option<El>,
        keep: Keep,
    },
    Name(XName),
    Ns(Rc<str>),
}

impl Xv {
    pub(super) fn same(&self, other: &Xv) -> bool {
        match (self, other) {
            (Xv::Doc(a), Xv::Doc(b)) => Rc::ptr_eq(a, b),
            (Xv::Elem(a, _), Xv::Elem(b, _)) => Rc::ptr_eq(a, b),
            (Xv::Attr { attr: a, .. }, Xv::Attr { attr: b, .. }) => Rc::ptr_eq(a, b),
            (Xv::Name(a), Xv::Name(b)) => a == b,
            (Xv::Ns(a), Xv::Ns(b)) => a == b,
            _ => false,
        }
    }
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Xv::Doc(_) => "XDocument",
            Xv::Elem(..) => "XElement",
            Xv::Attr { .. } => "XAttribute",
            Xv::Name(_) => "XName",
            Xv::Ns(_) => "XNamespace",
        }
    }
    /// `ToString()`: markup for nodes (indented), the name or namespace as text.
    pub(super) fn text(&self) -> String {
        match self {
            Xv::Doc(d) => d
                .borrow()
                .as_ref()
                .map_or(String::new(), |r| print(r, true)),
            Xv::Elem(e, _) => print(e, true),
            Xv::Attr { attr, .. } => {
                let a = attr.borrow();
                let mut out = format!("{}=\"", a.name.local);
                if !a.name.ns.is_empty() && &*a.name.ns != XMLNS {
                    out = format!("{}=\"", a.name.text());
                } else if &*a.name.ns == XMLNS {
                    out = format!("xmlns:{}=\"", a.name.local);
                }
                escape(&mut out, &a.value, true);
                out.push('"');
                out
            }
            Xv::Name(n) => n.text(),
            Xv::Ns(ns) => ns.to_string(),
        }
    }
    /// The text a cast to string gives: an element's or attribute's value.
    pub(super) fn value(&self) -> Option<String> {
        match self {
            Xv::Elem(e, _) => Some(value_of(&e.borrow())),
            Xv::Attr { attr, .. } => Some(attr.borrow().value.clone()),
            Xv::Name(n) => Some(n.text()),
            Xv::Ns(ns) => Some(ns.to_string()),
            Xv::Doc(_) => None,
        }
    }
}

fn xml(x: Xv) -> Val<'static> {
    Val::Xml(x)
}

fn elem_val(e: El) -> Val<'static> {
    let keep = Keep::of(&e);
    xml(Xv::Elem(e, keep))
}

/// The root of an element's tree, when the element has a parent: held, never read.
#[derive(Debug, Clone)]
pub struct Keep(#[allow(dead_code)] Option<El>);

impl Keep {
    fn of(e: &El) -> Keep {
        let mut root = None;
        let mut cur = e.borrow().parent.upgrade();
        while let Some(p) = cur {
            cur = p.borrow().parent.upgrade();
            root = Some(p);
        }
        Keep(root)
    }
}

fn attr_val(attr: &Rc<RefCell<XAttr>>, owner: &El) -> Val<'static> {
    xml(Xv::Attr {
        attr: Rc::clone(attr),
        owner: Some(Rc::clone(owner)),
        keep: Keep::of(owner),
    })
}

/// A name argument: an XName, or a string converted as .NET does.
pub(super) fn name_of(v: &Val) -> Result<XName, EvalError> {
    match v {
        Val::Xml(Xv::Name(n)) => Ok(n.clone()),
        Val::Str(s) => XName::parse(s),
        Val::Null => Err(err("Value cannot be null (an XML name)")),
        other => Err(EvalError(Cow::Owned(format!(
            "a {} is not an XML name",
            other.type_name()
        )))),
    }
}

/// `ns + "local"`.
pub(super) fn join_name(ns: &str, local: &str) -> Result<Val<'static>, EvalError> {
    let n = XName::parse(local)?;
    Ok(xml(Xv::Name(XName {
        ns: Rc::from(ns),
        local: n.local,
    })))
}

fn new_elem(name: XName) -> El {
    Rc::new(RefCell::new(XElem {
        name,
        attrs: Vec::new(),
        nodes: Vec::new(),
        parent: Weak::new(),
    }))
}

/// Parses XML text into an element tree (`XDocument.Parse`, `XElement.Parse`,
/// `Body.As<XDocument>()`).
pub(super) fn parse(m: &mut Machine, text: &str) -> Result<El, EvalError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    m.charge(text.len() * 2)?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| EvalError(Cow::Owned(format!("The XML is not well-formed: {e}"))))?;
    build(m, &doc, doc.root_element(), 1)
}

fn build(
    m: &mut Machine,
    doc: &roxmltree::Document,
    n: roxmltree::Node,
    depth: usize,
) -> Result<El, EvalError> {
    if depth > MAX_DEPTH {
        return Err(EvalError(Cow::Owned(format!(
            "The XML nests deeper than {MAX_DEPTH} elements"
        ))));
    }
    m.tick()?;
    m.charge(NODE_BYTES)?;
    let tag = n.tag_name();
    let el = new_elem(XName {
        ns: Rc::from(tag.namespace().unwrap_or("")),
        local: Rc::from(tag.name()),
    });
    // declarations and attributes in document order
    let text = doc.input_text();
    let mut attrs: Vec<(usize, XAttr)> = n
        .attributes()
        .map(|a| {
            let name = XName {
                ns: Rc::from(a.namespace().unwrap_or("")),
                local: Rc::from(a.name()),
            };
            (
                a.range_qname().start,
                XAttr {
                    name,
                    value: a.value().to_string(),
                },
            )
        })
        .collect();
    for (at, qname) in crate::policy::xmljson::declarations(text, n.range().start) {
        let prefix = qname.strip_prefix("xmlns:");
        let name = match prefix {
            Some(p) => XName {
                ns: Rc::from(XMLNS),
                local: Rc::from(p),
            },
            None => XName {
                ns: Rc::from(""),
                local: Rc::from("xmlns"),
            },
        };
        let value = n.lookup_namespace_uri(prefix).unwrap_or("").to_string();
        attrs.push((at, XAttr { name, value }));
    }
    attrs.sort_by_key(|(at, _)| *at);
    let mut nodes = Vec::new();
    for c in n.children() {
        if c.is_element() {
            let child = build(m, doc, c, depth + 1)?;
            child.borrow_mut().parent = Rc::downgrade(&el);
            nodes.push(XNode::Elem(child));
        } else if c.is_text() {
            let t = c.text().unwrap_or("");
            match nodes.last_mut() {
                Some(XNode::Text(prev)) => prev.push_str(t),
                _ => nodes.push(XNode::Text(t.to_string())),
            }
        }
    }
    // insignificant white space goes, as with LoadOptions.None
    let has_elements = nodes.iter().any(|x| matches!(x, XNode::Elem(_)));
    if has_elements {
        nodes.retain(|x| !matches!(x, XNode::Text(t) if t.trim().is_empty()));
    }
    {
        let mut e = el.borrow_mut();
        e.attrs = attrs
            .into_iter()
            .map(|(_, a)| Rc::new(RefCell::new(a)))
            .collect();
        e.nodes = nodes;
    }
    Ok(el)
}

/// The concatenated text of an element and its descendants (`Value`).
fn value_of(e: &XElem) -> String {
    let mut out = String::new();
    fn walk(e: &XElem, out: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        for n in &e.nodes {
            match n {
                XNode::Text(t) => out.push_str(t),
                XNode::Elem(c) => walk(&c.borrow(), out, depth + 1),
            }
        }
    }
    walk(e, &mut out, 0);
    out
}

/// Child elements, optionally of one name.
fn children(e: &El, name: Option<&XName>) -> Vec<El> {
    e.borrow()
        .nodes
        .iter()
        .filter_map(|n| match n {
            XNode::Elem(c) if name.is_none_or(|w| c.borrow().name == *w) => Some(Rc::clone(c)),
            _ => None,
        })
        .collect()
}

/// Descendant elements in document order, optionally of one name (and `e` itself first
/// with `and_self`); every element visited costs a step.
fn descendants(
    m: &mut Machine,
    e: &El,
    name: Option<&XName>,
    and_self: bool,
) -> Result<Vec<El>, EvalError> {
    let mut out = Vec::new();
    if and_self && name.is_none_or(|w| e.borrow().name == *w) {
        out.push(Rc::clone(e));
    }
    let mut stack: Vec<(El, usize)> = vec![(Rc::clone(e), 0)];
    // depth-first, children in order: push reversed
    let mut order = Vec::new();
    while let Some((cur, depth)) = stack.pop() {
        m.tick()?;
        if depth > 0 {
            order.push(Rc::clone(&cur));
        }
        if depth > MAX_DEPTH {
            continue;
        }
        let kids = children(&cur, None);
        for k in kids.into_iter().rev() {
            stack.push((k, depth + 1));
        }
    }
    out.extend(
        order
            .into_iter()
            .filter(|c| name.is_none_or(|w| c.borrow().name == *w)),
    );
    Ok(out)
}

fn elements_val(items: Vec<El>) -> Val<'static> {
    list(items.into_iter().map(elem_val).collect())
}

fn deep_clone(m: &mut Machine, e: &El, depth: usize) -> Result<El, EvalError> {
    if depth > MAX_DEPTH {
        return Err(err("The XML nests too deeply to copy"));
    }
    m.charge(NODE_BYTES)?;
    let src = e.borrow();
    let copy = new_elem(src.name.clone());
    let mut nodes = Vec::with_capacity(src.nodes.len());
    for n in &src.nodes {
        nodes.push(match n {
            XNode::Text(t) => XNode::Text(t.clone()),
            XNode::Elem(c) => {
                let c = deep_clone(m, c, depth + 1)?;
                c.borrow_mut().parent = Rc::downgrade(&copy);
                XNode::Elem(c)
            }
        });
    }
    {
        let mut cm = copy.borrow_mut();
        cm.attrs = src
            .attrs
            .iter()
            .map(|a| {
                let a = a.borrow();
                Rc::new(RefCell::new(XAttr {
                    name: a.name.clone(),
                    value: a.value.clone(),
                }))
            })
            .collect();
        cm.nodes = nodes;
    }
    Ok(copy)
}

/// Whether `inner` is `outer` or inside it (adding it would make a cycle).
fn contains(outer: &El, inner: &El) -> bool {
    let mut cur = Some(Rc::clone(outer));
    while let Some(c) = cur {
        if Rc::ptr_eq(&c, inner) {
            return true;
        }
        cur = c.borrow().parent.upgrade();
    }
    false
}

/// Adds content to `e` as `XElement.Add` does: elements (copied when they already have
/// a parent), attributes, text (merged with adjacent text), lists of these.
fn add(m: &mut Machine, e: &El, v: &Val, depth: usize) -> Result<(), EvalError> {
    if depth > 8 {
        return Err(err("content nests too deeply"));
    }
    match v {
        Val::Null => {}
        Val::Xml(Xv::Elem(c, _)) => {
            if contains(e, c) {
                return Err(err(
                    "An element cannot be added to itself or its descendants",
                ));
            }
            let c = match c.borrow().parent.upgrade() {
                Some(_) => deep_clone(m, c, 0)?,
                None => Rc::clone(c),
            };
            c.borrow_mut().parent = Rc::downgrade(e);
            e.borrow_mut().nodes.push(XNode::Elem(c));
        }
        Val::Xml(Xv::Doc(d)) => {
            if let Some(r) = d.borrow().as_ref() {
                add(m, e, &elem_val(Rc::clone(r)), depth + 1)?;
            }
        }
        Val::Xml(Xv::Attr { attr, .. }) => {
            let a = attr.borrow();
            set_attribute(m, e, &a.name, Some(a.value.clone()))?;
        }
        Val::List(items) => {
            for item in items.borrow().iter() {
                add(m, e, item, depth + 1)?;
            }
        }
        other => {
            let t = other.to_text().into_owned();
            m.charge(t.len())?;
            let mut el = e.borrow_mut();
            match el.nodes.last_mut() {
                Some(XNode::Text(prev)) => prev.push_str(&t),
                _ => el.nodes.push(XNode::Text(t)),
            }
        }
    }
    Ok(())
}

/// `SetAttributeValue`: sets, adds, or (null) removes.
fn set_attribute(
    m: &mut Machine,
    e: &El,
    name: &XName,
    value: Option<String>,
) -> Result<(), EvalError> {
    let mut el = e.borrow_mut();
    let at = el.attrs.iter().position(|a| a.borrow().name == *name);
    match (at, value) {
        (Some(i), None) => {
            el.attrs.remove(i);
        }
        (Some(i), Some(v)) => {
            m.charge(v.len())?;
            el.attrs[i].borrow_mut().value = v;
        }
        (None, Some(v)) => {
            m.charge(v.len() + NODE_BYTES)?;
            el.attrs.push(Rc::new(RefCell::new(XAttr {
                name: name.clone(),
                value: v,
            })));
        }
        (None, None) => {}
    }
    Ok(())
}

/// Takes `e` out of its parent.
fn detach(e: &El) -> Result<(), EvalError> {
    let parent = e
        .borrow()
        .parent
        .upgrade()
        .ok_or(err("The parent is missing."))?;
    parent
        .borrow_mut()
        .nodes
        .retain(|n| !matches!(n, XNode::Elem(c) if Rc::ptr_eq(c, e)));
    e.borrow_mut().parent = Weak::new();
    Ok(())
}

/// `new XElement(name, content…)`, `new XAttribute(name, value)`, `new XDocument(…)`.
pub(super) fn new_element(m: &mut Machine, a: &[Val]) -> Result<Val<'static>, EvalError> {
    let (name, content) = a.split_first().ok_or(err("new XElement takes a name"))?;
    let e = new_elem(name_of(name)?);
    m.charge(NODE_BYTES)?;
    for c in content {
        add(m, &e, c, 0)?;
    }
    Ok(elem_val(e))
}

pub(super) fn new_attribute(m: &mut Machine, a: &[Val]) -> Result<Val<'static>, EvalError> {
    let [name, value] = a else {
        return Err(err("new XAttribute takes a name and a value"));
    };
    let value = value.to_text().into_owned();
    m.charge(value.len() + NODE_BYTES)?;
    Ok(xml(Xv::Attr {
        attr: Rc::new(RefCell::new(XAttr {
            name: name_of(name)?,
            value,
        })),
        owner: None,
        keep: Keep(None),
    }))
}

pub(super) fn new_document(m: &mut Machine, a: &[Val]) -> Result<Val<'static>, EvalError> {
    let mut root = None;
    // a declaration or comments among the content are not kept
    for c in a {
        if let Val::Xml(Xv::Elem(e, _)) = c {
            if root.is_some() {
                return Err(err(
                    "This operation would create an incorrectly structured document",
                ));
            }
            let e = match e.borrow().parent.upgrade() {
                Some(_) => deep_clone(m, e, 0)?,
                None => Rc::clone(e),
            };
            root = Some(e);
        }
    }
    Ok(xml(Xv::Doc(Rc::new(RefCell::new(root)))))
}

/// A document or an element from text (`XDocument.Parse`, `XElement.Parse`).
pub(super) fn parse_value(
    m: &mut Machine,
    text: &str,
    document: bool,
) -> Result<Val<'static>, EvalError> {
    let root = parse(m, text)?;
    Ok(match document {
        true => xml(Xv::Doc(Rc::new(RefCell::new(Some(root))))),
        false => elem_val(root),
    })
}

/// The optional name argument of Elements / Descendants.
fn opt_name(a: &[Val]) -> Result<Option<XName>, EvalError> {
    a.first().map(name_of).transpose()
}

/// Whether `ToString`'s argument asks for no formatting.
fn formatted(a: &[Val]) -> bool {
    !matches!(a.first(), Some(Val::Flag(Flag::DisableFormatting)))
}

/// Members of XML values.
pub(super) fn member<'e>(
    m: &mut Machine<'e>,
    x: &Xv,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let missing = || {
        EvalError(Cow::Owned(format!(
            "'{member:?}' is not a member of {}",
            x.type_name()
        )))
    };
    Ok(match x {
        Xv::Doc(d) => {
            let root = d.borrow().clone();
            match (member, a.as_slice()) {
                (M::Root | M::FirstNode | M::LastNode, []) => root.map_or(Val::Null, elem_val),
                (M::ToString, opts) => {
                    m.text(root.map_or(String::new(), |r| print(&r, formatted(opts))))?
                }
                (M::Add, content) => {
                    for c in content {
                        if let Val::Xml(Xv::Elem(e, _)) = c {
                            if d.borrow().is_some() {
                                return Err(err("This operation would create an incorrectly structured document"));
                            }
                            *d.borrow_mut() = Some(Rc::clone(e));
                        }
                    }
                    Val::Null
                }
                (M::Element | M::Elements | M::Descendants, _) => {
                    let Some(r) = root else {
                        return Ok(match member {
                            M::Element => Val::Null,
                            _ => list(Vec::new()),
                        });
                    };
                    let name = opt_name(&a)?;
                    let matches = name.as_ref().is_none_or(|w| r.borrow().name == *w);
                    match member {
                        M::Element => {
                            if matches {
                                elem_val(r)
                            } else {
                                Val::Null
                            }
                        }
                        M::Elements => elements_val(if matches { vec![r] } else { Vec::new() }),
                        _ => elements_val(descendants(m, &r, name.as_ref(), true)?),
                    }
                }
                _ => return Err(missing()),
            }
        }
        Xv::Elem(e, _) => elem_member(m, e, member, &a)?,
        Xv::Attr { attr, owner, .. } => match (member, a.as_slice()) {
            (M::Name, []) => xml(Xv::Name(attr.borrow().name.clone())),
            (M::Value, []) => m.text(attr.borrow().value.clone())?,
            (M::Parent, []) => owner.clone().map_or(Val::Null, elem_val),
            (M::Remove, []) => {
                if let Some(o) = owner {
                    o.borrow_mut().attrs.retain(|x| !Rc::ptr_eq(x, attr));
                }
                Val::Null
            }
            (M::SetValue, [v]) => {
                let v = v.to_text().into_owned();
                m.charge(v.len())?;
                attr.borrow_mut().value = v;
                Val::Null
            }
            (M::ToString, []) => m.text(x.text())?,
            _ => return Err(missing()),
        },
        Xv::Name(n) => match (member, a.as_slice()) {
            (M::LocalName, []) => Val::Str(Cow::Owned(n.local.to_string())),
            (M::NamespaceName, []) => Val::Str(Cow::Owned(n.ns.to_string())),
            (M::Namespace, []) => xml(Xv::Ns(Rc::clone(&n.ns))),
            (M::ToString, []) => m.text(n.text())?,
            (M::Equals, [other]) => Val::Bool(name_of(other).is_ok_and(|o| o == *n)),
            _ => return Err(missing()),
        },
        Xv::Ns(ns) => match (member, a.as_slice()) {
            (M::NamespaceName, []) => Val::Str(Cow::Owned(ns.to_string())),
            (M::GetName, [local]) => join_name(ns, &local.to_text())?,
            (M::ToString, []) => m.text(ns.to_string())?,
            _ => return Err(missing()),
        },
    })
}

/// Members of an element.
/// XContainer.FirstNode / LastNode: an element, or text (whitespace between elements
/// is no node, as XDocument.Parse loads it).
fn end_node<'e>(m: &mut Machine<'e>, e: &El, last: bool) -> Result<Val<'e>, EvalError> {
    let el = e.borrow();
    let mut nodes = el
        .nodes
        .iter()
        .filter(|n| !matches!(n, XNode::Text(t) if t.trim().is_empty()));
    let node = if last {
        nodes.next_back()
    } else {
        nodes.next()
    };
    Ok(match node {
        Some(XNode::Elem(c)) => elem_val(Rc::clone(c)),
        Some(XNode::Text(t)) => m.text(t.clone())?,
        None => Val::Null,
    })
}

fn elem_member<'e>(
    m: &mut Machine<'e>,
    e: &El,
    member: M,
    a: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    let attr = |e: &El, name: &XName| -> Val<'static> {
        e.borrow()
            .attrs
            .iter()
            .find(|x| x.borrow().name == *name)
            .map_or(Val::Null, |x| attr_val(x, e))
    };
    Ok(match (member, a) {
        (M::Name, []) => xml(Xv::Name(e.borrow().name.clone())),
        (M::Value, []) => {
            let v = value_of(&e.borrow());
            m.text(v)?
        }
        (M::Parent, []) => e.borrow().parent.upgrade().map_or(Val::Null, elem_val),
        (M::FirstNode | M::LastNode, []) => end_node(m, e, member == M::LastNode)?,
        (M::HasElements, []) => Val::Bool(!children(e, None).is_empty()),
        (M::HasAttributes, []) => Val::Bool(!e.borrow().attrs.is_empty()),
        (M::IsEmpty, []) => Val::Bool(e.borrow().nodes.is_empty()),
        (M::Element, [name]) => {
            let name = name_of(name)?;
            children(e, Some(&name))
                .into_iter()
                .next()
                .map_or(Val::Null, elem_val)
        }
        (M::Elements, _) => elements_val(children(e, opt_name(a)?.as_ref())),
        (M::Descendants, _) => elements_val(descendants(m, e, opt_name(a)?.as_ref(), false)?),
        (M::DescendantsAndSelf, _) => elements_val(descendants(m, e, opt_name(a)?.as_ref(), true)?),
        (M::Ancestors, _) => {
            let name = opt_name(a)?;
            let mut out = Vec::new();
            let mut cur = e.borrow().parent.upgrade();
            while let Some(p) = cur {
                m.tick()?;
                if name.as_ref().is_none_or(|w| p.borrow().name == *w) {
                    out.push(Rc::clone(&p));
                }
                cur = p.borrow().parent.upgrade();
            }
            elements_val(out)
        }
        (M::Attribute, [name]) => attr(e, &name_of(name)?),
        (M::Attributes, _) => {
            let name = opt_name(a)?;
            let all: Vec<Val<'static>> = e
                .borrow()
                .attrs
                .iter()
                .filter(|x| name.as_ref().is_none_or(|w| x.borrow().name == *w))
                .map(|x| attr_val(x, e))
                .collect();
            list(all)
        }
        (M::Add | M::AddFirst, content) => {
            let before = e.borrow().nodes.len();
            for c in content {
                add(m, e, c, 0)?;
            }
            if member == M::AddFirst {
                // added as Add does, then moved before the nodes that were there
                let mut el = e.borrow_mut();
                let added = el.nodes.len() - before;
                el.nodes.rotate_right(added);
            }
            Val::Null
        }
        (M::Remove, []) => {
            detach(e)?;
            Val::Null
        }
        (M::RemoveAll | M::RemoveNodes | M::RemoveAttributes, []) => {
            let mut el = e.borrow_mut();
            if member != M::RemoveNodes {
                el.attrs.clear();
            }
            if member != M::RemoveAttributes {
                el.nodes.clear();
            }
            Val::Null
        }
        (M::SetValue, [v]) => {
            let v = v.to_text().into_owned();
            m.charge(v.len())?;
            e.borrow_mut().nodes = vec![XNode::Text(v)];
            Val::Null
        }
        (M::SetAttributeValue, [name, v]) => {
            let v = (!matches!(v, Val::Null)).then(|| v.to_text().into_owned());
            set_attribute(m, e, &name_of(name)?, v)?;
            Val::Null
        }
        (M::SetElementValue, [name, v]) => {
            let name = name_of(name)?;
            match (children(e, Some(&name)).into_iter().next(), v) {
                (Some(c), Val::Null) => detach(&c)?,
                (Some(c), v) => {
                    let v = v.to_text().into_owned();
                    m.charge(v.len())?;
                    c.borrow_mut().nodes = vec![XNode::Text(v)];
                }
                (None, Val::Null) => {}
                (None, v) => {
                    let c = new_elem(name);
                    add(m, &c, v, 0)?;
                    add(m, e, &elem_val(c), 0)?;
                }
            }
            Val::Null
        }
        (M::ReplaceWith | M::AddAfterSelf | M::AddBeforeSelf, content) => {
            splice_beside(m, e, member, content)?;
            Val::Null
        }
        (M::ToString, opts) => m.text(print(e, formatted(opts)))?,
        _ => {
            return Err(EvalError(Cow::Owned(format!(
                "'{member:?}' is not a member of XElement"
            ))))
        }
    })
}

/// `ReplaceWith`, `AddAfterSelf`, `AddBeforeSelf`: `content` spliced into the parent in
/// place of `e`, after it or before it.
fn splice_beside<'e>(
    m: &mut Machine<'e>,
    e: &El,
    member: M,
    content: &[Val<'e>],
) -> Result<(), EvalError> {
    let parent = e
        .borrow()
        .parent
        .upgrade()
        .ok_or(err("The parent is missing."))?;
    let at = parent
        .borrow()
        .nodes
        .iter()
        .position(|n| matches!(n, XNode::Elem(c) if Rc::ptr_eq(c, e)))
        .ok_or(err("The parent is missing."))?;
    // build the new nodes in a scratch element, then splice them in
    let scratch = new_elem(e.borrow().name.clone());
    for c in content {
        add(m, &scratch, c, 0)?;
    }
    let nodes = std::mem::take(&mut scratch.borrow_mut().nodes);
    for n in &nodes {
        if let XNode::Elem(c) = n {
            c.borrow_mut().parent = Rc::downgrade(&parent);
        }
    }
    let range = match member {
        M::ReplaceWith => {
            e.borrow_mut().parent = Weak::new();
            at..at + 1
        }
        M::AddAfterSelf => at + 1..at + 1,
        _ => at..at,
    };
    parent.borrow_mut().nodes.splice(range, nodes);
    Ok(())
}

/// Prints an element as .NET's `XElement.ToString()` does: indented by two spaces (or
/// on one line), `<x />` when empty, a text-only element on one line, mixed content
/// without indentation; prefixes from the declarations in scope (those of ancestors are
/// written on the printed element when it needs them).
pub(super) fn print(e: &El, indent: bool) -> String {
    let mut scope = Scope::default();
    // the declarations of the ancestors are known but not yet written
    let mut ancestors = Vec::new();
    let mut cur = e.borrow().parent.upgrade();
    while let Some(p) = cur {
        ancestors.push(Rc::clone(&p));
        cur = p.borrow().parent.upgrade();
    }
    for a in ancestors.iter().rev() {
        for attr in &a.borrow().attrs {
            let attr = attr.borrow();
            if let Some(prefix) = declared_prefix(&attr.name) {
                scope.push(prefix, &attr.value, false);
            }
        }
    }
    let mut out = String::new();
    write_element(&e.borrow(), &mut out, &mut scope, indent.then_some(0), 0);
    out
}

/// The prefix an attribute declares (`""` for the default namespace), if it is a
/// namespace declaration.
fn declared_prefix(name: &XName) -> Option<&str> {
    match name.is_declaration() {
        true if &*name.ns == XMLNS => Some(&name.local),
        true => Some(""),
        false => None,
    }
}

/// Namespace declarations in scope while printing: prefix, URI, written yet.
#[derive(Default)]
struct Scope {
    entries: Vec<(String, String, bool)>,
}

impl Scope {
    fn push(&mut self, prefix: &str, uri: &str, written: bool) {
        self.entries
            .push((prefix.to_string(), uri.to_string(), written));
    }
    /// The innermost prefix bound to `uri` that is not shadowed, and whether it is
    /// written.
    fn prefix_of(&self, uri: &str, allow_default: bool) -> Option<(String, bool)> {
        for (i, (p, u, w)) in self.entries.iter().enumerate().rev() {
            if u != uri || (p.is_empty() && !allow_default) {
                continue;
            }
            let shadowed = self.entries[i + 1..].iter().any(|(q, _, _)| q == p);
            if !shadowed {
                return Some((p.clone(), *w));
            }
        }
        None
    }
    fn default_uri(&self) -> &str {
        self.entries
            .iter()
            .rev()
            .find(|(p, _, _)| p.is_empty())
            .map_or("", |(_, u, _)| u)
    }
}

fn write_element(
    e: &XElem,
    out: &mut String,
    scope: &mut Scope,
    indent: Option<usize>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let mark = scope.entries.len();
    // this element's own declarations first: its name may use them
    let mut own = String::new();
    for a in &e.attrs {
        let a = a.borrow();
        if let Some(prefix) = declared_prefix(&a.name) {
            scope.push(prefix, &a.value, true);
        }
    }
    let mut extra = String::new();
    let declare = |scope: &mut Scope, prefix: &str, uri: &str, extra: &mut String| {
        scope.push(prefix, uri, true);
        match prefix {
            "" => extra.push_str(" xmlns=\""),
            p => {
                extra.push_str(" xmlns:");
                extra.push_str(p);
                extra.push_str("=\"");
            }
        }
        escape(extra, uri, true);
        extra.push('"');
    };
    let qname = if e.name.ns.is_empty() {
        if !scope.default_uri().is_empty() {
            declare(scope, "", "", &mut extra);
        }
        e.name.local.to_string()
    } else {
        match scope.prefix_of(&e.name.ns, true) {
            Some((p, written)) => {
                if !written {
                    declare(scope, &p, &e.name.ns, &mut extra);
                }
                if p.is_empty() {
                    e.name.local.to_string()
                } else {
                    format!("{p}:{}", e.name.local)
                }
            }
            None => {
                declare(scope, "", &e.name.ns, &mut extra);
                e.name.local.to_string()
            }
        }
    };
    for a in &e.attrs {
        let a = a.borrow();
        own.push(' ');
        if let Some(prefix) = declared_prefix(&a.name) {
            own.push_str(if prefix.is_empty() { "xmlns" } else { "xmlns:" });
            own.push_str(prefix);
        } else if a.name.ns.is_empty() {
            own.push_str(&a.name.local);
        } else {
            let prefix = match scope.prefix_of(&a.name.ns, false) {
                Some((p, written)) => {
                    if !written {
                        declare(scope, &p, &a.name.ns, &mut extra);
                    }
                    p
                }
                None => {
                    let p = (1..)
                        .map(|i| format!("p{i}"))
                        .find(|p| !scope.entries.iter().any(|(q, _, _)| q == p))
                        .unwrap_or_default();
                    declare(scope, &p, &a.name.ns, &mut extra);
                    p
                }
            };
            own.push_str(&prefix);
            own.push(':');
            own.push_str(&a.name.local);
        }
        own.push_str("=\"");
        escape(&mut own, &a.value, true);
        own.push('"');
    }
    out.push('<');
    out.push_str(&qname);
    out.push_str(&own);
    out.push_str(&extra);
    if e.nodes.is_empty() {
        out.push_str(" />");
        scope.entries.truncate(mark);
        return;
    }
    out.push('>');
    let mixed = e.nodes.iter().any(|n| matches!(n, XNode::Text(_)));
    let child_indent = indent.filter(|_| !mixed);
    for n in &e.nodes {
        match n {
            XNode::Text(t) => escape(out, t, false),
            XNode::Elem(c) => {
                if let Some(level) = child_indent {
                    newline(out, level + 1);
                }
                write_element(
                    &c.borrow(),
                    out,
                    scope,
                    child_indent.map(|l| l + 1),
                    depth + 1,
                );
            }
        }
    }
    if let Some(level) = child_indent {
        newline(out, level);
    }
    out.push_str("</");
    out.push_str(&qname);
    out.push('>');
    scope.entries.truncate(mark);
}

fn newline(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}
