//! Background loops of the control plane: namespace finalization and store compaction.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use duostack_core::kinds::namespace::FINALIZER_KUBERNETES;
use duostack_core::resource::NAMESPACES;
use duostack_store::{RangeRequest, Revision};
use serde_json::Value;

use crate::registry::{Registry, Target, from_stored, meta_str, to_stored};

/// How often terminating namespaces are re-examined without a wake-up.
const NAMESPACE_RESYNC: Duration = Duration::from_secs(5);

/// Deletes the content of terminating namespaces, then the namespaces themselves
/// (Kubernetes' namespace controller).
pub async fn namespace_controller(registry: Arc<Registry>) {
    loop {
        if let Err(e) = finalize_namespaces(&registry).await {
            tracing::warn!(error = %e, "namespace finalization pass failed");
        }
        tokio::select! {
            _ = registry.namespace_terminating.notified() => {}
            _ = tokio::time::sleep(NAMESPACE_RESYNC) => {}
        }
    }
}

/// One pass over all terminating namespaces. Public so tests and startup can drive it.
pub async fn finalize_namespaces(
    registry: &Registry,
) -> Result<(), duostack_core::error::ApiError> {
    let resp = registry
        .store
        .range(RangeRequest {
            prefix: NAMESPACES.prefix(None),
            ..Default::default()
        })
        .await
        .map_err(crate::registry::store_error)?;
    for kv in resp.kvs {
        let ns = from_stored(&kv)?;
        let terminating = ns
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if !terminating {
            continue;
        }
        let name = meta_str(&ns, "name").unwrap_or("").to_owned();
        if delete_content(registry, &name).await? {
            finish(registry, &name).await?;
        }
    }
    Ok(())
}

/// Deletes every namespaced object in `namespace`. Returns whether the namespace is empty.
async fn delete_content(
    registry: &Registry,
    namespace: &str,
) -> Result<bool, duostack_core::error::ApiError> {
    let mut empty = true;
    for kind in registry.kinds() {
        let info = kind.info();
        if !info.namespaced {
            continue;
        }
        let resp = registry
            .store
            .range(RangeRequest {
                prefix: info.prefix(Some(namespace)),
                ..Default::default()
            })
            .await
            .map_err(crate::registry::store_error)?;
        for kv in resp.kvs {
            let obj = from_stored(&kv)?;
            let name = meta_str(&obj, "name").unwrap_or("").to_owned();
            let t = Target {
                kind: *kind,
                namespace: Some(namespace),
                name: &name,
                status: false,
            };
            match registry.delete(t, b"", false).await {
                Ok(o) if o.code == http::StatusCode::ACCEPTED => empty = false,
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(namespace, kind = info.kind, name, error = %e, "deleting namespace content");
                    empty = false;
                }
            }
        }
    }
    Ok(empty)
}

/// Removes the `kubernetes` finalizer, and the namespace once no finalizer is left.
async fn finish(registry: &Registry, name: &str) -> Result<(), duostack_core::error::ApiError> {
    let key = NAMESPACES.key(None, name);
    for _ in 0..8 {
        let (Some(kv), _) = registry
            .store
            .get(&key)
            .await
            .map_err(crate::registry::store_error)?
        else {
            return Ok(());
        };
        let mut ns = from_stored(&kv)?;
        if let Some(Value::Array(f)) = ns.pointer_mut("/spec/finalizers") {
            f.retain(|v| v != FINALIZER_KUBERNETES);
        }
        let spec_left = ns
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let meta_left = ns
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let txn = duostack_store::Txn::new().unchanged_since(key.clone(), kv.mod_revision);
        let txn = if spec_left || meta_left {
            txn.put(key.clone(), to_stored(&ns))
        } else {
            txn.delete(key.clone())
        };
        let resp = registry
            .store
            .txn(txn)
            .await
            .map_err(crate::registry::store_error)?;
        if resp.succeeded {
            tracing::info!(namespace = name, "namespace finalized");
            return Ok(());
        }
    }
    Ok(())
}

/// Compacts the store the way kube-apiserver compacts etcd: every `interval`, history older
/// than the revision seen one interval ago is dropped, so a watch can always resume from a
/// revision at most one interval old.
pub async fn compactor(registry: Arc<Registry>, interval: Duration) {
    let mut seen: VecDeque<Revision> = VecDeque::new();
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        let Ok(current) = registry.store.current_revision().await else {
            continue;
        };
        seen.push_back(current);
        if seen.len() > 2 {
            seen.pop_front();
        }
        if seen.len() == 2
            && let Some(&target) = seen.front()
            && let Err(e) = registry.store.compact(target).await
        {
            tracing::warn!(error = %e, revision = target, "compaction failed");
        }
    }
}
