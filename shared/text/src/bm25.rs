//! Collection-wide BM25 (decision 0019): the statistics a query gathers from every
//! segment, shard and the unflushed tail ([`TermStats`], summed into [`CollectionStats`]),
//! handed to each segment's tantivy scorer, and the same formula for rows not yet in a
//! segment ([`score_document`]), so a row scores the same wherever it lives.
//!
//! The formula is tantivy's: for each distinct query term in the document,
//! `idf · (k1 + 1) · tf / (tf + k1 · (1 − b + b · norm / avg))` with k1 = 1.2, b = 0.75,
//! `idf = ln(1 + (N − df + 0.5) / (df + 0.5))`, `avg` the mean field length and `norm` the
//! document's field length after tantivy's one-byte quantisation.

use std::collections::HashMap;

use tantivy::Term;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::Field;

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// What one part of a collection (a segment, the unflushed tail) knows of a query's
/// terms in one text field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TermStats {
    /// Documents (rows, deleted ones included until compaction removes them).
    pub docs: u64,
    /// Tokens in the field over those documents.
    pub tokens: u64,
    /// Documents holding each query term.
    pub doc_freq: HashMap<String, u64>,
}

/// The sum of every part's [`TermStats`]: what every part scores with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionStats(TermStats);

impl CollectionStats {
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a TermStats>) -> CollectionStats {
        let mut total = TermStats::default();
        for part in parts {
            total.docs += part.docs;
            total.tokens += part.tokens;
            for (term, n) in &part.doc_freq {
                *total.doc_freq.entry(term.clone()).or_default() += n;
            }
        }
        CollectionStats(total)
    }

    fn doc_freq(&self, term: &str) -> u64 {
        self.0.doc_freq.get(term).copied().unwrap_or(0)
    }

    fn average_length(&self) -> f32 {
        if self.0.docs == 0 { 1.0 } else { (self.0.tokens as f32 / self.0.docs as f32).max(f32::MIN_POSITIVE) }
    }

    /// A term's weight, `idf · (k1 + 1)`, as tantivy computes it.
    fn weight(&self, term: &str) -> f32 {
        let docs = self.0.docs.max(1);
        let df = self.doc_freq(term).min(docs);
        let idf = (1.0 + ((docs - df) as f32 + 0.5) / (df as f32 + 0.5)).ln();
        idf * (1.0 + K1)
    }
}

/// The BM25 score of one document (its field's tokens) for `query` (distinct tokens),
/// exactly as a segment's tantivy index scores it with the same statistics.
pub fn score_document(stats: &CollectionStats, query: &[String], document: &[String]) -> f32 {
    let norm = FieldNormReader::id_to_fieldnorm(FieldNormReader::fieldnorm_to_id(document.len() as u32));
    let tf_norm = K1 * (1.0 - B + B * norm as f32 / stats.average_length());
    let mut score = 0.0f32;
    for term in query {
        let tf = document.iter().filter(|t| *t == term).count() as f32;
        if tf > 0.0 {
            score += stats.weight(term) * (tf / (tf + tf_norm));
        }
    }
    score
}

/// Hands [`CollectionStats`] of one field to tantivy's scorer.
pub(crate) struct Provider<'a> {
    pub(crate) stats: &'a CollectionStats,
}

impl Bm25StatisticsProvider for Provider<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        Ok(self.stats.0.tokens)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.0.docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        Ok(term.value().as_str().map_or(0, |t| self.stats.doc_freq(t)))
    }
}
