//! Objects every cluster has from its first start.

use duostack_core::error::ApiError;
use duostack_core::resource::NAMESPACES;
use serde_json::json;

use crate::registry::Registry;
use crate::request::{FieldValidation, WriteOptions};

/// The namespaces kube-apiserver creates itself.
pub const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

fn system_options() -> WriteOptions {
    WriteOptions {
        dry_run: false,
        field_manager: "duostack-server".into(),
        field_validation: FieldValidation::Strict,
        force: false,
    }
}

/// Creates the built-in namespaces that do not exist yet.
pub async fn ensure_builtins(registry: &Registry) -> Result<(), ApiError> {
    let ns_kind = registry
        .kinds()
        .iter()
        .copied()
        .find(|k| std::ptr::eq(k.info(), &NAMESPACES))
        .expect("namespaces are served");
    for name in BUILTIN_NAMESPACES {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        match registry
            .create(
                ns_kind,
                None,
                &bytes,
                duostack_core::decode::BodyFormat::Json,
                &system_options(),
            )
            .await
        {
            Ok(_) => tracing::info!(namespace = name, "created built-in namespace"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
