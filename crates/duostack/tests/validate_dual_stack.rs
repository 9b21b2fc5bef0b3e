//! Kubernetes' "Validate IPv4/IPv6 dual-stack" task page, steps 1–4, with its own kubectl
//! commands, against duostack with a simulated node and pod: the node is registered and its
//! addresses reported as kubelet would (`--node-ip=<v4>,<v6>`), and the pod's addresses are
//! reported as a runtime would, one from each of the node's podCIDRs.
//!
//! Not covered here, because they need a container runtime: the downward-API value of
//! `status.podIPs` and the pod's `/etc/hosts`.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use duostack_testkit::Cluster;
use duostack_testkit::layouts::{Layout, V4V6, V6V4, family_of};
use ipnet::IpNet;
use serde_json::json;

const NODE: &str = "k8s-linuxpool1-34450317-0";

/// The 4th address of a range, as the page's examples show (`10.244.1.4`, `2001:db8::4`).
fn fourth(cidr: &str) -> String {
    let net: IpNet = cidr.parse().unwrap();
    match net.network() {
        IpAddr::V4(a) => std::net::Ipv4Addr::from(u32::from(a) + 4).to_string(),
        IpAddr::V6(a) => std::net::Ipv6Addr::from(u128::from(a) + 4).to_string(),
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn wait_for(c: &Cluster, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = c.kubectl_ok(args);
        if ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} kept printing:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(layout: Layout) {
    let test = format!("validate_dual_stack_{}", layout.name);
    let Some(c) = layout.start(Path::new(env!("CARGO_BIN_EXE_duostack")), &test, &[]) else {
        return;
    };
    let (v4_ip, v6_ip) = ("10.0.0.5", "2001:db8:10::5");
    let node_ips: Vec<&str> = layout
        .families
        .iter()
        .map(|f| if *f == "IPv4" { v4_ip } else { v6_ip })
        .collect();

    // The node registers, and reports its addresses as kubelet does with --node-ip.
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}).to_string(),
    );
    let mut addresses: Vec<_> = node_ips
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": NODE}));
    c.kubectl_ok(&[
        "patch",
        "node",
        NODE,
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"addresses": addresses}}).to_string(),
    ]);

    // 1. Node addressing: one podCIDR per family.
    let out = wait_for(
        &c,
        &[
            "get",
            "nodes",
            NODE,
            "-o",
            "go-template",
            "--template={{range .spec.podCIDRs}}{{printf \"%s\\n\" .}}{{end}}",
        ],
        |o| !o.is_empty(),
    );
    let cidrs = lines(&out);
    assert_eq!(cidrs.len(), 2, "{out}");
    let fams: Vec<&str> = cidrs.iter().map(|c| family_of(c)).collect();
    assert_eq!(fams, layout.families, "{out}");
    let cidrs: Vec<String> = cidrs.iter().map(|s| s.to_string()).collect();

    // 2. Node addresses: a Hostname and an InternalIP of each family.
    let out = c.kubectl_ok(&[
        "get",
        "nodes",
        NODE,
        "-o",
        "go-template",
        "--template={{range .status.addresses}}{{printf \"%s: %s\\n\" .type .address}}{{end}}",
    ]);
    let mut got = lines(&out);
    got.sort();
    assert_eq!(
        got,
        [
            format!("Hostname: {NODE}"),
            format!("InternalIP: {v4_ip}"),
            format!("InternalIP: {v6_ip}"),
        ],
        "{out}"
    );

    // 3. Pod addressing: one IPv4 and one IPv6, cut from the node's ranges.
    c.kubectl_stdin(
        &["create", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod01"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]}})
        .to_string(),
    );
    let pod_ips: Vec<String> = cidrs.iter().map(|c| fourth(c)).collect();
    let list: Vec<_> = pod_ips.iter().map(|ip| json!({"ip": ip})).collect();
    c.kubectl_ok(&[
        "patch",
        "pod",
        "pod01",
        "--subresource=status",
        "--type=merge",
        "-p",
        &json!({"status": {"podIP": pod_ips[0], "podIPs": list}}).to_string(),
    ]);
    let out = c.kubectl_ok(&[
        "get",
        "pods",
        "pod01",
        "-o",
        "go-template",
        "--template={{range .status.podIPs}}{{printf \"%s\\n\" .ip}}{{end}}",
    ]);
    assert_eq!(lines(&out), pod_ips, "{out}");
    // kubelet's part: the pod's host IPs are the node's, both families.
    let out = wait_for(
        &c,
        &[
            "get",
            "pods",
            "pod01",
            "-o",
            "go-template",
            "--template={{range .status.hostIPs}}{{printf \"%s\\n\" .ip}}{{end}}",
        ],
        |o| !o.is_empty(),
    );
    assert_eq!(lines(&out), node_ips, "{out}");

    // 4. Services.
    let svc = |name: &str, spec: serde_json::Value| {
        let mut s = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name}},
            "spec": {"selector": {"app.kubernetes.io/name": "MyApp"},
                "ports": [{"protocol": "TCP", "port": 80}]}});
        json_patch::merge(&mut s["spec"], &spec);
        c.kubectl_stdin(&["apply", "-f", "-"], &s.to_string());
        c.kubectl_ok(&[
            "describe",
            "svc",
            "-l",
            &format!("app.kubernetes.io/name={name}"),
        ])
    };
    let field = |describe: &str, name: &str| -> String {
        describe
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in:\n{describe}"))
    };

    // No ipFamilyPolicy: single-stack, the first configured family.
    let d = svc("my-service", json!({}));
    assert_eq!(field(&d, "IP Family Policy"), "SingleStack");
    assert_eq!(field(&d, "IP Families"), layout.primary());
    assert_eq!(family_of(&field(&d, "IP")), layout.primary());
    assert_eq!(field(&d, "IPs"), field(&d, "IP"));

    // ipFamilies: [IPv6]: an IPv6 single-stack address.
    let d = svc("my-service-v6", json!({"ipFamilies": ["IPv6"]}));
    assert_eq!(field(&d, "IP Family Policy"), "SingleStack");
    assert_eq!(field(&d, "IP Families"), "IPv6");
    assert_eq!(family_of(&field(&d, "IP")), "IPv6");

    // PreferDualStack: two addresses, the primary family's first; `get svc` shows only it.
    let d = svc(
        "my-service-dual",
        json!({"ipFamilyPolicy": "PreferDualStack"}),
    );
    assert_eq!(field(&d, "IP Family Policy"), "PreferDualStack");
    assert_eq!(field(&d, "IP Families"), layout.families.join(","));
    let ips = field(&d, "IPs");
    let ips: Vec<&str> = ips.split(',').collect();
    assert_eq!(ips.len(), 2, "{d}");
    assert_eq!(
        ips.iter().map(|i| family_of(i)).collect::<Vec<_>>(),
        layout.families
    );
    assert_eq!(field(&d, "IP"), ips[0]);
    let table = c.kubectl_ok(&["get", "svc", "-l", "app.kubernetes.io/name=my-service-dual"]);
    let row = table.lines().nth(1).unwrap_or_default().to_owned();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols[..4],
        ["my-service-dual", "ClusterIP", ips[0], "<none>"],
        "{table}"
    );
    assert!(!table.contains(ips[1]), "{table}");
}

#[test]
fn validate_dual_stack_ipv4_first() {
    run(V4V6);
}

#[test]
fn validate_dual_stack_ipv6_first() {
    run(V6V4);
}
