//! Per-kind REST hooks: work a kind's registry does around the generic store logic (Kubernetes'
//! `BeginCreate`/`BeginUpdate` hooks), such as allocating ClusterIPs and NodePorts.
//!
//! A hook returns a [`Pending`]: extra compares and writes that go into the same store
//! transaction as the object, and what to do in memory once that transaction commits or does
//! not. Dropping a `Pending` without committing it rolls it back, so every early return
//! (validation failure, conflict, lost race) undoes its reservations.

use duostack_core::error::ApiError;
use duostack_store::{Compare, Op};
use serde_json::{Map, Value};

type Callback = Box<dyn FnOnce() + Send>;

/// Side effects of a write that are pending its commit.
#[derive(Default)]
pub struct Pending {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
    /// Warnings for the client.
    pub warnings: Vec<String>,
    on_commit: Option<Callback>,
    on_abort: Option<Callback>,
}

impl Pending {
    pub fn new(
        compares: Vec<Compare>,
        ops: Vec<Op>,
        on_commit: impl FnOnce() + Send + 'static,
        on_abort: impl FnOnce() + Send + 'static,
    ) -> Self {
        Self {
            compares,
            ops,
            warnings: Vec::new(),
            on_commit: Some(Box::new(on_commit)),
            on_abort: Some(Box::new(on_abort)),
        }
    }

    /// The write committed.
    pub fn commit(mut self) {
        self.on_abort = None;
        if let Some(f) = self.on_commit.take() {
            f();
        }
    }

    /// The keys this pending write requires to be absent (its reservations).
    pub fn reserved_keys(&self) -> impl Iterator<Item = &str> {
        self.compares.iter().map(|c| match c {
            Compare::ModRevision { key, .. } => key.as_str(),
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(f) = self.on_abort.take() {
            f();
        }
    }
}

/// What a hook knows about the request.
pub struct HookContext<'a> {
    pub dry_run: bool,
    /// Fields outside the type the body carried (see `duostack_core::kinds::Decoded::extra`).
    pub extra: &'a Map<String, Value>,
}

pub trait RestHooks: Send + Sync {
    /// Before a create is validated: may change the object and reserve what it needs.
    fn begin_create(&self, obj: &mut Value, ctx: &HookContext<'_>) -> Result<Pending, ApiError>;
    /// Before an update is validated.
    fn begin_update(
        &self,
        new: &mut Value,
        old: &Value,
        ctx: &HookContext<'_>,
    ) -> Result<Pending, ApiError>;
    /// When an object is removed from the store.
    fn begin_delete(&self, old: &Value, dry_run: bool) -> Pending;
    /// A reservation key was found taken by the store although memory said it was free (for
    /// example written by another server); remember it before retrying.
    fn learn_taken(&self, key: &str);
}
