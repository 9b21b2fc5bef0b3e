//! Durability: a server killed with SIGKILL in the middle of a stream of writes comes back
//! with every acknowledged write, and resourceVersions keep increasing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duostack_testkit::Cluster;
use serde_json::json;

const WRITERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_loses_no_acknowledged_write() {
    let mut c = Cluster::start(Path::new(env!("CARGO_BIN_EXE_duostack")), &[]).unwrap();
    // name -> (resourceVersion, counter label) of the last acknowledged write.
    let acked: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut client = c.client().unwrap();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer creates services and keeps updating its own counter object.
            let counter = format!("counter-{w}");
            for i in 0u64.. {
                let name = format!("svc-{w}-{i}");
                let body = json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name},
                    "spec": {"ports": [{"port": 80}]}});
                let Ok(r) = client
                    .post_json("/api/v1/namespaces/default/services", &body)
                    .await
                else {
                    return;
                };
                if r.status != 201 {
                    return;
                }
                let rv: u64 = r.json()["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                acked.lock().unwrap().insert(name, (rv, 0));

                let patch = json!({"metadata": {"labels": {"n": i.to_string()}},
                    "spec": {"ports": [{"port": 80}]}});
                let method = if i == 0 { "PUT" } else { "PATCH" };
                let (ct, body) = if i == 0 {
                    let mut full = patch.clone();
                    full["apiVersion"] = "v1".into();
                    full["kind"] = "Service".into();
                    full["metadata"]["name"] = counter.clone().into();
                    ("application/json", full)
                } else {
                    ("application/merge-patch+json", patch)
                };
                let path = format!("/api/v1/namespaces/default/services/{counter}");
                let Ok(r) = client
                    .request(method, &path, Some(ct), serde_json::to_vec(&body).unwrap())
                    .await
                else {
                    return;
                };
                if r.status >= 300 {
                    return;
                }
                let rv: u64 = r.json()["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                acked.lock().unwrap().insert(counter.clone(), (rv, i));
            }
        }));
    }
    // Let the writers build up a few hundred writes, then pull the plug mid-stream.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked.lock().unwrap().len() >= 300 {
            break;
        }
    }
    c.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().unwrap().clone();
    let max_rv = acked.values().map(|(rv, _)| *rv).max().unwrap();
    assert!(acked.len() >= 300);

    c.restart().unwrap();
    let mut client = c.client().unwrap();
    let list = client
        .get("/api/v1/namespaces/default/services")
        .await
        .unwrap()
        .json();
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        list_rv >= max_rv,
        "list RV {list_rv} < acknowledged {max_rv}"
    );
    let stored: HashMap<String, (u64, u64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap().to_owned();
            let rv = o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let n = o["metadata"]["labels"]["n"]
                .as_str()
                .map_or(0, |n| n.parse().unwrap());
            (name, (rv, n))
        })
        .collect();
    for (name, (rv, n)) in &acked {
        let Some((srv, sn)) = stored.get(name) else {
            panic!("acknowledged {name} (rv {rv}) is missing after restart");
        };
        assert!(
            srv >= rv,
            "{name}: stored rv {srv} older than acknowledged {rv}"
        );
        assert!(sn >= n, "{name}: counter {sn} older than acknowledged {n}");
    }

    // New writes continue above every revision handed out before the crash.
    let r = client
        .post_json(
            "/api/v1/namespaces/default/services",
            &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "after"},
                    "spec": {"ports": [{"port": 80}]}}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let rv: u64 = r.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv > list_rv && rv > max_rv);
}
