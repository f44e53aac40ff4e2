//! The semantics of a condition on one value ([`Cond::test_scalar`], [`Cond::test_list`],
//! [`Cond::test_missing`]), which every evaluator calls so that none can drift from the
//! others; the reference evaluator over a row's JSON attributes ([`Filter::matches`]);
//! the attribute types of JSON values ([`AttrType::of`]); and small queries on a filter.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::Value;

use super::{AttrType, Cond, Filter, Scalar, ValueRef};
use crate::model::Attributes;

impl AttrType {
    /// The type of a JSON attribute value: bool, int (a number that fits i64), float (any
    /// other finite number), string, string list (an array whose items are all strings,
    /// the empty array included). `None` for null, objects, arrays holding non-strings and
    /// integers above `i64::MAX`.
    pub fn of(value: &Value) -> Option<AttrType> {
        match value {
            Value::Bool(_) => Some(AttrType::Bool),
            Value::Number(n) if n.is_i64() => Some(AttrType::Int),
            // serde_json holds only finite floats; u64 above i64::MAX is neither kind.
            Value::Number(n) if n.is_f64() => Some(AttrType::Float),
            Value::String(_) => Some(AttrType::String),
            Value::Array(items) if items.iter().all(Value::is_string) => Some(AttrType::StringList),
            _ => None,
        }
    }

    /// Whether a value of type `value` may be stored in an attribute of type `self` (an
    /// int into a float attribute is accepted: it is stored as a float).
    pub fn accepts(self, value: AttrType) -> bool {
        self == value || (self == AttrType::Float && value == AttrType::Int)
    }

    /// The name used in the API and in messages: "bool", "int", "float", "string",
    /// "string[]" (the serde form).
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Bool => "bool",
            AttrType::Int => "int",
            AttrType::Float => "float",
            AttrType::String => "string",
            AttrType::StringList => "string[]",
        }
    }
}

/// How a present value compares with an operand; `None` when their kinds are not
/// comparable (then every comparison, `$ne` included, is false). Ints compare with ints
/// exactly and with floats as f64, like the segment index's ordering; strings by bytes.
fn compare(value: ValueRef<'_>, operand: &Scalar) -> Option<Ordering> {
    match (value, operand) {
        (ValueRef::Int(v), Scalar::Int(x)) => Some(v.cmp(x)),
        (ValueRef::Int(v), Scalar::Float(x)) => (v as f64).partial_cmp(x),
        (ValueRef::Float(v), Scalar::Int(x)) => v.partial_cmp(&(*x as f64)),
        (ValueRef::Float(v), Scalar::Float(x)) => v.partial_cmp(x),
        (ValueRef::Str(v), Scalar::Str(x)) => Some(v.as_bytes().cmp(x.as_bytes())),
        (ValueRef::Bool(v), Scalar::Bool(x)) => Some(v.cmp(x)),
        _ => None,
    }
}

/// [`compare`] for the ordering operators: bools have no order.
fn order(value: ValueRef<'_>, operand: &Scalar) -> Option<Ordering> {
    match value {
        ValueRef::Bool(_) => None,
        _ => compare(value, operand),
    }
}

fn equal(value: ValueRef<'_>, operand: &Scalar) -> bool {
    compare(value, operand) == Some(Ordering::Equal)
}

/// Comparable and different: what `$ne` asks of one operand.
fn different(value: ValueRef<'_>, operand: &Scalar) -> bool {
    matches!(compare(value, operand), Some(Ordering::Less | Ordering::Greater))
}

fn is_str(operand: &Scalar, item: &str) -> bool {
    matches!(operand, Scalar::Str(s) if s == item)
}

/// Whether some item satisfies `pred` (`Iterator::any` needs a sized iterator).
fn any_item<'a>(items: &mut dyn Iterator<Item = &'a str>, mut pred: impl FnMut(&'a str) -> bool) -> bool {
    for item in items {
        if pred(item) {
            return true;
        }
    }
    false
}

impl Cond {
    /// The condition on a present scalar value (one semantics for every evaluator).
    ///
    /// `$in` holds when `$eq` holds for some operand, `$nin` when `$ne` holds for every
    /// operand (so an operand of another kind than the value makes `$nin` false, as it
    /// makes `$ne` false). `$contains` never holds on a scalar.
    pub fn test_scalar(&self, value: ValueRef<'_>) -> bool {
        match self {
            Cond::Eq(x) => equal(value, x),
            Cond::Ne(x) => different(value, x),
            Cond::Gt(x) => order(value, x) == Some(Ordering::Greater),
            Cond::Gte(x) => matches!(order(value, x), Some(Ordering::Greater | Ordering::Equal)),
            Cond::Lt(x) => order(value, x) == Some(Ordering::Less),
            Cond::Lte(x) => matches!(order(value, x), Some(Ordering::Less | Ordering::Equal)),
            Cond::In(xs) => xs.iter().any(|x| equal(value, x)),
            Cond::Nin(xs) => xs.iter().all(|x| different(value, x)),
            Cond::Exists(present) => *present,
            Cond::Contains(_) => false,
        }
    }

    /// The condition on a present string list: `$eq x` and `$contains x` hold when it
    /// contains x, `$ne x` when it contains no x, `$in` when it contains some operand,
    /// `$nin` when it contains none (and every operand is a string: like `$ne`, a
    /// non-string operand is a comparison of different kinds, which is false). Ordering
    /// operators never hold.
    pub fn test_list(&self, items: &mut dyn Iterator<Item = &str>) -> bool {
        match self {
            Cond::Eq(Scalar::Str(x)) | Cond::Contains(x) => any_item(items, |item| item == x),
            Cond::Ne(Scalar::Str(x)) => !any_item(items, |item| item == x),
            Cond::In(xs) => any_item(items, |item| xs.iter().any(|x| is_str(x, item))),
            Cond::Nin(xs) => {
                xs.iter().all(|x| matches!(x, Scalar::Str(_)))
                    && !any_item(items, |item| xs.iter().any(|x| is_str(x, item)))
            }
            Cond::Exists(present) => *present,
            Cond::Eq(_) | Cond::Ne(_) | Cond::Gt(_) | Cond::Gte(_) | Cond::Lt(_) | Cond::Lte(_) => false,
        }
    }

    /// The condition on a missing attribute: true only for `$exists: false`.
    pub fn test_missing(&self) -> bool {
        matches!(self, Cond::Exists(false))
    }

    /// The condition on a JSON attribute value: `null` is a missing attribute, an array
    /// of strings a string list, and a value of no comparable kind (an object, an array
    /// holding non-strings, an integer above `i64::MAX`) only satisfies `$exists: true`.
    pub fn test_json(&self, value: &Value) -> bool {
        match value {
            Value::Null => self.test_missing(),
            Value::Bool(b) => self.test_scalar(ValueRef::Bool(*b)),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => self.test_scalar(ValueRef::Int(i)),
                (None, Some(f)) if n.is_f64() => self.test_scalar(ValueRef::Float(f)),
                _ => matches!(self, Cond::Exists(true)),
            },
            Value::String(s) => self.test_scalar(ValueRef::Str(s)),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                self.test_list(&mut items.iter().filter_map(Value::as_str))
            }
            Value::Array(_) | Value::Object(_) => matches!(self, Cond::Exists(true)),
        }
    }
}

impl Filter {
    /// The reference evaluator over a row's attributes (`None`: the row has none).
    pub fn matches(&self, attrs: Option<&Attributes>) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(|p| p.matches(attrs)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(attrs)),
            Filter::Not(inner) => !inner.matches(attrs),
            Filter::Field { key, cond } => match attrs.and_then(|a| a.get(key)) {
                None => cond.test_missing(),
                Some(value) => cond.test_json(value),
            },
        }
    }

    /// Every attribute key the filter mentions.
    pub fn keys(&self) -> BTreeSet<&str> {
        let mut keys = BTreeSet::new();
        self.collect_keys(&mut keys);
        keys
    }

    fn collect_keys<'a>(&'a self, keys: &mut BTreeSet<&'a str>) {
        match self {
            Filter::And(parts) | Filter::Or(parts) => parts.iter().for_each(|p| p.collect_keys(keys)),
            Filter::Not(inner) => inner.collect_keys(keys),
            Filter::Field { key, .. } => {
                keys.insert(key.as_str());
            }
        }
    }

    /// True for a filter that matches every row: an empty `And` (`{}`), and whatever is
    /// built from such with `$and`/`$or`/`$not` alone (`{"$not": {"$or": []}}`). A
    /// condition on an attribute never counts, as it depends on the row. Callers use it
    /// to skip filtering, so a false answer is always safe.
    pub fn matches_everything(&self) -> bool {
        match self {
            Filter::And(parts) => parts.iter().all(Filter::matches_everything),
            Filter::Or(parts) => parts.iter().any(Filter::matches_everything),
            Filter::Not(inner) => inner.matches_nothing(),
            Filter::Field { .. } => false,
        }
    }

    /// The dual of [`Filter::matches_everything`] (an empty `Or`, and so on).
    fn matches_nothing(&self) -> bool {
        match self {
            Filter::And(parts) => parts.iter().any(Filter::matches_nothing),
            Filter::Or(parts) => parts.iter().all(Filter::matches_nothing),
            Filter::Not(inner) => inner.matches_everything(),
            Filter::Field { .. } => false,
        }
    }
}
