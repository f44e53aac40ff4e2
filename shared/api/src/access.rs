//! Who is calling: the request extension the binary's authentication layer inserts once it
//! has checked a request's API key, for the few handlers whose answer depends on the
//! caller (listing collections shows a key limited to some collections only those).
//!
//! Invariant: the extension is present only when the server checks keys; a handler that
//! finds none serves everything, as a server without keys does.

use std::sync::Arc;

/// The caller's API key, as far as handlers need to know it.
#[derive(Clone, Debug)]
pub struct Access {
    /// The key's name (never the token), for logs.
    pub key_name: Arc<str>,
    /// The collections the key may touch; `None`: every collection.
    pub collections: Option<Arc<[String]>>,
}

impl Access {
    /// Whether this key may touch collection `name`.
    pub fn allows(&self, name: &str) -> bool {
        self.collections.as_deref().is_none_or(|names| names.iter().any(|n| n == name))
    }

    /// Whether a request with this (optional) access may see collection `name`.
    pub fn may_see(access: Option<&Access>, name: &str) -> bool {
        access.is_none_or(|a| a.allows(name))
    }
}
