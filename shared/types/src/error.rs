//! Strata's error type, shared by every crate below the HTTP edge. Every error carries a [`ErrorKind`] so callers (and the
//! HTTP edge) can decide what to do without matching on messages: `Invalid` and `NotFound`
//! are the caller's fault, `Conflict` means someone else won a create-only commit,
//! `Retryable` is transient (overload, a storage hiccup) and `Internal` is a bug or
//! corruption.
//!
//! An error of a write split across shards may also say which shards' parts were
//! committed before it failed ([`Committed`]), since each part is atomic on its own.

use std::fmt;

use crate::RowId;

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: bad dimension, NaN, bad parameters. HTTP 400.
    Invalid,
    /// The named thing does not exist. HTTP 404.
    NotFound,
    /// Lost a race: the object or name already exists. HTTP 409.
    Conflict,
    /// Too much unflushed data; the client should slow down. HTTP 429.
    Overloaded,
    /// A transient failure; retrying may succeed. HTTP 503.
    Retryable,
    /// A bug, corruption or an unexpected storage failure. HTTP 500.
    Internal,
    /// The storage refused more data (a full disk or bucket quota): nothing of the write
    /// that met it was acknowledged. HTTP 507.
    StorageFull,
}

impl ErrorKind {
    /// Every kind, for tests that must cover them all.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Overloaded,
        ErrorKind::Retryable,
        ErrorKind::Internal,
        ErrorKind::StorageFull,
    ];
}

/// The error of the storage core.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// Set on the error of a multi-shard write of which some shards' parts were committed.
    committed: Option<Box<Committed>>,
    /// The text speaks of internals (object paths, a library's or the OS's words): for the
    /// log, never for a client. Set by [`Error::with_source`] and [`Error::private`].
    private: bool,
}

/// The parts of a failed multi-shard write that are durable: a batch is split per shard,
/// each shard's part commits atomically (one WAL entry) or not at all, so these parts were
/// applied and will stay; the other parts were not acknowledged (and may or may not have
/// been applied, if their failure left the outcome unknown).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    /// Shards whose part was committed, ascending.
    pub shards: Vec<u32>,
    /// Ids of the rows in those parts (empty when the write selected rows by filter).
    pub ids: Vec<RowId>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None, committed: None, private: false }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Overloaded, message)
    }
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Retryable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Corrupt or undecodable stored data.
    pub fn corrupt(what: impl fmt::Display, why: impl fmt::Display) -> Self {
        Self::internal(format!("corrupt {what}: {why}"))
    }

    /// The storage is full ([`ErrorKind::StorageFull`]).
    pub fn storage_full(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::StorageFull, message)
    }

    /// Attaches the underlying error; its words are internal, so the error becomes
    /// [`Error::is_private`].
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self.private = true;
        self
    }

    /// Marks the text as internal: the HTTP edge logs it and answers in plain words.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// Whether the text speaks of internals (see [`Error::private`]).
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Prefixes the message with where the error happened.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Records which parts of a multi-shard write were committed before this error.
    pub fn with_committed(mut self, committed: Committed) -> Self {
        self.committed = Some(Box::new(committed));
        self
    }

    /// The parts of a multi-shard write committed before this error, if any.
    pub fn committed(&self) -> Option<&Committed> {
        self.committed.as_deref()
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}
