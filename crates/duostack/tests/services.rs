//! The scenarios of the dual-stack concept pages (`shared/seeds/`), with the pages' own
//! manifests, through the real kubectl, on the four cluster layouts: IPv4-only, IPv6-only,
//! dual-stack IPv4-first and dual-stack IPv6-first.

use std::path::Path;

use duostack_testkit::Cluster;
use duostack_testkit::layouts::{Layout, V4, V4V6, V6, V6V4, family_of};
use serde_json::{Value, json};

fn start(test: &str, layout: &Layout) -> Option<Cluster> {
    layout.start(Path::new(env!("CARGO_BIN_EXE_duostack")), test, &[])
}

// The manifests of the concept pages.
const DEFAULT_SVC: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const PREFER_DUAL: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  ipFamilyPolicy: PreferDualStack
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const PREFER_DUAL_V6_FIRST: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  ipFamilyPolicy: PreferDualStack
  ipFamilies:
  - IPv6
  - IPv4
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const REQUIRE_DUAL: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  ipFamilyPolicy: RequireDualStack
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const HEADLESS: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  clusterIP: None
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const HEADLESS_NO_SELECTOR: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  clusterIP: None
  ports:
    - protocol: TCP
      port: 80
";
const LOAD_BALANCER: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
  labels:
    app: MyApp
spec:
  ipFamilyPolicy: PreferDualStack
  type: LoadBalancer
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
";
const ALPHA: &str = "apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  ipFamily: FAMILY
  selector:
    app: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
";

/// Creates a manifest, returning the Service as JSON or the error kubectl printed.
fn create(c: &Cluster, manifest: &str) -> Result<Value, String> {
    let f = c.dir.path().join("svc.yaml");
    std::fs::write(&f, manifest).unwrap();
    let out = c.kubectl(&["create", "-f", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(stderr);
    }
    let v: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-service", "-o", "json"])).unwrap();
    Ok(v)
}

fn delete(c: &Cluster) {
    c.kubectl_ok(&["delete", "svc", "my-service"]);
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks what `kubectl get svc -o yaml` shows, in the order the page shows it.
fn assert_yaml_shows(c: &Cluster, lines: &[String]) {
    let yaml = c.kubectl_ok(&["get", "svc", "my-service", "-o", "yaml"]);
    let mut rest = yaml.as_str();
    for line in lines {
        match rest.find(line.as_str()) {
            Some(i) => rest = &rest[i + line.len()..],
            None => panic!("missing (in order) {line:?} in:\n{yaml}"),
        }
    }
}

fn run_scenarios(layout: Layout) {
    let test = format!("seed_scenarios_{}", layout.name);
    let Some(c) = start(&test, &layout) else {
        return;
    };
    let (p, o) = (layout.primary(), layout.other());

    // 1. No policy: SingleStack with the primary family, as the page's YAML shows.
    let v = create(&c, DEFAULT_SVC).unwrap();
    let ip = v["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert_eq!(family_of(&ip), p, "{}", layout.name);
    assert_yaml_shows(
        &c,
        &[
            "  labels:\n    app: MyApp".into(),
            "  name: my-service".into(),
            format!("spec:\n  clusterIP: {ip}\n  clusterIPs:\n  - {ip}"),
            format!("  ipFamilies:\n  - {p}\n  ipFamilyPolicy: SingleStack"),
            "  ports:\n  - port: 80\n    protocol: TCP\n    targetPort: 80".into(),
            "  selector:\n    app: MyApp".into(),
            "  type: ClusterIP".into(),
            "status:\n  loadBalancer: {}".into(),
        ],
    );

    // 2. Switching SingleStack -> PreferDualStack adds the missing family, and back keeps
    //    only the first address.
    let out = c.kubectl_ok(&[
        "patch",
        "svc",
        "my-service",
        "-p",
        r#"{"spec":{"ipFamilyPolicy":"PreferDualStack"}}"#,
    ]);
    assert!(out.contains("patched"), "{out}");
    let v: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-service", "-o", "json"])).unwrap();
    let ips = strs(&v["spec"]["clusterIPs"]);
    assert_eq!(ips[0], ip, "the primary address never changes");
    if layout.dual() {
        assert_eq!(ips.len(), 2);
        assert_eq!(family_of(&ips[1]), o);
        assert_eq!(strs(&v["spec"]["ipFamilies"]), [p, o]);
    } else {
        assert_eq!(ips.len(), 1);
    }
    c.kubectl_ok(&[
        "patch",
        "svc",
        "my-service",
        "-p",
        r#"{"spec":{"ipFamilyPolicy":"SingleStack"}}"#,
    ]);
    let v: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-service", "-o", "json"])).unwrap();
    assert_eq!(strs(&v["spec"]["clusterIPs"]), [ip.as_str()]);
    assert_eq!(strs(&v["spec"]["ipFamilies"]), [p]);
    assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
    delete(&c);

    // 3. PreferDualStack: both families on a dual-stack cluster, one otherwise.
    let v = create(&c, PREFER_DUAL).unwrap();
    let ips = strs(&v["spec"]["clusterIPs"]);
    let want: Vec<&str> = layout.families.to_vec();
    assert_eq!(strs(&v["spec"]["ipFamilies"]), want);
    assert_eq!(ips.iter().map(|i| family_of(i)).collect::<Vec<_>>(), want);
    assert_eq!(v["spec"]["clusterIP"], ips[0].as_str());
    delete(&c);

    // 4. ipFamilies [IPv6, IPv4] with PreferDualStack: the IPv6 address is clusterIP.
    match create(&c, PREFER_DUAL_V6_FIRST) {
        Ok(v) => {
            assert!(layout.dual(), "{}", layout.name);
            assert_eq!(strs(&v["spec"]["ipFamilies"]), ["IPv6", "IPv4"]);
            let ips = strs(&v["spec"]["clusterIPs"]);
            assert_eq!((family_of(&ips[0]), family_of(&ips[1])), ("IPv6", "IPv4"));
            assert_eq!(v["spec"]["clusterIP"], ips[0].as_str());
            delete(&c);
        }
        Err(e) => {
            assert!(!layout.dual());
            let missing = if layout.has("IPv6") { "1" } else { "0" };
            assert!(
                e.contains(&format!("spec.ipFamilies[{missing}]: Invalid value: \"{o}\": not configured on this cluster")),
                "{e}"
            );
        }
    }

    // 5. RequireDualStack.
    match create(&c, REQUIRE_DUAL) {
        Ok(v) => {
            assert!(layout.dual());
            assert_eq!(strs(&v["spec"]["ipFamilies"]), want);
            assert_eq!(strs(&v["spec"]["clusterIPs"]).len(), 2);
            delete(&c);
        }
        Err(e) => {
            assert!(!layout.dual());
            assert!(
                e.contains(r#"The Service "my-service" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#),
                "{e}"
            );
        }
    }

    // 6. Headless with a selector: SingleStack, the primary family, no address.
    create(&c, HEADLESS).unwrap();
    assert_yaml_shows(
        &c,
        &[
            "spec:\n  clusterIP: None\n  clusterIPs:\n  - None".into(),
            format!("  ipFamilies:\n  - {p}\n  ipFamilyPolicy: SingleStack"),
            "  selector:\n    app: MyApp".into(),
        ],
    );
    delete(&c);

    // 7. Headless without a selector: RequireDualStack, on every cluster.
    let v = create(&c, HEADLESS_NO_SELECTOR).unwrap();
    assert_eq!(v["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(strs(&v["spec"]["ipFamilies"]), [p, o]);
    assert_eq!(strs(&v["spec"]["clusterIPs"]), ["None"]);
    delete(&c);

    // 8. LoadBalancer with PreferDualStack: addresses of every family, a node port, pending.
    let v = create(&c, LOAD_BALANCER).unwrap();
    assert_eq!(strs(&v["spec"]["ipFamilies"]), want);
    let np = v["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&np), "{np}");
    assert_eq!(v["status"], json!({"loadBalancer": {}}));
    let out = c.kubectl_ok(&["get", "svc", "my-service"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], "LoadBalancer");
    assert_eq!(row[3], "<pending>");
    assert_eq!(row[4], format!("80:{np}/TCP"));
    delete(&c);

    // 9. The v1.16 alpha field: converted on create, with a warning naming the new fields.
    for family in ["IPv4", "IPv6"] {
        let manifest = ALPHA.replace("FAMILY", family);
        let f = c.dir.path().join("alpha.yaml");
        std::fs::write(&f, &manifest).unwrap();
        let out = c.kubectl(&["create", "-f", f.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if layout.has(family) {
            assert!(
                out.status.success(),
                "{family} on {}: {stderr}",
                layout.name
            );
            assert!(
                stderr.contains("Warning: spec.ipFamily is the v1.16 alpha field")
                    && stderr.contains(&format!("spec.ipFamilies: [{family}]")),
                "{stderr}"
            );
            let v: Value =
                serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-service", "-o", "json"]))
                    .unwrap();
            assert_eq!(strs(&v["spec"]["ipFamilies"]), [family]);
            assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
            assert_eq!(family_of(v["spec"]["clusterIP"].as_str().unwrap()), family);
            assert_eq!(v["spec"]["ports"][0]["targetPort"], 9376);
            assert!(v["spec"].get("ipFamily").is_none());
            // Setting it to the other family on update is refused.
            let other = if family == "IPv4" { "IPv6" } else { "IPv4" };
            let err = c.kubectl_err(&[
                "patch",
                "svc",
                "my-service",
                "--type",
                "merge",
                "-p",
                &format!(r#"{{"spec":{{"ipFamily":"{other}"}}}}"#),
            ]);
            assert!(
                err.contains(&format!(
                    "spec.ipFamily: Invalid value: \"{other}\": field is immutable"
                )),
                "{err}"
            );
            delete(&c);
        } else {
            assert!(!out.status.success());
            assert!(
                stderr.contains("only the following families are allowed"),
                "{stderr}"
            );
        }
    }

    // A requested address is honoured, and a second Service can't have it.
    let first_of_range = if p == "IPv4" {
        "10.96.0.10"
    } else {
        "fd00:10:96::a"
    };
    let manifest = DEFAULT_SVC.replace(
        "spec:\n",
        &format!("spec:\n  clusterIP: {first_of_range}\n"),
    );
    let v = create(&c, &manifest).unwrap();
    assert_eq!(v["spec"]["clusterIP"], first_of_range);
    let again = manifest.replace("name: my-service", "name: other");
    let f = c.dir.path().join("other.yaml");
    std::fs::write(&f, &again).unwrap();
    let err = c.kubectl_err(&["create", "-f", f.to_str().unwrap()]);
    assert!(
        err.contains(&format!("spec.clusterIPs: Invalid value: []string{{\"{first_of_range}\"}}: failed to allocate IP {first_of_range}: provided IP is already allocated")),
        "{err}"
    );
    delete(&c);
    // Once released, it can be had again at once.
    create(&c, &manifest).unwrap();
}

#[test]
fn seed_scenarios_ipv4_only() {
    run_scenarios(V4);
}

#[test]
fn seed_scenarios_ipv6_only() {
    run_scenarios(V6);
}

#[test]
fn seed_scenarios_dual_ipv4_first() {
    run_scenarios(V4V6);
}

#[test]
fn seed_scenarios_dual_ipv6_first() {
    run_scenarios(V6V4);
}

/// "Dual-stack defaults on existing Services": Services created on a single-stack cluster
/// keep SingleStack and their family when the cluster becomes dual-stack, and a
/// PreferDualStack Service is not upgraded by the cluster change alone.
#[test]
fn existing_services_when_dual_stack_is_enabled() {
    for layout in [V4, V6, V4V6, V6V4] {
        let single = if layout.primary() == "IPv4" { V4 } else { V6 };
        let Some(mut c) = start("existing_services_when_dual_stack_is_enabled", &single) else {
            return;
        };
        let v = create(&c, DEFAULT_SVC).unwrap();
        let ip = v["spec"]["clusterIP"].as_str().unwrap().to_owned();
        let headless = HEADLESS.replace("name: my-service", "name: my-headless");
        let f = c.dir.path().join("h.yaml");
        std::fs::write(&f, &headless).unwrap();
        c.kubectl_ok(&["create", "-f", f.to_str().unwrap()]);
        let prefer = PREFER_DUAL.replace("name: my-service", "name: my-prefer");
        std::fs::write(&f, &prefer).unwrap();
        c.kubectl_ok(&["create", "-f", f.to_str().unwrap()]);

        // Restart as the target layout.
        c.args = layout.args();
        c.restart().unwrap();
        let p = layout.primary();
        assert_yaml_shows(
            &c,
            &[
                format!("spec:\n  clusterIP: {ip}\n  clusterIPs:\n  - {ip}"),
                format!("  ipFamilies:\n  - {p}\n  ipFamilyPolicy: SingleStack"),
            ],
        );
        let h: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-headless", "-o", "json"]))
                .unwrap();
        assert_eq!(strs(&h["spec"]["clusterIPs"]), ["None"]);
        assert_eq!(strs(&h["spec"]["ipFamilies"]), [p]);
        assert_eq!(h["spec"]["ipFamilyPolicy"], "SingleStack");
        // PreferDualStack is frozen: an unrelated change keeps one address...
        c.kubectl_ok(&["label", "svc", "my-prefer", "touched=yes"]);
        let pd: Value =
            serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-prefer", "-o", "json"]))
                .unwrap();
        assert_eq!(strs(&pd["spec"]["clusterIPs"]).len(), 1, "{}", layout.name);
        // ...until the policy is changed explicitly.
        if layout.dual() {
            c.kubectl_ok(&[
                "patch",
                "svc",
                "my-prefer",
                "-p",
                r#"{"spec":{"ipFamilyPolicy":"RequireDualStack"}}"#,
            ]);
            let pd: Value =
                serde_json::from_str(&c.kubectl_ok(&["get", "svc", "my-prefer", "-o", "json"]))
                    .unwrap();
            assert_eq!(strs(&pd["spec"]["clusterIPs"]).len(), 2);
        }
    }
}
