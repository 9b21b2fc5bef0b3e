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

/// The `kubernetes` Service in `default`: the API server's own ClusterIP, the first address of
/// the primary service range.
pub async fn ensure_kubernetes_service(
    registry: &Registry,
    network: &duostack_core::config::NetworkConfig,
    port: u16,
) -> Result<(), ApiError> {
    let svc_kind = registry
        .kinds()
        .iter()
        .copied()
        .find(|k| std::ptr::eq(k.info(), &duostack_core::resource::SERVICES))
        .expect("services are served");
    let primary = network.service_cidrs[0].net();
    let first = match primary.network() {
        std::net::IpAddr::V4(v4) => std::net::IpAddr::V4((u32::from(v4) + 1).into()),
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6((u128::from(v6) + 1).into()),
    };
    let t = crate::registry::Target {
        kind: svc_kind,
        namespace: Some("default"),
        name: "kubernetes",
        status: false,
    };
    match registry.get(t).await {
        Ok(existing) => {
            let have = existing
                .pointer("/spec/clusterIP")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            if have != first.to_string() {
                tracing::warn!(
                    have,
                    want = %first,
                    "the kubernetes Service's ClusterIP is not the first address of the primary service range (was the range changed?); delete the Service to recreate it"
                );
            }
            return Ok(());
        }
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    let body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": first.to_string(),
            "clusterIPs": [first.to_string()],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    match registry
        .create(
            svc_kind,
            Some("default"),
            &bytes,
            duostack_core::decode::BodyFormat::Json,
            &system_options(),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(cluster_ip = %first, "created the kubernetes Service");
            Ok(())
        }
        Err(e) if e.code == 409 => Ok(()),
        Err(e) if e.code == 422 => {
            // Taken by a user Service already: report, don't refuse to start.
            tracing::warn!(error = %e, "could not create the kubernetes Service");
            Ok(())
        }
        Err(e) => Err(e),
    }
}
