use super::*;
use crate::{RangeRequest, Txn};

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open store")
}

async fn put(s: &EmbeddedStore, k: &str, v: &str) -> Revision {
    let r = s.txn(Txn::new().put(k, v.to_owned())).await.unwrap();
    assert!(r.succeeded);
    r.revision
}

#[tokio::test]
async fn revisions_and_cas() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert_eq!(s.current_revision().await.unwrap(), 1);

    let r = s.txn(Txn::new().absent("/a").put("/a", "1")).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 2);
    assert_eq!(r.kvs, vec![None]);

    // A second create of the same key fails and reports the current value.
    let r = s.txn(Txn::new().absent("/a").put("/a", "2")).await.unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.revision, 2);
    let cur = r.kvs[0].as_ref().unwrap();
    assert_eq!(&cur.value[..], b"1");
    assert_eq!(
        (cur.create_revision, cur.mod_revision, cur.version),
        (2, 2, 1)
    );

    // Update guarded by mod_revision.
    let r = s
        .txn(Txn::new().unchanged_since("/a", 2).put("/a", "3"))
        .await
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 3);
    let (kv, rev) = s.get("/a").await.unwrap();
    let kv = kv.unwrap();
    assert_eq!(rev, 3);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));

    // Stale guard fails.
    let r = s
        .txn(Txn::new().unchanged_since("/a", 2).put("/a", "4"))
        .await
        .unwrap();
    assert!(!r.succeeded);

    // Deleting an absent key changes nothing.
    let r = s.txn(Txn::new().delete("/nope")).await.unwrap();
    assert!(r.succeeded);
    assert_eq!(r.revision, 3);

    let r = s.txn(Txn::new().delete("/a")).await.unwrap();
    assert_eq!(r.revision, 4);
    assert_eq!(s.get("/a").await.unwrap(), (None, 4));
}

#[tokio::test]
async fn multi_key_txn_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "/x", "x").await;
    // Second compare fails: neither key is written.
    let r = s
        .txn(
            Txn::new()
                .absent("/y")
                .absent("/x")
                .put("/y", "y")
                .put("/x", "x2"),
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(s.get("/y").await.unwrap().0, None);
    assert_eq!(&s.get("/x").await.unwrap().0.unwrap().value[..], b"x");
}

#[tokio::test]
async fn range_prefix_limit_and_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for k in ["/r/a/1", "/r/a/2", "/r/a/3", "/r/b/1", "/r/a0"] {
        put(&s, k, k).await;
    }
    let resp = s
        .range(RangeRequest {
            prefix: "/r/a/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = resp.kvs.iter().map(|k| k.key.to_string()).collect();
    assert_eq!(keys, ["/r/a/1", "/r/a/2", "/r/a/3"]);
    assert!(!resp.more);

    let page = s
        .range(RangeRequest {
            prefix: "/r/a/".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert!(page.more);
    let page2 = s
        .range(RangeRequest {
            prefix: "/r/a/".into(),
            start_after: Some(page.kvs[1].key.to_string()),
            limit: 2,
            revision: Some(page.revision),
        })
        .await
        .unwrap();
    assert_eq!(page2.kvs.len(), 1);
    assert_eq!(&*page2.kvs[0].key, "/r/a/3");
    assert!(!page2.more);
    assert_eq!(s.count("/r/").await.unwrap(), 5);
}

#[tokio::test]
async fn range_at_older_revision_undoes_later_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    put(&s, "/p/a", "a1").await;
    put(&s, "/p/c", "c1").await;
    let at = put(&s, "/p/d", "d1").await;
    // After `at`: modify a, delete c, create b and e, delete d.
    put(&s, "/p/a", "a2").await;
    s.txn(Txn::new().delete("/p/c")).await.unwrap();
    put(&s, "/p/b", "b1").await;
    put(&s, "/p/e", "e1").await;
    s.txn(Txn::new().delete("/p/d")).await.unwrap();

    let old = s
        .range(RangeRequest {
            prefix: "/p/".into(),
            revision: Some(at),
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = old
        .kvs
        .iter()
        .map(|k| {
            (
                k.key.to_string(),
                String::from_utf8(k.value.to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("/p/a".to_string(), "a1".to_string()),
            ("/p/c".to_string(), "c1".to_string()),
            ("/p/d".to_string(), "d1".to_string())
        ]
    );
    assert_eq!(old.revision, at);

    // Paging at the old revision.
    let p1 = s
        .range(RangeRequest {
            prefix: "/p/".into(),
            revision: Some(at),
            limit: 1,
            start_after: Some("/p/a".into()),
        })
        .await
        .unwrap();
    assert_eq!(&*p1.kvs[0].key, "/p/c");
    assert!(p1.more);

    let now = s
        .range(RangeRequest {
            prefix: "/p/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<_> = now.kvs.iter().map(|k| k.key.to_string()).collect();
    assert_eq!(keys, ["/p/a", "/p/b", "/p/e"]);
}

#[tokio::test]
async fn watch_replays_history_then_live() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let r1 = put(&s, "/w/a", "1").await;
    put(&s, "/other", "x").await;
    put(&s, "/w/b", "2").await;
    let mut w = s.watch("/w/", r1).await.unwrap();
    let e = w.next().await.unwrap();
    assert_eq!((&*e.kv.key, e.kind), ("/w/a", EventType::Put));
    let e = w.next().await.unwrap();
    assert_eq!(&*e.kv.key, "/w/b");
    s.txn(Txn::new().delete("/w/a")).await.unwrap();
    let e = w.next().await.unwrap();
    assert_eq!((&*e.kv.key, e.kind), ("/w/a", EventType::Delete));
    assert_eq!(&e.prev.unwrap().value[..], b"1");
    put(&s, "/other", "y").await;
    put(&s, "/w/c", "3").await;
    let e = w.next().await.unwrap();
    assert_eq!(&*e.kv.key, "/w/c");
}

#[tokio::test]
async fn compaction_makes_old_revisions_gone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    for i in 0..10 {
        put(&s, "/c/k", &i.to_string()).await;
    }
    s.compact(8).await.unwrap();
    assert!(matches!(
        s.watch("/c/", 5).await,
        Err(StoreError::Compacted { compacted: 8, .. })
    ));
    assert!(matches!(
        s.range(RangeRequest {
            prefix: "/c/".into(),
            revision: Some(7),
            ..Default::default()
        })
        .await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/c/", 8).await.unwrap();
    assert_eq!(w.next().await.unwrap().revision(), 8);
    assert!(matches!(
        s.compact(1000).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        put(&s, "/k", "v").await;
        put(&s, "/k2", "v2").await;
    }
    let s = open(dir.path());
    assert_eq!(s.current_revision().await.unwrap(), 3);
    assert_eq!(&s.get("/k2").await.unwrap().0.unwrap().value[..], b"v2");
    let r = put(&s, "/k3", "v3").await;
    assert_eq!(r, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/cc/{}", i % 50);
            let r = s
                .txn(Txn::new().absent(key.clone()).put(key, "v"))
                .await
                .unwrap();
            (r.succeeded, r.revision)
        }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        let (ok, rev) = t.await.unwrap();
        if ok {
            wins.push(rev);
        }
    }
    // Exactly one create per key wins, each at its own revision.
    assert_eq!(wins.len(), 50);
    wins.sort();
    wins.dedup();
    assert_eq!(wins.len(), 50);
    assert_eq!(s.current_revision().await.unwrap(), 51);
}
