//! Node podCIDR allocation through the real kubectl on the four cluster layouts: the order
//! and sequence of `spec.podCIDRs`, round-robin reuse after a node is deleted, the
//! `CIDRNotAvailable` event when a family runs out, and no range handed out twice across a
//! SIGKILL.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use duostack_testkit::Cluster;
use duostack_testkit::layouts::{ALL, Layout, V4V6};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_duostack"))
}

/// Four node ranges per family: an IPv4 /28 cut into /30s, an IPv6 /126 cut into /128s.
fn tiny(layout: &Layout) -> (Vec<String>, Vec<&'static str>) {
    let cidr = |f: &str| {
        if f == "IPv4" {
            "10.0.0.0/28"
        } else {
            "fd00:1::/126"
        }
    };
    let cluster: Vec<&str> = layout.families.iter().map(|f| cidr(f)).collect();
    let mut args = vec![format!("--cluster-cidr={}", cluster.join(","))];
    if layout.dual() {
        args.push("--node-cidr-mask-size-ipv4=30".into());
        args.push("--node-cidr-mask-size-ipv6=128".into());
    } else if layout.primary() == "IPv4" {
        args.push("--node-cidr-mask-size=30".into());
    } else {
        args.push("--node-cidr-mask-size=128".into());
    }
    (args, layout.families.to_vec())
}

/// Block `i` of the tiny ranges, per family.
fn block(family: &str, i: usize) -> String {
    if family == "IPv4" {
        format!("10.0.0.{}/30", i * 4)
    } else if i == 0 {
        "fd00:1::/128".into()
    } else {
        format!("fd00:1::{i}/128")
    }
}

fn create_node(c: &Cluster, name: &str) {
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}).to_string(),
    );
}

fn node(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.kubectl_ok(&["get", "node", name, "-o", "json"])).unwrap()
}

fn pod_cidrs(v: &Value) -> Vec<String> {
    v["spec"]["podCIDRs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the node has podCIDRs (the controller works asynchronously, like
/// kube-controller-manager).
fn wait_cidrs(c: &Cluster, name: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = node(c, name);
        let cidrs = pod_cidrs(&v);
        if !cidrs.is_empty() {
            assert_eq!(
                v["spec"]["podCIDR"],
                cidrs[0].as_str(),
                "podCIDR is podCIDRs[0]"
            );
            return cidrs;
        }
        assert!(
            Instant::now() < deadline,
            "node {name} got no podCIDRs:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn expect(families: &[&str], i: usize) -> Vec<String> {
    families.iter().map(|f| block(f, i)).collect()
}

fn run_pod_cidrs(layout: Layout) {
    let test = format!("node_pod_cidrs_{}", layout.name);
    let (args, families) = tiny(&layout);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(c) = layout.start(binary(), &test, &args) else {
        return;
    };

    // One range per family, in --cluster-cidr order, handed out in sequence.
    for (i, n) in ["n1", "n2", "n3"].iter().enumerate() {
        create_node(&c, n);
        assert_eq!(wait_cidrs(&c, n), expect(&families, i), "{test}: {n}");
    }
    let table = c.kubectl_ok(&[
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,CIDRS:.spec.podCIDRs",
    ]);
    assert!(
        table.contains(&format!("n2     [{}]", expect(&families, 1).join(" "))),
        "{table}"
    );

    // Round robin: n1's range is not reused until the scan wraps around.
    c.kubectl_ok(&["delete", "node", "n1"]);
    create_node(&c, "n4");
    assert_eq!(wait_cidrs(&c, "n4"), expect(&families, 3), "{test}: n4");
    create_node(&c, "n5");
    assert_eq!(
        wait_cidrs(&c, "n5"),
        expect(&families, 0),
        "{test}: n5 reuses n1's"
    );

    // Exhausted: the node waits, with one Warning event.
    create_node(&c, "n6");
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let out = c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.name=n6,reason=CIDRNotAvailable",
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "no CIDRNotAvailable event:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["involvedObject"]["kind"], "Node");
    assert_eq!(
        events[0]["message"],
        "Node n6 status is now: CIDRNotAvailable"
    );
    let shown = c.kubectl_ok(&["get", "events", "-n", "default"]);
    assert!(
        shown.contains("CIDRNotAvailable") && shown.contains("node/n6"),
        "{shown}"
    );
    assert!(pod_cidrs(&node(&c, "n6")).is_empty());

    // A release lets the waiting node in.
    c.kubectl_ok(&["delete", "node", "n2"]);
    assert_eq!(
        wait_cidrs(&c, "n6"),
        expect(&families, 1),
        "{test}: n6 after n2 left"
    );

    // Ranges a user sets are kept, and can't be taken by another node.
    c.kubectl_ok(&["delete", "node", "n3"]);
    let mut manual = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "m1"},
        "spec": {"podCIDRs": expect(&families, 2)}});
    c.kubectl_stdin(&["create", "-f", "-"], &manual.to_string());
    assert_eq!(wait_cidrs(&c, "m1"), expect(&families, 2));
    manual["metadata"]["name"] = "m2".into();
    let err = {
        let f = c.dir.path().join("m2.json");
        std::fs::write(&f, manual.to_string()).unwrap();
        c.kubectl_err(&["create", "-f", f.to_str().unwrap()])
    };
    assert!(
        err.contains(&format!(
            "spec.podCIDRs[0]: Invalid value: \"{}\": provided podCIDR is already allocated",
            block(families[0], 2)
        )),
        "{err}"
    );

    // podCIDRs are immutable once set. (Both fields change: a patch of podCIDRs alone is
    // undone by the conversion in which the old singular field wins, as in Kubernetes.)
    let err = c.kubectl_err(&[
        "patch",
        "node",
        "m1",
        "--type",
        "merge",
        "-p",
        &json!({"spec": {"podCIDR": block(families[0], 3), "podCIDRs": expect(&families, 3)}})
            .to_string(),
    ]);
    assert!(
        err.contains("spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"),
        "{err}"
    );
}

#[test]
fn node_pod_cidrs_ipv4() {
    run_pod_cidrs(ALL[0]);
}

#[test]
fn node_pod_cidrs_ipv6() {
    run_pod_cidrs(ALL[1]);
}

#[test]
fn node_pod_cidrs_dual_ipv4_first() {
    run_pod_cidrs(ALL[2]);
}

#[test]
fn node_pod_cidrs_dual_ipv6_first() {
    run_pod_cidrs(ALL[3]);
}

/// Default flags: `10.244.0.0/16` cut into /24s and `fd00:10:244::/56` into /64s.
#[test]
fn default_masks_give_slash_24_and_slash_64() {
    let Some(c) = V4V6.start(binary(), "default_masks_give_slash_24_and_slash_64", &[]) else {
        return;
    };
    create_node(&c, "a");
    create_node(&c, "b");
    assert_eq!(wait_cidrs(&c, "a"), ["10.244.0.0/24", "fd00:10:244::/64"]);
    assert_eq!(wait_cidrs(&c, "b"), ["10.244.1.0/24", "fd00:10:244:1::/64"]);
}

/// A server killed while nodes are being created and given ranges comes back without
/// handing any range out twice, and every node ends up with its ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pod_cidr_handed_out_twice_across_sigkill() {
    // 4,096 ranges per family: more than the writers manage to create.
    let mut c = Cluster::start(
        binary(),
        &[
            "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
            "--cluster-cidr=10.64.0.0/12,fd00:10:244::/52",
        ],
    )
    .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut client = c.client().unwrap();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let body = json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": format!("w{w}-{i}")}});
                match client.post_json("/api/v1/nodes", &body).await {
                    Ok(r) if r.status == 201 => acked += 1,
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    c.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    assert!(
        acked > 20,
        "only {acked} nodes were created before the kill"
    );
    c.restart().unwrap();

    // More nodes after the restart, then wait until every node has its ranges.
    let mut client = c.client().unwrap();
    for i in 0..20 {
        let body =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("after-{i}")}});
        assert_eq!(
            client
                .post_json("/api/v1/nodes", &body)
                .await
                .unwrap()
                .status,
            201
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = client.get("/api/v1/nodes").await.unwrap().json();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() >= acked + 20, "acknowledged nodes lost");
        let waiting = items.iter().filter(|n| pod_cidrs(n).is_empty()).count();
        if waiting == 0 {
            let mut seen = HashSet::new();
            for n in &items {
                let cidrs = pod_cidrs(n);
                assert_eq!(cidrs.len(), 2, "{n}");
                for cidr in cidrs {
                    assert!(seen.insert(cidr.clone()), "{cidr} handed out twice");
                }
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} nodes without ranges:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
