//! Host IPs and host-network pod IPs through the real kubectl on the four cluster layouts
//! (spec section B.3): with no kubelet, the server fills `status.hostIP(s)` of every pod
//! bound to a node from the node's addresses, and gives a hostNetwork pod the node's IPs as
//! its `podIPs`, never rewriting IPs a pod already has.

use std::path::Path;
use std::time::{Duration, Instant};

use duostack_testkit::Cluster;
use duostack_testkit::layouts::{Layout, V4, V4V6, V6, V6V4};
use serde_json::{Value, json};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_duostack"))
}

fn node_ip(family: &str, host: u8) -> String {
    if family == "IPv4" {
        format!("192.0.2.{host}")
    } else {
        format!("2001:db8::{host:x}")
    }
}

/// Patches the node's addresses: one InternalIP per family of the layout, in its order,
/// an ExternalIP of the primary family that must never be chosen over an InternalIP, and
/// the Hostname.
fn set_addresses(c: &Cluster, layout: &Layout, node: &str, host: u8) -> Vec<String> {
    let ips: Vec<String> = layout.families.iter().map(|f| node_ip(f, host)).collect();
    let mut addresses = vec![json!({"type": "Hostname", "address": node})];
    addresses.push(json!({"type": "ExternalIP", "address": node_ip(layout.primary(), 200)}));
    for ip in &ips {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    c.kubectl_ok(&[
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"addresses": addresses}}).to_string(),
    ]);
    ips
}

fn create_pod(c: &Cluster, name: &str, node: &str, host_network: bool) {
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
        .to_string(),
    );
}

fn pod(c: &Cluster, name: &str) -> Value {
    serde_json::from_str(&c.kubectl_ok(&["get", "pod", name, "-o", "json"])).unwrap()
}

fn ips(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["ip"].as_str().map(str::to_owned))
        .collect()
}

/// Polls the pod until `done` holds (the filler works asynchronously, like a kubelet's
/// status sync), returning the pod.
fn wait_pod(c: &Cluster, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = pod(c, name);
        if done(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "pod {name}: {what} not seen within 10 s; status: {}",
            p["status"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(layout: Layout) {
    let test = format!("host_ips_{}", layout.name);
    let Some(c) = layout.start(binary(), &test, &[]) else {
        return;
    };
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}).to_string(),
    );
    let host = set_addresses(&c, &layout, "node-a", 10);

    // An ordinary pod: host IPs, no pod IPs (those come from the runtime via CNI).
    create_pod(&c, "plain", "node-a", false);
    let p = wait_pod(&c, "plain", "hostIPs", |p| {
        !ips(&p["status"]["hostIPs"]).is_empty()
    });
    assert_eq!(ips(&p["status"]["hostIPs"]), host, "{}", layout.name);
    assert_eq!(p["status"]["hostIP"], host[0].as_str(), "{}", layout.name);
    assert!(
        p["status"]["podIPs"].is_null(),
        "{}: {}",
        layout.name,
        p["status"]
    );

    // A hostNetwork pod has the node's IPs, both families when the node has both.
    create_pod(&c, "hostnet", "node-a", true);
    let p = wait_pod(&c, "hostnet", "podIPs", |p| {
        !ips(&p["status"]["podIPs"]).is_empty()
    });
    assert_eq!(ips(&p["status"]["podIPs"]), host, "{}", layout.name);
    assert_eq!(p["status"]["podIP"], host[0].as_str(), "{}", layout.name);
    assert_eq!(ips(&p["status"]["hostIPs"]), host, "{}", layout.name);

    // The go-template of the "validate dual-stack" page reads the same thing.
    let out = c.kubectl_ok(&[
        "get",
        "pod",
        "hostnet",
        "-o",
        "go-template={{range .status.podIPs}}{{printf \"%s \" .ip}}{{end}}",
    ]);
    assert_eq!(out.trim(), host.join(" "), "{}", layout.name);

    // A pod not yet bound gets nothing, then its host IPs once bound to a node that has
    // addresses: the filler follows node address changes for pods still waiting.
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-b"}}).to_string(),
    );
    create_pod(&c, "later", "node-b", true);
    std::thread::sleep(Duration::from_millis(300));
    let p = pod(&c, "later");
    assert!(
        p["status"]["podIPs"].is_null(),
        "{}: {}",
        layout.name,
        p["status"]
    );
    let host_b = set_addresses(&c, &layout, "node-b", 11);
    let p = wait_pod(&c, "later", "podIPs", |p| {
        !ips(&p["status"]["podIPs"]).is_empty()
    });
    assert_eq!(ips(&p["status"]["podIPs"]), host_b, "{}", layout.name);

    // New node addresses never rewrite IPs a pod already has.
    set_addresses(&c, &layout, "node-a", 20);
    std::thread::sleep(Duration::from_millis(500));
    let p = pod(&c, "hostnet");
    assert_eq!(ips(&p["status"]["podIPs"]), host, "{}", layout.name);
    assert_eq!(ips(&p["status"]["hostIPs"]), host, "{}", layout.name);

    // Pod IP validation: two of one family is refused with Kubernetes' message and path.
    let same = [node_ip(layout.primary(), 30), node_ip(layout.primary(), 31)];
    let err = c.kubectl_err(&[
        "patch",
        "pod",
        "plain",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"podIP": same[0], "podIPs": [{"ip": same[0]}, {"ip": same[1]}]}})
            .to_string(),
    ]);
    assert!(
        err.contains("status.podIPs")
            && err.contains("may specify no more than one IP for each IP family"),
        "{}: {err}",
        layout.name
    );
}

#[test]
fn host_ips_ipv4() {
    run(V4);
}

#[test]
fn host_ips_ipv6() {
    run(V6);
}

#[test]
fn host_ips_dual_ipv4_first() {
    run(V4V6);
}

#[test]
fn host_ips_dual_ipv6_first() {
    run(V6V4);
}
