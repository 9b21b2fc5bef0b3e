//! The three PATCH formats that change an object in place: RFC 6902 JSON patch, RFC 7386 merge
//! patch and Kubernetes' strategic merge patch. (Server-side apply is in [`crate::ssa`].)

use serde_json::Value;

pub mod strategic;

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch body is not a patch of its declared type (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well-formed but does not apply to this object (HTTP 422).
    #[error("{0}")]
    NotApplicable(String),
}

/// Applies an RFC 6902 JSON patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Malformed(format!("json patch: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| PatchError::NotApplicable(e.to_string()))?;
    Ok(out)
}

/// Applies an RFC 7386 merge patch. Kubernetes requires the patch to be an object.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "merge patch: the patch must be a JSON object".into(),
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_patch_ops() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}});
        let out = json_patch(
            &doc,
            &json!([{"op": "add", "path": "/metadata/labels/z", "value": "1"},
                    {"op": "remove", "path": "/metadata/labels/a"}]),
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"z": "1"}}}));
        assert!(matches!(
            json_patch(&doc, &json!([{"op": "remove", "path": "/nope"}])),
            Err(PatchError::NotApplicable(_))
        ));
        assert!(matches!(
            json_patch(&doc, &json!({"op": "add"})),
            Err(PatchError::Malformed(_))
        ));
        // Failing ops leave nothing half-applied.
        assert!(json_patch(
            &doc,
            &json!([{"op": "add", "path": "/x", "value": 1}, {"op": "test", "path": "/x", "value": 2}])
        )
        .is_err());
    }

    #[test]
    fn merge_patch_semantics() {
        let doc =
            json!({"spec": {"selector": {"app": "web", "tier": "a"}, "ports": [{"port": 80}]}});
        let out = merge_patch(
            &doc,
            &json!({"spec": {"selector": {"tier": null, "app": "web2"}, "ports": [{"port": 81}]}}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"spec": {"selector": {"app": "web2"}, "ports": [{"port": 81}]}})
        );
        assert!(merge_patch(&doc, &json!([1])).is_err());
    }
}
