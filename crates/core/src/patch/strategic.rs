//! Strategic merge patch (placeholder until the implementation lands).

use serde_json::Value;

use crate::schema::TypeSchema;

#[derive(Debug, thiserror::Error)]
pub enum SmpError {
    #[error("{0}")]
    Invalid(String),
}

pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    _schema: &TypeSchema,
) -> Result<Value, SmpError> {
    let mut out = original.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}
