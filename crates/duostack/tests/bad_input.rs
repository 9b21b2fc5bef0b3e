//! Bad input gets Kubernetes' status codes and a `Status` body; nothing produces a 500, a
//! panic or a hang. Ends with a property test that throws random bodies at every handler.

use std::path::Path;
use std::time::Duration;

use duostack_testkit::{ApiClient, Cluster, Reply};
use proptest::prelude::*;
use serde_json::{Value, json};

const SVCS: &str = "/api/v1/namespaces/default/services";

fn start() -> Cluster {
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), &[]).expect("start server")
}

/// Asserts a `Status` failure body with this code and reason; returns its message.
fn status(r: &Reply, code: u16, reason: &str) -> String {
    assert_eq!(r.status, code, "body: {}", r.text());
    let v = r.json();
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["code"], code);
    assert_eq!(v["reason"], reason, "{v}");
    v["message"].as_str().unwrap_or("").to_owned()
}

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"ports": [{"port": 80}]}})
}

async fn send(c: &mut ApiClient, method: &str, path: &str, ct: &str, body: &[u8]) -> Reply {
    c.request(method, path, Some(ct), body.to_vec())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_and_types() {
    let c = start();
    let mut api = c.client().unwrap();
    let json_ct = "application/json";

    let m = status(
        &send(&mut api, "POST", SVCS, json_ct, b"{\"apiVersion\":").await,
        400,
        "BadRequest",
    );
    assert!(
        m.contains("couldn't get version/kind; json parse error"),
        "{m}"
    );
    let m = status(
        &send(
            &mut api,
            "POST",
            SVCS,
            "application/yaml",
            b"metadata: [1, 2\n",
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(m.contains("yaml parse error"), "{m}");
    for body in [&b"[]"[..], b"null", b"42", b"\"svc\""] {
        status(
            &send(&mut api, "POST", SVCS, json_ct, body).await,
            400,
            "BadRequest",
        );
    }
    let m = status(
        &send(&mut api, "POST", SVCS, json_ct, br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x"},"spec":{"ports":[{"port":"eighty"}]}}"#).await,
        400,
        "BadRequest",
    );
    assert!(m.starts_with("Service in version \"v1\" cannot be handled as a Service: spec.ports[0].port: invalid type"), "{m}");
    let m = status(
        &send(
            &mut api,
            "POST",
            SVCS,
            json_ct,
            br#"{"apiVersion":"apps/v1","kind":"Service","metadata":{"name":"x"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    );
    let m = status(
        &send(&mut api, "POST", SVCS, json_ct, br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x","namespace":"other"},"spec":{"ports":[{"port":80}]}}"#).await,
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    let m = status(
        &send(&mut api, "POST", SVCS, json_ct, br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"x","resourceVersion":"5"},"spec":{"ports":[{"port":80}]}}"#).await,
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        "resourceVersion should not be set on objects to be created"
    );
    // Wrong content type for a create.
    status(
        &send(&mut api, "POST", SVCS, "text/plain", b"{}").await,
        415,
        "UnsupportedMediaType",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_validation_modes() {
    let c = start();
    let mut api = c.client().unwrap();
    let body = br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","bogusField":1},"spec":{"ports":[{"port":80}],"bogus":{"x":1}}}"#;
    let m = status(
        &send(
            &mut api,
            "POST",
            &format!("{SVCS}?fieldValidation=Strict"),
            "application/json",
            body,
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        r#"Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "metadata.bogusField", unknown field "spec.bogus""#
    );
    let dup = br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"a","name":"b"},"spec":{"ports":[{"port":80}]}}"#;
    let m = status(
        &send(
            &mut api,
            "POST",
            &format!("{SVCS}?fieldValidation=Strict"),
            "application/json",
            dup,
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        m.ends_with(r#"strict decoding error: duplicate field "metadata.name""#),
        "{m}"
    );

    let r = send(
        &mut api,
        "POST",
        &format!("{SVCS}?fieldValidation=Warn"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let warnings: Vec<&str> = r
        .headers
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"metadata.bogusField\"""#,
            r#"299 - "unknown field \"spec.bogus\"""#
        ]
    );
    assert!(r.json()["metadata"].get("bogusField").is_none());

    let body = br#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"b","bogusField":1},"spec":{"ports":[{"port":80}]}}"#;
    let r = send(
        &mut api,
        "POST",
        &format!("{SVCS}?fieldValidation=Ignore"),
        "application/json",
        body,
    )
    .await;
    assert_eq!(r.status, 201);
    assert!(r.headers.get("warning").is_none());
    let m = status(
        &send(
            &mut api,
            "POST",
            &format!("{SVCS}?fieldValidation=Loud"),
            "application/json",
            body,
        )
        .await,
        400,
        "BadRequest",
    );
    assert!(
        m.starts_with("fieldValidation: Unsupported value: \"Loud\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_big_bodies_and_wrong_patches() {
    let c = start();
    let mut api = c.client().unwrap();
    let r = api.post_json(SVCS, &svc("Bad_Name")).await.unwrap();
    let m = status(&r, 422, "Invalid");
    assert!(m.starts_with("Service \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a DNS-1035 label"), "{m}");
    let v = r.json();
    assert_eq!(v["details"]["kind"], "Service");
    assert_eq!(v["details"]["name"], "Bad_Name");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueInvalid");
    let r = api
        .post_json(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}}),
        )
        .await
        .unwrap();
    status(&r, 422, "Invalid");

    // Over 3 MiB: rejected before it is parsed.
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"big","annotations":{{"a":"{}"}}}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 1)
    );
    let m = status(
        &send(&mut api, "POST", SVCS, "application/json", big.as_bytes()).await,
        413,
        "RequestEntityTooLarge",
    );
    assert_eq!(m, "Request entity too large: limit is 3145728");

    api.post_json(SVCS, &svc("web")).await.unwrap();
    let m = status(
        &send(
            &mut api,
            "PATCH",
            &format!("{SVCS}/web"),
            "application/json",
            b"{}",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );
    assert!(m.contains("application/strategic-merge-patch+json"), "{m}");
    status(
        &send(
            &mut api,
            "PATCH",
            &format!("{SVCS}/web"),
            "application/json-patch+json",
            b"{\"op\":1}",
        )
        .await,
        400,
        "BadRequest",
    );
    status(
        &send(
            &mut api,
            "PATCH",
            &format!("{SVCS}/web"),
            "application/merge-patch+json",
            b"[1]",
        )
        .await,
        400,
        "BadRequest",
    );
    status(
        &send(
            &mut api,
            "PATCH",
            &format!("{SVCS}/web"),
            "application/strategic-merge-patch+json",
            b"{\"spec\":{\"ports\":[{\"name\":\"x\"}]}}",
        )
        .await,
        422,
        "Invalid",
    );
    status(
        &send(
            &mut api,
            "PATCH",
            &format!("{SVCS}/missing"),
            "application/merge-patch+json",
            b"{}",
        )
        .await,
        404,
        "NotFound",
    );
    // A patch that makes the object invalid is a 422 with causes.
    let r = send(
        &mut api,
        "PATCH",
        &format!("{SVCS}/web"),
        "application/merge-patch+json",
        br#"{"spec":{"type":"Sideways"}}"#,
    )
    .await;
    let m = status(&r, 422, "Invalid");
    assert!(
        m.contains("spec.type: Unsupported value: \"Sideways\""),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_routes_and_resource_versions() {
    let c = start();
    let mut api = c.client().unwrap();
    let mut anon = c.client().unwrap().with_token("wrong");
    let m = status(&anon.get(SVCS).await.unwrap(), 401, "Unauthorized");
    assert_eq!(m, "Unauthorized");
    // Health and version are public, as in Kubernetes.
    assert_eq!(anon.get("/readyz").await.unwrap().status, 200);
    assert_eq!(anon.get("/version").await.unwrap().json()["major"], "1");

    status(&api.get("/api/v1/nothings").await.unwrap(), 404, "NotFound");
    status(&api.get("/nope").await.unwrap(), 404, "NotFound");
    status(
        &api.get("/api/v1/namespaces/default/services/web/scale")
            .await
            .unwrap(),
        404,
        "NotFound",
    );
    status(
        &send(&mut api, "PUT", SVCS, "application/json", b"{}").await,
        405,
        "MethodNotAllowed",
    );
    let r = api.request("GET", SVCS, None, Vec::new()).await.unwrap();
    assert_eq!(r.status, 200);

    // A garbage resourceVersion on watch and list is a 400, not a 500 or a hang.
    let m = status(
        &api.get(&format!("{SVCS}?watch=true&resourceVersion=abc"))
            .await
            .unwrap(),
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        "resourceVersion: Invalid value: \"abc\": must be a non-negative integer"
    );
    status(
        &api.get(&format!("{SVCS}?resourceVersion=-1"))
            .await
            .unwrap(),
        400,
        "BadRequest",
    );
    status(
        &api.get(&format!("{SVCS}?continue=garbage")).await.unwrap(),
        400,
        "BadRequest",
    );
    status(
        &api.get(&format!("{SVCS}?labelSelector=a%20in%20("))
            .await
            .unwrap(),
        400,
        "BadRequest",
    );
    let m = status(
        &api.get(&format!("{SVCS}?fieldSelector=spec.ports=1"))
            .await
            .unwrap(),
        400,
        "BadRequest",
    );
    assert_eq!(m, "field label not supported: spec.ports");
    let r = api
        .get(&format!("{SVCS}?watch=true&sendInitialEvents=true"))
        .await
        .unwrap();
    status(&r, 422, "Invalid");
    // A resourceVersion from the future times out quickly instead of hanging.
    status(
        &api.get(&format!("{SVCS}?resourceVersion=999999"))
            .await
            .unwrap(),
        504,
        "Timeout",
    );

    // Optimistic concurrency.
    let created = api.post_json(SVCS, &svc("web")).await.unwrap().json();
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = "1".into();
    let r = send(
        &mut api,
        "PUT",
        &format!("{SVCS}/web"),
        "application/json",
        &serde_json::to_vec(&stale).unwrap(),
    )
    .await;
    let m = status(&r, 409, "Conflict");
    assert_eq!(
        m,
        "Operation cannot be fulfilled on services \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let r = api.post_json(SVCS, &svc("web")).await.unwrap();
    assert_eq!(
        status(&r, 409, "AlreadyExists"),
        "services \"web\" already exists"
    );
    let mut other = created.clone();
    other["metadata"]["name"] = "other".into();
    let m = status(
        &send(
            &mut api,
            "PUT",
            &format!("{SVCS}/web"),
            "application/json",
            &serde_json::to_vec(&other).unwrap(),
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        m,
        "the name of the object (other) does not match the name on the URL (web)"
    );
    // Accept nothing we serve.
    let r = api
        .request("GET", "/api/v1/namespaces", None, Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn random_bodies_never_break_the_server() {
    let c = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = tokio::sync::Mutex::new(c.client().unwrap());
    rt.block_on(async {
        api.lock()
            .await
            .post_json(SVCS, &svc("target"))
            .await
            .unwrap();
    });

    let keys = prop::sample::select(vec![
        "apiVersion",
        "kind",
        "metadata",
        "name",
        "namespace",
        "labels",
        "annotations",
        "spec",
        "ports",
        "port",
        "protocol",
        "targetPort",
        "nodePort",
        "selector",
        "type",
        "clusterIP",
        "clusterIPs",
        "ipFamilies",
        "ipFamilyPolicy",
        "status",
        "resourceVersion",
        "uid",
        "managedFields",
        "finalizers",
        "$patch",
        "$setElementOrder/ports",
        "$retainKeys",
        "generateName",
        "op",
        "path",
        "value",
        "",
        "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-70000i64..70000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-zA-Z0-9./:_ -]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            "v1",
            "Service",
            "TCP",
            "None",
            "IPv6",
            "RequireDualStack",
            "web",
            "add",
            "/spec"
        ])
        .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    });
    let body = prop_oneof![
        3 => value.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => "[ -~\n]{0,200}".prop_map(String::into_bytes),
    ];
    let target = prop::sample::select(vec![
        ("POST", SVCS.to_owned()),
        ("PUT", format!("{SVCS}/target")),
        ("PATCH", format!("{SVCS}/target")),
        ("PATCH", format!("{SVCS}/target/status")),
        ("PUT", format!("{SVCS}/target/status")),
        ("POST", "/api/v1/namespaces".to_owned()),
        ("DELETE", format!("{SVCS}/absent")),
        ("PATCH", "/api/v1/namespaces/default".to_owned()),
    ]);
    let ct = prop::sample::select(vec![
        "application/json",
        "application/yaml",
        "application/merge-patch+json",
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
        "application/x-garbage",
    ]);
    let query = prop::sample::select(vec![
        "",
        "?fieldValidation=Strict",
        "?fieldManager=fuzz&fieldValidation=Warn",
        "?dryRun=All&fieldManager=fuzz",
        "?fieldManager=fuzz&force=true",
    ]);

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(target, ct, query, body),
            |((method, path), ct, query, body)| {
                let path = format!("{path}{query}");
                let r = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        api.lock()
                            .await
                            .request(method, &path, Some(ct), body.clone()),
                    )
                    .await
                });
                let r = r.expect("request hung").expect("request failed");
                prop_assert!(
                    r.status < 500,
                    "{method} {path} {ct} -> {}: {}",
                    r.status,
                    r.text()
                );
                let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
                    TestCaseError::fail(format!("non-JSON reply {e}: {}", r.text()))
                })?;
                if r.status >= 400 {
                    prop_assert_eq!(&v["kind"], "Status");
                    prop_assert_eq!(&v["code"], r.status);
                }
                Ok(())
            },
        )
        .unwrap();
    // Still healthy afterwards.
    rt.block_on(async {
        let r = api
            .lock()
            .await
            .get(&format!("{SVCS}/target"))
            .await
            .unwrap();
        assert!(r.status == 200 || r.status == 404, "{}", r.text());
        assert_eq!(api.lock().await.get("/readyz").await.unwrap().status, 200);
    });
}
