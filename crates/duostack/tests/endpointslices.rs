//! EndpointSlices per address family through the real kubectl, on the four cluster layouts:
//! pods with dual `status.podIPs` (single on single-stack clusters) behind a dual-stack Service
//! and a single-stack one; the slices appear, follow pod changes and disappear.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use duostack_testkit::Cluster;
use duostack_testkit::layouts::{ALL, Layout, family_of};
use ipnet::IpNet;
use serde_json::{Value, json};

/// What the slices of one Service say: address type → sorted (address, ready) pairs, and the
/// ports of each slice.
type View = BTreeMap<String, (Vec<(String, bool)>, Vec<Value>)>;

fn slices(c: &Cluster, svc: &str) -> (View, Vec<Value>) {
    let out = c.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={svc}"),
        "-o",
        "json",
    ]);
    let items = serde_json::from_str::<Value>(&out).unwrap()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut view = View::new();
    for s in &items {
        let entry = view
            .entry(s["addressType"].as_str().unwrap().to_owned())
            .or_default();
        for e in s["endpoints"].as_array().into_iter().flatten() {
            for a in e["addresses"].as_array().into_iter().flatten() {
                let ready = e["conditions"]["ready"].as_bool().unwrap_or(false);
                entry.0.push((a.as_str().unwrap().to_owned(), ready));
            }
        }
        entry.0.sort();
        entry.1 = s["ports"].as_array().cloned().unwrap_or_default();
    }
    (view, items)
}

fn wait_slices(c: &Cluster, svc: &str, want: &View) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (view, items) = slices(c, svc);
        if &view == want {
            return items;
        }
        assert!(
            Instant::now() < deadline,
            "slices of {svc}:\n got {view:?}\nwant {want:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `n`th address of a range.
fn nth(cidr: &str, n: u32) -> String {
    let net: IpNet = cidr.parse().unwrap();
    match net.network() {
        std::net::IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a) + n).to_string(),
        std::net::IpAddr::V6(a) => {
            std::net::Ipv6Addr::from(u128::from(a) + u128::from(n)).to_string()
        }
    }
}

fn wait_pod_cidrs(c: &Cluster, node: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "node", node, "-o", "json"])).unwrap();
        if let Some(a) = v["spec"]["podCIDRs"].as_array() {
            return a.iter().map(|s| s.as_str().unwrap().to_owned()).collect();
        }
        assert!(Instant::now() < deadline, "no podCIDRs on {node}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Reports a pod's addresses and readiness as kubelet would.
fn set_status(c: &Cluster, pod: &str, ips: &[String], ready: bool) {
    let list: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let status = if ready { "True" } else { "False" };
    c.kubectl_ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"phase": "Running", "podIP": ips[0], "podIPs": list,
            "conditions": [{"type": "Ready", "status": status}]}})
        .to_string(),
    ]);
}

fn run(layout: Layout) {
    let test = format!("endpointslices_{}", layout.name);
    let Some(c) = layout.start(Path::new(env!("CARGO_BIN_EXE_duostack")), &test, &[]) else {
        return;
    };
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}).to_string(),
    );
    let cidrs = wait_pod_cidrs(&c, "n1");

    // Three pods, each with one address per cluster family, primary family first.
    let mut ips: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, pod) in ["p1", "p2", "p3"].iter().enumerate() {
        c.kubectl_stdin(
            &["create", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod, "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx",
                    "ports": [{"name": "http", "containerPort": 8080}]}]}})
            .to_string(),
        );
        let addrs: Vec<String> = cidrs.iter().map(|cidr| nth(cidr, 10 + i as u32)).collect();
        set_status(&c, pod, &addrs, true);
        ips.insert(pod.to_string(), addrs);
    }
    let svc = |name: &str, policy: &str| {
        c.kubectl_stdin(
            &["apply", "-f", "-"],
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"ipFamilyPolicy": policy, "selector": {"app": "web"},
                    "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
            .to_string(),
        );
    };
    svc("dual", "PreferDualStack");
    svc("single", "SingleStack");

    let port = vec![json!({"name": "web", "port": 8080, "protocol": "TCP"})];
    let expect = |families: &[&str], ips: &BTreeMap<String, Vec<String>>, not_ready: &[&str]| {
        let mut v = View::new();
        for f in families {
            let mut addrs: Vec<(String, bool)> = ips
                .iter()
                .flat_map(|(pod, list)| {
                    list.iter()
                        .filter(|ip| family_of(ip) == *f)
                        .map(|ip| (ip.clone(), !not_ready.contains(&pod.as_str())))
                        .collect::<Vec<_>>()
                })
                .collect();
            addrs.sort();
            v.insert(f.to_string(), (addrs, port.clone()));
        }
        v
    };

    // Appear: the dual-stack Service gets a slice per cluster family, the single-stack one a
    // slice of the primary family; each holds only addresses of its family.
    let items = wait_slices(&c, "dual", &expect(layout.families, &ips, &[]));
    for s in &items {
        assert_eq!(
            s["metadata"]["labels"]["kubernetes.io/service-name"],
            "dual"
        );
        assert_eq!(
            s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.k8s.io"
        );
        assert_eq!(s["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(s["metadata"]["ownerReferences"][0]["name"], "dual");
    }
    wait_slices(&c, "single", &expect(&[layout.primary()], &ips, &[]));
    let table = c.kubectl_ok(&["get", "endpointslices"]);
    for f in layout.families {
        assert!(table.contains(f), "{table}");
    }

    // The legacy Endpoints object: primary family only.
    let eps: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "endpoints", "dual", "-o", "json"])).unwrap();
    let mut got: Vec<String> = eps["subsets"][0]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["ip"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = ips.values().map(|l| l[0].clone()).collect();
    want.sort();
    assert_eq!(got, want, "{eps}");
    assert_eq!(eps["subsets"][0]["ports"][0]["port"], 8080);
    // kubectl relays the server's deprecation warning, as with kube-apiserver 1.33+.
    let out = c.kubectl(&["get", "endpoints", "dual"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice"
        ),
        "{stderr}"
    );

    // Change: a pod turns unready, another moves, a third goes away.
    set_status(&c, "p2", &ips["p2"], false);
    let moved: Vec<String> = cidrs.iter().map(|cidr| nth(cidr, 99)).collect();
    set_status(&c, "p3", &moved, true);
    ips.insert("p3".into(), moved);
    c.kubectl_ok(&["delete", "pod", "p1"]);
    ips.remove("p1");
    wait_slices(&c, "dual", &expect(layout.families, &ips, &["p2"]));
    wait_slices(&c, "single", &expect(&[layout.primary()], &ips, &["p2"]));

    // A dual-stack Service downgraded to single-stack loses its second family's slice.
    if layout.dual() {
        let v: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "svc", "dual", "-o", "json"])).unwrap();
        let primary_ip = v["spec"]["clusterIPs"][0].as_str().unwrap().to_owned();
        c.kubectl_ok(&[
            "patch",
            "svc",
            "dual",
            "--type=merge",
            "-p",
            &json!({"spec": {"ipFamilyPolicy": "SingleStack", "ipFamilies": [layout.primary()],
                "clusterIPs": [primary_ip]}})
            .to_string(),
        ]);
        wait_slices(&c, "dual", &expect(&[layout.primary()], &ips, &["p2"]));
    }

    // Disappear: with the Service go its slices and its Endpoints.
    c.kubectl_ok(&["delete", "svc", "dual", "single"]);
    wait_slices(&c, "dual", &View::new());
    wait_slices(&c, "single", &View::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c
        .kubectl_ok(&["get", "endpoints", "-o", "name"])
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "Endpoints left behind");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn endpointslices_ipv4() {
    run(ALL[0]);
}

#[test]
fn endpointslices_ipv6() {
    run(ALL[1]);
}

#[test]
fn endpointslices_dual_ipv4_first() {
    run(ALL[2]);
}

#[test]
fn endpointslices_dual_ipv6_first() {
    run(ALL[3]);
}
