//! Watches: a chunked stream of `{"type": ..., "object": ...}` lines, with Kubernetes'
//! start semantics (initial ADDED events, `sendInitialEvents` with its end bookmark, resuming
//! after a resourceVersion, `410 Expired` as an ERROR event), selector transitions (an object
//! leaving a selector is DELETED, entering it is ADDED) and periodic bookmarks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duostack_core::error::{ApiError, FieldError, GroupKind};
use duostack_core::kinds::Kind;
use duostack_core::selector::{FieldSelector, LabelSelector};
use duostack_core::table::{self, IncludeObject};
use duostack_store::{EventType, RangeRequest, Revision, StoreError};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::registry::{ListOptions, Registry, from_stored, parse_rv, store_error};
use crate::reply::{self, Format, Response};

/// The annotation on the bookmark that ends a `sendInitialEvents` watch's initial state.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

#[derive(Clone, Debug)]
pub struct WatchParams {
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub send_initial_events: Option<bool>,
    pub allow_bookmarks: bool,
    pub timeout: Duration,
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub format: Format,
    pub include: IncludeObject,
    /// How often an idle watch with `allowWatchBookmarks` gets a bookmark.
    pub bookmark_interval: Duration,
}

/// Checks the ListOptions combinations Kubernetes forbids for watches.
fn validate(p: &WatchParams) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    let rvm = p.resource_version_match.as_deref().unwrap_or("");
    match p.send_initial_events {
        Some(_) => {
            if rvm != "NotOlderThan" {
                errs.push(FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                ));
            }
            if !p.allow_bookmarks {
                errs.push(FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                ));
            }
        }
        None if !rvm.is_empty() => errs.push(FieldError::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )),
        None => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            GroupKind {
                group: "meta.k8s.io",
                kind: "ListOptions",
            },
            "",
            &errs,
        ))
    }
}

/// Renders one event line in the requested format.
struct Encoder {
    kind: &'static dyn Kind,
    format: Format,
    include: IncludeObject,
    sent_columns: bool,
}

impl Encoder {
    fn object(&mut self, obj: &Value) -> Value {
        match self.format {
            Format::Table(version) => {
                let columns = (!self.sent_columns).then(|| self.kind.columns());
                self.sent_columns = true;
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let cells = self.kind.cells(obj, jiff::Timestamp::now());
                let mut t = table::table(columns, vec![(cells, obj)], self.include, &rv, None);
                t["apiVersion"] = format!("meta.k8s.io/{version}").into();
                t
            }
            Format::PartialMetadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
            _ => obj.clone(),
        }
    }

    fn event(&mut self, ty: &str, obj: &Value) -> Bytes {
        let object = self.object(obj);
        line(ty, &object)
    }

    fn bookmark(&self, rv: Revision, initial_end: bool) -> Bytes {
        let info = self.kind.info();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
        }
        let object = match self.format {
            Format::Table(version) => json!({
                "kind": "Table", "apiVersion": format!("meta.k8s.io/{version}"),
                "metadata": metadata, "columnDefinitions": [], "rows": [],
            }),
            Format::PartialMetadata => json!({
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            }),
            _ => json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata}),
        };
        line("BOOKMARK", &object)
    }
}

fn line(ty: &str, object: &Value) -> Bytes {
    let mut out = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

fn watch_response(rx: mpsc::Receiver<Bytes>) -> Response {
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut resp = http::Response::new(reply::streaming(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// Starts a watch and returns the streaming response.
pub async fn watch(
    registry: Arc<Registry>,
    kind: &'static dyn Kind,
    namespace: Option<String>,
    p: WatchParams,
) -> Result<Response, ApiError> {
    validate(&p)?;
    let info = kind.info();
    p.field
        .check_fields(kind.selectable_fields())
        .map_err(|e| ApiError::bad_request(e.0))?;
    let rv = match p.resource_version.as_deref() {
        None | Some("") => None,
        Some(s) => Some(parse_rv(s)?),
    };
    // Watching one named object needs only its key; anything longer is filtered out below.
    let prefix = match (p.field.single_name(), info.namespaced, namespace.as_deref()) {
        (Some(name), false, _) => info.key(None, name),
        (Some(name), true, Some(ns)) => info.key(Some(ns), name),
        _ => info.prefix(namespace.as_deref()),
    };
    let opts = ListOptions {
        label: p.label.clone(),
        field: p.field.clone(),
        ..Default::default()
    };
    let initial = match (p.send_initial_events, rv) {
        (Some(true), _) => true,
        (Some(false), _) => false,
        (None, None | Some(0)) => true,
        (None, Some(_)) => false,
    };

    let mut encoder = Encoder {
        kind,
        format: p.format,
        include: p.include,
        sent_columns: false,
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);

    // The initial state and the revision the live stream continues from.
    let mut initial_lines = Vec::new();
    let start = if initial {
        if let Some(n) = rv.filter(|n| *n > 0) {
            let current = registry
                .store
                .current_revision()
                .await
                .map_err(store_error)?;
            if n > current {
                return Err(store_error(StoreError::FutureRevision {
                    requested: n,
                    current,
                }));
            }
        }
        let resp = registry
            .store
            .range(RangeRequest {
                prefix: prefix.clone(),
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        for kv in &resp.kvs {
            let obj = from_stored(kv)?;
            if registry.matches(kind, &obj, &opts) {
                initial_lines.push(encoder.event("ADDED", &obj));
            }
        }
        if p.send_initial_events == Some(true) {
            initial_lines.push(encoder.bookmark(resp.revision, true));
        }
        resp.revision
    } else {
        match rv {
            Some(n) => n,
            None => registry
                .store
                .current_revision()
                .await
                .map_err(store_error)?,
        }
    };

    let mut stream = match registry.store.watch(&prefix, start + 1).await {
        Ok(s) => s,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            // Kubernetes answers 200 and delivers the expiry as an ERROR event; clients
            // then relist.
            let err = ApiError::expired(format!(
                "too old resource version: {} ({})",
                requested - 1,
                compacted
            ));
            let _ = tx.try_send(line("ERROR", &err.to_status()));
            drop(tx);
            return Ok(watch_response(rx));
        }
        Err(e) => return Err(store_error(e)),
    };

    let bookmarks = p.allow_bookmarks;
    let timeout = p.timeout;
    let bookmark_interval = p.bookmark_interval;
    tokio::spawn(async move {
        for l in initial_lines {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(bookmark_interval);
        tick.tick().await;
        let mut last_sent = start;
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let Some(ev) = ev else { break };
                    let rev = ev.revision();
                    let Some(out) = transition(&registry, kind, &opts, &ev) else {
                        continue;
                    };
                    let (ty, obj) = match out {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = tx.send(line("ERROR", &e.to_status())).await;
                            break;
                        }
                    };
                    last_sent = rev;
                    if tx.send(encoder.event(ty, &obj)).await.is_err() {
                        break;
                    }
                }
                _ = tick.tick(), if bookmarks => {
                    if let Some(rv) = stream.idle_revision() {
                        let rv = rv.max(last_sent);
                        if tx.send(encoder.bookmark(rv, false)).await.is_err() {
                            break;
                        }
                    }
                }
                _ = &mut deadline => break,
                _ = tx.closed() => break,
            }
        }
    });
    Ok(watch_response(rx))
}

/// What a store event means to a watcher with selectors: ADDED, MODIFIED, DELETED or nothing.
fn transition(
    registry: &Registry,
    kind: &'static dyn Kind,
    opts: &ListOptions,
    ev: &duostack_store::Event,
) -> Option<Result<(&'static str, Value), ApiError>> {
    let decode_prev = |rev: Revision| -> Option<Result<Value, ApiError>> {
        ev.prev.as_ref().map(|p| {
            from_stored(p).map(|mut v| {
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("resourceVersion".into(), rev.to_string().into());
                }
                v
            })
        })
    };
    let prev = match ev.prev.as_ref() {
        Some(p) => match from_stored(p) {
            Ok(v) => Some(v),
            Err(e) => return Some(Err(e)),
        },
        None => None,
    };
    let prev_match = prev
        .as_ref()
        .is_some_and(|o| registry.matches(kind, o, opts));
    match ev.kind {
        EventType::Put => {
            let new = match from_stored(&ev.kv) {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let new_match = registry.matches(kind, &new, opts);
            match (prev_match, new_match) {
                (false, true) => Some(Ok(("ADDED", new))),
                (true, true) => Some(Ok(("MODIFIED", new))),
                (true, false) => Some(Ok(("DELETED", new))),
                (false, false) => None,
            }
        }
        EventType::Delete => {
            if !prev_match {
                return None;
            }
            decode_prev(ev.revision()).map(|r| r.map(|v| ("DELETED", v)))
        }
    }
}
