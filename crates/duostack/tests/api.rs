//! API machinery over real HTTPS: paging, watches, bookmarks, compaction, dry run,
//! generateName, preconditions, Tables, discovery and OpenAPI.

use std::path::Path;
use std::time::Duration;

use duostack_testkit::{ApiClient, Cluster};
use serde_json::{Value, json};

// A namespace of its own: `default` holds the `kubernetes` Service.
const SVCS: &str = "/api/v1/namespaces/test/services";
const T: Duration = Duration::from_secs(10);

async fn start(args: &[&str]) -> Cluster {
    let c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), args).expect("start server");
    let mut api = c.client().unwrap();
    let r = api
        .post_json(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "test"}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    c
}

fn svc(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
           "spec": {"ports": [{"port": 80}]}})
}

async fn create(api: &mut ApiClient, name: &str, labels: Value) -> Value {
    let r = api.post_json(SVCS, &svc(name, labels)).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_is_a_consistent_snapshot() {
    let c = start(&[]).await;
    let mut api = c.client().unwrap();
    for i in 0..25 {
        create(
            &mut api,
            &format!("s{i:02}"),
            json!({"parity": if i % 2 == 0 { "even" } else { "odd" }}),
        )
        .await;
    }
    let first = api.get(&format!("{SVCS}?limit=10")).await.unwrap().json();
    assert_eq!(first["kind"], "ServiceList");
    assert_eq!(names(&first).len(), 10);
    // List items carry no apiVersion/kind, as in Kubernetes.
    assert!(first["items"][0].get("kind").is_none());
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    // A write between pages is not seen by the continued list.
    create(&mut api, "s05a", json!({})).await;
    api.request("DELETE", &format!("{SVCS}/s20"), None, Vec::new())
        .await
        .unwrap();
    let mut all = names(&first);
    let mut token = Some(token);
    while let Some(t) = token {
        let page = api
            .get(&format!("{SVCS}?limit=10&continue={t}"))
            .await
            .unwrap()
            .json();
        assert_eq!(
            page["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        all.extend(names(&page));
        token = page["metadata"]["continue"].as_str().map(str::to_owned);
    }
    let want: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
    assert_eq!(all, want);

    // Label selectors filter before the limit is applied.
    let even = api
        .get(&format!("{SVCS}?labelSelector=parity%3Deven&limit=5"))
        .await
        .unwrap()
        .json();
    assert_eq!(names(&even), ["s00", "s02", "s04", "s06", "s08"]);
    assert!(even["metadata"]["continue"].is_string());
    let one = api
        .get(&format!("{SVCS}?fieldSelector=metadata.name%3Ds03"))
        .await
        .unwrap()
        .json();
    assert_eq!(names(&one), ["s03"]);
    let not = api.get(&format!("{SVCS}?fieldSelector=metadata.name!%3Ds03,metadata.namespace%3Dtest&labelSelector=parity%3Dodd")).await.unwrap().json();
    assert_eq!(names(&not).len(), 11);
    let all_ns = api
        .get("/api/v1/services?fieldSelector=metadata.namespace%3Dtest")
        .await
        .unwrap()
        .json();
    assert_eq!(names(&all_ns).len(), 25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_delivers_changes_and_selector_transitions() {
    let c = start(&[]).await;
    let mut api = c.client().unwrap();
    let list = api.get(SVCS).await.unwrap().json();
    let start_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut all = api
        .watch(&format!("{SVCS}?watch=true&resourceVersion={start_rv}"))
        .await
        .unwrap();
    let mut sel = api
        .watch(&format!(
            "{SVCS}?watch=1&resourceVersion={start_rv}&labelSelector=tier%3Dfront"
        ))
        .await
        .unwrap();
    assert_eq!(all.status, 200);

    let a = create(&mut api, "a", json!({"tier": "back"})).await;
    let ev = all.next(T).await.unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
    assert_eq!(rv(&ev["object"]), rv(&a));

    // Moving into the selector is ADDED for the selective watcher, MODIFIED for the other.
    api.request(
        "PATCH",
        &format!("{SVCS}/a"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"tier":"front"}}}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(all.next(T).await.unwrap()["type"], "MODIFIED");
    let ev = sel.next(T).await.unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["labels"]["tier"], "front");
    // Moving out of it is DELETED for the selective watcher.
    api.request(
        "PATCH",
        &format!("{SVCS}/a"),
        Some("application/merge-patch+json"),
        br#"{"metadata":{"labels":{"tier":"back"}}}"#.to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(all.next(T).await.unwrap()["type"], "MODIFIED");
    assert_eq!(sel.next(T).await.unwrap()["type"], "DELETED");
    let del = api
        .request("DELETE", &format!("{SVCS}/a"), None, Vec::new())
        .await
        .unwrap();
    assert_eq!(del.status, 200);
    let ev = all.next(T).await.unwrap();
    assert_eq!(ev["type"], "DELETED");
    assert_eq!(ev["object"]["metadata"]["name"], "a");
    assert!(rv(&ev["object"]) > rv(&a));
    // The selective watcher saw nothing of the delete: the object had already left.
    assert!(sel.next(Duration::from_millis(300)).await.is_none());

    // Watching without a resourceVersion starts with the current state.
    create(&mut api, "b", json!({})).await;
    let mut fresh = api.watch(&format!("{SVCS}?watch=true")).await.unwrap();
    let ev = fresh.next(T).await.unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_initial_events_ends_with_a_bookmark() {
    let c = start(&[]).await;
    let mut api = c.client().unwrap();
    create(&mut api, "x", json!({})).await;
    create(&mut api, "y", json!({})).await;
    let mut w = api
        .watch(&format!("{SVCS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&fieldSelector=metadata.name%3Dy"))
        .await
        .unwrap();
    let ev = w.next(T).await.unwrap();
    assert_eq!(ev["type"], "ADDED");
    assert_eq!(ev["object"]["metadata"]["name"], "y");
    let bm = w.next(T).await.unwrap();
    assert_eq!(bm["type"], "BOOKMARK");
    assert_eq!(bm["object"]["kind"], "Service");
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&bm["object"]) >= rv(&ev["object"]));
    api.request("DELETE", &format!("{SVCS}/y"), None, Vec::new())
        .await
        .unwrap();
    assert_eq!(w.next(T).await.unwrap()["type"], "DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_versions_are_gone() {
    let c = start(&["--compaction-interval", "1"]).await;
    let mut api = c.client().unwrap();
    let old = create(&mut api, "old", json!({})).await;
    create(&mut api, "newer", json!({})).await;
    let first = api.get(&format!("{SVCS}?limit=1")).await.unwrap().json();
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    // Two compaction ticks: history before the first tick is dropped.
    let mut expired = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        create(&mut api, &format!("tick{}", rand_suffix()), json!({})).await;
        let mut w = api
            .watch(&format!(
                "{SVCS}?watch=true&resourceVersion={}",
                rv(&old) - 1
            ))
            .await
            .unwrap();
        let ev = w.next(T).await.unwrap();
        if ev["type"] == "ERROR" {
            assert_eq!(ev["object"]["kind"], "Status");
            assert_eq!(ev["object"]["code"], 410);
            assert_eq!(ev["object"]["reason"], "Expired");
            assert!(
                ev["object"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("too old resource version:")
            );
            expired = true;
            break;
        }
    }
    assert!(expired, "compaction never expired the old revision");
    let r = api
        .get(&format!("{SVCS}?limit=1&continue={token}"))
        .await
        .unwrap();
    assert_eq!(r.status, 410, "{}", r.text());
    assert_eq!(r.json()["reason"], "Expired");
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_generate_name_and_preconditions() {
    let c = start(&[]).await;
    let mut api = c.client().unwrap();
    let r = api
        .post_json(&format!("{SVCS}?dryRun=All"), &svc("dry", json!({})))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert!(r.json()["metadata"]["uid"].is_string());
    assert_eq!(api.get(&format!("{SVCS}/dry")).await.unwrap().status, 404);

    let mut body = svc("", json!({}));
    body["metadata"] = json!({"generateName": "gen-"});
    let r = api.post_json(SVCS, &body).await.unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let name = r.json()["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let web = create(&mut api, "web", json!({})).await;
    let wrong = json!({"preconditions": {"uid": "nope"}});
    let r = api
        .request(
            "DELETE",
            &format!("{SVCS}/web"),
            Some("application/json"),
            serde_json::to_vec(&wrong).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: nope")
    );
    let r = api
        .request(
            "DELETE",
            &format!("{SVCS}/web?dryRun=All"),
            None,
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(api.get(&format!("{SVCS}/web")).await.unwrap().status, 200);
    let right = json!({"preconditions": {"uid": web["metadata"]["uid"]}});
    let r = api
        .request(
            "DELETE",
            &format!("{SVCS}/web"),
            Some("application/json"),
            serde_json::to_vec(&right).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["name"], "web");
    assert_eq!(api.get(&format!("{SVCS}/web")).await.unwrap().status, 404);

    // Status updates leave the spec alone; main-resource updates leave the status alone.
    create(&mut api, "st", json!({})).await;
    let r = api
        .request("PATCH", &format!("{SVCS}/st/status"), Some("application/merge-patch+json"),
                 br#"{"spec":{"type":"NodePort"},"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.1"}]}}}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["spec"]["type"], "ClusterIP");
    assert_eq!(v["status"]["loadBalancer"]["ingress"][0]["ip"], "192.0.2.1");
    let r = api
        .request(
            "PATCH",
            &format!("{SVCS}/st"),
            Some("application/merge-patch+json"),
            br#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.9"}]}}}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json()["status"]["loadBalancer"]["ingress"][0]["ip"],
        "192.0.2.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_openapi_and_tables() {
    let c = start(&[]).await;
    let mut api = c.client().unwrap();
    let v = api.get("/api").await.unwrap().json();
    assert_eq!(v["kind"], "APIVersions");
    assert_eq!(v["versions"], json!(["v1"]));
    let aggregated =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = api
        .request_with("GET", "/api", &[("accept", aggregated)], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        r.headers["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let v = r.json();
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let resources = v["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let services = resources
        .iter()
        .find(|r| r["resource"] == "services")
        .unwrap();
    assert_eq!(services["shortNames"], json!(["svc"]));
    assert_eq!(services["scope"], "Namespaced");
    assert_eq!(services["subresources"][0]["subresource"], "status");
    assert_eq!(
        api.get("/apis").await.unwrap().json()["kind"],
        "APIGroupList"
    );
    let v = api.get("/api/v1").await.unwrap().json();
    assert_eq!(v["groupVersion"], "v1");

    let idx = api.get("/openapi/v3").await.unwrap().json();
    let url = idx["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = api.get(&url).await.unwrap();
    assert_eq!(doc.status, 200);
    assert!(doc.json()["components"]["schemas"]["io.k8s.api.core.v1.Service"].is_object());
    let v2 = api.get("/openapi/v2").await.unwrap().json();
    assert_eq!(v2["swagger"], "2.0");

    create(&mut api, "web", json!({})).await;
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let t = api
        .request_with("GET", SVCS, &[("accept", table)], Vec::new())
        .await
        .unwrap()
        .json();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    assert_eq!(t["columnDefinitions"][6]["priority"], 1);
    assert_eq!(t["rows"][0]["cells"][0], "web");
    assert_eq!(t["rows"][0]["cells"][4], "80/TCP");
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let t = api
        .request_with(
            "GET",
            &format!("{SVCS}/web?includeObject=Object"),
            &[("accept", table)],
            Vec::new(),
        )
        .await
        .unwrap()
        .json();
    assert_eq!(t["rows"][0]["object"]["spec"]["ports"][0]["port"], 80);
    let r = api
        .request_with(
            "GET",
            SVCS,
            &[("accept", "application/vnd.kubernetes.protobuf")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 406);
    let y = api
        .request_with(
            "GET",
            &format!("{SVCS}/web"),
            &[("accept", "application/yaml")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(y.headers["content-type"], "application/yaml");
    assert!(y.text().contains("kind: Service"), "{}", y.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watches_get_bookmarks_that_cover_every_write() {
    let c = start(&["--bookmark-interval", "1"]).await;
    let mut api = c.client().unwrap();
    let mut w = api
        .watch(&format!(
            "{SVCS}?watch=true&resourceVersion=0&allowWatchBookmarks=true"
        ))
        .await
        .unwrap();
    // A write elsewhere moves the revision on; the bookmark may then carry it, because this
    // watch has nothing pending.
    let other = api
        .post_json(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}}),
        )
        .await
        .unwrap()
        .json();
    let mut bookmark = None;
    for _ in 0..5 {
        let ev = w.next(Duration::from_secs(3)).await.unwrap();
        if ev["type"] == "BOOKMARK" && rv(&ev["object"]) >= rv(&other) {
            bookmark = Some(ev);
            break;
        }
    }
    let bm = bookmark.expect("a bookmark at or past the latest write");
    assert_eq!(bm["object"]["kind"], "Service");
    assert!(bm["object"]["metadata"].get("name").is_none());
    // Without allowWatchBookmarks there are none.
    let mut quiet = api
        .watch(&format!("{SVCS}?watch=true&resourceVersion=0"))
        .await
        .unwrap();
    assert!(quiet.next(Duration::from_millis(2500)).await.is_none());
}
