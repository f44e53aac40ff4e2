//! `strata-text`: full-text search for Strata (issue 14, decision 0019). One tantivy index
//! per segment, built from the segment's rows and stored as one bundle object beside it;
//! BM25 scored with collection-wide statistics.
//!
//! Flow: [`build`] indexes a segment's rows (row ordinal `i` is document `i`; the
//! ordinal is also kept in a fast field, so hits map back to rows however tantivy
//! splits its segments) and returns the bundle bytes. [`TextIndex::open`] opens a bundle
//! in place. A query is [`analyze`]d once; every part of the collection reports its
//! [`TermStats`] ([`TextIndex::term_stats`]); their sum, a [`CollectionStats`], scores
//! every part ([`TextIndex::search`], and [`score_document`] for unflushed rows).
//!
//! Invariants: a segment and its text index hold the same rows in the same order; the
//! tokenizer of a field never changes after the collection is created (queries and
//! documents are analysed alike).

mod bm25;
mod bundle;

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use strata_types::{Error, Result};
use tantivy::collector::{FilterCollector, TopDocs};
use tantivy::directory::RamDirectory;
use tantivy::indexer::NoMergePolicy;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{FAST, Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer, WhitespaceTokenizer,
};
use tantivy::{Directory, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

pub use bm25::{CollectionStats, TermStats, score_document};

/// How a text attribute is split into terms, fixed when the collection is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tokenizer {
    /// Words (letters and digits), lowercased, at most 40 bytes, English Snowball stems.
    #[default]
    English,
    /// Split on whitespace and lowercased; nothing else.
    Whitespace,
}

impl Tokenizer {
    fn name(self) -> &'static str {
        match self {
            Tokenizer::English => "strata_english",
            Tokenizer::Whitespace => "strata_whitespace",
        }
    }

    fn analyzer(self) -> TextAnalyzer {
        match self {
            Tokenizer::English => TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(Stemmer::new(Language::English))
                .build(),
            Tokenizer::Whitespace => TextAnalyzer::builder(WhitespaceTokenizer::default()).filter(LowerCaser).build(),
        }
    }
}

/// A full-text indexed attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextField {
    pub name: String,
    pub tokenizer: Tokenizer,
}

/// The terms of `text` as `tokenizer` makes them, in order, repeats included.
pub fn analyze(tokenizer: Tokenizer, text: &str) -> Vec<String> {
    let mut analyzer = tokenizer.analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The field holding each document's row ordinal.
const ORDINAL: &str = "__strata_ordinal";
/// The writer's memory budget: tantivy's minimum per thread. A larger segment is written
/// as several tantivy segments, which the ordinal field maps back to rows.
const WRITER_BYTES: usize = 15_000_000;

fn schema(fields: &[TextField]) -> (Schema, Vec<Field>, Field) {
    let mut builder = Schema::builder();
    let text = fields
        .iter()
        .map(|f| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(f.tokenizer.name())
                .set_index_option(IndexRecordOption::WithFreqs)
                .set_fieldnorms(true);
            builder.add_text_field(&f.name, TextOptions::default().set_indexing_options(indexing))
        })
        .collect();
    let ordinal = builder.add_u64_field(ORDINAL, NumericOptions::from(FAST));
    (builder.build(), text, ordinal)
}

fn register_tokenizers(index: &Index) {
    for tokenizer in [Tokenizer::English, Tokenizer::Whitespace] {
        index.tokenizers().register(tokenizer.name(), tokenizer.analyzer());
    }
}

fn internal(what: &str) -> impl Fn(tantivy::TantivyError) -> Error + '_ {
    move |e| Error::internal(format!("text index: {what}")).with_source(e)
}

/// Indexes rows for `fields`: `rows[i][j]` is row `i`'s text for `fields[j]` (`None`
/// when absent). Returns the bundle to store beside the segment. CPU-heavy: call it off
/// the async runtime.
pub fn build(fields: &[TextField], rows: &[Vec<Option<&str>>]) -> Result<Bytes> {
    let (schema, text, ordinal) = schema(fields);
    let dir = RamDirectory::create();
    let index = Index::create(dir.clone(), schema, Default::default()).map_err(internal("create"))?;
    register_tokenizers(&index);
    let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_BYTES).map_err(internal("writer"))?;
    writer.set_merge_policy(Box::new(NoMergePolicy));
    for (i, row) in rows.iter().enumerate() {
        let mut doc = TantivyDocument::default();
        doc.add_u64(ordinal, i as u64);
        for (field, value) in text.iter().zip(row) {
            if let Some(value) = value {
                doc.add_text(*field, value);
            }
        }
        writer.add_document(doc).map_err(internal("add"))?;
    }
    writer.commit().map_err(internal("commit"))?;
    writer.wait_merging_threads().map_err(internal("finish"))?;
    let metas = index.searchable_segment_metas().map_err(internal("segments"))?;
    let mut names: BTreeSet<String> = ["meta.json".to_owned()].into();
    for meta in metas {
        names.extend(meta.list_files().into_iter().map(|p| p.to_string_lossy().into_owned()));
    }
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = std::path::Path::new(&name);
        if !dir.exists(path).unwrap_or(false) {
            continue; // a kind of file this segment does not have
        }
        let data =
            dir.atomic_read(path).map_err(|e| Error::internal(format!("text index: read {name}")).with_source(e))?;
        files.push((name, data));
    }
    Ok(bundle::write(&files))
}

/// A segment's text index, opened from its bundle.
pub struct TextIndex {
    reader: IndexReader,
    fields: HashMap<String, Field>,
}

impl TextIndex {
    pub fn open(bundle: Bytes) -> Result<TextIndex> {
        let dir = bundle::BundleDirectory::open(bundle)?;
        let index = Index::open(dir).map_err(internal("open"))?;
        register_tokenizers(&index);
        let schema = index.schema();
        let fields = schema
            .fields()
            .filter(|(_, entry)| entry.name() != ORDINAL)
            .map(|(f, e)| (e.name().to_owned(), f))
            .collect();
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(internal("reader"))?;
        Ok(TextIndex { reader, fields })
    }

    fn field(&self, name: &str) -> Result<Field> {
        self.fields.get(name).copied().ok_or_else(|| Error::invalid(format!("{name:?} is not a full-text field")))
    }

    /// Rows in this index.
    pub fn rows(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// This segment's part of the statistics of `terms` (distinct, analysed) in `field`.
    pub fn term_stats(&self, field: &str, terms: &[String]) -> Result<TermStats> {
        let field = self.field(field)?;
        let searcher = self.reader.searcher();
        let mut stats = TermStats { docs: searcher.num_docs(), ..Default::default() };
        for segment in searcher.segment_readers() {
            let inverted = segment.inverted_index(field).map_err(internal("postings"))?;
            stats.tokens += inverted.total_num_tokens();
            for term in terms {
                let df = inverted
                    .doc_freq(&Term::from_field_text(field, term))
                    .map_err(|e| Error::internal("text index: term dictionary").with_source(e))?;
                *stats.doc_freq.entry(term.clone()).or_default() += u64::from(df);
            }
        }
        Ok(stats)
    }

    /// The best `limit` rows for `terms` (distinct, analysed) in `field`, scored with
    /// `stats`, skipping rows `alive` refuses: (row ordinal, score), best first.
    pub fn search(
        &self,
        field: &str,
        terms: &[String],
        stats: &CollectionStats,
        limit: usize,
        alive: impl Fn(u32) -> bool + Send + Sync + Clone + 'static,
    ) -> Result<Vec<(u32, f32)>> {
        let field = self.field(field)?;
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let query = TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs);
                (Occur::Should, Box::new(query) as Box<dyn Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let collector = FilterCollector::new(
            ORDINAL.to_owned(),
            move |ordinal: u64| u32::try_from(ordinal).is_ok_and(&alive),
            TopDocs::with_limit(limit),
        );
        let searcher = self.reader.searcher();
        let top = searcher
            .search_with_statistics_provider(&query, &collector, &bm25::Provider { stats })
            .map_err(internal("search"))?;
        // Each tantivy segment's ordinal column, opened once whatever the number of hits.
        let columns = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64(ORDINAL).map_err(internal("ordinals")))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let ordinal = columns[address.segment_ord as usize]
                .first(address.doc_id)
                .ok_or_else(|| Error::internal("text index: a hit without an ordinal"))?;
            out.push((ordinal as u32, score));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
