//! Property tests of the filter language: [`Filter::matches`] against a naive evaluator
//! written here straight from the documented semantics (it shares no code with
//! `eval.rs`), and the JSON round trip `parse(to_json(f)) == f`, both for generated ASTs
//! and for whatever `parse` accepts out of random JSON.

use std::cmp::Ordering;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use super::super::{Cond, Filter, Scalar};
use crate::error::ErrorKind;
use crate::model::Attributes;

/// Keys the filters use; rows only ever hold the first three, so "d" is always missing.
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Few, overlapping strings so that equality often holds; bytes order puts "Y" before
/// "x" and "é" after both.
const STRS: [&str; 5] = ["", "x", "y", "Y", "é"];
/// Floats equal to some ints (2.0, -0.0) and between them, so int/float comparisons hit
/// every ordering.
const FLOATS: [f64; 7] = [-1.5, -0.0, 0.0, 0.5, 2.0, 2.5, 1e20];
const INTS: [i64; 9] = [i64::MIN, -3, -1, 0, 1, 2, 3, i64::MAX - 1, i64::MAX];

fn config(cases: u32) -> ProptestConfig {
    // No regression files: they would land outside this module's folder; a failure
    // prints its minimal case and seed anyway.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn attr_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => select(&INTS[..]).prop_map(Value::from),
        1 => select(&FLOATS[..]).prop_map(|f| json!(f)),
        2 => select(&STRS[..]).prop_map(Value::from),
        // Lists weigh more: each list operator has several cases (empty, hit, miss).
        4 => proptest::collection::vec(select(&STRS[..]), 0..4).prop_map(|items| json!(items)),
        // Values of no comparable kind.
        1 => Just(json!([1, "x"])),
        1 => Just(json!({"x": 1})),
        1 => Just(json!(u64::MAX)),
    ]
}

/// A row's attributes: `None` sometimes, else a map over the first three keys.
fn attrs() -> impl Strategy<Value = Option<Attributes>> {
    proptest::option::weighted(
        0.9,
        proptest::collection::btree_map(select(&KEYS[..3]), attr_value(), 0..4)
            .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Attributes>()),
    )
}

/// Operands; `float` generates the floats.
fn scalar(float: BoxedStrategy<f64>) -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        select(&INTS[..]).prop_map(Scalar::Int),
        float.prop_map(Scalar::Float),
        select(&STRS[..]).prop_map(|s| Scalar::Str(s.to_owned())),
    ]
}

fn cond(float: BoxedStrategy<f64>) -> impl Strategy<Value = Cond> {
    let one = scalar(float).boxed();
    let many = proptest::collection::vec(one.clone(), 0..4);
    prop_oneof![
        one.clone().prop_map(Cond::Eq),
        one.clone().prop_map(Cond::Ne),
        one.clone().prop_map(Cond::Gt),
        one.clone().prop_map(Cond::Gte),
        one.clone().prop_map(Cond::Lt),
        one.prop_map(Cond::Lte),
        many.clone().prop_map(Cond::In),
        many.prop_map(Cond::Nin),
        any::<bool>().prop_map(Cond::Exists),
        select(&STRS[..]).prop_map(|s| Cond::Contains(s.to_owned())),
    ]
}

/// Filters of depth ≤ 3 (empty `And`/`Or` included), valid for `parse`: keys without
/// `$`, few conditions, finite floats.
fn filter(float: BoxedStrategy<f64>) -> impl Strategy<Value = Filter> {
    let leaf = (select(&KEYS[..]), cond(float)).prop_map(|(key, cond)| Filter::Field { key: key.to_owned(), cond });
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn few_floats() -> BoxedStrategy<f64> {
    select(&FLOATS[..]).boxed()
}

/// Every finite float, integral ones (2.0, 1e20) included: `parse` turns only what
/// serde_json holds as an integer into `Scalar::Int`, and `Scalar::to_json` stores a
/// float as serde_json's f64 (never as an integer, even for 3.0), so every finite float
/// comes back as the same `Scalar::Float`. NaN and infinities are left out: JSON cannot
/// hold them and `parse` refuses them.
fn all_floats() -> BoxedStrategy<f64> {
    prop_oneof![any::<f64>().prop_filter("finite", |f| f.is_finite()), select(&FLOATS[..])].boxed()
}

/// Floats with few significant digits, for the round trip through text: serde_json
/// prints an f64 with a fraction or an exponent (so 3.0 reads back as a float), but
/// without its `float_roundtrip` feature it may read a 17-digit float back one ULP off,
/// which is serde_json's behaviour for any JSON and not the filter's.
fn short_floats() -> BoxedStrategy<f64> {
    prop_oneof![(-1_000_000i32..1_000_000).prop_map(|i| f64::from(i) / 1000.0), select(&FLOATS[..])].boxed()
}

/// A row's value as the naive evaluator sees it.
enum Naive<'a> {
    Missing,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    List(Vec<&'a str>),
    /// Objects, arrays holding non-strings, integers beyond i64.
    Other,
}

fn naive_value(value: Option<&Value>) -> Naive<'_> {
    match value {
        None | Some(Value::Null) => Naive::Missing,
        Some(Value::Bool(b)) => Naive::Bool(*b),
        Some(Value::Number(n)) if n.is_i64() => Naive::Int(n.as_i64().unwrap()),
        Some(Value::Number(n)) if n.is_f64() => Naive::Float(n.as_f64().unwrap()),
        Some(Value::Number(_)) => Naive::Other,
        Some(Value::String(s)) => Naive::Str(s),
        Some(Value::Array(items)) => {
            let strs: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            if strs.len() == items.len() { Naive::List(strs) } else { Naive::Other }
        }
        Some(Value::Object(_)) => Naive::Other,
    }
}

/// Equality of a present scalar with an operand; `None` when the kinds differ.
fn naive_equal(value: &Naive<'_>, x: &Scalar) -> Option<bool> {
    Some(match (value, x) {
        (Naive::Int(a), Scalar::Int(b)) => a == b,
        (Naive::Int(a), Scalar::Float(b)) => *a as f64 == *b,
        (Naive::Float(a), Scalar::Int(b)) => *a == *b as f64,
        (Naive::Float(a), Scalar::Float(b)) => a == b,
        (Naive::Str(a), Scalar::Str(b)) => *a == b.as_str(),
        (Naive::Bool(a), Scalar::Bool(b)) => a == b,
        _ => return None,
    })
}

/// Order of a present scalar against an operand; `None` for bools and differing kinds.
fn naive_order(value: &Naive<'_>, x: &Scalar) -> Option<Ordering> {
    match (value, x) {
        (Naive::Int(a), Scalar::Int(b)) => Some(i128::from(*a).cmp(&i128::from(*b))),
        (Naive::Int(a), Scalar::Float(b)) => (*a as f64).partial_cmp(b),
        (Naive::Float(a), Scalar::Int(b)) => a.partial_cmp(&(*b as f64)),
        (Naive::Float(a), Scalar::Float(b)) => a.partial_cmp(b),
        (Naive::Str(a), Scalar::Str(b)) => Some(a.bytes().cmp(b.bytes())),
        _ => None,
    }
}

fn naive_cond(cond: &Cond, value: &Naive<'_>) -> bool {
    if let Cond::Exists(wanted) = cond {
        return *wanted == !matches!(value, Naive::Missing);
    }
    match value {
        Naive::Missing | Naive::Other => false,
        Naive::List(items) => {
            let has = |s: &str| items.contains(&s);
            match cond {
                Cond::Eq(Scalar::Str(x)) | Cond::Contains(x) => has(x),
                Cond::Ne(Scalar::Str(x)) => !has(x),
                Cond::In(xs) => xs.iter().any(|x| matches!(x, Scalar::Str(s) if has(s))),
                Cond::Nin(xs) => xs.iter().all(|x| matches!(x, Scalar::Str(s) if !has(s))),
                _ => false,
            }
        }
        _ => match cond {
            Cond::Eq(x) => naive_equal(value, x) == Some(true),
            Cond::Ne(x) => naive_equal(value, x) == Some(false),
            Cond::Gt(x) => naive_order(value, x) == Some(Ordering::Greater),
            Cond::Gte(x) => naive_order(value, x).is_some_and(Ordering::is_ge),
            Cond::Lt(x) => naive_order(value, x) == Some(Ordering::Less),
            Cond::Lte(x) => naive_order(value, x).is_some_and(Ordering::is_le),
            Cond::In(xs) => xs.iter().any(|x| naive_equal(value, x) == Some(true)),
            Cond::Nin(xs) => xs.iter().all(|x| naive_equal(value, x) == Some(false)),
            Cond::Contains(_) | Cond::Exists(_) => false,
        },
    }
}

fn naive(filter: &Filter, attrs: Option<&Attributes>) -> bool {
    match filter {
        Filter::And(parts) => parts.iter().all(|p| naive(p, attrs)),
        Filter::Or(parts) => parts.iter().any(|p| naive(p, attrs)),
        Filter::Not(inner) => !naive(inner, attrs),
        Filter::Field { key, cond } => naive_cond(cond, &naive_value(attrs.and_then(|a| a.get(key)))),
    }
}

fn leaf_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::from),
        2 => select(&INTS[..]).prop_map(Value::from),
        1 => Just(json!(u64::MAX)),
        2 => select(&FLOATS[..]).prop_map(|f| json!(f)),
        2 => select(&STRS[..]).prop_map(Value::from),
    ]
}

/// An attribute's value: mostly a scalar or an object of operators, with operands of
/// every kind (so some are wrong), sometimes null, an array or an unknown operator.
fn attribute_json() -> BoxedStrategy<Value> {
    const OPS: [&str; 12] =
        ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$contains", "$x", "eq"];
    let operand = prop_oneof![
        4 => leaf_json(),
        2 => proptest::collection::vec(leaf_json(), 0..3).prop_map(Value::Array),
        1 => Just(json!({})),
    ];
    prop_oneof![
        3 => leaf_json(),
        4 => proptest::collection::btree_map(select(&OPS[..]), operand, 0..3)
            .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => Just(json!([1])),
    ]
    .boxed()
}

/// Random JSON shaped like filters: objects of logical operators and attributes, with
/// wrong shapes mixed in, for `parse` to accept or refuse.
fn filter_json() -> impl Strategy<Value = Value> {
    fn object(entries: Vec<(&'static str, Value)>) -> Value {
        Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }
    let attribute = (select(&["a", "b", "c", "", "$x"][..]), attribute_json()).boxed();
    let base = proptest::collection::vec(attribute.clone(), 0..3).prop_map(object);
    base.prop_recursive(4, 40, 4, move |inner| {
        let entry = prop_oneof![
            3 => attribute.clone(),
            2 => proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| ("$and", Value::Array(v))),
            2 => proptest::collection::vec(inner.clone(), 0..3).prop_map(|v| ("$or", Value::Array(v))),
            2 => inner.clone().prop_map(|v| ("$not", v)),
            // Wrong shapes: a lone filter for a list, a list for a filter, a scalar.
            1 => inner.clone().prop_map(|v| ("$and", v)),
            1 => inner.clone().prop_map(|v| ("$not", json!([v]))),
            1 => leaf_json().prop_map(|v| ("$or", v)),
        ];
        prop_oneof![
            4 => proptest::collection::vec(entry, 0..4).prop_map(object),
            1 => leaf_json(),
        ]
    })
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn matches_agrees_with_the_naive_evaluator(
        f in filter(few_floats()),
        rows in proptest::collection::vec(attrs(), 1..12),
    ) {
        for attrs in &rows {
            prop_assert_eq!(f.matches(attrs.as_ref()), naive(&f, attrs.as_ref()), "attrs {:?}", attrs);
        }
    }

    #[test]
    fn to_json_parses_back(f in filter(all_floats())) {
        let json = f.to_json();
        prop_assert_eq!(Filter::parse(&json).map_err(|e| e.to_string()), Ok(f), "json {}", json);
    }

    #[test]
    fn to_json_parses_back_through_text(f in filter(short_floats())) {
        let text = serde_json::to_string(&f.to_json()).unwrap();
        let reread: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(Filter::parse(&reread).map_err(|e| e.to_string()), Ok(f), "text {}", text);
    }

    #[test]
    fn whatever_parses_round_trips(json in filter_json()) {
        match Filter::parse(&json) {
            Ok(f) => {
                prop_assert_eq!(Filter::parse(&f.to_json()).map_err(|e| e.to_string()), Ok(f.clone()));
                // And it means what the naive evaluator says, on a row that can match.
                let row: Attributes = json!({"a": 1, "b": ["x"]}).as_object().unwrap().clone();
                prop_assert_eq!(f.matches(Some(&row)), naive(&f, Some(&row)));
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::Invalid);
                prop_assert!(e.message().starts_with("filter"), "{}", e.message());
            }
        }
    }
}
