//! Fan-out of committed changes to watchers, shared by the backends that produce events
//! in-process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::{Event, Revision};

/// How many commit batches a watcher may lag behind before it is cut off. A watcher that is
/// cut off sees the end of its stream and resumes from the last revision it saw, which is what
/// Kubernetes clients do when a watch ends.
const WATCHER_QUEUE: usize = 4096;

/// Reads the newest revision published to watchers.
pub type Progress = Arc<dyn Fn() -> Revision + Send + Sync>;

/// A stream of events: first the history that was asked for, then live changes.
pub struct WatchStream {
    progress: Option<Progress>,
    prefix: String,
    backlog: VecDeque<Event>,
    live: Option<mpsc::Receiver<Arc<Vec<Event>>>>,
    current: VecDeque<Event>,
    /// Events at or below this revision came from the backlog; live batches repeat nothing
    /// but are filtered anyway so a reordering bug can never deliver a change twice.
    last_revision: Revision,
}

impl WatchStream {
    pub(crate) fn new(
        prefix: String,
        backlog: VecDeque<Event>,
        live: mpsc::Receiver<Arc<Vec<Event>>>,
        start_revision: Revision,
    ) -> Self {
        Self {
            progress: None,
            prefix,
            backlog,
            live: Some(live),
            current: VecDeque::new(),
            last_revision: start_revision - 1,
        }
    }

    pub(crate) fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// A revision this watcher has fully caught up with, when it has nothing pending: every
    /// change under its prefix up to that revision has been returned by `next`. This is what
    /// a bookmark may carry.
    pub fn idle_revision(&self) -> Option<Revision> {
        // Read the published revision before looking at the queues: a change published after
        // the read can only make the answer conservative, never skip an event.
        let published = self.progress.as_ref().map(|p| p());
        let idle = self.backlog.is_empty()
            && self.current.is_empty()
            && self.live.as_ref().is_none_or(|r| r.is_empty());
        if !idle {
            return None;
        }
        Some(
            published
                .unwrap_or(self.last_revision)
                .max(self.last_revision),
        )
    }

    /// The next change, or `None` when the stream has ended (store closed, or this watcher
    /// fell too far behind).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.backlog.pop_front() {
                self.last_revision = ev.revision();
                return Some(ev);
            }
            if let Some(ev) = self.current.pop_front() {
                return Some(ev);
            }
            let batch = self.live.as_mut()?.recv().await;
            let Some(batch) = batch else {
                self.live = None;
                return None;
            };
            for ev in batch.iter() {
                if ev.revision() > self.last_revision && ev.kv.key.starts_with(&self.prefix) {
                    self.current.push_back(ev.clone());
                }
            }
            if let Some(last) = batch.last() {
                self.last_revision = self.last_revision.max(last.revision());
            }
        }
    }
}

struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<Arc<Vec<Event>>>,
}

/// The set of live watchers and the newest revision published to them.
pub(crate) struct Watchers {
    inner: Mutex<WatchersInner>,
}

struct WatchersInner {
    published: Revision,
    subscribers: Vec<Subscriber>,
}

impl Watchers {
    pub(crate) fn new(published: Revision) -> Self {
        Self {
            inner: Mutex::new(WatchersInner {
                published,
                subscribers: Vec::new(),
            }),
        }
    }

    /// Registers a watcher and returns the newest published revision: every later revision
    /// will reach the receiver, every earlier one must be read from history.
    pub(crate) fn subscribe(&self, prefix: &str) -> (Revision, mpsc::Receiver<Arc<Vec<Event>>>) {
        let (tx, rx) = mpsc::channel(WATCHER_QUEUE);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.subscribers.push(Subscriber {
            prefix: prefix.to_owned(),
            tx,
        });
        (inner.published, rx)
    }

    /// Hands a committed batch to every interested watcher. Must be called in revision order,
    /// after the batch is durable.
    pub(crate) fn publish(&self, revision: Revision, events: Vec<Event>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.published = revision;
        if events.is_empty() {
            return;
        }
        let batch = Arc::new(events);
        inner.subscribers.retain(|s| {
            if !batch.iter().any(|e| e.kv.key.starts_with(&s.prefix)) {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(batch.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(prefix = %s.prefix, "watcher fell behind; closing it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    pub(crate) fn published(&self) -> Revision {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .published
    }

    /// Ends every watch stream (store shutdown).
    pub(crate) fn close_all(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .subscribers
            .clear();
    }
}
