//! Host addresses of pods (spec section B.3): what kubelet reports from its Node. duostack has
//! no kubelet of its own, so the server fills in, for every pod bound to a node with known
//! addresses, `status.hostIP`/`hostIPs` when the pod reports none, and for host-network pods
//! `status.podIP`/`podIPs` from the node's host IPs of both families. Addresses a pod already
//! reports are never rewritten (kubelet doesn't either), so a real kubelet's reports win.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use duostack_core::k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodStatus};
use duostack_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use duostack_core::kinds::Kind;
use duostack_core::kinds::node::node_host_ips;
use duostack_core::kinds::pod::{HostStatus, host_status};
use duostack_core::resource::{NODES, PODS};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::informer::{self, Update};
use crate::registry::{Registry, Target};
use crate::request::{FieldValidation, PatchType, WriteOptions};

const FIELD_MANAGER: &str = "duostack-host-ips";
const WORKERS: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Source {
    Nodes,
    Pods,
}

type PodKey = (String, String);

fn pod_key(p: &Pod) -> PodKey {
    (
        p.metadata.namespace.clone().unwrap_or_default(),
        p.metadata.name.clone().unwrap_or_default(),
    )
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

#[derive(Default)]
struct Cache {
    host_ips: HashMap<String, Vec<String>>,
    pods: HashMap<PodKey, Pod>,
    by_node: HashMap<String, HashSet<PodKey>>,
}

/// The parts of a pod `host_status` and `due` read: the cache holds every scheduled pod, so
/// it keeps a few hundred bytes of each instead of the whole object.
fn slim(pod: Pod) -> Pod {
    let spec = pod.spec.map(|s| PodSpec {
        node_name: s.node_name,
        host_network: s.host_network,
        ..Default::default()
    });
    let status = pod.status.map(|s| PodStatus {
        phase: s.phase,
        host_ip: s.host_ip,
        host_ips: s.host_ips,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        ..Default::default()
    });
    Pod {
        metadata: ObjectMeta {
            namespace: pod.metadata.namespace,
            name: pod.metadata.name,
            resource_version: pod.metadata.resource_version,
            deletion_timestamp: pod.metadata.deletion_timestamp,
            ..Default::default()
        },
        spec,
        status,
    }
}

impl Cache {
    /// Caches a scheduled pod; one without a node has nothing to fill and is dropped.
    fn put_pod(&mut self, pod: Pod) -> PodKey {
        let key = pod_key(&pod);
        self.remove_pod(&key);
        let Some(n) = node_of(&pod) else {
            return key;
        };
        self.by_node.entry(n).or_default().insert(key.clone());
        self.pods.insert(key.clone(), slim(pod));
        key
    }

    fn remove_pod(&mut self, key: &PodKey) {
        if let Some(old) = self.pods.remove(key)
            && let Some(n) = node_of(&old)
            && let Some(set) = self.by_node.get_mut(&n)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_node.remove(&n);
            }
        }
    }

    /// The change due for a pod, with the resourceVersion it was computed from.
    fn due(&self, key: &PodKey) -> Option<(HostStatus, String)> {
        let pod = self.pods.get(key)?;
        if pod.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        let host = self.host_ips.get(&node_of(pod)?)?;
        let change = host_status(pod, host);
        (!change.is_empty()).then(|| {
            (
                change,
                pod.metadata.resource_version.clone().unwrap_or_default(),
            )
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Option<T> {
    serde_json::from_value(v).ok()
}

/// Runs until the server stops.
pub async fn controller(registry: Arc<Registry>) {
    let (Some(pods_kind), Some(_)) = (registry.kind_for(&PODS), registry.kind_for(&NODES)) else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let informers = [
        tokio::spawn(informer::run(
            registry.store.clone(),
            NODES.prefix(None),
            Source::Nodes,
            tx.clone(),
        )),
        tokio::spawn(informer::run(
            registry.store.clone(),
            PODS.prefix(None),
            Source::Pods,
            tx,
        )),
    ];
    let mut cache = Cache::default();
    let mut queue: VecDeque<PodKey> = VecDeque::new();
    let mut queued: HashSet<PodKey> = HashSet::new();
    let mut running: JoinSet<(PodKey, String)> = JoinSet::new();
    let enqueue = |k: PodKey, queue: &mut VecDeque<PodKey>, queued: &mut HashSet<PodKey>| {
        if queued.insert(k.clone()) {
            queue.push_back(k);
        }
    };

    loop {
        while running.len() < WORKERS
            && let Some(key) = queue.pop_front()
        {
            match cache.due(&key) {
                Some((change, rv)) => {
                    let registry = registry.clone();
                    running.spawn(async move {
                        write(&registry, pods_kind, &key, &change, &rv).await;
                        (key, rv)
                    });
                }
                None => {
                    queued.remove(&key);
                }
            }
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some((source, update)) = msg else { break };
                match (source, update) {
                    (Source::Nodes, Update::Relisted { objects, .. }) => {
                        cache.host_ips = objects
                            .into_iter()
                            .filter_map(decode::<Node>)
                            .map(|n| (n.metadata.name.clone().unwrap_or_default(), node_host_ips(&n)))
                            .collect();
                        for k in cache.pods.keys() {
                            enqueue(k.clone(), &mut queue, &mut queued);
                        }
                    }
                    (Source::Nodes, Update::Put { new, .. }) => {
                        let Some(n) = decode::<Node>(new) else { continue };
                        let name = n.metadata.name.clone().unwrap_or_default();
                        let ips = node_host_ips(&n);
                        if cache.host_ips.get(&name) != Some(&ips) {
                            cache.host_ips.insert(name.clone(), ips);
                            for k in cache.by_node.get(&name).into_iter().flatten() {
                                enqueue(k.clone(), &mut queue, &mut queued);
                            }
                        }
                    }
                    (Source::Nodes, Update::Deleted { old }) => {
                        if let Some(name) = old.pointer("/metadata/name").and_then(Value::as_str) {
                            cache.host_ips.remove(name);
                        }
                    }
                    (Source::Pods, Update::Relisted { objects, .. }) => {
                        cache.pods.clear();
                        cache.by_node.clear();
                        for p in objects.into_iter().filter_map(decode::<Pod>) {
                            let k = cache.put_pod(p);
                            enqueue(k, &mut queue, &mut queued);
                        }
                    }
                    (Source::Pods, Update::Put { new, .. }) => {
                        let Some(p) = decode::<Pod>(new) else { continue };
                        let k = cache.put_pod(p);
                        enqueue(k, &mut queue, &mut queued);
                    }
                    (Source::Pods, Update::Deleted { old }) => {
                        if let Some(p) = decode::<Pod>(old) {
                            cache.remove_pod(&pod_key(&p));
                        }
                    }
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((key, written)) = done {
                    queued.remove(&key);
                    // A version that arrived while the write was in flight is looked at now.
                    if cache.due(&key).is_some_and(|(_, rv)| rv != written) {
                        enqueue(key, &mut queue, &mut queued);
                    }
                }
            }
        }
    }
    for i in informers {
        i.abort();
    }
}

/// Writes the missing addresses, only onto the pod version they were computed from: a pod
/// that changed meanwhile comes back through the informer and is looked at again.
async fn write(
    registry: &Registry,
    kind: &'static dyn Kind,
    key: &PodKey,
    change: &HostStatus,
    rv: &str,
) {
    let mut status = serde_json::Map::new();
    if let Some(h) = &change.host_ips {
        status.insert("hostIP".into(), h[0].clone().into());
        let list: Vec<Value> = h.iter().map(|ip| json!({"ip": ip})).collect();
        status.insert("hostIPs".into(), list.into());
    }
    if let Some(p) = &change.pod_ips {
        status.insert("podIP".into(), p[0].clone().into());
        let list: Vec<Value> = p.iter().map(|ip| json!({"ip": ip})).collect();
        status.insert("podIPs".into(), list.into());
    }
    let patch = json!({"metadata": {"resourceVersion": rv}, "status": status});
    let t = Target {
        kind,
        namespace: Some(&key.0),
        name: &key.1,
        status: true,
    };
    let opts = WriteOptions {
        dry_run: false,
        field_manager: FIELD_MANAGER.into(),
        field_validation: FieldValidation::Strict,
        force: false,
    };
    let body = serde_json::to_vec(&patch).unwrap_or_default();
    match registry.patch(t, &body, PatchType::Merge, &opts).await {
        Ok(_) => {}
        Err(e) if e.code == 404 || e.code == 409 => {}
        Err(e) => {
            tracing::warn!(namespace = %key.0, pod = %key.1, error = %e, "host IPs not written");
        }
    }
}
