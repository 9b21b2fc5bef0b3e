//! Server-side apply and managed fields (`metadata.managedFields`), with the semantics of
//! Kubernetes' field manager and structured-merge-diff.
//!
//! [`fieldset`] is the set-of-paths model and its FieldsV1 encoding; [`managed`] tracks
//! ownership on updates and implements apply (merge, conflicts, pruning).

pub mod fieldset;
pub mod managed;

pub use managed::*;
