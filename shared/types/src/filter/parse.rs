//! From JSON to [`Filter`] and back: [`Filter::parse`] (with the language's limits),
//! [`Filter::to_json`] (the canonical form, which parses back to the same filter), and
//! [`Filter::check_types`] (operands against a collection's attribute types).
//!
//! Every error is `Error::invalid` whose message starts with the path of the part that is
//! wrong, from the root `filter` (`filter.$or[2].year.$gte: ...`), because the HTTP edge
//! returns it to the client as is.

use serde_json::{Map, Value};

use super::{AttrType, Cond, Filter, MAX_CONDITIONS, MAX_DEPTH, MAX_IN_ITEMS, Scalar};
use crate::error::{Error, Result};
use crate::model::MAX_ATTRIBUTE_KEY_BYTES;

/// The operators an attribute takes, for error messages.
const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $contains";

impl Filter {
    /// Parses the JSON filter. Errors are `Error::invalid` with a message that starts with
    /// the path of the wrong part, e.g. `filter.$and[1].year.$gte: expected a number, a
    /// string or a boolean, got an array`.
    ///
    /// A single key yields its part directly; several keys in one object (or several
    /// operators on one attribute) yield an [`Filter::And`] of the parts in key order.
    pub fn parse(value: &Value) -> Result<Filter> {
        Parser { conditions: 0 }.filter(value, "filter", 0)
    }

    /// The JSON form: `parse(&f.to_json()) == f` for every filter [`Filter::parse`] can
    /// produce. Conjunctions are written as `$and` (an empty one as `{}`) and every
    /// condition as `{"key": {"$op": operand}}`, so the form does not depend on how the
    /// filter was spelled.
    pub fn to_json(&self) -> Value {
        match self {
            Filter::And(parts) if parts.is_empty() => Value::Object(Map::new()),
            Filter::And(parts) => single("$and", Value::Array(parts.iter().map(Filter::to_json).collect())),
            Filter::Or(parts) => single("$or", Value::Array(parts.iter().map(Filter::to_json).collect())),
            Filter::Not(inner) => single("$not", inner.to_json()),
            Filter::Field { key, cond } => single(key, single(cond.operator(), cond.operand_json())),
        }
    }

    /// Checks operands against attribute types. `type_of(key)` is the collection's type
    /// for a key, `None` when unknown (then any operand is accepted: no row has it yet, so
    /// it just matches nothing). A mismatch is `Error::invalid` naming the path and both
    /// types, e.g. `filter.year.$gte: attribute "year" is an int, the operand is a string`.
    ///
    /// The path has no `$and[i]` steps: the AST does not record whether a conjunction was
    /// an `$and` list or several keys of one object, and naming the attribute and operator
    /// locates the part in either spelling (`$or[i]` and `$not` steps are kept).
    pub fn check_types(&self, type_of: &dyn Fn(&str) -> Option<AttrType>) -> Result<()> {
        check(self, "filter", type_of)
    }
}

impl Cond {
    /// The operator's name as written in JSON (`"$gte"`).
    pub fn operator(&self) -> &'static str {
        match self {
            Cond::Eq(_) => "$eq",
            Cond::Ne(_) => "$ne",
            Cond::Gt(_) => "$gt",
            Cond::Gte(_) => "$gte",
            Cond::Lt(_) => "$lt",
            Cond::Lte(_) => "$lte",
            Cond::In(_) => "$in",
            Cond::Nin(_) => "$nin",
            Cond::Exists(_) => "$exists",
            Cond::Contains(_) => "$contains",
        }
    }

    fn operand_json(&self) -> Value {
        match self {
            Cond::Eq(x) | Cond::Ne(x) | Cond::Gt(x) | Cond::Gte(x) | Cond::Lt(x) | Cond::Lte(x) => x.to_json(),
            Cond::In(xs) | Cond::Nin(xs) => Value::Array(xs.iter().map(Scalar::to_json).collect()),
            Cond::Exists(b) => Value::Bool(*b),
            Cond::Contains(s) => Value::String(s.clone()),
        }
    }
}

impl Scalar {
    /// The JSON form. A non-finite float (which [`Filter::parse`] never produces) becomes
    /// `null`, as JSON has no such numbers.
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.clone()),
        }
    }

    /// The operand's kind with its article, for messages: "an int", "a string".
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Bool(_) => "a bool",
            Scalar::Int(_) => "an int",
            Scalar::Float(_) => "a float",
            Scalar::Str(_) => "a string",
        }
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(key.to_owned(), value);
    Value::Object(map)
}

/// A JSON value's kind with its article, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid(path: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{path}: {message}"))
}

/// One parse: counts conditions across the whole filter.
struct Parser {
    conditions: usize,
}

impl Parser {
    /// Parses a filter object at `path`; `depth` is the number of logical nodes
    /// (`And`/`Or`/`Not`) enclosing it in the AST.
    fn filter(&mut self, value: &Value, path: &str, depth: usize) -> Result<Filter> {
        let Value::Object(object) = value else {
            return Err(invalid(path, format_args!("expected an object, got {}", json_kind(value))));
        };
        match object.len() {
            0 => {
                enter(path, depth)?;
                // `{}` is a condition of its own (it matches everything), so a wide list
                // of them is bounded like a list of real conditions.
                self.count(path)?;
                Ok(Filter::And(Vec::new()))
            }
            1 => {
                let (key, value) = object.iter().next().expect("one entry");
                self.entry(key, value, path, depth)
            }
            _ => {
                let inner = enter(path, depth)?;
                let parts = object.iter().map(|(k, v)| self.entry(k, v, path, inner)).collect::<Result<_>>()?;
                Ok(Filter::And(parts))
            }
        }
    }

    /// One key of a filter object: a logical operator or an attribute.
    fn entry(&mut self, key: &str, value: &Value, path: &str, depth: usize) -> Result<Filter> {
        match key {
            "$and" | "$or" => {
                let path = format!("{path}.{key}");
                let inner = enter(&path, depth)?;
                let Value::Array(items) = value else {
                    return Err(invalid(&path, format_args!("expected an array of filters, got {}", json_kind(value))));
                };
                if items.is_empty() {
                    // An empty `$or` matches nothing; counted like `{}` (see `filter`).
                    self.count(&path)?;
                }
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.filter(item, &format!("{path}[{i}]"), inner))
                    .collect::<Result<_>>()?;
                Ok(if key == "$and" { Filter::And(parts) } else { Filter::Or(parts) })
            }
            "$not" => {
                let path = format!("{path}.$not");
                let inner = enter(&path, depth)?;
                Ok(Filter::Not(Box::new(self.filter(value, &path, inner)?)))
            }
            _ if key.starts_with('$') => Err(invalid(
                &format!("{path}.{key}"),
                format_args!(
                    "unknown operator {key:?}; a filter's keys are $and, $or, $not and attribute names \
                     (attribute operators go inside the attribute: {{\"year\": {{\"$gte\": 2000}}}})"
                ),
            )),
            "" => Err(invalid(path, "attribute name must not be empty")),
            _ if key.len() > MAX_ATTRIBUTE_KEY_BYTES => Err(invalid(
                path,
                format_args!(
                    "attribute name {:?}… is {} bytes long; the limit is {MAX_ATTRIBUTE_KEY_BYTES}",
                    key.chars().take(32).collect::<String>(),
                    key.len()
                ),
            )),
            _ => self.attribute(key, value, &format!("{path}.{key}"), depth),
        }
    }

    /// An attribute's value: a scalar (`$eq`) or an object of operators.
    fn attribute(&mut self, key: &str, value: &Value, path: &str, depth: usize) -> Result<Filter> {
        let field = |cond| Filter::Field { key: key.to_owned(), cond };
        match value {
            Value::Null => Err(invalid(
                path,
                format_args!(
                    "null is not a value to compare with; use {{\"$exists\": false}} to match rows without {key:?}"
                ),
            )),
            Value::Array(_) => Err(invalid(
                path,
                "an array is not a value to compare with; use {\"$in\": [...]} to match any of several values",
            )),
            Value::Object(ops) if ops.is_empty() => {
                Err(invalid(path, format_args!("empty operator object; use one or more of {OPERATORS}")))
            }
            Value::Object(ops) if ops.len() == 1 => {
                let (op, operand) = ops.iter().next().expect("one entry");
                Ok(field(self.condition(op, operand, &format!("{path}.{op}"))?))
            }
            Value::Object(ops) => {
                // Several operators must all hold: an implicit `$and`, which nests.
                enter(path, depth)?;
                let parts = ops
                    .iter()
                    .map(|(op, operand)| Ok(field(self.condition(op, operand, &format!("{path}.{op}"))?)))
                    .collect::<Result<_>>()?;
                Ok(Filter::And(parts))
            }
            _ => {
                self.count(path)?;
                Ok(field(Cond::Eq(scalar(value, path)?)))
            }
        }
    }

    /// One operator and its operand; `path` ends with the operator.
    fn condition(&mut self, op: &str, operand: &Value, path: &str) -> Result<Cond> {
        self.count(path)?;
        Ok(match op {
            "$eq" => Cond::Eq(scalar(operand, path)?),
            "$ne" => Cond::Ne(scalar(operand, path)?),
            "$gt" => Cond::Gt(scalar(operand, path)?),
            "$gte" => Cond::Gte(scalar(operand, path)?),
            "$lt" => Cond::Lt(scalar(operand, path)?),
            "$lte" => Cond::Lte(scalar(operand, path)?),
            "$in" | "$nin" => {
                let Value::Array(items) = operand else {
                    return Err(invalid(path, format_args!("expected an array of values, got {}", json_kind(operand))));
                };
                if items.len() > MAX_IN_ITEMS {
                    return Err(invalid(path, format_args!("{} values; the limit is {MAX_IN_ITEMS}", items.len())));
                }
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| scalar(item, &format!("{path}[{i}]")))
                    .collect::<Result<_>>()?;
                if op == "$in" { Cond::In(values) } else { Cond::Nin(values) }
            }
            "$exists" => match operand {
                Value::Bool(b) => Cond::Exists(*b),
                _ => return Err(invalid(path, format_args!("expected a boolean, got {}", json_kind(operand)))),
            },
            "$contains" => match operand {
                Value::String(s) => Cond::Contains(s.clone()),
                _ => return Err(invalid(path, format_args!("expected a string, got {}", json_kind(operand)))),
            },
            "$and" | "$or" | "$not" => {
                return Err(invalid(
                    path,
                    format_args!(
                        "unknown operator {op:?} on an attribute ({op} combines filters and goes outside \
                         the attribute); the operators are {OPERATORS}"
                    ),
                ));
            }
            _ => return Err(invalid(path, format_args!("unknown operator {op:?}; the operators are {OPERATORS}"))),
        })
    }

    fn count(&mut self, path: &str) -> Result<()> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(invalid(path, format_args!("the filter has more than {MAX_CONDITIONS} conditions")));
        }
        Ok(())
    }
}

/// Opens a logical node under `depth` enclosing ones; its depth, or an error past the
/// limit. Counted on the AST (implicit conjunctions included) rather than on the JSON, so
/// that [`Filter::to_json`], which writes every conjunction as `$and`, parses back.
fn enter(path: &str, depth: usize) -> Result<usize> {
    if depth >= MAX_DEPTH {
        return Err(invalid(
            path,
            format_args!(
                "the filter nests more than {MAX_DEPTH} levels of $and, $or and $not (an object with several \
                 keys or operators counts as an $and)"
            ),
        ));
    }
    Ok(depth + 1)
}

/// An operand: a boolean, a string or a number that is exactly an i64 or a finite f64.
fn scalar(value: &Value, path: &str) -> Result<Scalar> {
    match value {
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::String(s) => Ok(Scalar::Str(s.clone())),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Scalar::Int(i))
            } else if n.is_u64() {
                // As a float it would compare inexactly with the int attributes it is
                // meant for; no i64 attribute can hold it anyway.
                Err(invalid(path, format_args!("the integer {n} does not fit a signed 64-bit integer")))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Ok(Scalar::Float(f)),
                    _ => Err(invalid(path, format_args!("{n} is not a finite number"))),
                }
            }
        }
        _ => Err(invalid(path, format_args!("expected a number, a string or a boolean, got {}", json_kind(value)))),
    }
}

fn check(filter: &Filter, path: &str, type_of: &dyn Fn(&str) -> Option<AttrType>) -> Result<()> {
    match filter {
        Filter::And(parts) => parts.iter().try_for_each(|p| check(p, path, type_of)),
        Filter::Or(parts) => {
            parts.iter().enumerate().try_for_each(|(i, p)| check(p, &format!("{path}.$or[{i}]"), type_of))
        }
        Filter::Not(inner) => check(inner, &format!("{path}.$not"), type_of),
        Filter::Field { key, cond } => match type_of(key) {
            None => Ok(()),
            Some(ty) => check_cond(ty, key, cond, &format!("{path}.{key}.{}", cond.operator())),
        },
    }
}

/// One condition against a known attribute type; `path` ends with the operator.
fn check_cond(ty: AttrType, key: &str, cond: &Cond, path: &str) -> Result<()> {
    let is = type_with_article(ty);
    let operands = match cond {
        Cond::Exists(_) => return Ok(()),
        Cond::Contains(_) if ty == AttrType::StringList => return Ok(()),
        Cond::Contains(_) => {
            return Err(invalid(
                path,
                format_args!("attribute {key:?} is {is}; $contains applies only to a string[] attribute"),
            ));
        }
        Cond::Gt(_) | Cond::Gte(_) | Cond::Lt(_) | Cond::Lte(_)
            if matches!(ty, AttrType::Bool | AttrType::StringList) =>
        {
            return Err(invalid(
                path,
                format_args!("attribute {key:?} is {is}, which has no order; use $eq, $ne, $in or $nin"),
            ));
        }
        Cond::Eq(x) | Cond::Ne(x) | Cond::Gt(x) | Cond::Gte(x) | Cond::Lt(x) | Cond::Lte(x) => std::slice::from_ref(x),
        Cond::In(xs) | Cond::Nin(xs) => xs.as_slice(),
    };
    let list = matches!(cond, Cond::In(_) | Cond::Nin(_));
    for (i, x) in operands.iter().enumerate() {
        let fits = matches!(
            (ty, x),
            (AttrType::Int | AttrType::Float, Scalar::Int(_) | Scalar::Float(_))
                | (AttrType::String | AttrType::StringList, Scalar::Str(_))
                | (AttrType::Bool, Scalar::Bool(_))
        );
        if !fits {
            let at = if list { format!("{path}[{i}]") } else { path.to_owned() };
            return Err(invalid(&at, format_args!("attribute {key:?} is {is}, the operand is {}", x.kind())));
        }
    }
    Ok(())
}

fn type_with_article(ty: AttrType) -> String {
    let article = if ty == AttrType::Int { "an" } else { "a" };
    format!("{article} {}", ty.name())
}
