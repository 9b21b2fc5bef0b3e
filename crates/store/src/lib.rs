//! duostack's store: an etcd-shaped key-value model behind one small trait.
//!
//! The model is etcd's because the etcd backend must slot in behind the same trait without the
//! server noticing: string keys, one global `revision` that every successful write bumps, a
//! `create_revision`/`mod_revision`/`version` per key, multi-key compare-and-swap transactions,
//! watches that start at a revision and deliver every later change, and compaction that forgets
//! history older than a revision (watching or reading from before it is [`StoreError::Compacted`]).
//!
//! Backends: [`embedded::EmbeddedStore`] (redb, one file in the data directory, group commit,
//! every acknowledged write fsynced).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

pub mod embedded;
mod watchers;

pub use watchers::WatchStream;

/// A store revision. Revisions start at 1 for an empty store and grow by one per successful
/// writing transaction (etcd's semantics).
pub type Revision = i64;

/// One key with its value and etcd-style bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Arc<str>,
    pub value: Bytes,
    /// Revision of the transaction that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote the key.
    pub mod_revision: Revision,
    /// Number of writes since creation, starting at 1.
    pub version: i64,
}

/// A condition a transaction checks before it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `revision`; `0` means "the key does not exist".
    ModRevision { key: String, revision: Revision },
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Bytes,
    },
    /// Deleting an absent key is not an error (etcd's semantics); it produces no event.
    Delete {
        key: String,
    },
}

/// A compare-and-swap transaction: if every compare holds, every op is applied at one new
/// revision; otherwise nothing is written and the current values of `compares`' keys are
/// returned so the caller can tell a conflict from a missing key without a second read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.success.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.success.push(Op::Delete { key: key.into() });
        self
    }
    /// The key must not exist.
    pub fn absent(self, key: impl Into<String>) -> Self {
        self.when(Compare::ModRevision {
            key: key.into(),
            revision: 0,
        })
    }
    /// The key must exist and have been last written at `revision`.
    pub fn unchanged_since(self, key: impl Into<String>, revision: Revision) -> Self {
        self.when(Compare::ModRevision {
            key: key.into(),
            revision,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// On success, the revision the writes were made at (the current revision when the
    /// transaction wrote nothing); on failure, the current revision.
    pub revision: Revision,
    /// On success: for each op, the key's value just before the op. On failure: for each
    /// compare, the key's current value.
    pub kvs: Vec<Option<KeyValue>>,
}

/// A read of the keys under a prefix, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// Only keys strictly greater than this one (for paging).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read the state as of this revision instead of the newest.
    pub revision: Option<Revision>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys follow the last one returned.
    pub more: bool,
    /// The revision the read was made at.
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
}

/// One change, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    /// For a put, the new value. For a delete, the key with an empty value and `mod_revision`
    /// set to the deleting revision (etcd's tombstone).
    pub kv: KeyValue,
    /// The value before the change, if the key existed.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The revision asked for is older than the compaction point.
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The revision asked for is newer than the store's.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend failed; nothing of the failed operation was applied.
    #[error("store backend {backend} failed during {operation}: {message}")]
    Backend {
        backend: &'static str,
        operation: &'static str,
        message: String,
    },
    /// The store is shutting down or its writer is gone.
    #[error("store is closed")]
    Closed,
    /// A stored record could not be decoded.
    #[error("corrupt record for key {key}: {detail}")]
    Corrupt { key: String, detail: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store every duostack server talks to. Object-safe so the backend is a runtime choice.
pub trait Store: Send + Sync + 'static {
    /// One key and the revision the read was made at.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<KeyValue>, Revision)>>;

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse>>;

    /// Counts keys under a prefix at the newest revision.
    fn count<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>>;

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;

    /// Every change to keys under `prefix` with revision `>= start_revision`, in order.
    /// `start_revision` older than the compaction point fails with [`StoreError::Compacted`].
    /// The stream ends (returns `None`) if the watcher falls too far behind or the store
    /// closes; the caller resumes from the last revision it saw.
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        start_revision: Revision,
    ) -> BoxFuture<'a, Result<WatchStream>>;

    /// Forgets history older than `revision`.
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;

    /// The newest revision.
    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// The compaction point: revisions before it can't be read or watched.
    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>>;

    /// A short name for logs and metrics.
    fn backend_name(&self) -> &'static str;
}

/// The first key after every key starting with `prefix`, for range ends.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return String::from_utf8(bytes).ok().or_else(|| {
                // Incrementing the last byte of a multi-byte character gives invalid UTF-8;
                // fall back to appending the highest code point, which sorts after any key
                // with this prefix in practice (keys are ASCII).
                Some(format!("{prefix}\u{10FFFF}"))
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/a/").as_deref(), Some("/registry/a0"));
        assert_eq!(prefix_end("a").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
    }
}
