//! The text index against a brute-force BM25 over the same tokens: random corpora split
//! into segments at random, scored with collection-wide statistics.

use proptest::prelude::*;

use super::*;

const WORDS: &[&str] = &["rust", "vector", "search", "object", "storage", "index", "shard", "query", "merge", "fast"];

fn fields() -> Vec<TextField> {
    vec![TextField { name: "body".into(), tokenizer: Tokenizer::Whitespace }]
}

/// Every row's tokens, and each row's score by brute force over the whole corpus.
fn reference(rows: &[Option<String>], query: &[String]) -> Vec<f32> {
    let docs: Vec<Vec<String>> =
        rows.iter().map(|r| r.as_deref().map_or(Vec::new(), |t| analyze(Tokenizer::Whitespace, t))).collect();
    let stats = TermStats {
        docs: docs.len() as u64,
        tokens: docs.iter().map(|d| d.len() as u64).sum(),
        doc_freq: query.iter().map(|t| (t.clone(), docs.iter().filter(|d| d.contains(t)).count() as u64)).collect(),
    };
    let stats = CollectionStats::sum([&stats]);
    docs.iter().map(|d| score_document(&stats, query, d)).collect()
}

fn corpus() -> impl Strategy<Value = Vec<Option<String>>> {
    let text = prop::collection::vec(prop::sample::select(WORDS), 0..12).prop_map(|w| w.join(" "));
    prop::collection::vec(prop::option::weighted(0.9, text), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Split into segments anywhere, the index ranks and scores rows as the brute-force
    /// reference does over the whole corpus, and skips the rows it is told are deleted.
    #[test]
    fn segments_score_like_brute_force_over_the_whole_collection(
        rows in corpus(),
        cuts in prop::collection::vec(0usize..60, 0..3),
        query in prop::collection::btree_set(prop::sample::select(WORDS), 1..4),
        deleted in prop::collection::btree_set(0u32..60, 0..5),
    ) {
        let query: Vec<String> = query.into_iter().map(str::to_owned).collect();
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % rows.len()).chain([0, rows.len()]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut segments = Vec::new();
        for pair in bounds.windows(2) {
            let part: Vec<Vec<Option<&str>>> = rows[pair[0]..pair[1]].iter().map(|r| vec![r.as_deref()]).collect();
            segments.push((pair[0], TextIndex::open(build(&fields(), &part).unwrap()).unwrap()));
        }
        let parts: Vec<TermStats> = segments.iter().map(|(_, s)| s.term_stats("body", &query).unwrap()).collect();
        let stats = CollectionStats::sum(&parts);

        let expected = reference(&rows, &query);
        let mut got: Vec<(usize, f32)> = Vec::new();
        for (start, segment) in &segments {
            let (start, gone) = (*start, deleted.clone());
            let alive = move |o: u32| !gone.contains(&(start as u32 + o));
            for (ordinal, score) in segment.search("body", &query, &stats, rows.len(), alive).unwrap() {
                got.push((start + ordinal as usize, score));
            }
        }
        let mut want: Vec<usize> = (0..rows.len()).filter(|i| expected[*i] > 0.0 && !deleted.contains(&(*i as u32))).collect();
        want.sort_unstable();
        let mut found: Vec<usize> = got.iter().map(|(i, _)| *i).collect();
        found.sort_unstable();
        prop_assert_eq!(&found, &want, "rows matched");
        for (row, score) in got {
            prop_assert!((score - expected[row]).abs() <= 1e-4 * expected[row].max(1.0), "row {}: {} vs {}", row, score, expected[row]);
        }
    }
}

#[test]
fn english_lowercases_and_stems_whitespace_only_lowercases() {
    assert_eq!(analyze(Tokenizer::English, "Searching the Indexes, FAST!"), ["search", "the", "index", "fast"]);
    assert_eq!(
        analyze(Tokenizer::Whitespace, "Searching the Indexes, FAST!"),
        ["searching", "the", "indexes,", "fast!"]
    );
}

#[test]
fn a_bundle_that_is_not_one_is_refused() {
    assert!(TextIndex::open(Bytes::from_static(b"garbage")).is_err());
    let good = build(&fields(), &[vec![Some("rust")]]).unwrap();
    assert!(TextIndex::open(good.slice(..good.len() - 10)).is_err(), "a truncated bundle");
    assert_eq!(TextIndex::open(good).unwrap().rows(), 1);
}

#[test]
fn an_unknown_field_is_invalid() {
    let index = TextIndex::open(build(&fields(), &[vec![Some("rust")]]).unwrap()).unwrap();
    let err = index.term_stats("title", &["rust".into()]).err().unwrap();
    assert_eq!(err.kind(), strata_types::ErrorKind::Invalid);
}
