//! One object per text index: tantivy's files concatenated behind a table of names and
//! offsets, and a read-only tantivy [`Directory`] over those bytes (decision 0019), so an
//! index fetched through the segment cache opens in place: no temporary files, no copy.
//!
//! Layout: `STRATA-TEXT-1\n`, a little-endian u32 with the length of the JSON table, the
//! table (`[[name, offset, length], ...]`, offsets from the end of the table), then the
//! files. Everything is validated when the bundle is opened.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use strata_types::{Error, Result};
use tantivy::directory::error::LockError;
use tantivy::directory::error::{DeleteError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, OwnedBytes, WatchCallback, WatchHandle, WritePtr,
};

const MAGIC: &[u8] = b"STRATA-TEXT-1\n";

/// Writes a bundle of `files` (name, contents).
pub(crate) fn write(files: &[(String, Vec<u8>)]) -> Bytes {
    let mut table = Vec::with_capacity(files.len());
    let mut offset = 0u64;
    for (name, data) in files {
        table.push((name.clone(), offset, data.len() as u64));
        offset += data.len() as u64;
    }
    let table = serde_json::to_vec(&table).expect("a table of names and numbers serializes");
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + table.len() + offset as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(&table);
    for (_, data) in files {
        out.extend_from_slice(data);
    }
    Bytes::from(out)
}

/// `Bytes` for tantivy's [`OwnedBytes`]: the buffer it points to never moves.
struct StableBytes(Bytes);

impl Deref for StableBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

// SAFETY: `Bytes` points at a reference-counted (or static) buffer; moving the handle does
// not move the bytes, so a reference from `deref` stays valid as long as a handle lives.
unsafe impl stable_deref_trait::StableDeref for StableBytes {}

/// A bundle opened for reading.
#[derive(Clone, Debug)]
pub(crate) struct BundleDirectory {
    files: Arc<HashMap<PathBuf, OwnedBytes>>,
}

impl BundleDirectory {
    pub(crate) fn open(bytes: Bytes) -> Result<BundleDirectory> {
        let bad = |why: &str| Error::corrupt("text index bundle", why.to_owned());
        if bytes.len() < MAGIC.len() + 4 || !bytes.starts_with(MAGIC) {
            return Err(bad("not a text index bundle"));
        }
        let len_at = MAGIC.len();
        let table_len = u32::from_le_bytes(bytes[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
        let table_start = len_at + 4;
        let data_start = table_start
            .checked_add(table_len)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| bad("table past the end"))?;
        let table: Vec<(String, u64, u64)> =
            serde_json::from_slice(&bytes[table_start..data_start]).map_err(|_| bad("unreadable table"))?;
        let all = OwnedBytes::new(StableBytes(bytes.slice(data_start..)));
        let mut files = HashMap::with_capacity(table.len());
        for (name, offset, len) in table {
            let range = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(len).ok())
                .and_then(|(o, l)| Some(o..o.checked_add(l)?));
            let range = range.filter(|r| r.end <= all.len()).ok_or_else(|| bad("a file past the end"))?;
            files.insert(PathBuf::from(name), all.slice(range));
        }
        Ok(BundleDirectory { files: Arc::new(files) })
    }

    fn file(&self, path: &Path) -> Result<&OwnedBytes, OpenReadError> {
        self.files.get(path).ok_or_else(|| OpenReadError::FileDoesNotExist(path.to_owned()))
    }
}

fn read_only(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("{} is in a read-only text bundle", path.display()),
    )
}

impl Directory for BundleDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        Ok(Arc::new(self.file(path)?.clone()))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        Err(DeleteError::IoError { io_error: Arc::new(read_only(path)), filepath: path.to_owned() })
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        Ok(self.files.contains_key(path))
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        Err(OpenWriteError::wrap_io_error(read_only(path), path.to_owned()))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        Ok(self.file(path)?.as_slice().to_vec())
    }

    fn atomic_write(&self, path: &Path, _data: &[u8]) -> std::io::Result<()> {
        Err(read_only(path))
    }

    fn sync_directory(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Nothing ever writes a bundle, so readers need no lock (tantivy's default would
    /// create a lock file).
    fn acquire_lock(&self, _lock: &Lock) -> Result<DirectoryLock, LockError> {
        Ok(DirectoryLock::from(Box::new(())))
    }

    fn watch(&self, _callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        Ok(WatchHandle::empty())
    }
}
