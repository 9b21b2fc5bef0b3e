//! Recording core/v1 Events from the server's own controllers.

use duostack_core::decode::BodyFormat;
use duostack_core::resource::EVENTS;
use serde_json::json;

use crate::registry::{Registry, now_rfc3339};
use crate::request::{FieldValidation, WriteOptions};

/// The object an event is about.
pub struct Involved<'a> {
    pub kind: &'a str,
    pub api_version: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// Records a Warning or Normal event; failures are logged, never returned (an event is a
/// report, not part of the operation).
pub async fn record(
    registry: &Registry,
    component: &str,
    involved: Involved<'_>,
    warning: bool,
    reason: &str,
    message: &str,
) {
    let Some(kind) = registry
        .kinds()
        .iter()
        .copied()
        .find(|k| std::ptr::eq(k.info(), &EVENTS))
    else {
        return;
    };
    let now = now_rfc3339();
    let ns = if involved.namespace.is_empty() {
        "default"
    } else {
        involved.namespace
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("{}.{:x}", involved.name, nanos);
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "kind": involved.kind,
            "apiVersion": involved.api_version,
            "namespace": involved.namespace,
            "name": involved.name,
            "uid": involved.uid,
        },
        "reason": reason,
        "message": message,
        "type": if warning { "Warning" } else { "Normal" },
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": component,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    let opts = WriteOptions {
        dry_run: false,
        field_manager: component.to_owned(),
        field_validation: FieldValidation::Strict,
        force: false,
    };
    let body = serde_json::to_vec(&event).unwrap_or_default();
    if warning {
        tracing::warn!(reason, namespace = ns, object = involved.name, "{message}");
    } else {
        tracing::info!(reason, namespace = ns, object = involved.name, "{message}");
    }
    if let Err(e) = registry
        .create(kind, Some(ns), &body, BodyFormat::Json, &opts)
        .await
    {
        tracing::warn!(error = %e, reason, "could not record event");
    }
}
