//! Unit tests of the filter language: parsing (every operator, every error path with its
//! path prefix, the limits), the canonical JSON form, the type check, and the semantics of
//! every operator on scalars, string lists, missing and odd values. The property tests
//! (against a naive evaluator, and the JSON round trip) are in `tests/props.rs`.

mod props;

use serde_json::{Value, json};

use super::*;
use crate::error::ErrorKind;
use crate::model::{Attributes, MAX_ATTRIBUTE_KEY_BYTES};

fn parse(value: Value) -> Filter {
    Filter::parse(&value).unwrap_or_else(|e| panic!("{value} should parse: {e}"))
}

/// Asserts `value` is refused with a message that starts with `path` and contains `fragment`.
fn refused(value: Value, path: &str, fragment: &str) {
    let e = Filter::parse(&value).expect_err(&format!("{value} should be refused"));
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let message = e.message();
    assert!(message.starts_with(&format!("{path}: ")), "{message:?} should start with {path:?}");
    assert!(message.contains(fragment), "{message:?} should contain {fragment:?}");
}

fn field(key: &str, cond: Cond) -> Filter {
    Filter::Field { key: key.to_owned(), cond }
}

fn s(v: &str) -> Scalar {
    Scalar::Str(v.to_owned())
}

fn row(value: Value) -> Attributes {
    value.as_object().expect("an object").clone()
}

/// Whether the filter (JSON) matches the row (JSON object).
fn hit(filter: Value, attrs: Value) -> bool {
    parse(filter).matches(Some(&row(attrs)))
}

#[test]
fn parses_every_operator() {
    let cases = [
        (json!({"a": 1}), Cond::Eq(Scalar::Int(1))),
        (json!({"a": "x"}), Cond::Eq(s("x"))),
        (json!({"a": true}), Cond::Eq(Scalar::Bool(true))),
        (json!({"a": 1.5}), Cond::Eq(Scalar::Float(1.5))),
        (json!({"a": {"$eq": -7}}), Cond::Eq(Scalar::Int(-7))),
        (json!({"a": {"$ne": "x"}}), Cond::Ne(s("x"))),
        (json!({"a": {"$gt": 2}}), Cond::Gt(Scalar::Int(2))),
        (json!({"a": {"$gte": 2.5}}), Cond::Gte(Scalar::Float(2.5))),
        (json!({"a": {"$lt": "m"}}), Cond::Lt(s("m"))),
        (json!({"a": {"$lte": false}}), Cond::Lte(Scalar::Bool(false))),
        (
            json!({"a": {"$in": [1, "x", true, 0.5]}}),
            Cond::In(vec![Scalar::Int(1), s("x"), Scalar::Bool(true), Scalar::Float(0.5)]),
        ),
        (json!({"a": {"$in": []}}), Cond::In(vec![])),
        (json!({"a": {"$nin": ["x"]}}), Cond::Nin(vec![s("x")])),
        (json!({"a": {"$exists": false}}), Cond::Exists(false)),
        (json!({"a": {"$contains": "t"}}), Cond::Contains("t".into())),
        // Integers at the ends of i64 are ints; a number written with a fraction is a float.
        (json!({"a": i64::MAX}), Cond::Eq(Scalar::Int(i64::MAX))),
        (json!({"a": i64::MIN}), Cond::Eq(Scalar::Int(i64::MIN))),
        (json!({"a": 3.0}), Cond::Eq(Scalar::Float(3.0))),
    ];
    for (json, cond) in cases {
        assert_eq!(parse(json.clone()), field("a", cond), "{json}");
    }
    let text: Value = serde_json::from_str(r#"{"a": 3.0, "b": 3}"#).unwrap();
    assert_eq!(
        parse(text),
        Filter::And(vec![field("a", Cond::Eq(Scalar::Float(3.0))), field("b", Cond::Eq(Scalar::Int(3)))])
    );
}

#[test]
fn parses_structure() {
    assert_eq!(parse(json!({})), Filter::And(vec![]));
    let (a, b) = (field("a", Cond::Eq(Scalar::Int(1))), field("b", Cond::Eq(Scalar::Int(2))));
    // Several keys: a conjunction in key order.
    assert_eq!(parse(json!({"b": 2, "a": 1})), Filter::And(vec![a.clone(), b.clone()]));
    assert_eq!(parse(json!({"$and": [{"a": 1}, {"b": 2}]})), Filter::And(vec![a.clone(), b.clone()]));
    assert_eq!(parse(json!({"$or": [{"a": 1}, {"b": 2}]})), Filter::Or(vec![a.clone(), b.clone()]));
    assert_eq!(parse(json!({"$or": []})), Filter::Or(vec![]));
    assert_eq!(parse(json!({"$not": {"a": 1}})), Filter::Not(Box::new(a.clone())));
    // Several operators on one attribute: a conjunction too.
    assert_eq!(
        parse(json!({"a": {"$gte": 1, "$lt": 5}})),
        Filter::And(vec![field("a", Cond::Gte(Scalar::Int(1))), field("a", Cond::Lt(Scalar::Int(5)))])
    );
    assert_eq!(
        parse(json!({"$or": [{}], "a": 1})),
        Filter::And(vec![Filter::Or(vec![Filter::And(vec![])]), a.clone()])
    );
}

#[test]
fn refuses_malformed_structure() {
    refused(json!([]), "filter", "expected an object, got an array");
    refused(json!(null), "filter", "expected an object, got null");
    refused(json!("a"), "filter", "expected an object, got a string");
    refused(json!({"$and": {"a": 1}}), "filter.$and", "expected an array of filters, got an object");
    refused(json!({"$or": 1}), "filter.$or", "expected an array of filters, got a number");
    refused(json!({"$and": [{"a": 1}, 5]}), "filter.$and[1]", "expected an object, got a number");
    refused(json!({"$or": [[]]}), "filter.$or[0]", "expected an object, got an array");
    refused(json!({"$not": [{"a": 1}]}), "filter.$not", "expected an object, got an array");
    refused(json!({"$not": {"$not": true}}), "filter.$not.$not", "expected an object, got a boolean");
}

#[test]
fn refuses_unknown_operators() {
    refused(json!({"year": {"$gtx": 1}}), "filter.year.$gtx", "unknown operator \"$gtx\"; the operators are $eq, $ne");
    refused(json!({"year": {"gte": 1}}), "filter.year.gte", "unknown operator \"gte\"");
    refused(json!({"year": {"$or": [1]}}), "filter.year.$or", "unknown operator \"$or\"");
    // A `$` key at filter level is an operator, not an attribute.
    refused(json!({"$eq": 1}), "filter.$eq", "unknown operator \"$eq\"; a filter's keys are $and, $or, $not");
    refused(json!({"$and": [{"$nor": []}]}), "filter.$and[0].$nor", "unknown operator \"$nor\"");
}

#[test]
fn refuses_bad_attribute_values() {
    refused(json!({"year": null}), "filter.year", "use {\"$exists\": false}");
    refused(json!({"year": [1, 2]}), "filter.year", "use {\"$in\": [...]}");
    refused(json!({"year": {}}), "filter.year", "empty operator object");
    refused(json!({"": 1}), "filter", "attribute name must not be empty");
    refused(json!({"$or": [{"": 1}]}), "filter.$or[0]", "attribute name must not be empty");
    let long = "k".repeat(MAX_ATTRIBUTE_KEY_BYTES + 1);
    refused(json!({ long: 1 }), "filter", "129 bytes long; the limit is 128");
    let longest = "k".repeat(MAX_ATTRIBUTE_KEY_BYTES);
    assert_eq!(parse(json!({ longest.clone(): 1 })), field(&longest, Cond::Eq(Scalar::Int(1))));
}

#[test]
fn refuses_bad_operands() {
    refused(
        json!({"$and": [{}, {"year": {"$gte": [1]}}]}),
        "filter.$and[1].year.$gte",
        "expected a number, a string or a boolean, got an array",
    );
    for op in ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"] {
        refused(json!({"a": {op: null}}), &format!("filter.a.{op}"), "got null");
        refused(json!({"a": {op: {"x": 1}}}), &format!("filter.a.{op}"), "got an object");
    }
    refused(json!({"a": {"$in": 1}}), "filter.a.$in", "expected an array of values, got a number");
    refused(json!({"a": {"$nin": "x"}}), "filter.a.$nin", "expected an array of values, got a string");
    refused(json!({"a": {"$in": [1, [2]]}}), "filter.a.$in[1]", "got an array");
    refused(json!({"a": {"$nin": [null]}}), "filter.a.$nin[0]", "got null");
    refused(json!({"a": {"$exists": 1}}), "filter.a.$exists", "expected a boolean, got a number");
    refused(json!({"a": {"$contains": 1}}), "filter.a.$contains", "expected a string, got a number");
    refused(json!({"a": {"$contains": ["x"]}}), "filter.a.$contains", "expected a string, got an array");
    // Integers beyond i64 would compare inexactly as floats.
    let big = i64::MAX as u64 + 1;
    refused(json!({"a": big}), "filter.a", "does not fit a signed 64-bit integer");
    refused(json!({"a": {"$in": [1, u64::MAX]}}), "filter.a.$in[1]", "does not fit a signed 64-bit integer");
    // Non-finite numbers cannot be built as a serde_json::Value without the
    // arbitrary_precision feature (from_f64 refuses them), so that check is defensive.
    assert!(serde_json::Number::from_f64(f64::NAN).is_none());
}

#[test]
fn enforces_limits() {
    // $not chains: MAX_DEPTH levels parse, one more is refused at the path where it nests.
    let chain = |levels: usize| (0..levels).fold(json!({"a": 1}), |inner, _| json!({ "$not": inner }));
    assert!(Filter::parse(&chain(MAX_DEPTH)).is_ok());
    let path = format!("filter{}", ".$not".repeat(MAX_DEPTH + 1));
    refused(chain(MAX_DEPTH + 1), &path, "more than 32 levels");
    // Implicit conjunctions nest too (so the `$and` form `to_json` writes parses back).
    // Each level is an implicit $and and a $not: the 17th object is 32 deep.
    let implicit = (0..MAX_DEPTH).fold(json!({"a": 1}), |inner, _| json!({ "$not": inner, "b": 2 }));
    refused(implicit, &format!("filter{}", ".$not".repeat(MAX_DEPTH / 2)), "more than 32 levels");
    let operators = (0..MAX_DEPTH - 1).fold(json!({"a": {"$gt": 1, "$lt": 3}}), |inner, _| json!({ "$not": inner }));
    assert!(Filter::parse(&operators).is_ok());
    let operators = json!({ "$not": operators });
    let path = format!("filter{}.a", ".$not".repeat(MAX_DEPTH));
    refused(operators, &path, "more than 32 levels");

    let many = |n: usize| json!({ "$or": (0..n).map(|i| json!({ "a": i })).collect::<Vec<_>>() });
    assert!(Filter::parse(&many(MAX_CONDITIONS)).is_ok());
    refused(many(MAX_CONDITIONS + 1), "filter.$or[1024].a", "more than 1024 conditions");
    // Several operators count one each, and so do empty parts.
    let ops = json!({ "$and": (0..MAX_CONDITIONS / 2).map(|_| json!({"a": {"$gt": 1, "$lt": 2}})).collect::<Vec<_>>(), "b": 1 });
    refused(ops, "filter.b", "more than 1024 conditions");
    let empties = json!({ "$and": vec![json!({}); MAX_CONDITIONS + 1] });
    refused(empties, "filter.$and[1024]", "more than 1024 conditions");

    let items = |n: usize| json!({"a": {"$nin": (0..n).collect::<Vec<_>>()}});
    assert!(Filter::parse(&items(MAX_IN_ITEMS)).is_ok());
    refused(items(MAX_IN_ITEMS + 1), "filter.a.$nin", "10001 values; the limit is 10000");
}

#[test]
fn writes_the_canonical_form() {
    let f = parse(json!({"b": {"$gte": 1, "$lt": 2.5}, "a": "x", "$not": {"$or": [{"t": {"$contains": "z"}}]}}));
    assert_eq!(
        f.to_json(),
        json!({"$and": [
            {"$not": {"$or": [{"t": {"$contains": "z"}}]}},
            {"a": {"$eq": "x"}},
            {"$and": [{"b": {"$gte": 1}}, {"b": {"$lt": 2.5}}]},
        ]})
    );
    assert_eq!(Filter::parse(&f.to_json()).unwrap(), f);
    assert_eq!(parse(json!({})).to_json(), json!({}));
    assert_eq!(parse(json!({"$or": []})).to_json(), json!({"$or": []}));
    assert_eq!(
        parse(json!({"a": {"$in": [], "$exists": true}})).to_json(),
        json!({"$and": [{"a": {"$exists": true}}, {"a": {"$in": []}}]})
    );
}

fn types(key: &str) -> Option<AttrType> {
    match key {
        "b" => Some(AttrType::Bool),
        "i" => Some(AttrType::Int),
        "f" => Some(AttrType::Float),
        "s" => Some(AttrType::String),
        "l" => Some(AttrType::StringList),
        _ => None,
    }
}

fn check(filter: Value) -> Result<(), String> {
    parse(filter).check_types(&types).map_err(|e| {
        assert_eq!(e.kind(), ErrorKind::Invalid);
        e.message().to_owned()
    })
}

#[test]
fn checks_operand_types() {
    let ok = [
        json!({"i": 1, "f": 2, "s": "x", "b": true, "l": "x"}),
        json!({"i": {"$gte": 1.5, "$lt": 3}, "f": {"$in": [1, 2.5], "$nin": []}}),
        json!({"s": {"$gt": "a", "$ne": "b", "$nin": ["c"]}}),
        json!({"b": {"$ne": false, "$in": [true], "$nin": [false]}}),
        json!({"l": {"$eq": "x", "$ne": "y", "$in": ["x"], "$nin": ["z"], "$contains": "x"}}),
        json!({"i": {"$exists": true}, "b": {"$exists": false}, "l": {"$exists": true}}),
        // Unknown attributes take anything: no row has them yet.
        json!({"new": {"$gt": true, "$contains": "x", "$in": [1, "a"]}}),
    ];
    for filter in ok {
        assert_eq!(check(filter.clone()), Ok(()), "{filter}");
    }
    let refused = [
        (json!({"i": {"$gte": "x"}}), "filter.i.$gte: attribute \"i\" is an int, the operand is a string"),
        (json!({"f": true}), "filter.f.$eq: attribute \"f\" is a float, the operand is a bool"),
        (json!({"s": 1}), "filter.s.$eq: attribute \"s\" is a string, the operand is an int"),
        (json!({"b": {"$ne": 0.5}}), "filter.b.$ne: attribute \"b\" is a bool, the operand is a float"),
        (json!({"l": {"$ne": 1}}), "filter.l.$ne: attribute \"l\" is a string[], the operand is an int"),
        (json!({"i": {"$in": [1, "2"]}}), "filter.i.$in[1]: attribute \"i\" is an int, the operand is a string"),
        (json!({"s": {"$nin": [true]}}), "filter.s.$nin[0]: attribute \"s\" is a string, the operand is a bool"),
        (json!({"b": {"$gt": true}}), "filter.b.$gt: attribute \"b\" is a bool, which has no order"),
        (json!({"l": {"$lte": "x"}}), "filter.l.$lte: attribute \"l\" is a string[], which has no order"),
        (json!({"s": {"$contains": "x"}}), "filter.s.$contains: attribute \"s\" is a string; $contains applies only"),
        (json!({"i": {"$contains": "x"}}), "filter.i.$contains: attribute \"i\" is an int; $contains applies only"),
        // Paths keep `$or[i]` and `$not` steps; conjunctions add none.
        (json!({"$or": [{"i": 1}, {"$not": {"s": 2}}]}), "filter.$or[1].$not.s.$eq: attribute \"s\""),
        (json!({"$and": [{"i": 1}, {"i": {"$gte": 1, "$lt": "x"}}]}), "filter.i.$lt: attribute \"i\""),
    ];
    for (filter, expected) in refused {
        let message = check(filter.clone()).expect_err(&filter.to_string());
        assert!(message.starts_with(expected), "{message:?} should start with {expected:?}");
    }
}

#[test]
fn compares_numbers_strings_and_bools() {
    let r = json!({"i": 5, "f": 2.5, "s": "b", "t": true, "z": 0});
    for (filter, expected) in [
        (json!({"i": 5}), true),
        (json!({"i": 5.0}), true),
        (json!({"i": 4}), false),
        (json!({"i": {"$ne": 4}}), true),
        (json!({"i": {"$ne": 5.0}}), false),
        (json!({"i": {"$gt": 4.5}}), true),
        (json!({"i": {"$gt": 5}}), false),
        (json!({"i": {"$gte": 5}}), true),
        (json!({"i": {"$lt": 5.5}}), true),
        (json!({"i": {"$lt": 5}}), false),
        (json!({"i": {"$lte": 5}}), true),
        (json!({"f": {"$gt": 2}}), true),
        (json!({"f": {"$lt": 3}}), true),
        (json!({"f": {"$gte": 2.5, "$lte": 2.5}}), true),
        (json!({"f": 2}), false),
        (json!({"z": -0.0}), true),
        (json!({"i": {"$in": [1, 5.0]}}), true),
        (json!({"i": {"$in": [1, 2]}}), false),
        (json!({"i": {"$in": []}}), false),
        (json!({"i": {"$nin": [1, 2.5]}}), true),
        (json!({"i": {"$nin": [1, 5]}}), false),
        (json!({"i": {"$nin": []}}), true),
        (json!({"s": "b"}), true),
        (json!({"s": {"$gt": "a", "$lt": "c"}}), true),
        // Bytes order: upper case before lower case, multi-byte UTF-8 after ASCII.
        (json!({"s": {"$gt": "Z"}}), true),
        (json!({"s": {"$lt": "é"}}), true),
        (json!({"s": {"$gte": "ba"}}), false),
        (json!({"s": {"$contains": "b"}}), false),
        (json!({"t": true}), true),
        (json!({"t": {"$ne": false}}), true),
        (json!({"t": {"$in": [false, true]}}), true),
        (json!({"t": {"$nin": [false]}}), true),
        // Bools have no order.
        (json!({"t": {"$gt": false}}), false),
        (json!({"t": {"$gte": true}}), false),
        (json!({"t": {"$lte": true}}), false),
    ] {
        assert_eq!(hit(filter.clone(), r.clone()), expected, "{filter}");
    }
    // Large ints compare exactly with ints.
    assert!(!hit(json!({"i": i64::MAX - 1}), json!({"i": i64::MAX})));
    assert!(hit(json!({"i": {"$lt": i64::MAX}}), json!({"i": i64::MAX - 1})));
}

#[test]
fn mismatched_kinds_never_match() {
    let r = json!({"i": 5, "s": "5", "t": true});
    for filter in [
        json!({"i": "5"}),
        json!({"i": {"$ne": "5"}}),
        json!({"i": {"$ne": true}}),
        json!({"s": {"$ne": 5}}),
        json!({"s": {"$gt": 1}}),
        json!({"t": {"$ne": 1}}),
        json!({"t": 1}),
        json!({"i": {"$in": ["5", true]}}),
        json!({"i": {"$nin": ["x"]}}),
        json!({"i": {"$nin": [1, "x"]}}),
        json!({"i": {"$contains": "5"}}),
    ] {
        assert!(!hit(filter.clone(), r.clone()), "{filter}");
    }
}

#[test]
fn missing_attributes_fail_every_comparison() {
    let f = |v: Value| parse(v);
    for filter in [
        json!({"a": 1}),
        json!({"a": {"$ne": 1}}),
        json!({"a": {"$gt": 1}}),
        json!({"a": {"$lte": 1}}),
        json!({"a": {"$in": [1]}}),
        json!({"a": {"$nin": [1]}}),
        json!({"a": {"$nin": []}}),
        json!({"a": {"$exists": true}}),
        json!({"a": {"$contains": "x"}}),
    ] {
        let filter = f(filter);
        assert!(!filter.matches(None), "{filter:?}");
        assert!(!filter.matches(Some(&row(json!({"b": 1})))), "{filter:?}");
        // `null` is a missing attribute.
        assert!(!filter.matches(Some(&row(json!({"a": null})))), "{filter:?}");
        // `$not` is plain negation.
        assert!(Filter::Not(Box::new(filter.clone())).matches(None), "{filter:?}");
    }
    for attrs in [None, Some(row(json!({}))), Some(row(json!({"a": null})))] {
        assert!(f(json!({"a": {"$exists": false}})).matches(attrs.as_ref()));
    }
    assert!(!hit(json!({"a": {"$exists": false}}), json!({"a": 0})));
    assert!(hit(json!({"a": {"$exists": true}}), json!({"a": 0})));
}

#[test]
fn string_lists() {
    let r = json!({"l": ["x", "y"], "e": []});
    for (filter, expected) in [
        (json!({"l": "x"}), true),
        (json!({"l": "z"}), false),
        (json!({"l": {"$contains": "y"}}), true),
        (json!({"l": {"$contains": "z"}}), false),
        (json!({"l": {"$ne": "z"}}), true),
        (json!({"l": {"$ne": "x"}}), false),
        (json!({"l": {"$in": ["z", "y"]}}), true),
        (json!({"l": {"$in": ["z"]}}), false),
        (json!({"l": {"$in": []}}), false),
        (json!({"l": {"$nin": ["z", "w"]}}), true),
        (json!({"l": {"$nin": ["z", "x"]}}), false),
        (json!({"l": {"$nin": []}}), true),
        (json!({"l": {"$exists": true}}), true),
        // Ordering operators and non-string operands never hold.
        (json!({"l": {"$gt": "a"}}), false),
        (json!({"l": {"$lte": "z"}}), false),
        (json!({"l": 1}), false),
        (json!({"l": {"$ne": 1}}), false),
        (json!({"l": {"$in": [1, "x"]}}), true),
        (json!({"l": {"$nin": [1, "z"]}}), false),
        (json!({"e": {"$ne": "x"}}), true),
        (json!({"e": {"$nin": ["x"]}}), true),
        (json!({"e": "x"}), false),
        (json!({"e": {"$in": ["x"]}}), false),
        (json!({"e": {"$exists": true}}), true),
    ] {
        assert_eq!(hit(filter.clone(), r.clone()), expected, "{filter}");
    }
}

#[test]
fn odd_values_only_exist() {
    let big = i64::MAX as u64 + 1;
    for value in [json!({"k": 1}), json!([1, "x"]), json!([null]), json!(big)] {
        let r = json!({ "a": value });
        assert!(hit(json!({"a": {"$exists": true}}), r.clone()), "{r}");
        for filter in [
            json!({"a": {"$exists": false}}),
            json!({"a": 1}),
            json!({"a": {"$ne": 1}}),
            json!({"a": {"$nin": []}}),
            json!({"a": {"$contains": "x"}}),
            json!({"a": {"$gt": 0}}),
        ] {
            assert!(!hit(filter.clone(), r.clone()), "{filter} on {r}");
        }
    }
}

#[test]
fn combinators() {
    let r = json!({"a": 1, "b": "x"});
    assert!(hit(json!({}), r.clone()));
    assert!(parse(json!({})).matches(None));
    assert!(hit(json!({"a": 1, "b": "x"}), r.clone()));
    assert!(!hit(json!({"a": 1, "b": "y"}), r.clone()));
    assert!(hit(json!({"$or": [{"a": 2}, {"b": "x"}]}), r.clone()));
    assert!(!hit(json!({"$or": [{"a": 2}, {"b": "y"}]}), r.clone()));
    assert!(!hit(json!({"$or": []}), r.clone()));
    assert!(hit(json!({"$and": []}), r.clone()));
    assert!(hit(json!({"$not": {"a": 2}}), r.clone()));
    assert!(!hit(json!({"$not": {"a": 1}}), r.clone()));
    assert!(hit(json!({"a": {"$gte": 1, "$lt": 2}}), r.clone()));
    assert!(!hit(json!({"a": {"$gt": 1, "$lt": 2}}), r));
}

#[test]
fn keys_and_matches_everything() {
    let f = parse(json!({"b": 1, "$or": [{"a": {"$gt": 1, "$lt": 2}}, {"$not": {"c": 1}}]}));
    assert_eq!(f.keys().into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert!(parse(json!({})).keys().is_empty());
    for (filter, everything) in [
        (json!({}), true),
        (json!({"$and": [{}, {"$and": []}]}), true),
        (json!({"$not": {"$or": []}}), true),
        (json!({"$or": [{"a": 1}, {}]}), true),
        (json!({"$or": []}), false),
        (json!({"$not": {}}), false),
        (json!({"a": {"$exists": false}}), false),
        (json!({"$and": [{}, {"a": 1}]}), false),
    ] {
        let f = parse(filter.clone());
        assert_eq!(f.matches_everything(), everything, "{filter}");
        if everything {
            assert!(f.matches(None) && f.matches(Some(&row(json!({"a": 2})))), "{filter}");
        }
    }
}

#[test]
fn attribute_types_of_values() {
    let big = i64::MAX as u64 + 1;
    for (value, ty) in [
        (json!(true), Some(AttrType::Bool)),
        (json!(-3), Some(AttrType::Int)),
        (json!(i64::MAX), Some(AttrType::Int)),
        (json!(3.0), Some(AttrType::Float)),
        (json!(0.5), Some(AttrType::Float)),
        (json!("x"), Some(AttrType::String)),
        (json!(["x", ""]), Some(AttrType::StringList)),
        (json!([]), Some(AttrType::StringList)),
        (json!(null), None),
        (json!({}), None),
        (json!(["x", 1]), None),
        (json!(big), None),
    ] {
        assert_eq!(AttrType::of(&value), ty, "{value}");
    }
    use AttrType::*;
    let all = [Bool, Int, Float, String, StringList];
    for a in all {
        for b in all {
            assert_eq!(a.accepts(b), a == b || (a == Float && b == Int), "{a:?} {b:?}");
        }
    }
    assert_eq!(all.map(AttrType::name), ["bool", "int", "float", "string", "string[]"]);
    // The names are the serde form.
    for ty in all {
        assert_eq!(serde_json::to_value(ty).unwrap(), json!(ty.name()));
    }
}

#[test]
fn cond_tests_directly() {
    // The entry points other evaluators use, on values JSON does not spell the same way.
    assert!(Cond::Gt(Scalar::Int(1)).test_scalar(ValueRef::Float(1.5)));
    assert!(!Cond::Eq(Scalar::Float(1.0)).test_scalar(ValueRef::Float(f64::NAN)));
    assert!(!Cond::Ne(Scalar::Float(1.0)).test_scalar(ValueRef::Float(f64::NAN)));
    assert!(Cond::Contains("b".into()).test_list(&mut ["a", "b"].into_iter()));
    assert!(!Cond::Contains("c".into()).test_list(&mut ["a", "b"].into_iter()));
    assert!(Cond::Exists(false).test_missing());
    assert!(!Cond::Exists(true).test_missing());
    assert!(!Cond::Ne(Scalar::Int(1)).test_missing());
}
