//! System.Linq.Enumerable over anything a `foreach` walks (lists, JSON arrays and
//! objects, dictionaries, strings, byte[]). Evaluated eagerly: each method takes the
//! items, spends a step per item (and per lambda call) and returns a new list or a
//! value, so a chain costs what it visits.
//! Must not touch: the element types' own members, syntax.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::eval::{cast, is_type, Machine, OUT_OF_RANGE};
use super::members::M;
use super::value::list;
use super::*;

pub(super) fn is_linq(m: M) -> bool {
    matches!(
        m,
        M::Where
            | M::Select
            | M::SelectMany
            | M::Any
            | M::All
            | M::First
            | M::FirstOrDefault
            | M::Last
            | M::LastOrDefault
            | M::Single
            | M::SingleOrDefault
            | M::Count
            | M::Contains
            | M::OrderBy
            | M::OrderByDescending
            | M::ThenBy
            | M::ThenByDescending
            | M::GroupBy
            | M::Skip
            | M::Take
            | M::SkipWhile
            | M::TakeWhile
            | M::Concat
            | M::Distinct
            | M::ToArray
            | M::ToList
            | M::ToDictionary
            | M::Aggregate
            | M::Sum
            | M::Min
            | M::Max
            | M::Average
            | M::ElementAt
            | M::ElementAtOrDefault
            | M::Reverse
            | M::Cast
            | M::OfType
            | M::Union
            | M::Intersect
            | M::Except
            | M::SequenceEqual
            | M::DefaultIfEmpty
            | M::Zip
    )
}

const EMPTY: EvalError = err("Sequence contains no elements");
const NO_MATCH: EvalError = err("Sequence contains no matching element");
const MORE_THAN_ONE: EvalError = err("Sequence contains more than one element");

pub(super) fn call<'e>(
    m: &mut Machine<'e>,
    t: Val<'e>,
    member: M,
    args: &'e [Node],
    generic: Option<Ty>,
) -> Result<Val<'e>, EvalError> {
    let items = t.items()?;
    m.ticks(items.len())?;
    let q = Query {
        args,
        lambda: args.first().filter(|a| matches!(a, Node::Lambda(..))),
        generic,
    };
    match member {
        M::Where
        | M::Select
        | M::SelectMany
        | M::OrderBy
        | M::OrderByDescending
        | M::ThenBy
        | M::ThenByDescending
        | M::GroupBy
        | M::Skip
        | M::Take
        | M::SkipWhile
        | M::TakeWhile
        | M::Distinct
        | M::ToArray
        | M::ToList
        | M::Reverse
        | M::DefaultIfEmpty
        | M::Cast
        | M::OfType => reshape(m, &q, member, items),
        M::Concat | M::Union | M::Intersect | M::Except | M::SequenceEqual | M::Zip => {
            combine(m, &q, member, items)
        }
        M::ToDictionary | M::Aggregate | M::Sum | M::Average | M::Min | M::Max => {
            fold(m, &q, member, items)
        }
        _ => pick(m, &q, member, items),
    }
}

/// A LINQ call's arguments: the first lambda (predicate, selector or key) if any.
struct Query<'e> {
    args: &'e [Node],
    lambda: Option<&'e Node>,
    generic: Option<Ty>,
}

impl<'e> Query<'e> {
    /// `f` applied to one item (and its index, when it takes one).
    fn apply(
        &self,
        m: &mut Machine<'e>,
        f: &'e Node,
        item: &Val<'static>,
        i: usize,
    ) -> Result<Val<'e>, EvalError> {
        let Node::Lambda(params, _) = f else {
            return Err(err("expected a lambda"));
        };
        if params.len() == 2 {
            m.apply(f, &[item.clone(), Val::Int(i as i64)])
        } else {
            m.apply(f, std::slice::from_ref(item))
        }
    }
    fn lambda(&self, what: &'static str) -> Result<&'e Node, EvalError> {
        self.lambda.ok_or(err(what))
    }
    /// The items the predicate keeps (all of them without one).
    fn filtered(
        &self,
        m: &mut Machine<'e>,
        items: Vec<Val<'static>>,
    ) -> Result<Vec<Val<'static>>, EvalError> {
        let Some(f) = self.lambda else {
            return Ok(items);
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if self.apply(m, f, &item, i)?.truthy()? {
                out.push(item);
            }
        }
        Ok(out)
    }
    /// The second sequence of Concat, Union, Zip...
    fn other(&self, m: &mut Machine<'e>) -> Result<Vec<Val<'static>>, EvalError> {
        let a = self
            .args
            .first()
            .ok_or(err("a second sequence is missing"))?;
        let items = m.eval(a)?.items()?;
        m.ticks(items.len())?;
        Ok(items)
    }
    fn count(&self, m: &mut Machine<'e>) -> Result<usize, EvalError> {
        match self.args.first().map(|a| m.eval(a)).transpose()? {
            Some(Val::Int(n)) => Ok(usize::try_from(n).unwrap_or(0)),
            _ => Err(err("expected a count")),
        }
    }
}

fn new_list<'e>(m: &mut Machine<'e>, items: Vec<Val<'static>>) -> Result<Val<'e>, EvalError> {
    m.charge(items.len() * 32)?;
    Ok(list(items))
}

/// The methods that return a new sequence from one.
fn reshape<'e>(
    m: &mut Machine<'e>,
    q: &Query<'e>,
    member: M,
    items: Vec<Val<'static>>,
) -> Result<Val<'e>, EvalError> {
    let out = match member {
        M::Where => q.filtered(m, items)?,
        M::Select | M::SelectMany => {
            let f = q.lambda("Select takes a lambda")?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let v = q.apply(m, f, item, i)?.into_owned();
                if member == M::SelectMany {
                    let inner = v.items()?;
                    m.ticks(inner.len())?;
                    out.extend(inner);
                } else {
                    out.push(v);
                }
            }
            out
        }
        M::ThenBy | M::ThenByDescending => {
            return Err(err("ThenBy follows OrderBy, OrderByDescending or ThenBy"))
        }
        // GroupBy(key[, element]): groups in the order their keys first appear
        M::GroupBy => {
            let key = q.lambda("GroupBy takes a key selector")?;
            let element = q.args.get(1).filter(|a| matches!(a, Node::Lambda(..)));
            let mut groups: Vec<(Val<'static>, Vec<Val<'static>>)> = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let k = q.apply(m, key, &item, i)?.into_owned();
                let v = match element {
                    Some(f) => q.apply(m, f, &item, i)?.into_owned(),
                    None => item,
                };
                m.ticks(groups.len() + 1)?;
                match groups.iter_mut().find(|(g, _)| *g == k) {
                    Some((_, members)) => members.push(v),
                    None => groups.push((k, vec![v])),
                }
            }
            groups
                .into_iter()
                .map(|g| Val::Group(std::rc::Rc::new(g)))
                .collect()
        }
        M::OrderBy | M::OrderByDescending => {
            let f = q.lambda("OrderBy takes a lambda")?;
            let mut keyed = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let k = q.apply(m, f, &item, i)?.into_owned();
                keyed.push((k, item));
            }
            m.ticks(keyed.len() * 8)?;
            // stable either way: equal keys keep their order
            if member == M::OrderBy {
                keyed.sort_by(|a, b| compare(&a.0, &b.0));
            } else {
                keyed.sort_by(|a, b| compare(&b.0, &a.0));
            }
            keyed.into_iter().map(|(_, v)| v).collect()
        }
        M::Skip => {
            let n = q.count(m)?;
            items.into_iter().skip(n).collect()
        }
        M::Take => {
            let n = q.count(m)?;
            items.into_iter().take(n).collect()
        }
        M::SkipWhile | M::TakeWhile => {
            let f = q.lambda("SkipWhile and TakeWhile take a lambda")?;
            let mut cut = items.len();
            for (i, item) in items.iter().enumerate() {
                if !q.apply(m, f, item, i)?.truthy()? {
                    cut = i;
                    break;
                }
            }
            let mut items = items;
            let rest = items.split_off(cut);
            if member == M::SkipWhile {
                rest
            } else {
                items
            }
        }
        M::Distinct => distinct(m, items)?,
        M::Reverse => items.into_iter().rev().collect(),
        M::DefaultIfEmpty if items.is_empty() => vec![Val::Null],
        M::Cast => {
            let t = q.generic.ok_or(err("Cast takes a type: Cast<T>()"))?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(cast(t, item)?);
            }
            out
        }
        M::OfType => {
            let t = q.generic.ok_or(err("OfType takes a type: OfType<T>()"))?;
            items.into_iter().filter(|v| is_type(v, t)).collect()
        }
        // ToArray, ToList, DefaultIfEmpty of a non-empty sequence: a copy
        _ => items,
    };
    new_list(m, out)
}

/// The methods that take a second sequence.
fn combine<'e>(
    m: &mut Machine<'e>,
    q: &Query<'e>,
    member: M,
    items: Vec<Val<'static>>,
) -> Result<Val<'e>, EvalError> {
    let theirs = q.other(m)?;
    let out = match member {
        M::SequenceEqual => return Ok(Val::Bool(items == theirs)),
        M::Concat => items.into_iter().chain(theirs).collect(),
        M::Union => distinct(m, items.into_iter().chain(theirs).collect())?,
        M::Intersect | M::Except => {
            let keep = member == M::Intersect;
            let mut out = Vec::new();
            for item in distinct(m, items)? {
                m.ticks(theirs.len())?;
                if theirs.contains(&item) == keep {
                    out.push(item);
                }
            }
            out
        }
        _ => {
            let f = q
                .args
                .get(1)
                .ok_or(err("Zip takes a sequence and a lambda"))?;
            let mut out = Vec::new();
            for (a, b) in items.into_iter().zip(theirs) {
                out.push(m.apply(f, &[a, b])?.into_owned());
            }
            out
        }
    };
    new_list(m, out)
}

/// The methods that pick an element or answer a question.
fn pick<'e>(
    m: &mut Machine<'e>,
    q: &Query<'e>,
    member: M,
    items: Vec<Val<'static>>,
) -> Result<Val<'e>, EvalError> {
    Ok(match member {
        M::Any | M::All => {
            let Some(f) = q.lambda else {
                if member == M::All {
                    return Err(err("All takes a lambda"));
                }
                return Ok(Val::Bool(!items.is_empty()));
            };
            let want = member == M::Any;
            let mut found = !want;
            for (i, item) in items.iter().enumerate() {
                if q.apply(m, f, item, i)?.truthy()? == want {
                    found = want;
                    break;
                }
            }
            Val::Bool(found)
        }
        M::Count => Val::Int(q.filtered(m, items)?.len() as i64),
        M::Contains => {
            let v = m.eval(q.args.first().ok_or(err("Contains takes a value"))?)?;
            Val::Bool(items.contains(&v.into_owned()))
        }
        M::ElementAt | M::ElementAtOrDefault => {
            let i = q.count(m)?;
            match items.get(i) {
                Some(v) => v.clone(),
                None if member == M::ElementAtOrDefault => Val::Null,
                None => return Err(OUT_OF_RANGE),
            }
        }
        // First, FirstOrDefault, Last, LastOrDefault, Single, SingleOrDefault
        _ => {
            let found = q.filtered(m, items)?;
            let or_default = matches!(
                member,
                M::FirstOrDefault | M::LastOrDefault | M::SingleOrDefault
            );
            if matches!(member, M::Single | M::SingleOrDefault) && found.len() > 1 {
                return Err(MORE_THAN_ONE);
            }
            let chosen = if matches!(member, M::Last | M::LastOrDefault) {
                found.last()
            } else {
                found.first()
            };
            match (chosen, or_default, q.lambda, q.args.first()) {
                (Some(v), ..) => v.clone(),
                // FirstOrDefault(defaultValue)
                (None, true, None, Some(d)) => m.eval(d)?,
                (None, true, ..) => Val::Null,
                (None, false, Some(_), _) => return Err(NO_MATCH),
                (None, false, None, _) => return Err(EMPTY),
            }
        }
    })
}

/// The methods that fold a sequence into one value.
fn fold<'e>(
    m: &mut Machine<'e>,
    q: &Query<'e>,
    member: M,
    items: Vec<Val<'static>>,
) -> Result<Val<'e>, EvalError> {
    match member {
        M::ToDictionary => {
            let key = q.lambda("ToDictionary takes a key lambda")?;
            let value = q.args.get(1);
            let mut entries: Vec<(String, Val<'static>)> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let k = q.apply(m, key, item, i)?.to_text().into_owned();
                if entries.iter().any(|(x, _)| *x == k) {
                    return Err(EvalError(Cow::Owned(format!(
                        "An item with the same key has already been added. Key: {k}"
                    ))));
                }
                let v = match value {
                    Some(f) => q.apply(m, f, item, i)?.into_owned(),
                    None => item.clone(),
                };
                entries.push((k, v));
            }
            m.charge(entries.len() * 64)?;
            Ok(Val::Dict(std::rc::Rc::new(std::cell::RefCell::new(
                entries,
            ))))
        }
        M::Aggregate => {
            let (seed, f, result) = match q.args {
                [f @ Node::Lambda(..)] => (None, f, None),
                [seed, f] => (Some(seed), f, None),
                [seed, f, r] => (Some(seed), f, Some(r)),
                _ => {
                    return Err(err(
                        "Aggregate takes (func), (seed, func) or (seed, func, result)",
                    ))
                }
            };
            let mut items = items.into_iter();
            let mut acc: Val<'e> = match seed {
                Some(s) => m.eval(s)?,
                None => items.next().ok_or(EMPTY)?,
            };
            for item in items {
                acc = m.apply(f, &[acc, item])?;
                if let Val::Str(Cow::Owned(s)) = &acc {
                    m.charge(s.len())?;
                }
            }
            match result {
                Some(r) => m.apply(r, &[acc]),
                None => Ok(acc),
            }
        }
        // Sum, Average, Min, Max
        _ => {
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                values.push(match q.lambda {
                    Some(f) => q.apply(m, f, item, i)?.into_owned(),
                    None => item.clone(),
                });
            }
            aggregate(member, values)
        }
    }
}

fn distinct(m: &mut Machine, items: Vec<Val<'static>>) -> Result<Vec<Val<'static>>, EvalError> {
    let mut out: Vec<Val<'static>> = Vec::with_capacity(items.len());
    for item in items {
        m.ticks(out.len() / 8 + 1)?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

/// The default comparer: nulls first, numbers by value, strings ordinally, bools
/// false before true.
/// `source.OrderBy(k1).ThenBy(k2)...` (`node` is the last ThenBy): the source sorted
/// by every key in turn, stable, each key's lambda called once per item.
pub(super) fn ordered<'e>(m: &mut Machine<'e>, node: &'e Node) -> Result<Val<'e>, EvalError> {
    let mut keys: Vec<(&'e Node, bool)> = Vec::new();
    let mut at = node;
    let source = loop {
        let Node::Call {
            target,
            member,
            args,
            ..
        } = at
        else {
            return Err(err("ThenBy follows OrderBy, OrderByDescending or ThenBy"));
        };
        let lambda = args
            .first()
            .filter(|a| matches!(a, Node::Lambda(..)))
            .ok_or(err("OrderBy and ThenBy take a lambda"))?;
        match member {
            M::ThenBy | M::ThenByDescending => {
                keys.push((lambda, *member == M::ThenByDescending));
                at = target;
            }
            M::OrderBy | M::OrderByDescending => {
                keys.push((lambda, *member == M::OrderByDescending));
                break target;
            }
            _ => return Err(err("ThenBy follows OrderBy, OrderByDescending or ThenBy")),
        }
    };
    keys.reverse();
    let items = m.eval(source)?.items()?;
    m.ticks(items.len() * (keys.len() + 8))?;
    let mut keyed = Vec::with_capacity(items.len());
    for item in items {
        let mut ks = Vec::with_capacity(keys.len());
        for (f, _) in &keys {
            ks.push(m.apply(f, std::slice::from_ref(&item))?.into_owned());
        }
        keyed.push((ks, item));
    }
    keyed.sort_by(|a, b| {
        for (i, (_, descending)) in keys.iter().enumerate() {
            let o = compare(&a.0[i], &b.0[i]);
            let o = if *descending { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    new_list(m, keyed.into_iter().map(|(_, v)| v).collect())
}

pub(super) fn compare(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Int(_) | Val::Double(_), Val::Int(_) | Val::Double(_)) => {
            let f = |v: &Val| match v {
                Val::Int(i) => *i as f64,
                Val::Double(d) => *d,
                _ => 0.0,
            };
            f(a).partial_cmp(&f(b)).unwrap_or(Ordering::Equal)
        }
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        _ => a.to_text().cmp(&b.to_text()),
    }
}

fn aggregate<'e>(member: M, values: Vec<Val<'static>>) -> Result<Val<'e>, EvalError> {
    let values: Vec<Val<'static>> = values.into_iter().filter(|v| *v != Val::Null).collect();
    match member {
        M::Min | M::Max => {
            let mut best: Option<Val<'static>> = None;
            for v in values {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let o = compare(&v, &b);
                        if (member == M::Min && o.is_lt()) || (member == M::Max && o.is_gt()) {
                            v
                        } else {
                            b
                        }
                    }
                });
            }
            best.ok_or(EMPTY)
        }
        _ => {
            let n = values.len();
            let mut sum = Val::Int(0);
            for v in values {
                if !matches!(v, Val::Int(_) | Val::Double(_)) {
                    return Err(err("Sum and Average take numbers"));
                }
                sum = eval::binary(BinOp::Add, sum, v)?;
            }
            if member == M::Sum {
                return Ok(sum);
            }
            if n == 0 {
                return Err(EMPTY);
            }
            let total = match sum {
                Val::Int(i) => i as f64,
                Val::Double(d) => d,
                _ => 0.0,
            };
            Ok(Val::Double(total / n as f64))
        }
    }
}
