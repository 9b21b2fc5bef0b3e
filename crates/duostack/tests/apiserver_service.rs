//! The `kubernetes` Service is the API server's own: deleted, it comes back within seconds
//! with the same address; changed, it is put back; and no other Service can take the first
//! address of any service range meanwhile. On every layout, through kubectl.

use std::path::Path;
use std::time::{Duration, Instant};

use duostack_testkit::layouts::{ALL, Layout};

fn first_address(cidr: &str) -> String {
    let net: ipnet::IpNet = cidr.parse().unwrap();
    match net.network() {
        std::net::IpAddr::V4(v4) => std::net::Ipv4Addr::from(u32::from(v4) + 1).to_string(),
        std::net::IpAddr::V6(v6) => std::net::Ipv6Addr::from(u128::from(v6) + 1).to_string(),
    }
}

fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check(l: Layout) {
    let test = format!("kubernetes_service_{}", l.name);
    let Some(c) = l.start(Path::new(env!("CARGO_BIN_EXE_duostack")), &test, &[]) else {
        return;
    };
    let ranges: Vec<&str> = l.svc.split(',').collect();
    let first = first_address(ranges[0]);
    let ip = c.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(ip, first);
    let uid = c.kubectl_ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.metadata.uid}"]);

    // Deleted with everything else: back within 10 s, same address, a new object.
    let out = c.kubectl_ok(&["delete", "svc", "--all"]);
    assert!(out.contains("service \"kubernetes\" deleted"), "{out}");
    let started = Instant::now();
    let back = wait_for(
        "kubernetes Service recreated",
        Duration::from_secs(10),
        || {
            let out = c.kubectl(&[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.clusterIP} {.metadata.uid}",
            ]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        },
    );
    eprintln!("{}: recreated after {:?}", l.name, started.elapsed());
    let (ip, new_uid) = back.split_once(' ').unwrap();
    assert_eq!(ip, first);
    assert_ne!(new_uid, uid);
    let ports = c.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.ports[0].name}/{.spec.ports[0].port}",
    ]);
    assert_eq!(ports, "https/443");

    // No other Service may take the first address of any range, even while the
    // kubernetes Service is gone.
    for range in &ranges {
        let addr = first_address(range);
        let fam = if addr.contains(':') { "IPv6" } else { "IPv4" };
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"thief"}},"spec":{{"ipFamilies":["{fam}"],"clusterIP":"{addr}","ports":[{{"port":80}}]}}}}"#
        );
        let mut cmd = c.kubectl_cmd(&["create", "-f", "-"]);
        let out = {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(manifest.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        assert!(!out.status.success(), "{}: {addr} was handed out", l.name);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "failed to allocate IP {addr}: provided IP is already allocated"
            )),
            "{err}"
        );
    }

    // A changed port is put back.
    c.kubectl_ok(&[
        "patch",
        "svc",
        "kubernetes",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/ports/0/port","value":8443}]"#,
    ]);
    wait_for(
        "kubernetes Service port put back",
        Duration::from_secs(10),
        || {
            let p = c.kubectl_ok(&[
                "get",
                "svc",
                "kubernetes",
                "-o",
                "jsonpath={.spec.ports[0].port}",
            ]);
            (p == "443").then_some(p)
        },
    );
}

#[test]
fn kubernetes_service_ipv4() {
    check(ALL[0]);
}

#[test]
fn kubernetes_service_ipv6() {
    check(ALL[1]);
}

#[test]
fn kubernetes_service_dual_ipv4_first() {
    check(ALL[2]);
}

#[test]
fn kubernetes_service_dual_ipv6_first() {
    check(ALL[3]);
}
