//! The allocation repair pass against a real server's store: it finds and fixes what a
//! writer bypassing the registry (or an older version, or a bug) left inconsistent, and
//! reports each problem as an Event.

use std::net::SocketAddr;
use std::time::Duration;

use duostack_core::config::{NetworkConfig, NetworkFlags};
use duostack_core::kinds::Kind;
use duostack_server::allocations::ip_key;
use duostack_server::registry::ListOptions;
use duostack_server::repair::{Reported, repair};
use duostack_server::{ServerConfig, StoreConfig, start};
use duostack_store::Txn;
use serde_json::json;

fn service(name: &str, ip: &str, uid: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "ipFamilies": ["IPv4"],
                 "ipFamilyPolicy": "SingleStack", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_fixes_and_reports_inconsistencies() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(ServerConfig {
        listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        data_dir: dir.path().to_owned(),
        store: StoreConfig::Embedded,
        compaction_interval: Duration::from_secs(300),
        bookmark_interval: Duration::from_secs(60),
        network: NetworkConfig::from_flags(&NetworkFlags::default()).unwrap(),
        repair_interval: Duration::from_secs(3600),
    })
    .await
    .unwrap();
    let store = server.registry.store.clone();
    let alloc = server.allocations.clone();
    // Two Services claiming one address, one with no allocation key, and a key nobody holds.
    store
        .txn(
            Txn::new()
                .put(
                    "/registry/core/services/default/first",
                    service("first", "10.96.5.5", "u1"),
                )
                .put(
                    ip_key("10.96.5.5".parse().unwrap()),
                    br#"{"kind":"Service","namespace":"default","name":"first","uid":"u1"}"#
                        .to_vec(),
                )
                .put(
                    "/registry/core/services/default/second",
                    service("second", "10.96.5.5", "u2"),
                )
                .put(
                    "/registry/core/services/default/unkeyed",
                    service("unkeyed", "10.96.6.6", "u3"),
                )
                .put(
                    "/registry/core/services/default/outside",
                    service("outside", "192.168.0.1", "u4"),
                )
                .put(
                    ip_key("10.96.7.7".parse().unwrap()),
                    br#"{"kind":"Service","namespace":"default","name":"gone","uid":"u5"}"#
                        .to_vec(),
                ),
        )
        .await
        .unwrap();
    let reported = Reported::default();
    let report = repair(&server.registry, &alloc, &reported, true)
        .await
        .unwrap();
    assert_eq!(report.duplicates, ["10.96.5.5"]);
    assert_eq!(report.not_allocated, ["10.96.6.6"]);
    assert_eq!(report.out_of_range, ["192.168.0.1"]);
    assert_eq!(report.leaked, ["10.96.7.7"]);
    // Fixed in the store...
    assert!(
        store
            .get(&ip_key("10.96.6.6".parse().unwrap()))
            .await
            .unwrap()
            .0
            .is_some()
    );
    assert!(
        store
            .get(&ip_key("10.96.7.7".parse().unwrap()))
            .await
            .unwrap()
            .0
            .is_none()
    );
    // ...so a second pass finds nothing new to fix, and reports nothing twice.
    let again = repair(&server.registry, &alloc, &reported, false)
        .await
        .unwrap();
    assert!(again.not_allocated.is_empty() && again.leaked.is_empty());

    let events_kind = server
        .registry
        .kinds()
        .iter()
        .copied()
        .find(|k: &&'static dyn Kind| k.info().plural == "events")
        .unwrap();
    let events = server
        .registry
        .list(events_kind, Some("default"), &ListOptions::default())
        .await
        .unwrap();
    let mut seen: Vec<(String, String)> = events
        .items
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().unwrap().to_owned(),
                e["involvedObject"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "ClusterIPAlreadyAllocated".to_string(),
                "second".to_string()
            ),
            ("ClusterIPLeaked".into(), "gone".into()),
            ("ClusterIPNotAllocated".into(), "unkeyed".into()),
            ("ClusterIPOutOfRange".into(), "outside".into()),
        ]
    );
    for e in &events.items {
        assert_eq!(e["type"], "Warning");
        assert_eq!(e["source"]["component"], "ipallocator-repair-controller");
    }
    server.shutdown().await;
}

fn test_config(dir: &std::path::Path, repair_interval: Duration) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        data_dir: dir.to_owned(),
        store: StoreConfig::Embedded,
        compaction_interval: Duration::from_secs(300),
        bookmark_interval: Duration::from_secs(60),
        network: NetworkConfig::from_flags(&NetworkFlags::default()).unwrap(),
        repair_interval,
    }
}

async fn create_service(
    server: &duostack_server::Server,
    body: serde_json::Value,
) -> Result<serde_json::Value, duostack_core::error::ApiError> {
    let kind = server
        .registry
        .kind_for(&duostack_core::resource::SERVICES)
        .unwrap();
    let opts = duostack_server::request::WriteOptions {
        dry_run: false,
        field_manager: "test".into(),
        field_validation: duostack_server::request::FieldValidation::Strict,
        force: false,
    };
    server
        .registry
        .create(
            kind,
            Some("default"),
            &serde_json::to_vec(&body).unwrap(),
            duostack_core::decode::BodyFormat::Json,
            &opts,
        )
        .await
        .map(|o| o.object)
}

/// A reservation left in memory without a key (what a request that forgot to give one back
/// would leave) is found and freed by one repair pass, and the periodic pass does it on its
/// own within one interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_frees_reservations_leaked_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(test_config(dir.path(), Duration::from_secs(3600)))
        .await
        .unwrap();
    let alloc = server.allocations.clone();
    let usage = || alloc.usage().iter().map(|u| u.1).collect::<Vec<_>>();
    let before = (usage(), alloc.ports_used());
    alloc.leak_for_test(&ip_key("10.96.9.9".parse().unwrap()));
    alloc.leak_for_test(&ip_key("fd00:10:96::99".parse().unwrap()));
    alloc.leak_for_test(&duostack_server::allocations::port_key(30099));
    assert_ne!((usage(), alloc.ports_used()), before);
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wants-it"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.9.9",
                 "ports": [{"port": 80, "nodePort": 30099}]}});
    let err = create_service(&server, svc.clone()).await.unwrap_err();
    assert_eq!(err.code, 422, "{err}");

    let report = repair(&server.registry, &alloc, &Reported::default(), false)
        .await
        .unwrap();
    let mut freed = report.memory_freed.clone();
    freed.sort();
    assert_eq!(freed, ["10.96.9.9", "30099", "fd00:10:96::99"]);
    assert!(report.memory_marked.is_empty(), "{report:?}");
    assert_eq!((usage(), alloc.ports_used()), before);
    let created = create_service(&server, svc).await.unwrap();
    assert_eq!(created["spec"]["clusterIP"], "10.96.9.9");
    // A second pass finds memory and store in agreement.
    let again = repair(&server.registry, &alloc, &Reported::default(), false)
        .await
        .unwrap();
    assert_eq!(again, duostack_server::repair::RepairReport::default());
    server.shutdown().await;

    // The periodic pass heals a leak by itself.
    let dir = tempfile::tempdir().unwrap();
    let server = start(test_config(dir.path(), Duration::from_secs(1)))
        .await
        .unwrap();
    let alloc = server.allocations.clone();
    let before = alloc.usage();
    alloc.leak_for_test(&ip_key("10.96.9.9".parse().unwrap()));
    assert_ne!(alloc.usage(), before);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alloc.usage() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "leak not healed within 5 s at a 1 s repair interval"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}
