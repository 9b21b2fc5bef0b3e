//! The embedded backend: one redb database file, written by a single group-committing thread.
//!
//! Writes from all callers are queued to one writer thread, which applies every queued
//! transaction inside one redb write transaction and commits it with an fsync. Callers are
//! acknowledged only after that commit returns, so every acknowledged write survives
//! `kill -9`; batching is what lets many concurrent writers share one fsync.
//!
//! Tables:
//! - `kv`: key → record (`create_revision`, `mod_revision`, `version`, value);
//! - `log`: revision → the events of that revision, each with the previous record, which is
//!   what watches replay and what reads at an older revision undo;
//! - `meta`: the current and the compacted revision.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::watchers::Watchers;
use crate::{
    Compare, Event, EventType, KeyValue, Op, RangeRequest, RangeResponse, Result, Revision, Store,
    StoreError, Txn, TxnResponse, WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

/// Upper bound on transactions folded into one commit; keeps a single commit's latency and
/// memory bounded under a flood of writers.
const MAX_BATCH: usize = 512;

const BACKEND: &str = "embedded";

fn backend_err(operation: &'static str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        operation,
        message: err.to_string(),
    }
}

/// Options for opening the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Bytes of page cache redb may keep in memory.
    pub cache_size: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            cache_size: 32 * 1024 * 1024,
        }
    }
}

enum Request {
    Txn(Txn, oneshot::Sender<Result<TxnResponse>>),
    Compact(Revision, oneshot::Sender<Result<()>>),
}

struct Shared {
    db: Database,
    watchers: Watchers,
    path: PathBuf,
}

/// The embedded store. Cloning is cheap; all clones share one database and writer.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Option<std_mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file `state.redb` in `dir`.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
            backend: BACKEND,
            operation: "create data directory",
            message: format!("{}: {e}", dir.display()),
        })?;
        let path = dir.join("state.redb");
        let db = redb::Builder::new()
            .set_cache_size(options.cache_size)
            .create(&path)
            .map_err(|e| StoreError::Backend {
                backend: BACKEND,
                operation: "open database",
                message: format!("{}: {e}", path.display()),
            })?;
        let wtx = db
            .begin_write()
            .map_err(|e| backend_err("begin write", e))?;
        let revision = {
            wtx.open_table(KV).map_err(|e| backend_err("open kv", e))?;
            wtx.open_table(LOG)
                .map_err(|e| backend_err("open log", e))?;
            let mut meta = wtx
                .open_table(META)
                .map_err(|e| backend_err("open meta", e))?;
            let rev = meta
                .get(META_REVISION)
                .map_err(|e| backend_err("read revision", e))?
                .map(|g| g.value());
            match rev {
                Some(r) => r as Revision,
                None => {
                    meta.insert(META_REVISION, 1)
                        .map_err(|e| backend_err("init revision", e))?;
                    meta.insert(META_COMPACTED, 0)
                        .map_err(|e| backend_err("init compacted", e))?;
                    1
                }
            }
        };
        wtx.commit().map_err(|e| backend_err("commit", e))?;

        let shared = Arc::new(Shared {
            db,
            watchers: Watchers::new(revision),
            path,
        });
        let (tx, rx) = std_mpsc::channel();
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(writer_shared, rx, revision))
            .map_err(|e| backend_err("spawn writer", e))?;
        Ok(Self {
            shared,
            writer: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn send(&self, req: Request) -> Result<()> {
        self.writer
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(req)
            .map_err(|_| StoreError::Closed)
    }

    fn read_meta(rtx: &redb::ReadTransaction) -> Result<(Revision, Revision)> {
        let meta = rtx
            .open_table(META)
            .map_err(|e| backend_err("open meta", e))?;
        let rev = meta
            .get(META_REVISION)
            .map_err(|e| backend_err("read revision", e))?
            .map(|g| g.value())
            .unwrap_or(1);
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(|e| backend_err("read compacted", e))?
            .map(|g| g.value())
            .unwrap_or(0);
        Ok((rev as Revision, compacted as Revision))
    }

    fn get_sync(&self, key: &str) -> Result<(Option<KeyValue>, Revision)> {
        let rtx = self
            .shared
            .db
            .begin_read()
            .map_err(|e| backend_err("begin read", e))?;
        let (rev, _) = Self::read_meta(&rtx)?;
        let kv = rtx.open_table(KV).map_err(|e| backend_err("open kv", e))?;
        let found = kv.get(key).map_err(|e| backend_err("get", e))?;
        let found = match found {
            Some(g) => Some(decode_record(key, g.value())?),
            None => None,
        };
        Ok((found, rev))
    }

    fn range_sync(shared: &Shared, req: &RangeRequest) -> Result<RangeResponse> {
        let rtx = shared
            .db
            .begin_read()
            .map_err(|e| backend_err("begin read", e))?;
        let (current, compacted) = Self::read_meta(&rtx)?;
        let at = req.revision.unwrap_or(current);
        if at > current {
            return Err(StoreError::FutureRevision {
                requested: at,
                current,
            });
        }
        if at < compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted,
            });
        }
        let kv = rtx.open_table(KV).map_err(|e| backend_err("open kv", e))?;
        let end = crate::prefix_end(&req.prefix);
        let start: &str = match &req.start_after {
            Some(s) if s.as_str() >= req.prefix.as_str() => s.as_str(),
            _ => req.prefix.as_str(),
        };
        let exclusive_start = req
            .start_after
            .as_deref()
            .is_some_and(|s| s >= req.prefix.as_str());
        let in_range =
            |k: &str| k.starts_with(req.prefix.as_str()) && (!exclusive_start || k > start);

        // State as of `at`: keys changed after `at` take their value from the first later
        // event's `prev`; everything else is current.
        let mut overrides: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
        if at < current {
            let log = rtx
                .open_table(LOG)
                .map_err(|e| backend_err("open log", e))?;
            for entry in log
                .range((at as u64 + 1)..)
                .map_err(|e| backend_err("read log", e))?
            {
                let (_, v) = entry.map_err(|e| backend_err("read log", e))?;
                for ev in decode_events(v.value())? {
                    if in_range(&ev.kv.key) && !overrides.contains_key(&*ev.kv.key) {
                        overrides.insert(ev.kv.key.to_string(), ev.prev);
                    }
                }
            }
        }

        let limit = if req.limit == 0 {
            usize::MAX
        } else {
            req.limit
        };
        let mut kvs: Vec<KeyValue> = Vec::new();
        let mut more = false;
        // Keys that existed at `at` but were deleted since are not in `kv`; they are merged in
        // key order from the overrides.
        let mut restored = overrides
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.as_str(), v)))
            .peekable();
        let iter = match &end {
            Some(end) => kv.range::<&str>(start..end.as_str()),
            None => kv.range::<&str>(start..),
        }
        .map_err(|e| backend_err("range", e))?;
        let mut current_keys = iter.map(|entry| -> Result<(String, Option<KeyValue>)> {
            let (k, v) = entry.map_err(|e| backend_err("range", e))?;
            let key = k.value();
            if !in_range(key) || overrides.contains_key(key) {
                return Ok((key.to_owned(), None));
            }
            Ok((key.to_owned(), Some(decode_record(key, v.value())?)))
        });
        let mut next_current = current_keys.next().transpose()?;
        loop {
            let take_restored = match (&next_current, restored.peek()) {
                (None, None) => break,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((ck, _)), Some((rk, _))) => *rk <= ck.as_str(),
            };
            let item = if take_restored {
                let (rk, rv) = restored.next().expect("peeked");
                if next_current.as_ref().is_some_and(|(ck, _)| ck == rk) {
                    next_current = current_keys.next().transpose()?;
                }
                Some(rv.clone())
            } else {
                let (_, v) = next_current.take().expect("checked");
                next_current = current_keys.next().transpose()?;
                v
            };
            if let Some(item) = item {
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                kvs.push(item);
            }
        }
        Ok(RangeResponse {
            kvs,
            more,
            revision: at,
        })
    }

    /// Reads the events of revisions `start..=end` under `prefix` from history.
    fn history(
        shared: &Shared,
        prefix: &str,
        start: Revision,
        end: Revision,
    ) -> Result<VecDeque<Event>> {
        let rtx = shared
            .db
            .begin_read()
            .map_err(|e| backend_err("begin read", e))?;
        let (_, compacted) = Self::read_meta(&rtx)?;
        if start < compacted {
            return Err(StoreError::Compacted {
                requested: start,
                compacted,
            });
        }
        let mut out = VecDeque::new();
        if start > end {
            return Ok(out);
        }
        let log = rtx
            .open_table(LOG)
            .map_err(|e| backend_err("open log", e))?;
        for entry in log
            .range((start.max(1) as u64)..=(end as u64))
            .map_err(|e| backend_err("read log", e))?
        {
            let (_, v) = entry.map_err(|e| backend_err("read log", e))?;
            for ev in decode_events(v.value())? {
                if ev.kv.key.starts_with(prefix) {
                    out.push_back(ev);
                }
            }
        }
        Ok(out)
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.watchers.close_all();
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<KeyValue>, Revision)>> {
        // A point read is a few B-tree page lookups in the page cache: cheaper than a hop to
        // the blocking pool.
        let res = self.get_sync(key);
        async move { res }.boxed()
    }

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResponse>> {
        let shared = self.shared.clone();
        async move {
            tokio::task::spawn_blocking(move || Self::range_sync(&shared, &req))
                .await
                .map_err(|e| backend_err("range task", e))?
        }
        .boxed()
    }

    fn count<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<u64>> {
        let shared = self.shared.clone();
        let prefix = prefix.to_owned();
        async move {
            tokio::task::spawn_blocking(move || {
                let rtx = shared
                    .db
                    .begin_read()
                    .map_err(|e| backend_err("begin read", e))?;
                let kv = rtx.open_table(KV).map_err(|e| backend_err("open kv", e))?;
                let end = crate::prefix_end(&prefix);
                let iter = match &end {
                    Some(end) => kv.range::<&str>(prefix.as_str()..end.as_str()),
                    None => kv.range::<&str>(prefix.as_str()..),
                }
                .map_err(|e| backend_err("range", e))?;
                let mut n = 0u64;
                for e in iter {
                    let (k, _) = e.map_err(|e| backend_err("range", e))?;
                    if k.value().starts_with(prefix.as_str()) {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await
            .map_err(|e| backend_err("count task", e))?
        }
        .boxed()
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Request::Txn(txn, tx));
        async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        start_revision: Revision,
    ) -> BoxFuture<'a, Result<WatchStream>> {
        let shared = self.shared.clone();
        let prefix = prefix.to_owned();
        async move {
            let (published, rx) = shared.watchers.subscribe(&prefix);
            let start = start_revision.max(1);
            let backlog = if start <= published {
                let s2 = shared.clone();
                let p2 = prefix.clone();
                tokio::task::spawn_blocking(move || Self::history(&s2, &p2, start, published))
                    .await
                    .map_err(|e| backend_err("history task", e))??
            } else {
                // History is still checked for compaction so that a too-old start always
                // fails the same way.
                VecDeque::new()
            };
            if start > published {
                let rtx = shared
                    .db
                    .begin_read()
                    .map_err(|e| backend_err("begin read", e))?;
                let (_, compacted) = Self::read_meta(&rtx)?;
                if start < compacted {
                    return Err(StoreError::Compacted {
                        requested: start,
                        compacted,
                    });
                }
            }
            let progress_shared = shared.clone();
            Ok(WatchStream::new(prefix, backlog, rx, start)
                .with_progress(Arc::new(move || progress_shared.watchers.published())))
        }
        .boxed()
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Request::Compact(revision, tx));
        async move {
            sent?;
            rx.await.map_err(|_| StoreError::Closed)?
        }
        .boxed()
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        let rev = self.shared.watchers.published();
        async move { Ok(rev) }.boxed()
    }

    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        let res = self
            .shared
            .db
            .begin_read()
            .map_err(|e| backend_err("begin read", e))
            .and_then(|rtx| Self::read_meta(&rtx))
            .map(|(_, c)| c);
        async move { res }.boxed()
    }

    fn backend_name(&self) -> &'static str {
        BACKEND
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

enum Work {
    Txn(Txn),
    Compact(Revision),
}

enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse>>),
    Compact(oneshot::Sender<Result<()>>),
}

enum Outcome {
    Txn(TxnResponse),
    Compact(Result<()>),
}

fn writer_loop(shared: Arc<Shared>, rx: std_mpsc::Receiver<Request>, mut revision: Revision) {
    while let Ok(first) = rx.recv() {
        let mut work = Vec::new();
        let mut replies = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Txn(t, tx) => {
                    work.push(Work::Txn(t));
                    replies.push(Reply::Txn(tx));
                }
                Request::Compact(r, tx) => {
                    work.push(Work::Compact(r));
                    replies.push(Reply::Compact(tx));
                }
            }
            if work.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let mut next_revision = revision;
        match apply_batch(&shared.db, &work, &mut next_revision) {
            Ok((outcomes, events)) => {
                revision = next_revision;
                shared.watchers.publish(revision, events);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    match (reply, outcome) {
                        (Reply::Txn(tx), Outcome::Txn(resp)) => {
                            let _ = tx.send(Ok(resp));
                        }
                        (Reply::Compact(tx), Outcome::Compact(res)) => {
                            let _ = tx.send(res);
                        }
                        _ => unreachable!("outcomes are produced in request order"),
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "store commit failed; {} requests failed", replies.len());
                let message = err.to_string();
                let fail = || backend_err("commit", &message);
                for reply in replies {
                    match reply {
                        Reply::Txn(tx) => {
                            let _ = tx.send(Err(fail()));
                        }
                        Reply::Compact(tx) => {
                            let _ = tx.send(Err(fail()));
                        }
                    }
                }
            }
        }
    }
}

/// Applies a batch in one redb write transaction and commits it. On any error nothing of the
/// batch is durable and `revision` must be discarded by the caller.
fn apply_batch(
    db: &Database,
    work: &[Work],
    revision: &mut Revision,
) -> Result<(Vec<Outcome>, Vec<Event>)> {
    let wtx = db
        .begin_write()
        .map_err(|e| backend_err("begin write", e))?;
    let mut outcomes = Vec::with_capacity(work.len());
    let mut events = Vec::new();
    {
        let mut kv = wtx.open_table(KV).map_err(|e| backend_err("open kv", e))?;
        let mut log = wtx
            .open_table(LOG)
            .map_err(|e| backend_err("open log", e))?;
        let mut meta = wtx
            .open_table(META)
            .map_err(|e| backend_err("open meta", e))?;
        let mut compacted = meta
            .get(META_COMPACTED)
            .map_err(|e| backend_err("read compacted", e))?
            .map(|g| g.value() as Revision)
            .unwrap_or(0);
        for w in work {
            match w {
                Work::Txn(txn) => {
                    let resp = apply_txn(&mut kv, &mut log, txn, revision, &mut events)?;
                    outcomes.push(Outcome::Txn(resp));
                }
                Work::Compact(rev) => {
                    let rev = *rev;
                    let res = if rev > *revision {
                        Err(StoreError::FutureRevision {
                            requested: rev,
                            current: *revision,
                        })
                    } else {
                        if rev > compacted {
                            log.retain_in(..(rev as u64), |_, _| false)
                                .map_err(|e| backend_err("compact log", e))?;
                            compacted = rev;
                        }
                        Ok(())
                    };
                    outcomes.push(Outcome::Compact(res));
                }
            }
        }
        meta.insert(META_REVISION, *revision as u64)
            .map_err(|e| backend_err("write revision", e))?;
        meta.insert(META_COMPACTED, compacted as u64)
            .map_err(|e| backend_err("write compacted", e))?;
    }
    wtx.commit().map_err(|e| backend_err("commit", e))?;
    Ok((outcomes, events))
}

fn apply_txn(
    kv: &mut redb::Table<&str, &[u8]>,
    log: &mut redb::Table<u64, &[u8]>,
    txn: &Txn,
    revision: &mut Revision,
    all_events: &mut Vec<Event>,
) -> Result<TxnResponse> {
    let read = |kv: &redb::Table<&str, &[u8]>, key: &str| -> Result<Option<KeyValue>> {
        match kv.get(key).map_err(|e| backend_err("get", e))? {
            Some(g) => Ok(Some(decode_record(key, g.value())?)),
            None => Ok(None),
        }
    };
    let mut current = Vec::with_capacity(txn.compares.len());
    let mut ok = true;
    for c in &txn.compares {
        match c {
            Compare::ModRevision {
                key,
                revision: want,
            } => {
                let cur = read(kv, key)?;
                let have = cur.as_ref().map_or(0, |k| k.mod_revision);
                if have != *want {
                    ok = false;
                }
                current.push(cur);
            }
        }
    }
    if !ok {
        return Ok(TxnResponse {
            succeeded: false,
            revision: *revision,
            kvs: current,
        });
    }
    if txn.success.is_empty() {
        return Ok(TxnResponse {
            succeeded: true,
            revision: *revision,
            kvs: Vec::new(),
        });
    }
    let rev = *revision + 1;
    let mut prevs = Vec::with_capacity(txn.success.len());
    let mut events = Vec::with_capacity(txn.success.len());
    // Within one transaction a later op on the same key sees the earlier one, as in etcd
    // (which forbids duplicate keys; we allow them and apply in order).
    let mut written: HashMap<&str, Option<KeyValue>> = HashMap::new();
    for op in &txn.success {
        match op {
            Op::Put { key, value } => {
                let prev = match written.get(key.as_str()) {
                    Some(p) => p.clone(),
                    None => read(kv, key)?,
                };
                let (create_revision, version) = match &prev {
                    Some(p) if p.mod_revision == rev => (p.create_revision, p.version),
                    Some(p) => (p.create_revision, p.version + 1),
                    None => (rev, 1),
                };
                let new = KeyValue {
                    key: Arc::from(key.as_str()),
                    value: value.clone(),
                    create_revision,
                    mod_revision: rev,
                    version,
                };
                kv.insert(key.as_str(), encode_record(&new).as_slice())
                    .map_err(|e| backend_err("put", e))?;
                written.insert(key.as_str(), Some(new.clone()));
                events.push(Event {
                    kind: EventType::Put,
                    kv: new,
                    prev: prev.clone(),
                });
                prevs.push(prev);
            }
            Op::Delete { key } => {
                let prev = match written.get(key.as_str()) {
                    Some(p) => p.clone(),
                    None => read(kv, key)?,
                };
                if prev.is_some() {
                    kv.remove(key.as_str())
                        .map_err(|e| backend_err("delete", e))?;
                    events.push(Event {
                        kind: EventType::Delete,
                        kv: KeyValue {
                            key: Arc::from(key.as_str()),
                            value: Bytes::new(),
                            create_revision: 0,
                            mod_revision: rev,
                            version: 0,
                        },
                        prev: prev.clone(),
                    });
                }
                written.insert(key.as_str(), None);
                prevs.push(prev);
            }
        }
    }
    if events.is_empty() {
        // Only deletes of absent keys: nothing changed, no new revision.
        return Ok(TxnResponse {
            succeeded: true,
            revision: *revision,
            kvs: prevs,
        });
    }
    log.insert(rev as u64, encode_events(&events).as_slice())
        .map_err(|e| backend_err("append log", e))?;
    *revision = rev;
    all_events.extend(events);
    Ok(TxnResponse {
        succeeded: true,
        revision: rev,
        kvs: prevs,
    })
}

// ---------------------------------------------------------------------------------------------
// Record encoding: fixed little-endian header, then the value. The format is private to this
// file; documented in docs/store.md.

const HEADER: usize = 24;

fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode_record(key: &str, raw: &[u8]) -> Result<KeyValue> {
    if raw.len() < HEADER {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            detail: format!("record of {} bytes is shorter than its header", raw.len()),
        });
    }
    let n = |i: usize| i64::from_le_bytes(raw[i..i + 8].try_into().expect("8 bytes"));
    Ok(KeyValue {
        key: Arc::from(key),
        create_revision: n(0),
        mod_revision: n(8),
        version: n(16),
        value: Bytes::copy_from_slice(&raw[HEADER..]),
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for ev in events {
        out.push(match ev.kind {
            EventType::Put => 0,
            EventType::Delete => 1,
        });
        put_bytes(&mut out, ev.kv.key.as_bytes());
        out.extend_from_slice(&ev.kv.mod_revision.to_le_bytes());
        match ev.kind {
            EventType::Put => put_bytes(&mut out, &encode_record(&ev.kv)),
            EventType::Delete => put_bytes(&mut out, &[]),
        }
        match &ev.prev {
            Some(p) => put_bytes(&mut out, &encode_record(p)),
            None => put_bytes(&mut out, &[]),
        }
    }
    out
}

fn decode_events(raw: &[u8]) -> Result<Vec<Event>> {
    let corrupt = |detail: &str| StoreError::Corrupt {
        key: "<log>".into(),
        detail: detail.into(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    let take = |i: &mut usize, n: usize| -> Result<&[u8]> {
        let s = raw
            .get(*i..*i + n)
            .ok_or_else(|| corrupt("truncated log entry"))?;
        *i += n;
        Ok(s)
    };
    let take_len = |i: &mut usize| -> Result<usize> {
        let b = take(i, 4)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    while i < raw.len() {
        let kind = match take(&mut i, 1)?[0] {
            0 => EventType::Put,
            1 => EventType::Delete,
            _ => return Err(corrupt("unknown event type")),
        };
        let klen = take_len(&mut i)?;
        let key = std::str::from_utf8(take(&mut i, klen)?)
            .map_err(|_| corrupt("key is not UTF-8"))?
            .to_owned();
        let rev = i64::from_le_bytes(take(&mut i, 8)?.try_into().expect("8 bytes"));
        let nlen = take_len(&mut i)?;
        let new = take(&mut i, nlen)?;
        let plen = take_len(&mut i)?;
        let prev = take(&mut i, plen)?;
        let kv = match kind {
            EventType::Put => decode_record(&key, new)?,
            EventType::Delete => KeyValue {
                key: Arc::from(key.as_str()),
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: rev,
                version: 0,
            },
        };
        let prev = if prev.is_empty() {
            None
        } else {
            Some(decode_record(&key, prev)?)
        };
        out.push(Event { kind, kv, prev });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
