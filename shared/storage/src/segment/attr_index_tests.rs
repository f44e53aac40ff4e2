//! Property tests: the attribute index, the per-row column evaluator and the reference
//! evaluator (`Filter::matches` over JSON attributes) agree on random rows and filters;
//! the index's byte format round-trips and never panics on damaged input.

use proptest::prelude::*;
use serde_json::{Value, json};
use strata_types::Attributes;
use strata_types::filter::{Cond, Filter, Scalar};

use super::attr_index::AttrIndex;
use super::format::attribute_columns;
use super::row_filter::RowFilter;

/// Keys with one kind each, plus `mixed` (ints and strings: an unindexed JSON column).
const KEYS: [&str; 7] = ["int", "float", "str", "bool", "tags", "mixed", "absent"];
const WORDS: [&str; 4] = ["a", "b", "rust", "é"];

fn value_of(key: &str) -> BoxedStrategy<Option<Value>> {
    let v: BoxedStrategy<Value> = match key {
        "int" => (-3i64..4).prop_map(Value::from).boxed(),
        "float" => prop_oneof![Just(-0.0), Just(0.0), Just(1.5), Just(-2.25), Just(3.0)].prop_map(Value::from).boxed(),
        "str" => proptest::sample::select(WORDS.to_vec()).prop_map(Value::from).boxed(),
        "bool" => any::<bool>().prop_map(Value::from).boxed(),
        "tags" => proptest::collection::vec(proptest::sample::select(WORDS.to_vec()), 0..3)
            .prop_map(|items| json!(items))
            .boxed(),
        "mixed" => {
            prop_oneof![(0i64..3).prop_map(Value::from), proptest::sample::select(WORDS.to_vec()).prop_map(Value::from)]
                .boxed()
        }
        _ => Just(Value::Null).boxed(),
    };
    proptest::option::weighted(0.8, v).boxed()
}

fn row() -> impl Strategy<Value = Option<Attributes>> {
    let cells: Vec<BoxedStrategy<Option<Value>>> = KEYS.iter().map(|k| value_of(k)).collect();
    (cells, any::<bool>()).prop_map(|(cells, none)| {
        let attrs: Attributes = KEYS
            .iter()
            .zip(cells)
            .filter_map(|(k, v)| v.filter(|v| !v.is_null()).map(|v| (k.to_string(), v)))
            .collect();
        (!none && !attrs.is_empty()).then_some(attrs)
    })
}

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        (-4i64..5).prop_map(Scalar::Int),
        prop_oneof![Just(0.0), Just(-0.0), Just(1.5), Just(2.0), Just(-2.25)].prop_map(Scalar::Float),
        proptest::sample::select(WORDS.to_vec()).prop_map(|s| Scalar::Str(s.to_owned())),
        any::<bool>().prop_map(Scalar::Bool),
    ]
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        scalar().prop_map(Cond::Eq),
        scalar().prop_map(Cond::Ne),
        scalar().prop_map(Cond::Gt),
        scalar().prop_map(Cond::Gte),
        scalar().prop_map(Cond::Lt),
        scalar().prop_map(Cond::Lte),
        proptest::collection::vec(scalar(), 0..4).prop_map(Cond::In),
        proptest::collection::vec(scalar(), 0..4).prop_map(Cond::Nin),
        any::<bool>().prop_map(Cond::Exists),
        proptest::sample::select(WORDS.to_vec()).prop_map(|s| Cond::Contains(s.to_owned())),
    ]
}

fn field() -> impl Strategy<Value = Filter> {
    (proptest::sample::select(KEYS.to_vec()), cond()).prop_map(|(k, cond)| Filter::Field { key: k.to_owned(), cond })
}

fn filter() -> impl Strategy<Value = Filter> {
    field().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn index_and_columns_agree_with_the_reference(rows in proptest::collection::vec(row(), 0..60), filters in proptest::collection::vec(filter(), 1..6)) {
        let refs: Vec<Option<&Attributes>> = rows.iter().map(Option::as_ref).collect();
        let columns = attribute_columns(&refs).unwrap();
        let index = AttrIndex::build(rows.len(), &columns);
        let decoded = AttrIndex::decode(&index.encode()).unwrap();
        prop_assert_eq!(&decoded, &index);
        for f in &filters {
            let expected: Vec<u32> =
                (0..rows.len() as u32).filter(|r| f.matches(rows[*r as usize].as_ref())).collect();
            let listed: Vec<u32> = index.matching(f, &columns).iter().collect();
            prop_assert_eq!(&listed, &expected, "index, filter {}", f.to_json());
            let test = RowFilter::compile(f, &columns);
            let tested: Vec<u32> = (0..rows.len() as u32).filter(|r| test.matches(*r as usize)).collect();
            prop_assert_eq!(&tested, &expected, "columns, filter {}", f.to_json());
            if !index.needs_columns(f) {
                let alone: Vec<u32> = index.matching(f, &[]).iter().collect();
                prop_assert_eq!(&alone, &expected, "index without columns, filter {}", f.to_json());
            }
            // Conditions on one typed attribute: the estimate is the exact count.
            let parts = match f {
                Filter::And(parts) if !parts.is_empty() => parts.iter().collect(),
                Filter::Field { .. } => vec![f],
                _ => Vec::new(),
            };
            let keys: std::collections::BTreeSet<&str> = parts.iter().filter_map(|p| match p {
                Filter::Field { key, cond } if !matches!(cond, Cond::Exists(_)) => Some(key.as_str()),
                _ => None,
            }).collect();
            if !parts.is_empty()
                && parts.iter().all(|p| matches!(p, Filter::Field { cond, .. } if !matches!(cond, Cond::Exists(_))))
                && keys.len() == 1
                && ["int", "float", "str", "bool"].contains(keys.iter().next().unwrap())
                && index.fields.iter().any(|fi| keys.contains(fi.key.as_str()))
            {
                prop_assert_eq!(index.estimate(f), expected.len() as f64, "estimate, filter {}", f.to_json());
            }
        }
    }

    #[test]
    fn damaged_index_bytes_never_panic(rows in proptest::collection::vec(row(), 1..30), flip in any::<usize>(), cut in any::<usize>()) {
        let refs: Vec<Option<&Attributes>> = rows.iter().map(Option::as_ref).collect();
        let bytes = AttrIndex::build(rows.len(), &attribute_columns(&refs).unwrap()).encode().to_vec();
        let mut flipped = bytes.clone();
        let i = flip % flipped.len();
        flipped[i] ^= 0x5a;
        prop_assert!(AttrIndex::decode(&flipped).is_err(), "a flipped byte passed the checksum");
        let _ = AttrIndex::decode(&bytes[..cut % bytes.len()]);
    }
}

#[test]
fn selective_conjunctions_list_only_their_selective_part() {
    // 2,000 rows: `even` holds for half, `id` is unique. The conjunction must be exact.
    let rows: Vec<Attributes> = (0..2000i64)
        .map(|i| [("even".to_owned(), json!(i % 2 == 0)), ("id".to_owned(), json!(i))].into_iter().collect())
        .collect();
    let refs: Vec<Option<&Attributes>> = rows.iter().map(Some).collect();
    let columns = attribute_columns(&refs).unwrap();
    let index = AttrIndex::build(rows.len(), &columns);
    let f = Filter::parse(&json!({"even": true, "id": {"$gte": 10, "$lt": 20}})).unwrap();
    assert_eq!(index.matching(&f, &columns).iter().collect::<Vec<_>>(), vec![10, 12, 14, 16, 18]);
    assert_eq!(index.estimate(&Filter::parse(&json!({"id": {"$gte": 10, "$lt": 20}})).unwrap()), 10.0);
    assert_eq!(index.estimate(&Filter::parse(&json!({"even": true})).unwrap()), 1000.0);
}

#[test]
fn conditions_on_one_attribute_are_listed_as_one_range() {
    // `band` = i % 100: every band's rows interleave with every other band's.
    let rows: Vec<Attributes> = (0..5000i64)
        .map(|i| [("band".to_owned(), json!(i % 100)), ("id".to_owned(), json!(i))].into_iter().collect())
        .collect();
    let refs: Vec<Option<&Attributes>> = rows.iter().map(Some).collect();
    let columns = attribute_columns(&refs).unwrap();
    let index = AttrIndex::build(rows.len(), &columns);
    let expect = |pred: &dyn Fn(i64) -> bool| (0..5000u32).filter(|&i| pred(i64::from(i % 100))).collect::<Vec<_>>();
    for columns in [&columns[..], &[]] {
        let range = Filter::parse(&json!({"band": {"$gte": 40, "$lt": 43, "$ne": 41}})).unwrap();
        assert_eq!(index.matching(&range, columns).iter().collect::<Vec<_>>(), expect(&|b| b == 40 || b == 42));
        let split = Filter::parse(&json!({"$and": [{"band": {"$gte": 40}}, {"band": {"$lt": 43}}]})).unwrap();
        assert_eq!(index.matching(&split, columns).iter().collect::<Vec<_>>(), expect(&|b| (40..43).contains(&b)));
        let set = Filter::parse(&json!({"band": {"$in": [7, 3, 99]}})).unwrap();
        assert_eq!(index.matching(&set, columns).iter().collect::<Vec<_>>(), expect(&|b| [3, 7, 99].contains(&b)));
        // Few rows of several groups (listed by sorting, not through a bitset).
        let few = Filter::parse(&json!({"id": {"$in": [4999, 3, 2000, 3]}})).unwrap();
        assert_eq!(index.matching(&few, columns).iter().collect::<Vec<_>>(), vec![3, 2000, 4999]);
    }
    assert_eq!(index.estimate(&Filter::parse(&json!({"band": {"$gte": 40, "$lt": 43}})).unwrap()), 150.0);
}

#[test]
fn the_planner_scans_few_rows_and_walks_when_a_walk_is_cheaper() {
    use super::store::{FilterPlan, choose_plan};
    use strata_index::FilteredWalk;
    let plan = |matching: f64, rows: usize, ef: usize| choose_plan(matching, rows, ef, true);
    assert_eq!(plan(0.0, 100_000, 64), FilterPlan::Empty);
    // Under 4 % always exact (a walk would lose recall), even past 160 · ef.
    assert_eq!(plan(39_000.0, 1_000_000, 64), FilterPlan::Exact);
    // Few rows per unit of ef: exact; more, in the middle: the two-hop walk.
    assert_eq!(plan(5_000.0, 100_000, 64), FilterPlan::Exact);
    assert_eq!(plan(60_000.0, 1_000_000, 64), FilterPlan::Walk(FilteredWalk::TwoHop));
    // Most rows match: the plain walk, unless the rows are few (16 · ef / s).
    assert_eq!(plan(12_500.0, 25_000, 128), FilterPlan::Walk(FilteredWalk::Plain));
    assert_eq!(plan(4_000.0, 8_000, 128), FilterPlan::Exact);
    // Under 30 % the plain walk is bounded: (16 / s + 32) · ef scored rows, then the scan.
    assert_eq!(plan(100_000.0, 1_000_000, 64), FilterPlan::BoundedWalk { max_scored: (160 + 32) * 64 });
    assert_eq!(plan(290_000.0, 1_000_000, 64).label(), "bounded_walk");
    assert_eq!(plan(300_000.0, 1_000_000, 64), FilterPlan::Walk(FilteredWalk::Plain));
    // Without a graph there is nothing to walk.
    assert_eq!(choose_plan(90_000.0, 100_000, 64, false), FilterPlan::Exact);
}
