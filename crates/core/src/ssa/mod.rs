//! Server-side apply and managed fields (placeholder until the implementation lands).

use serde_json::Value;

use crate::schema::TypeSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SsaError {
    #[error("conflicts")]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(String),
}

pub fn decode_managed_fields(_v: &Value) -> Result<Vec<ManagedEntry>, SsaError> {
    Ok(Vec::new())
}

pub fn encode_managed_fields(_entries: &[ManagedEntry]) -> Value {
    Value::Array(Vec::new())
}

#[allow(clippy::too_many_arguments)]
pub fn update_managed_fields(
    _old: Option<&Value>,
    _new: &Value,
    entries: Vec<ManagedEntry>,
    _manager: &str,
    _subresource: Option<&str>,
    _api_version: &str,
    _now: &str,
    _schema: &TypeSchema,
) -> Vec<ManagedEntry> {
    entries
}

#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    entries: Vec<ManagedEntry>,
    _manager: &str,
    _force: bool,
    _api_version: &str,
    _now: &str,
    _schema: &TypeSchema,
) -> Result<(Value, Vec<ManagedEntry>), SsaError> {
    let mut out = live.cloned().unwrap_or(Value::Object(Default::default()));
    json_patch::merge(&mut out, config);
    Ok((out, entries))
}

pub fn conflict_message(conflicts: &[Conflict]) -> String {
    format!("Apply failed with {} conflicts", conflicts.len())
}

pub fn conflict_cause(c: &Conflict) -> String {
    format!("conflict with {:?}", c.manager)
}
