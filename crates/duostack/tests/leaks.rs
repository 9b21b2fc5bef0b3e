//! Requests that fail half way give back everything they reserved. Each kind of half-failing
//! request is sent thousands of times; the allocator gauges on /metrics must not move, and
//! the values involved must still be available to the next valid request.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use duostack_testkit::layouts::{ALL, Layout, V4V6, V6V4};
use duostack_testkit::{ApiClient, Cluster};
use serde_json::{Value, json};

const SVCS: &str = "/api/v1/namespaces/default/services";
/// Requests of each half-failing kind.
const ROUNDS: usize = 5_000;
const CLIENTS: usize = 8;

fn start(args: &[String]) -> Cluster {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), &args).expect("start server")
}

/// Every allocator gauge (allocated and available, per range) on /metrics.
async fn gauges(api: &mut ApiClient) -> BTreeMap<String, String> {
    let text = api.get("/metrics").await.unwrap().text();
    let out: BTreeMap<String, String> = text
        .lines()
        .filter(|l| {
            l.starts_with("kube_apiserver_clusterip_allocator_allocated_ips")
                || l.starts_with("kube_apiserver_clusterip_allocator_available_ips")
                || l.starts_with("kube_apiserver_nodeport_allocator_allocated_ports")
                || l.starts_with("kube_apiserver_nodeport_allocator_available_ports")
        })
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert!(out.len() >= 4, "allocator gauges missing:\n{text}");
    out
}

/// Sends `rounds` requests built by `make` from `CLIENTS` connections; every answer must have
/// status `want`, and `check` is run on the first one.
async fn hammer(
    c: &Cluster,
    rounds: usize,
    want: u16,
    make: impl Fn(usize) -> (&'static str, String, Value) + Send + Sync + 'static,
) -> Value {
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = c.client().unwrap();
        let (make, next) = (make.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut first = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= rounds {
                    return first;
                }
                let (method, path, body) = make(i);
                let ct = if method == "PATCH" {
                    "application/merge-patch+json"
                } else {
                    "application/json"
                };
                let r = client
                    .request(method, &path, Some(ct), serde_json::to_vec(&body).unwrap())
                    .await
                    .unwrap();
                assert_eq!(r.status, want, "request {i}: {}", r.text());
                first.get_or_insert_with(|| r.json());
            }
        }));
    }
    let mut first = None;
    for t in tasks {
        if let Some(v) = t.await.unwrap() {
            first.get_or_insert(v);
        }
    }
    first.expect("at least one request")
}

/// A NodePort Service holding node port 30080 and one address per family of the cluster.
async fn holder(api: &mut ApiClient, l: &Layout) -> Value {
    let policy = if l.dual() {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    let r = api
        .post_json(
            SVCS,
            &json!({"metadata": {"name": "holder"}, "spec": {"type": "NodePort",
                "ipFamilyPolicy": policy, "ports": [{"port": 80, "nodePort": 30080}]}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn cause_field(status: &Value) -> &str {
    status["details"]["causes"][0]["field"]
        .as_str()
        .unwrap_or("")
}

/// A create whose first port gets a node port and whose second asks for a taken one; an
/// update that does the same to an existing Service. On every layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_port_taken_by_a_later_port_leaks_nothing() {
    for l in ALL {
        let c = start(&l.args());
        let mut api = c.client().unwrap();
        holder(&mut api, &l).await;
        let r = api
            .post_json(
                SVCS,
                &json!({"metadata": {"name": "victim"}, "spec": {"ports": [{"port": 80}]}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        let before = gauges(&mut api).await;

        let status = hammer(&c, ROUNDS, 422, |_| {
            (
                "POST",
                SVCS.to_owned(),
                json!({"metadata": {"name": "x"}, "spec": {"type": "NodePort", "ports": [
                    {"port": 80, "name": "a"}, {"port": 81, "name": "b", "nodePort": 30080}]}}),
            )
        })
        .await;
        assert_eq!(cause_field(&status), "spec.ports[1].nodePort", "{status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("provided port is already allocated"),
            "{status}"
        );
        assert_eq!(gauges(&mut api).await, before, "{}: create", l.name);

        let status = hammer(&c, ROUNDS, 422, |_| {
            (
                "PATCH",
                format!("{SVCS}/victim"),
                json!({"spec": {"type": "NodePort", "ports": [
                    {"port": 80, "name": "a"}, {"port": 81, "name": "b", "nodePort": 30080}]}}),
            )
        })
        .await;
        assert_eq!(cause_field(&status), "spec.ports[1].nodePort", "{status}");
        assert_eq!(gauges(&mut api).await, before, "{}: update", l.name);

        // Everything those requests touched is still free for a valid one.
        let r = api
            .post_json(
                SVCS,
                &json!({"metadata": {"name": "after"}, "spec": {"type": "NodePort",
                    "ports": [{"port": 80, "nodePort": 30081}]}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

/// A dual-stack create whose first family's address is free and whose second family's address
/// is taken: the first is given back, every time (a different first address each time, so a
/// leak would take 5,000 of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_family_taken_leaks_nothing() {
    for l in [V4V6, V6V4] {
        let c = start(&l.args());
        let mut api = c.client().unwrap();
        let held = holder(&mut api, &l).await;
        let taken_second = held["spec"]["clusterIPs"][1].as_str().unwrap().to_owned();
        let before = gauges(&mut api).await;
        let primary_is_v4 = l.primary() == "IPv4";
        let status = hammer(&c, ROUNDS, 422, move |i| {
            // Addresses in the dynamic band of each primary range, all different.
            let first = if primary_is_v4 {
                format!("10.96.{}.{}", 20 + i / 250, 1 + i % 250)
            } else {
                format!("fd00:10:96::{:x}", 0x2000 + i)
            };
            (
                "POST",
                SVCS.to_owned(),
                json!({"metadata": {"name": "x"}, "spec": {"ipFamilyPolicy": "RequireDualStack",
                    "clusterIP": first, "clusterIPs": [first, taken_second],
                    "ports": [{"port": 80}]}}),
            )
        })
        .await;
        assert_eq!(cause_field(&status), "spec.clusterIPs", "{status}");
        assert_eq!(gauges(&mut api).await, before, "{}", l.name);
        // The first address of the first round is free again.
        let first = if primary_is_v4 {
            "10.96.20.1"
        } else {
            "fd00:10:96::2000"
        };
        let r = api
            .post_json(
                SVCS,
                &json!({"metadata": {"name": "after"}, "spec": {"clusterIP": first,
                    "ports": [{"port": 80}]}}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

/// A dual-stack create whose second family's range is full: Kubernetes' 500 "range is full",
/// and the first family's dynamically picked address is given back. Before the fix, 5,000 of
/// these took 5,000 addresses of the primary range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_family_range_full_leaks_nothing() {
    for (l, ranges, second) in [
        (V4V6, "10.96.0.0/16,fd00:10:96::/125", "fd00:10:96::/125"),
        (V6V4, "fd00:10:96::/112,10.96.0.0/29", "10.96.0.0/29"),
    ] {
        let c = start(&[
            format!("--service-cluster-ip-range={ranges}"),
            format!("--cluster-cidr={}", l.cluster),
        ]);
        let mut api = c.client().unwrap();
        // Fill the small second range with Services of its family alone.
        let mut n = 0;
        loop {
            let r = api
                .post_json(
                    SVCS,
                    &json!({"metadata": {"name": format!("fill{n}")}, "spec": {
                        "ipFamilies": [l.other()], "ports": [{"port": 80}]}}),
                )
                .await
                .unwrap();
            if r.status != 201 {
                assert_eq!(r.status, 500, "{}", r.text());
                break;
            }
            n += 1;
        }
        assert!(n >= 4, "{}: only {n} fit in {second}", l.name);
        let before = gauges(&mut api).await;
        let status = hammer(&c, ROUNDS, 500, |_| {
            (
                "POST",
                SVCS.to_owned(),
                json!({"metadata": {"name": "x"}, "spec": {"ipFamilyPolicy": "RequireDualStack",
                    "ports": [{"port": 80}]}}),
            )
        })
        .await;
        assert_eq!(status["reason"], "InternalError", "{status}");
        let m = status["message"].as_str().unwrap();
        assert!(
            m.starts_with("Internal error occurred: failed to allocate a serviceIP: range is full"),
            "{m}"
        );
        assert!(m.contains(second), "{m}");
        assert_eq!(gauges(&mut api).await, before, "{}", l.name);
    }
}
