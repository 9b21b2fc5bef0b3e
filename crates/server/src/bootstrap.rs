//! Objects every cluster has from its first start.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use duostack_core::backoff::Backoff;
use duostack_core::error::ApiError;
use duostack_core::resource::{NAMESPACES, SERVICES};
use serde_json::{Value, json};

use crate::allocations::{APISERVER_SERVICE, first_address};
use crate::registry::{Registry, Target};
use crate::request::{FieldValidation, PatchType, WriteOptions};

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

/// How often the `kubernetes` Service is checked without a change waking the reconciler
/// (kube-apiserver checks every 10 s).
const KUBERNETES_SERVICE_RESYNC: Duration = Duration::from_secs(10);

/// The `kubernetes` Service as the server keeps it: what it is reconciled to.
fn kubernetes_service(ip: IpAddr, port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": APISERVER_SERVICE.1,
            "namespace": APISERVER_SERVICE.0,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip.to_string(),
            "clusterIPs": [ip.to_string()],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    })
}

/// What one check of the `kubernetes` Service did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesService {
    /// It was there, as it should be.
    Present,
    /// It was missing and was created.
    Created,
    /// Its type or ports had been changed and were put back.
    Updated,
    /// It could not be created because another Service holds its address.
    AddressTaken,
}

/// Makes sure the `kubernetes` Service in `default` exists with the first address of the
/// primary service range, type ClusterIP and the one `https` port, as kube-apiserver's
/// bootstrap controller does. Its address is held back from every other Service (see
/// [`crate::allocations`]), so a deleted `kubernetes` Service always comes back with it.
pub async fn ensure_kubernetes_service(
    registry: &Registry,
    network: &duostack_core::config::NetworkConfig,
    port: u16,
) -> Result<KubernetesService, ApiError> {
    let svc_kind = registry.kind_for(&SERVICES).expect("services are served");
    let first = first_address(network.service_cidrs[0]);
    let want = kubernetes_service(first, port);
    let t = Target {
        kind: svc_kind,
        namespace: Some(APISERVER_SERVICE.0),
        name: APISERVER_SERVICE.1,
        status: false,
    };
    match registry.get(t).await {
        Ok(existing) => {
            let have = existing
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            if have != first.to_string() {
                tracing::warn!(
                    have,
                    want = %first,
                    "the kubernetes Service's ClusterIP is not the first address of the primary service range (was the range changed?); delete the Service to recreate it"
                );
            }
            let drifted = existing.pointer("/spec/type") != want.pointer("/spec/type")
                || existing.pointer("/spec/ports") != want.pointer("/spec/ports");
            if !drifted {
                return Ok(KubernetesService::Present);
            }
            let patch =
                json!({"spec": {"type": want["spec"]["type"], "ports": want["spec"]["ports"]}});
            let body = serde_json::to_vec(&patch).unwrap_or_default();
            return match registry
                .patch(t, &body, PatchType::Merge, &system_options())
                .await
            {
                Ok(_) => {
                    tracing::info!("put back the kubernetes Service's type and ports");
                    Ok(KubernetesService::Updated)
                }
                // Deleted or changed meanwhile: the next pass looks again.
                Err(e) if e.code == 404 || e.code == 409 => Ok(KubernetesService::Present),
                Err(e) => Err(e),
            };
        }
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let bytes = serde_json::to_vec(&want).unwrap_or_default();
    match registry
        .create(
            svc_kind,
            Some(APISERVER_SERVICE.0),
            &bytes,
            duostack_core::decode::BodyFormat::Json,
            &system_options(),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(cluster_ip = %first, "created the kubernetes Service");
            Ok(KubernetesService::Created)
        }
        Err(e) if e.code == 409 => Ok(KubernetesService::Present),
        Err(e) if e.code == 422 => {
            // The deletion that frees the address has not finished yet, or a Service stored
            // before the address was held back holds it.
            tracing::debug!(error = %e, "could not create the kubernetes Service");
            Ok(KubernetesService::AddressTaken)
        }
        Err(e) => Err(e),
    }
}

/// Keeps the `kubernetes` Service in place: recreated at once when it is deleted, put back
/// when its ports are changed, and checked every 10 s in any case. A failed attempt (the
/// store, or the address still held while the deletion that frees it completes) is retried
/// with a short backoff.
pub async fn kubernetes_service_controller(
    registry: Arc<Registry>,
    network: duostack_core::config::NetworkConfig,
    port: u16,
) {
    let key = SERVICES.key(Some(APISERVER_SERVICE.0), APISERVER_SERVICE.1);
    let mut backoff = Backoff::new(Duration::from_millis(50), KUBERNETES_SERVICE_RESYNC);
    let mut warned = false;
    loop {
        // Watch from the revision the check starts at, so a change made during the check
        // wakes the next one.
        let from = registry.store.current_revision().await.unwrap_or(0) + 1;
        let retry = match ensure_kubernetes_service(&registry, &network, port).await {
            Ok(KubernetesService::AddressTaken) => {
                if !warned {
                    warned = true;
                    tracing::warn!(
                        "the kubernetes Service's address is held by another Service; retrying"
                    );
                }
                Some(backoff.next_delay())
            }
            Ok(_) => {
                backoff.reset();
                warned = false;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconciling the kubernetes Service");
                Some(backoff.next_delay())
            }
        };
        if let Some(delay) = retry {
            tokio::time::sleep(delay).await;
            continue;
        }
        let changed = async {
            let Ok(mut events) = registry.store.watch(&key, from).await else {
                return std::future::pending().await;
            };
            // A prefix watch: skip Services whose names only start with this one.
            while let Some(ev) = events.next().await {
                if *ev.kv.key == *key {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(KUBERNETES_SERVICE_RESYNC) => {}
        }
    }
}
