//! ClusterIP allocation under concurrency, metrics, and dry runs, over HTTPS.

use std::collections::HashSet;
use std::path::Path;

use duostack_testkit::{ApiClient, Cluster};
use serde_json::{Value, json};

const SVCS: &str = "/api/v1/namespaces/default/services";

fn start(args: &[&str]) -> Cluster {
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), args).expect("start server")
}

fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics(api: &mut ApiClient) -> String {
    api.get("/metrics").await.unwrap().text()
}

/// 200 Services created at once against a /26 and a /122: exactly as many succeed as the
/// smaller range holds, no address twice, and deleting them empties the allocators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_fill_small_ranges_exactly() {
    let c = start(&["--service-cluster-ip-range=10.96.0.0/26,fd00:10:96::/122"]);
    let mut api = c.client().unwrap();
    // The kubernetes Service holds 10.96.0.1; 62 usable IPv4 addresses leave 61.
    let v4_capacity = 62 - 1;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut client = c.client().unwrap();
        tasks.push(tokio::spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("s{i}")},
                "spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}});
            let r = client.post_json(SVCS, &body).await.unwrap();
            (r.status, r.json())
        }));
    }
    let mut ok = Vec::new();
    let mut full = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            201 => ok.push(v),
            500 => {
                assert_eq!(v["reason"], "InternalError");
                let m = v["message"].as_str().unwrap();
                assert!(
                    m.starts_with("Internal error occurred: failed to allocate a serviceIP: range is full: no free IPv4 address left in 10.96.0.0/26"),
                    "{m}"
                );
                full += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok.len(), v4_capacity);
    assert_eq!(full, 200 - v4_capacity);
    let mut seen = HashSet::new();
    for v in &ok {
        for ip in v["spec"]["clusterIPs"].as_array().unwrap() {
            assert!(seen.insert(ip.as_str().unwrap().to_owned()), "{ip} twice");
        }
    }
    let m = metrics(&mut api).await;
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_allocated_ips",
            "cidr=\"10.96.0.0/26\",family=\"IPv4\""
        ),
        62.0
    );
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_available_ips",
            "cidr=\"10.96.0.0/26\",family=\"IPv4\""
        ),
        0.0
    );
    // The failed creates reserved IPv6 addresses before IPv4 ran out; none may be left held.
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_allocated_ips",
            "cidr=\"fd00:10:96::/122\",family=\"IPv6\""
        ),
        v4_capacity as f64
    );
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_allocation_errors_total",
            "cidr=\"10.96.0.0/26\",family=\"IPv4\",scope=\"dynamic\""
        ),
        full as f64
    );

    for v in &ok {
        let name = v["metadata"]["name"].as_str().unwrap();
        let r = api
            .request("DELETE", &format!("{SVCS}/{name}"), None, Vec::new())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    let m = metrics(&mut api).await;
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_allocated_ips",
            "cidr=\"10.96.0.0/26\",family=\"IPv4\""
        ),
        1.0,
        "only the kubernetes Service is left"
    );
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_clusterip_allocator_allocated_ips",
            "cidr=\"fd00:10:96::/122\",family=\"IPv6\""
        ),
        0.0
    );
    // And every address can be had again.
    let r = api
        .post_json(
            SVCS,
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "again"},
            "spec": {"ipFamilyPolicy": "RequireDualStack", "ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

/// The same against an IPv6-primary /122 with single-stack Services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_ipv6_single_stack() {
    let c = start(&[
        "--service-cluster-ip-range=fd00:10:96::/122",
        "--cluster-cidr=fd00:10:244::/56",
    ]);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let mut client = c.client().unwrap();
        tasks.push(tokio::spawn(async move {
            let body = json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}});
            client.post_json(SVCS, &body).await.unwrap().status
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap() {
            201 => created += 1,
            500 => {}
            other => panic!("unexpected {other}"),
        }
    }
    // 63 usable addresses after the network address (the last one counts for IPv6), one of
    // them the kubernetes Service's.
    assert_eq!(created, 62);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reserves_nothing_and_node_ports_are_released() {
    let c = start(&[]);
    let mut api = c.client().unwrap();
    let before = metrics(&mut api).await;
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dry"},
        "spec": {"type": "NodePort", "ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}});
    let r = api
        .post_json(&format!("{SVCS}?dryRun=All"), &body)
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let v = r.json();
    // A real, free address (duostack), not the range's network address (Kubernetes).
    let ip = v["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.96.") && ip != "10.96.0.0", "{ip}");
    assert!(v["spec"]["ports"][0]["nodePort"].as_i64().is_some());
    assert_eq!(
        metrics(&mut api).await,
        before,
        "a dry run reserves nothing"
    );

    let r = api.post_json(SVCS, &body).await.unwrap();
    assert_eq!(r.status, 201);
    let np = r.json()["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let m = metrics(&mut api).await;
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_nodeport_allocator_allocated_ports",
            "range=\"30000-32767\""
        ),
        1.0
    );
    // NodePort -> ClusterIP releases the node port.
    let r = api
        .request(
            "PATCH",
            &format!("{SVCS}/dry"),
            Some("application/merge-patch+json"),
            br#"{"spec":{"type":"ClusterIP"}}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json();
    assert!(v["spec"]["ports"][0].get("nodePort").is_none(), "{v}");
    let m = metrics(&mut api).await;
    assert_eq!(
        metric(
            &m,
            "kube_apiserver_nodeport_allocator_allocated_ports",
            "range=\"30000-32767\""
        ),
        0.0
    );
    // The released port can be requested again.
    let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
        "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": np}]}});
    assert_eq!(api.post_json(SVCS, &body).await.unwrap().status, 201);
}

/// IPv6 service ranges from /64 (beyond Kubernetes' /108 cap) down to /124 allocate in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_ranges_from_64_to_124() {
    for (range, capacity) in [("fd00:10:96::/124", 15usize), ("fd00:10:96::/64", 0)] {
        let c = start(&[
            &format!("--service-cluster-ip-range={range}"),
            "--cluster-cidr=fd00:10:244::/56",
        ]);
        let mut api = c.client().unwrap();
        let mut ips = HashSet::new();
        let n = if capacity == 0 { 50 } else { capacity + 3 };
        let mut created = 0;
        for i in 0..n {
            let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("s{i}")},
                "spec": {"ports": [{"port": 80}]}});
            let r = api.post_json(SVCS, &body).await.unwrap();
            if r.status == 201 {
                created += 1;
                let ip = r.json()["spec"]["clusterIP"].as_str().unwrap().to_owned();
                assert!(ip.starts_with("fd00:10:96:"), "{ip}");
                assert!(ips.insert(ip));
            } else {
                assert_eq!(r.status, 500, "{}", r.text());
            }
        }
        if capacity == 0 {
            assert_eq!(created, n);
        } else {
            // One address is the kubernetes Service's.
            assert_eq!(created, capacity - 1, "{range}");
        }
    }
}
