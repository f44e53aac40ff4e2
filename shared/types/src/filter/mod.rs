//! Attribute filters: the JSON filter language (Mongo style, as in Chroma and Pinecone),
//! its parsed form, its type check against a collection's attribute types, and the
//! reference evaluator over a row's JSON attributes.
//!
//! Flow: the HTTP edge parses the request's `"filter"` JSON with [`Filter::parse`] (a
//! malformed filter or unknown operator is `Error::invalid` naming the part that is wrong,
//! e.g. `filter.$and[1].year.$gte`), checks it against the collection's attribute types
//! with [`Filter::check_types`], and hands the parsed filter down. Every evaluator
//! (this module's [`Filter::matches`] for unflushed rows, the per-segment attribute index
//! and column evaluator in `strata-storage`) implements the same semantics:
//!
//! - attribute kinds are bool, int (i64), float (f64), string and string list
//!   ([`AttrType`]); ints and floats compare numerically with each other;
//! - a comparison with a missing attribute is false (SQL null semantics), `$ne` and
//!   `$nin` included; `$exists` tests presence; `$not` is plain negation (so it matches
//!   rows that lack the attribute);
//! - on a string list, `$eq` and `$contains` mean "contains", `$in` "contains any",
//!   `$ne` and `$nin` "present and contains none"; ordering operators do not apply;
//! - strings order by bytes; bools have no order;
//! - a value of another kind than the operand (possible only in data written before
//!   attribute types were enforced) never matches.
//!
//! # The language
//!
//! A filter is a JSON object. Its keys are `$and: [filter, ...]`, `$or: [filter, ...]`,
//! `$not: filter`, or attribute names; several keys in one object must all hold, and `{}`
//! matches every row. An attribute's value is either a scalar (boolean, number or
//! string: shorthand for `$eq`) or a non-empty object of operators that must all hold:
//!
//! | operator | operand | holds when the attribute is present and … |
//! |---|---|---|
//! | `$eq`, `$ne` | scalar | equal / comparable and not equal (lists: contains / contains none) |
//! | `$gt`, `$gte`, `$lt`, `$lte` | scalar | ordered accordingly (numbers, strings) |
//! | `$in`, `$nin` | array of scalars (≤ [`MAX_IN_ITEMS`]) | `$eq` holds for one / `$ne` holds for every operand |
//! | `$exists` | boolean | (presence itself: `false` matches rows without it) |
//! | `$contains` | string | a string list contains the string |
//!
//! Example: `{"genre": "jazz", "year": {"$gte": 1950, "$lt": 1960}, "$not": {"tags":
//! {"$contains": "live"}}}`.
//!
//! JSON integers become [`Scalar::Int`] (they must fit an i64), other numbers
//! [`Scalar::Float`] (`3.0` stays a float). A `null` attribute value counts as missing.
//! Limits: at most [`MAX_DEPTH`] nested `$and`/`$or`/`$not` (an object with several keys
//! or operators is an implicit `$and` and counts), at most [`MAX_CONDITIONS`] conditions,
//! attribute names of 1..=[`MAX_ATTRIBUTE_KEY_BYTES`](crate::MAX_ATTRIBUTE_KEY_BYTES) bytes.

mod eval;
mod parse;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Deepest nesting of logical operators (`$and`, `$or`, `$not`, and the implicit `$and` of
/// an object with several keys or operators) a filter may have: evaluators recurse, and
/// real filters are shallow.
pub const MAX_DEPTH: usize = 32;

/// Most conditions a filter may hold: one per operator on an attribute, and one per empty
/// `{}` or `{"$or": []}` part, so the size of the parsed filter (and the cost of testing
/// a row) stays within about `MAX_CONDITIONS × MAX_DEPTH` nodes whatever the input.
pub const MAX_CONDITIONS: usize = 1024;

/// Most operands in one `$in` or `$nin` array.
pub const MAX_IN_ITEMS: usize = 10_000;

/// The one type an attribute keeps in a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum AttrType {
    #[serde(rename = "bool")]
    Bool,
    /// A signed 64-bit integer.
    #[serde(rename = "int")]
    Int,
    /// A 64-bit float; integers written to a float attribute are stored as floats.
    #[serde(rename = "float")]
    Float,
    #[serde(rename = "string")]
    String,
    /// An array of strings (tags).
    #[serde(rename = "string[]")]
    StringList,
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every part matches (`$and`, or several keys in one object). Empty: matches all.
    And(Vec<Filter>),
    /// At least one part matches (`$or`). Empty: matches nothing.
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// A condition on one attribute.
    Field {
        key: String,
        cond: Cond,
    },
}

/// A condition on one attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    Eq(Scalar),
    Ne(Scalar),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    In(Vec<Scalar>),
    Nin(Vec<Scalar>),
    Exists(bool),
    /// A string list contains this string.
    Contains(String),
}

/// An operand of a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    /// Finite in every filter [`Filter::parse`] produces (it refuses other numbers).
    Float(f64),
    Str(String),
}

/// A borrowed attribute value as the evaluators see it.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
}
