//! List-then-watch over one store prefix, for the server's own controllers (client-go's
//! informer, without the HTTP): a controller gets the whole content at a revision, then every
//! change after it, and a fresh full list whenever the watch can't continue (it fell behind,
//! or history it needed was compacted), so its cache never misses a change.

use std::sync::Arc;
use std::time::Duration;

use duostack_store::{EventType, RangeRequest, Revision, Store};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::registry::from_stored;

/// What a controller sees of one prefix.
#[derive(Debug)]
pub enum Update {
    /// Everything under the prefix at `revision`; replaces whatever the cache held.
    Relisted {
        objects: Vec<Value>,
        revision: Revision,
    },
    /// An object was created or changed.
    Put { new: Value, old: Option<Value> },
    /// An object was removed; its last state.
    Deleted { old: Value },
}

/// Pause after a store error before listing again.
const RETRY: Duration = Duration::from_millis(200);

/// Feeds `tx` with the updates of `prefix`, each tagged with `source`, until the receiver is
/// dropped.
pub async fn run<S: Copy + Send + 'static>(
    store: Arc<dyn Store>,
    prefix: String,
    source: S,
    tx: mpsc::Sender<(S, Update)>,
) {
    loop {
        let listed = match store
            .range(RangeRequest {
                prefix: prefix.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "informer list failed");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let objects = listed
            .kvs
            .iter()
            .filter_map(|kv| from_stored(kv).ok())
            .map(without_managed_fields)
            .collect();
        let revision = listed.revision;
        if tx
            .send((source, Update::Relisted { objects, revision }))
            .await
            .is_err()
        {
            return;
        }
        let mut stream = match store.watch(&prefix, revision + 1).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%prefix, error = %e, "informer watch failed; listing again");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            let old = ev
                .prev
                .as_ref()
                .and_then(|kv| from_stored(kv).ok())
                .map(without_managed_fields);
            let update = match ev.kind {
                EventType::Put => match from_stored(&ev.kv) {
                    Ok(new) => Update::Put {
                        new: without_managed_fields(new),
                        old,
                    },
                    Err(e) => {
                        tracing::warn!(key = %ev.kv.key, error = %e, "undecodable object");
                        continue;
                    }
                },
                EventType::Delete => match old {
                    Some(old) => Update::Deleted { old },
                    None => continue,
                },
            };
            if tx.send((source, update)).await.is_err() {
                return;
            }
        }
        tracing::debug!(%prefix, "informer watch ended; listing again");
    }
}

/// No controller here reads `managedFields`, and they are often the larger half of an
/// object: caches keep objects without them (client-go users do the same with a transform).
fn without_managed_fields(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}
