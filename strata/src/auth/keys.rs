//! API keys: their configuration (the SHA-256 of each token, never the token), the set a
//! node checks requests against, and making new tokens.
//!
//! A token is `strata_` followed by 32 random bytes from the operating system in URL-safe
//! base64. With that much entropy a plain SHA-256 is the right hash (as GitHub and Stripe
//! tokens are stored): a slow password hash defends low-entropy secrets against guessing,
//! and would cost milliseconds on every request here. A request's token is hashed and the
//! hash looked up; comparing hashes leaks nothing about the token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_api::Access;

/// What a key may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Search, get, scan, query, count, describe and list collections; this node's info.
    Read,
    /// `read`, plus upsert, delete, update, flush and bulk import.
    Write,
    /// Everything: also create and drop collections and the cluster admin API.
    Admin,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Read => "read",
            KeyRole::Write => "write",
            KeyRole::Admin => "admin",
        }
    }
}

impl std::str::FromStr for KeyRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(KeyRole::Read),
            "write" => Ok(KeyRole::Write),
            "admin" => Ok(KeyRole::Admin),
            other => Err(format!("unknown role `{other}` (expected read, write or admin)")),
        }
    }
}

/// One API key as configured.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds it: shown in the audit log and in errors, never secret.
    pub name: String,
    pub role: KeyRole,
    /// SHA-256 of the token, 64 hex digits (`strata keys new` prints it).
    pub sha256: String,
    /// The only collections the key may touch; absent: every collection. A key limited
    /// to collections cannot use the cluster admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
}

/// A keys file: `[[keys]]` tables of [`KeyConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    keys: Vec<KeyConfig>,
}

/// A key a request presented and the set recognised.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub role: KeyRole,
    pub access: Access,
}

/// The keys a node accepts, by the hash of their token.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_hash: HashMap<[u8; 32], Key>,
}

impl KeySet {
    /// Builds the set from configured keys; a malformed hash or a name or hash given twice
    /// is an error naming the key.
    pub(crate) fn new(keys: &[KeyConfig]) -> Result<KeySet, String> {
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for key in keys {
            if key.name.trim().is_empty() {
                return Err("an API key has an empty `name`".to_owned());
            }
            if !names.insert(key.name.as_str()) {
                return Err(format!("API key name `{}` is used twice", key.name));
            }
            let hash = parse_hash(&key.sha256).map_err(|why| format!("API key `{}`: {why}", key.name))?;
            if let Some(collections) = &key.collections
                && collections.is_empty()
            {
                return Err(format!(
                    "API key `{}`: `collections` is empty (omit it to allow every collection)",
                    key.name
                ));
            }
            let access = Access {
                key_name: Arc::from(key.name.as_str()),
                collections: key.collections.as_ref().map(|c| Arc::from(c.clone())),
            };
            if by_hash.insert(hash, Key { role: key.role, access }).is_some() {
                return Err(format!("API key `{}` has the same token as another key", key.name));
            }
        }
        Ok(KeySet { by_hash })
    }

    pub(crate) fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// The key whose token is `token`, if any.
    pub(crate) fn find(&self, token: &str) -> Option<&Key> {
        self.by_hash.get(&sha256(token))
    }
}

/// Reads a keys file (`[[keys]]` tables). A missing file is an error: a typo in its path
/// must not silently lock everyone out, nor let everyone in.
pub(crate) fn read_keys_file(path: &Path) -> Result<Vec<KeyConfig>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
    let file: KeysFile = toml::from_str(&text).map_err(|e| format!("invalid keys file {}: {e}", path.display()))?;
    Ok(file.keys)
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of `token` in lowercase hex, as [`KeyConfig::sha256`] holds it.
pub fn hash_hex(token: &str) -> String {
    sha256(token).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    let bad = || format!("`sha256` must be 64 hex digits (the SHA-256 of the token), got {} characters", hex.len());
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Prefix of every token `strata keys new` makes: recognisable in a leaked log or a
/// secret scanner.
pub const TOKEN_PREFIX: &str = "strata_";

/// A new random token: [`TOKEN_PREFIX`] and 256 bits from the operating system.
pub(crate) fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the operating system gave no random bytes: {e}"))?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// What `strata keys new` prints: the token (shown once) and the entry to configure.
pub fn new_key_entry(name: &str, role: KeyRole, collections: Option<Vec<String>>) -> Result<(String, String), String> {
    let token = new_token()?;
    let entry = KeyConfig { name: name.to_owned(), role, sha256: hash_hex(&token), collections };
    let table = toml::to_string(&entry).map_err(|e| e.to_string())?;
    Ok((token, format!("[[keys]]\n{table}")))
}
