//! Members of the reference types: JObject / JArray / JProperty (Newtonsoft.Json.Linq),
//! arrays and `List<T>`, `Dictionary<string, T>` and its KeyValuePairs, StringBuilder,
//! `byte[]` and a caught exception. What they do not have themselves they get from
//! LINQ (`linq`), as in C#.
//! Must not touch: strings and numbers (members.rs), syntax.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use super::eval::{cast, Machine, OUT_OF_RANGE};
use super::json::{self, Json};
use super::jsonpath;
use super::members::{not_a_member, M};
use super::value::{from_json, list, prop_text, to_json, Flag};
use super::*;

pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    t: Val<'e>,
    member: M,
    args: &'e [Node],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    // a byte[] filled in place (`new byte[16]`) is a list of ints until it is encrypted
    let t = match (&t, member) {
        (Val::List(_), M::Encrypt | M::Decrypt) => super::statics::byte_list(t),
        _ => t,
    };
    let lambda = args.iter().any(|a| matches!(a, Node::Lambda(..)));
    if linq::is_linq(member) && (lambda || !own(&t, member)) {
        return linq::call(m, t, member, args, generic);
    }
    match &t {
        Val::Json(j) => json_member(m, j, member, args, generic),
        Val::Prop(p) => {
            let a = m.values(args)?;
            Ok(match (member, a.as_slice()) {
                (M::Name | M::Key, []) => Val::Str(Cow::Owned(p.0.clone())),
                (M::Value, []) => from_json(&p.1),
                (M::ToString, []) => m.text(prop_text(p, true))?,
                (M::ToString, [Val::Flag(f)]) => m.text(prop_text(p, *f == Flag::Indented))?,
                _ => return Err(not_a_member("JProperty", member)),
            })
        }
        Val::List(l) => {
            let l = Rc::clone(l);
            list_member(m, &t, &l, member, args)
        }
        Val::Dict(d) => {
            let d = Rc::clone(d);
            dict_member(m, &t, &d, member, args)
        }
        Val::Builder(b) => {
            let b = Rc::clone(b);
            builder_member(m, t, &b, member, args)
        }
        Val::Bytes(b) if matches!(member, M::Encrypt | M::Decrypt) => {
            let a = m.values(args)?;
            let bytes = |v: Option<&Val>| match v.cloned().map(super::statics::byte_list) {
                Some(Val::Bytes(b)) => Ok(b),
                _ => Err(err(
                    "Encrypt and Decrypt take an algorithm, a key and an IV (byte[])",
                )),
            };
            let (alg, key, iv) = (
                a.first().map(Val::to_text),
                bytes(a.get(1))?,
                bytes(a.get(2))?,
            );
            let alg = alg.ok_or(err("Encrypt and Decrypt take an algorithm name (\"Aes\")"))?;
            m.ticks(b.len() / 16 + 1)?;
            m.charge(b.len() + 16)?;
            let out = if member == M::Encrypt {
                super::ciphers::encrypt(&alg, b, &key, &iv)?
            } else {
                super::ciphers::decrypt(&alg, b, &key, &iv)?
            };
            Ok(Val::Bytes(Rc::new(out)))
        }
        Val::Bytes(b) => match member {
            M::Length | M::Count => Ok(Val::Int(b.len() as i64)),
            M::ToString => Ok(Val::Str(Cow::Borrowed("System.Byte[]"))),
            _ => Err(not_a_member("byte[]", member)),
        },
        Val::Group(g) => match member {
            M::Key => Ok(g.0.clone()),
            M::Count | M::Length => Ok(Val::Int(g.1.len() as i64)),
            M::ToString => Ok(Val::Str(Cow::Borrowed("System.Linq.Grouping"))),
            _ => Err(not_a_member("IGrouping", member)),
        },
        Val::Random(r) => {
            let a = m.values(args)?;
            random_member(r, member, &a)
        }
        Val::Error(e) => match member {
            M::Message => Ok(Val::Str(Cow::Owned(e.message.clone()))),
            M::ToString => Ok(Val::Str(Cow::Owned(super::exceptions::text(e)))),
            _ => Err(not_a_member("Exception", member)),
        },
        other => Err(not_a_member(other.type_name(), member)),
    }
}

/// System.Random's members, from a splitmix64 generator.
fn random_member(
    state: &std::cell::Cell<u64>,
    member: M,
    a: &[Val],
) -> Result<Val<'static>, EvalError> {
    let next = || {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // the range [low, high) with `high > low`
    let within = |low: i64, high: i64| {
        let span = (high - low) as u64;
        low + (next() % span) as i64
    };
    Ok(match (member, a) {
        (M::Next, []) => Val::Int(within(0, i64::from(i32::MAX))),
        (M::Next, [Val::Int(max)]) if *max >= 0 => {
            Val::Int(if *max == 0 { 0 } else { within(0, *max) })
        }
        (M::Next, [Val::Int(min), Val::Int(max)]) if min <= max => {
            Val::Int(if min == max { *min } else { within(*min, *max) })
        }
        (M::Next, _) => {
            return Err(err(
                "'minValue' cannot be greater than maxValue, and maxValue must not be negative (Random.Next)",
            ))
        }
        (M::NextDouble, []) => Val::Double((next() >> 11) as f64 / (1u64 << 53) as f64),
        _ => return Err(not_a_member("Random", member)),
    })
}

/// Whether the type has this member itself (then LINQ's of the same name does not apply).
fn own(t: &Val, member: M) -> bool {
    match t {
        Val::Json(_) => matches!(member, M::Count | M::First | M::Last | M::Values),
        Val::List(_) => matches!(member, M::Count | M::Contains),
        Val::Dict(_) => matches!(member, M::Count | M::Keys | M::Values),
        _ => false,
    }
}

/// `t.member = v`: nothing here has a settable member yet.
pub(super) fn set<'e>(
    _m: &mut Machine<'e>,
    t: &Val<'e>,
    member: M,
    _v: Val<'e>,
) -> Result<(), EvalError> {
    Err(EvalError(Cow::Owned(format!(
        "'{member:?}' of {} cannot be assigned here (assign through the object's indexer: obj[\"name\"] = value)",
        t.type_name()
    ))))
}

fn json_member<'e>(
    m: &mut Machine<'e>,
    j: &Json,
    member: M,
    args: &'e [Node],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    if member == M::TryGetValue {
        let name = m.eval(
            args.first()
                .ok_or(err("TryGetValue takes a name and an out variable"))?,
        )?;
        let found = j.get(&name.to_text());
        let ok = found.is_some();
        let v = found.map_or(Val::Null, |v| from_json(&v));
        m.write_out(args.get(1), v)?;
        return Ok(Val::Bool(ok));
    }
    let a = m.values(args)?;
    Ok(match (member, a.as_slice()) {
        (M::ToString, _) => {
            let indented = !matches!(a.first(), Some(Val::Flag(Flag::Compact)));
            let text = j.print(indented)?;
            m.text(text)?
        }
        (M::Type, []) => Val::Str(Cow::Borrowed(j.type_name())),
        (M::DeepClone, []) => {
            let c = j.deep_clone();
            m.charge(c.print(false)?.len() * 2)?;
            Val::Json(c)
        }
        (M::ToObject, []) => convert(m, j, generic.unwrap_or(Ty::Any))?,
        (M::SelectToken, [path, ..]) => {
            let (found, visited) = jsonpath::select(j, &path.to_text())?;
            m.ticks(visited)?;
            found.map_or(Val::Null, |v| from_json(&v))
        }
        (M::SelectTokens, [path, ..]) => {
            let (found, visited) = jsonpath::select_all(j, &path.to_text())?;
            m.ticks(visited)?;
            list(found.iter().map(from_json).collect())
        }
        // the extension on IEnumerable<JToken>: each child's `key`
        (M::Values, [key]) => {
            let key = key.to_text();
            j.open_children();
            let children: Vec<Json> = match j {
                Json::Array(a) => a.borrow().clone(),
                Json::Object(o) => o.borrow().iter().map(|(_, v)| v.clone()).collect(),
                _ => Vec::new(),
            };
            m.ticks(children.len())?;
            let mut out = Vec::new();
            for c in &children {
                if let Some(v) = c.get(&key) {
                    out.push(match generic {
                        Some(t) => cast(t, from_json(&v))?.into_owned(),
                        None => from_json(&v),
                    });
                }
            }
            list(out)
        }
        (M::Descendants, []) => {
            let mut out = Vec::new();
            json_descendants(m, j, &mut out, 0)?;
            list(out)
        }
        (M::Values, []) => {
            j.open_children();
            let values: Vec<Json> = match j {
                Json::Object(o) => o.borrow().iter().map(|(_, v)| v.clone()).collect(),
                Json::Array(a) => a.borrow().clone(),
                _ => Vec::new(),
            };
            m.ticks(values.len())?;
            let mut out = Vec::with_capacity(values.len());
            for v in &values {
                out.push(match generic {
                    Some(t) => cast(t, from_json(v))?.into_owned(),
                    None => from_json(v),
                });
            }
            list(out)
        }
        _ => match j {
            Json::Object(o) => object_member(m, j, o, member, &a, generic)?,
            Json::Array(arr) => array_member(m, j, arr, member, &a)?,
            _ => return Err(not_a_member("JValue", member)),
        },
    })
}

/// `JContainer.Descendants()`: every token below `j` in document order (a property,
/// then its value and what is below it); each one a step.
fn json_descendants(
    m: &mut Machine,
    j: &Json,
    out: &mut Vec<Val<'static>>,
    depth: usize,
) -> Result<(), EvalError> {
    if depth > json::MAX_DEPTH {
        return Ok(());
    }
    j.open_children();
    match j {
        Json::Object(o) => {
            for (k, v) in o.borrow().iter() {
                m.ticks(2)?;
                out.push(Val::Prop(Rc::new((k.clone(), v.clone()))));
                out.push(from_json(v));
                json_descendants(m, v, out, depth + 1)?;
            }
        }
        Json::Array(a) => {
            for v in a.borrow().iter() {
                m.tick()?;
                out.push(from_json(v));
                json_descendants(m, v, out, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

type Fields = std::rc::Rc<RefCell<Vec<(String, Json)>>>;
type Items = std::rc::Rc<RefCell<Vec<Json>>>;

fn object_member<'e>(
    m: &mut Machine<'e>,
    j: &Json,
    o: &Fields,
    member: M,
    a: &[Val<'e>],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    let prop = |k: &String, v: &Json| Val::Prop(Rc::new((k.clone(), v.clone())));
    Ok(match (member, a) {
        (M::Count, []) => Val::Int(o.borrow().len() as i64),
        (M::HasValues, []) => Val::Bool(!o.borrow().is_empty()),
        (M::Value, [key]) => {
            let v = j.with_field(&key.to_text(), from_json).unwrap_or(Val::Null);
            match (generic, v) {
                (Some(Ty::Int), Val::Null) => Val::Int(0),
                (Some(Ty::Double), Val::Null) => Val::Double(0.0),
                (Some(Ty::Bool), Val::Null) => Val::Bool(false),
                (Some(t), v) => cast(t, v)?,
                (None, v) => v,
            }
        }
        (M::GetValue, [name]) => j
            .with_field(&name.to_text(), from_json)
            .unwrap_or(Val::Null),
        // JObject.GetValue(name, comparison): an exact match first, as Newtonsoft does
        (M::GetValue, [name, Val::Flag(f)]) => {
            let name = name.to_text();
            match (j.get(&name), f) {
                (Some(v), _) => from_json(&v),
                (None, Flag::IgnoreCase) => {
                    j.open_children();
                    let o = o.borrow();
                    o.iter()
                        .find(|(k, _)| k.to_lowercase() == name.to_lowercase())
                        .map_or(Val::Null, |(_, v)| from_json(v))
                }
                (None, _) => Val::Null,
            }
        }
        (M::Property, [name]) => {
            let name = name.to_text();
            match j.get(&name) {
                Some(v) => Val::Prop(Rc::new((name.into_owned(), v))),
                None => Val::Null,
            }
        }
        (M::Properties | M::Children, []) => {
            j.open_children();
            let props: Vec<Val<'static>> = o.borrow().iter().map(|(k, v)| prop(k, v)).collect();
            m.ticks(props.len())?;
            list(props)
        }
        (M::First | M::Last, []) => {
            j.open_children();
            let o = o.borrow();
            let p = if member == M::First {
                o.first()
            } else {
                o.last()
            };
            p.map_or(Val::Null, |(k, v)| prop(k, v))
        }
        (M::ContainsKey, [name]) => {
            let name = name.to_text();
            Val::Bool(o.borrow().iter().any(|(k, _)| *k == *name))
        }
        (M::Add, [name, value]) => {
            let name = name.to_text().into_owned();
            if j.get(&name).is_some() {
                return Err(EvalError(Cow::Owned(format!(
                    "Can not add property {name} to Newtonsoft.Json.Linq.JObject. Property with the same name already exists on object"
                ))));
            }
            let value = m.json_item(j, value)?;
            j.set(&name, value)?;
            Val::Null
        }
        (M::Add, [Val::Prop(p)]) => {
            if j.get(&p.0).is_some() {
                return Err(err("Can not add a property: a property with the same name already exists on the object"));
            }
            let value = m.json_item(j, &from_json(&p.1))?;
            j.set(&p.0, value)?;
            Val::Null
        }
        (M::Remove, [name]) => {
            let name = name.to_text();
            let mut o = o.borrow_mut();
            let before = o.len();
            o.retain(|(k, _)| *k != *name);
            Val::Bool(o.len() != before)
        }
        (M::Merge, [Val::Json(other)]) => {
            merge(m, j, other)?;
            Val::Null
        }
        (M::Clear, []) => {
            o.borrow_mut().clear();
            Val::Null
        }
        _ => return Err(not_a_member("JObject", member)),
    })
}

fn array_member<'e>(
    m: &mut Machine<'e>,
    j: &Json,
    arr: &Items,
    member: M,
    a: &[Val<'e>],
) -> Result<Val<'e>, EvalError> {
    let at = |i: &i64, len: usize| {
        usize::try_from(*i)
            .ok()
            .filter(|i| *i < len)
            .ok_or(OUT_OF_RANGE)
    };
    Ok(match (member, a) {
        (M::Count, []) => Val::Int(arr.borrow().len() as i64),
        (M::HasValues, []) => Val::Bool(!arr.borrow().is_empty()),
        (M::Children, []) => {
            j.open_children();
            m.ticks(arr.borrow().len())?;
            list(arr.borrow().iter().map(from_json).collect())
        }
        (M::First | M::Last, []) => {
            j.open_children();
            let a = arr.borrow();
            let v = if member == M::First {
                a.first()
            } else {
                a.last()
            };
            v.map_or(Val::Null, from_json)
        }
        (M::Add, [value]) => {
            let value = m.json_item(j, value)?;
            arr.borrow_mut().push(value);
            Val::Null
        }
        (M::Insert, [Val::Int(i), value]) => {
            let value = m.json_item(j, value)?;
            let mut a = arr.borrow_mut();
            let i = at(i, a.len() + 1)?;
            a.insert(i, value);
            Val::Null
        }
        (M::RemoveAt, [Val::Int(i)]) => {
            let mut a = arr.borrow_mut();
            let i = at(i, a.len())?;
            a.remove(i);
            Val::Null
        }
        (M::Remove, [value]) => {
            let target = to_json(value)?;
            let mut a = arr.borrow_mut();
            match a.iter().position(|x| x.deep_equals(&target)) {
                Some(i) => {
                    a.remove(i);
                    Val::Bool(true)
                }
                None => Val::Bool(false),
            }
        }
        (M::Clear, []) => {
            arr.borrow_mut().clear();
            Val::Null
        }
        _ => return Err(not_a_member("JArray", member)),
    })
}

/// `target.Merge(other)` with Newtonsoft's defaults: objects merge property by
/// property, arrays concatenate, null values are ignored, anything else replaces.
fn merge(m: &mut Machine, target: &Json, other: &Json) -> Result<(), EvalError> {
    let Json::Object(src) = other else {
        return Err(err("Merge takes a JObject"));
    };
    other.open_children();
    let props: Vec<(String, Json)> = src.borrow().clone();
    for (k, v) in props {
        m.tick()?;
        match (target.get(&k), &v) {
            (_, Json::Null) => {}
            (Some(mine @ Json::Object(_)), Json::Object(_)) => merge(m, &mine, &v)?,
            (Some(Json::Array(mine)), Json::Array(theirs)) => {
                let items: Vec<Json> = theirs.borrow().iter().map(Json::deep_clone).collect();
                mine.borrow_mut().extend(items);
            }
            _ => target.set(&k, v.deep_clone())?,
        }
    }
    Ok(())
}

/// `token.ToObject<T>()` and `JsonConvert.DeserializeObject<T>`: JSON to a C# value.
pub(super) fn convert<'e>(m: &mut Machine<'e>, j: &Json, t: Ty) -> Result<Val<'e>, EvalError> {
    j.open_children();
    Ok(match (t, j) {
        (Ty::Dict, Json::Object(o)) => {
            let entries: Vec<(String, Val<'static>)> = o
                .borrow()
                .iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect();
            m.charge(entries.len() * 64)?;
            Val::Dict(Rc::new(RefCell::new(entries)))
        }
        (Ty::List, Json::Array(a)) => {
            let items: Vec<Val<'static>> = a.borrow().iter().map(from_json).collect();
            m.charge(items.len() * 32)?;
            list(items)
        }
        (Ty::Any, j) => from_json(j),
        (t, j) => cast(t, from_json(j))?,
    })
}

fn list_member<'e>(
    m: &mut Machine<'e>,
    t: &Val<'e>,
    l: &super::value::List,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    Ok(match (member, a.as_slice()) {
        (M::Count | M::Length, []) => Val::Int(l.borrow().len() as i64),
        (M::Sort, []) => {
            m.ticks(l.borrow().len())?;
            l.borrow_mut().sort_by(super::linq::compare);
            Val::Null
        }
        (M::Add, [v]) => {
            let v = m.list_item(t, v.clone())?;
            l.borrow_mut().push(v);
            Val::Null
        }
        (M::AddRange, [items]) => {
            let items = items.items()?;
            m.ticks(items.len())?;
            for v in items {
                let v = m.list_item(t, v)?;
                l.borrow_mut().push(v);
            }
            Val::Null
        }
        (M::Insert, [Val::Int(i), v]) => {
            let v = m.list_item(t, v.clone())?;
            let mut l = l.borrow_mut();
            let i = usize::try_from(*i)
                .ok()
                .filter(|i| *i <= l.len())
                .ok_or(OUT_OF_RANGE)?;
            l.insert(i, v);
            Val::Null
        }
        (M::Remove, [v]) => {
            let mut l = l.borrow_mut();
            match l.iter().position(|x| x == v) {
                Some(i) => {
                    l.remove(i);
                    Val::Bool(true)
                }
                None => Val::Bool(false),
            }
        }
        (M::RemoveAt, [Val::Int(i)]) => {
            let mut l = l.borrow_mut();
            let i = usize::try_from(*i)
                .ok()
                .filter(|i| *i < l.len())
                .ok_or(OUT_OF_RANGE)?;
            l.remove(i);
            Val::Null
        }
        (M::Clear, []) => {
            l.borrow_mut().clear();
            Val::Null
        }
        (M::Contains, [v]) => Val::Bool(l.borrow().iter().any(|x| x == v)),
        (M::IndexOf, [v]) => Val::Int(
            l.borrow()
                .iter()
                .position(|x| x == v)
                .map_or(-1, |i| i as i64),
        ),
        (M::ToString, []) => Val::Str(t.to_text()).into_owned(),
        _ => return Err(not_a_member("List", member)),
    })
}

fn dict_member<'e>(
    m: &mut Machine<'e>,
    t: &Val<'e>,
    d: &super::value::Dict,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    // APIM's extension on AsFormUrlEncodedContent's dictionary: the form again
    if member == M::ToFormUrlEncodedContent {
        let mut pairs = Vec::new();
        for (k, v) in d.borrow().iter() {
            let values = match v {
                Val::List(_) | Val::Json(Json::Array(_)) => v.items()?,
                other => vec![other.clone().into_owned()],
            };
            for value in values {
                pairs.push(format!(
                    "{}={}",
                    super::statics::escape_form(k),
                    super::statics::escape_form(&value.to_text())
                ));
            }
        }
        m.ticks(pairs.len())?;
        return m.text(pairs.join("&"));
    }
    if member == M::TryGetValue {
        let key = m.eval(
            args.first()
                .ok_or(err("TryGetValue takes a key and an out variable"))?,
        )?;
        let key = key.to_text();
        let found = d
            .borrow()
            .iter()
            .find(|(k, _)| *k == *key)
            .map(|(_, v)| v.clone());
        let ok = found.is_some();
        m.write_out(args.get(1), found.unwrap_or(Val::Null))?;
        return Ok(Val::Bool(ok));
    }
    let a = m.values(args)?;
    let find = |key: &Val| {
        let key = key.to_text();
        d.borrow()
            .iter()
            .find(|(k, _)| *k == *key)
            .map(|(_, v)| v.clone())
    };
    Ok(match (member, a.as_slice()) {
        (M::Count, []) => Val::Int(d.borrow().len() as i64),
        (M::Keys, []) => list(
            d.borrow()
                .iter()
                .map(|(k, _)| Val::Str(Cow::Owned(k.clone())))
                .collect(),
        ),
        (M::Values, []) => list(d.borrow().iter().map(|(_, v)| v.clone()).collect()),
        (M::ContainsKey, [key]) => Val::Bool(find(key).is_some()),
        (M::ContainsValue, [v]) => Val::Bool(d.borrow().iter().any(|(_, x)| x == v)),
        // a string[] value reads as its values joined by commas (APIM's extension)
        (M::GetValueOrDefault, [key]) => joined(find(key)).unwrap_or(Val::Null),
        (M::GetValueOrDefault, [key, default]) => {
            joined(find(key)).unwrap_or_else(|| default.clone().into_owned())
        }
        (M::Add, [key, v]) => {
            if find(key).is_some() {
                return Err(EvalError(Cow::Owned(format!(
                    "An item with the same key has already been added. Key: {}",
                    key.to_text()
                ))));
            }
            let v = m.list_item(t, v.clone())?;
            d.borrow_mut().push((key.to_text().into_owned(), v));
            Val::Null
        }
        (M::Remove, [key]) => {
            let key = key.to_text();
            let mut d = d.borrow_mut();
            let before = d.len();
            d.retain(|(k, _)| *k != *key);
            Val::Bool(d.len() != before)
        }
        (M::Clear, []) => {
            d.borrow_mut().clear();
            Val::Null
        }
        (M::ToString, []) => Val::Str(t.to_text()).into_owned(),
        // a record's field (an anonymous object's, an IUser's, an IGroup's)
        (_, []) if member.is_property() => {
            let name = format!("{member:?}");
            match d.borrow().iter().find(|(k, _)| *k == name) {
                Some((_, v)) => v.clone(),
                None => return Err(not_a_member("Dictionary", member)),
            }
        }
        _ => return Err(not_a_member("Dictionary", member)),
    })
}

/// A dictionary value as GetValueOrDefault returns it: a list of strings joined by
/// commas, anything else as it is.
fn joined(v: Option<Val<'static>>) -> Option<Val<'static>> {
    match v {
        Some(Val::List(l)) => {
            let texts: Vec<String> = l
                .borrow()
                .iter()
                .map(|x| x.to_text().into_owned())
                .collect();
            Some(Val::Str(Cow::Owned(texts.join(","))))
        }
        other => other,
    }
}

fn builder_member<'e>(
    m: &mut Machine<'e>,
    t: Val<'e>,
    b: &Rc<RefCell<String>>,
    member: M,
    args: &'e [Node],
) -> Result<Val<'e>, EvalError> {
    let a = m.values(args)?;
    let grow = |m: &mut Machine<'e>, s: &str| -> Result<(), EvalError> {
        m.charge(s.len())?;
        b.borrow_mut().push_str(s);
        Ok(())
    };
    Ok(match (member, a.as_slice()) {
        (M::Append, [v]) => {
            grow(m, &v.to_text())?;
            t
        }
        (M::AppendLine, []) => {
            grow(m, "\n")?;
            t
        }
        (M::AppendLine, [v]) => {
            grow(m, &v.to_text())?;
            grow(m, "\n")?;
            t
        }
        (M::AppendFormat, [Val::Str(f), rest @ ..]) => {
            let s = format::composite(f, rest)?;
            grow(m, &s)?;
            t
        }
        (M::Insert, [Val::Int(i), v]) => {
            let s = v.to_text();
            m.charge(s.len())?;
            let mut text = b.borrow_mut();
            let at = usize::try_from(*i)
                .ok()
                .and_then(|i| {
                    text.char_indices()
                        .map(|(at, _)| at)
                        .chain([text.len()])
                        .nth(i)
                })
                .ok_or(OUT_OF_RANGE)?;
            text.insert_str(at, &s);
            drop(text);
            t
        }
        (M::Replace, [Val::Str(from), to]) if !from.is_empty() => {
            let new = b.borrow().replace(from.as_ref(), &to.to_text());
            m.charge(new.len())?;
            *b.borrow_mut() = new;
            t
        }
        (M::Clear, []) => {
            b.borrow_mut().clear();
            t
        }
        (M::Length, []) => Val::Int(b.borrow().encode_utf16().count() as i64),
        (M::ToString, []) => {
            let s = b.borrow().clone();
            m.text(s)?
        }
        _ => return Err(not_a_member("StringBuilder", member)),
    })
}
