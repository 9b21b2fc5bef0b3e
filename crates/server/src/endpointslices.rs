//! The EndpointSlice and Endpoints controllers (kube-controller-manager's), driving the pure
//! reconciler in `duostack_core::endpointslices` from caches of Services, Pods, slices and
//! Endpoints kept by informers.
//!
//! A change marks the Services it can affect dirty: a Service's own changes, a Pod whose old or
//! new labels its selector picks, a slice labelled with its name, its Endpoints. Workers take
//! dirty Services (never one Service twice at a time), plan against the caches and write the
//! difference through the registry, then put what they wrote into the caches at once so the
//! next plan does not depend on the informer having caught up; an older version arriving
//! later never replaces a newer one. A write that loses a race (409) just marks the Service
//! dirty again. Slices of a deleted Service are deleted here (Kubernetes leaves that to its
//! garbage collector, which duostack doesn't have), as is its Endpoints object.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use duostack_core::decode::BodyFormat;
use duostack_core::endpointslices::{
    CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, endpoints, endpoints_changed, plan,
    selector_matches,
};
use duostack_core::error::ApiError;
use duostack_core::k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use duostack_core::k8s_openapi::api::discovery::v1::EndpointSlice;
use duostack_core::kinds::Kind;
use duostack_core::resource::{ENDPOINT_SLICES, ENDPOINTS, PODS, SERVICES};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::informer::{self, Update};
use crate::registry::{Registry, Target};
use crate::request::{FieldValidation, WriteOptions};

const SLICE_MANAGER: &str = "endpointslice-controller";
const ENDPOINTS_MANAGER: &str = "endpoint-controller";
/// Services reconciled at once: enough for the store's group commit to batch their writes.
const WORKERS: usize = 16;
/// Pause before a Service whose writes failed for another reason than a lost race is retried.
const BACKOFF: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
enum Source {
    Services,
    Pods,
    Slices,
    Endpoints,
}

/// Namespace and name.
type Key = (String, String);

fn key_of(meta: &duostack_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn rv_of(meta: &duostack_core::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The Service a slice belongs to, if this controller manages it.
fn slice_owner(s: &EndpointSlice) -> Option<Key> {
    let labels = s.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let svc = labels.get(LABEL_SERVICE_NAME)?;
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        svc.clone(),
    ))
}

#[derive(Default)]
struct Cache {
    services: HashMap<Key, Service>,
    /// Pods by namespace, then name; shared with jobs, so handing a Service's pods to a
    /// worker copies pointers, not pods.
    pods: HashMap<String, BTreeMap<String, Arc<Pod>>>,
    /// Pod names by namespace, label key and value: a Service's pods are found from its
    /// rarest selector pair instead of by testing every pod in the namespace.
    by_label: HashMap<String, HashMap<(String, String), BTreeSet<String>>>,
    /// Managed slices by owning Service, then slice name.
    slices: HashMap<Key, BTreeMap<String, EndpointSlice>>,
    endpoints: HashMap<Key, Endpoints>,
}

impl Cache {
    fn put_pod(&mut self, p: Pod) {
        let (ns, name) = key_of(&p.metadata);
        let p = Arc::new(p);
        if let Some(old) = self
            .pods
            .entry(ns.clone())
            .or_default()
            .insert(name, p.clone())
        {
            self.unindex(&old);
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let index = self.by_label.entry(ns).or_default();
        for (k, v) in p.metadata.labels.iter().flatten() {
            index
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(name.clone());
        }
    }

    fn remove_pod(&mut self, ns: &str, name: &str) {
        let Some(m) = self.pods.get_mut(ns) else {
            return;
        };
        if let Some(old) = m.remove(name) {
            if m.is_empty() {
                self.pods.remove(ns);
            }
            self.unindex(&old);
        }
    }

    fn unindex(&mut self, p: &Pod) {
        let (ns, name) = key_of(&p.metadata);
        let Some(index) = self.by_label.get_mut(&ns) else {
            return;
        };
        for (k, v) in p.metadata.labels.iter().flatten() {
            let pair = (k.clone(), v.clone());
            if let Some(names) = index.get_mut(&pair) {
                names.remove(&name);
                if names.is_empty() {
                    index.remove(&pair);
                }
            }
        }
        if index.is_empty() {
            self.by_label.remove(&ns);
        }
    }

    /// The pods `svc` selects, in name order.
    fn pods_selected_by(&self, svc: &Service) -> Vec<Arc<Pod>> {
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        let (Some(pods), Some(index), Some(selector)) = (
            self.pods.get(ns),
            self.by_label.get(ns),
            svc.spec.as_ref().and_then(|s| s.selector.as_ref()),
        ) else {
            return Vec::new();
        };
        let mut rarest: Option<&BTreeSet<String>> = None;
        for (k, v) in selector {
            // A pair no pod carries: nothing matches.
            let Some(names) = index.get(&(k.clone(), v.clone())) else {
                return Vec::new();
            };
            if rarest.is_none_or(|r| names.len() < r.len()) {
                rarest = Some(names);
            }
        }
        rarest
            .into_iter()
            .flatten()
            .filter_map(|n| pods.get(n))
            .filter(|p| selector_matches(svc, p))
            .cloned()
            .collect()
    }

    /// Services in `namespace` whose selector picks `pod`.
    fn services_selecting(&self, pod: &Pod) -> Vec<Key> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        self.services
            .iter()
            .filter(|((sns, _), svc)| sns == ns && selector_matches(svc, pod))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn put_slice(&mut self, s: EndpointSlice) -> Option<Key> {
        let owner = slice_owner(&s)?;
        let name = s.metadata.name.clone().unwrap_or_default();
        let slices = self.slices.entry(owner.clone()).or_default();
        if slices
            .get(&name)
            .is_none_or(|cur| rv_of(&cur.metadata) <= rv_of(&s.metadata))
        {
            slices.insert(name, s);
        }
        Some(owner)
    }

    fn remove_slice(&mut self, owner: &Key, name: &str) {
        if let Some(m) = self.slices.get_mut(owner) {
            m.remove(name);
            if m.is_empty() {
                self.slices.remove(owner);
            }
        }
    }

    fn put_endpoints(&mut self, e: Endpoints) -> Key {
        let k = key_of(&e.metadata);
        if self
            .endpoints
            .get(&k)
            .is_none_or(|cur| rv_of(&cur.metadata) <= rv_of(&e.metadata))
        {
            self.endpoints.insert(k.clone(), e);
        }
        k
    }
}

fn decode<T: DeserializeOwned>(v: Value) -> Option<T> {
    serde_json::from_value(v).ok()
}

/// What one reconcile needs, copied out of the caches so the write runs without them.
struct Job {
    key: Key,
    service: Option<Service>,
    /// The pods the Service's selector picks.
    pods: Vec<Arc<Pod>>,
    slices: Vec<EndpointSlice>,
    endpoints: Option<Endpoints>,
}

/// What a reconcile wrote, to fold into the caches.
#[derive(Default)]
struct Written {
    slices: Vec<EndpointSlice>,
    deleted_slices: Vec<String>,
    endpoints: Option<Endpoints>,
    endpoints_deleted: bool,
    /// Lost a race or failed: look again.
    retry: bool,
    backoff: bool,
}

struct Kinds {
    slices: &'static dyn Kind,
    endpoints: &'static dyn Kind,
}

/// Runs until the server stops.
pub async fn controller(registry: Arc<Registry>) {
    let (Some(slices), Some(eps)) = (
        registry.kind_for(&ENDPOINT_SLICES),
        registry.kind_for(&ENDPOINTS),
    ) else {
        return;
    };
    let kinds = Arc::new(Kinds {
        slices,
        endpoints: eps,
    });
    let (tx, mut rx) = mpsc::channel(4096);
    let informers: Vec<_> = [
        (SERVICES.prefix(None), Source::Services),
        (PODS.prefix(None), Source::Pods),
        (ENDPOINT_SLICES.prefix(None), Source::Slices),
        (ENDPOINTS.prefix(None), Source::Endpoints),
    ]
    .into_iter()
    .map(|(prefix, source)| {
        tokio::spawn(informer::run(
            registry.store.clone(),
            prefix,
            source,
            tx.clone(),
        ))
    })
    .collect();
    drop(tx);

    let mut cache = Cache::default();
    let mut dirty: VecDeque<Key> = VecDeque::new();
    let mut is_dirty: HashSet<Key> = HashSet::new();
    let mut in_flight: HashSet<Key> = HashSet::new();
    let mut running: JoinSet<(Key, Written)> = JoinSet::new();
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<Key>();
    // Which informers have listed once: nothing is reconciled before all four have, or a
    // Service would be planned against slices not loaded yet.
    let mut synced = [false; 4];

    let mark = |k: Key, dirty: &mut VecDeque<Key>, is_dirty: &mut HashSet<Key>| {
        if is_dirty.insert(k.clone()) {
            dirty.push_back(k);
        }
    };

    loop {
        if synced.iter().all(|s| *s) {
            let mut deferred = Vec::new();
            while running.len() < WORKERS
                && let Some(k) = dirty.pop_front()
            {
                if in_flight.contains(&k) {
                    deferred.push(k);
                    continue;
                }
                is_dirty.remove(&k);
                let service = cache.services.get(&k).cloned();
                let pods = service
                    .as_ref()
                    .map(|svc| cache.pods_selected_by(svc))
                    .unwrap_or_default();
                let job = Job {
                    service,
                    pods,
                    slices: cache
                        .slices
                        .get(&k)
                        .map(|m| m.values().cloned().collect())
                        .unwrap_or_default(),
                    endpoints: cache.endpoints.get(&k).cloned(),
                    key: k.clone(),
                };
                in_flight.insert(k);
                let (registry, kinds) = (registry.clone(), kinds.clone());
                running.spawn(async move {
                    let key = job.key.clone();
                    let w = reconcile(&registry, &kinds, job).await;
                    (key, w)
                });
            }
            // Dirty again while being reconciled: keep it queued for afterwards.
            dirty.extend(deferred);
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some((source, update)) = msg else { break };
                apply_update(&mut cache, source, update, &mut synced, &mut |k| {
                    mark(k, &mut dirty, &mut is_dirty)
                });
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((key, w)) = done else { continue };
                in_flight.remove(&key);
                for s in w.slices {
                    cache.put_slice(s);
                }
                for name in &w.deleted_slices {
                    cache.remove_slice(&key, name);
                }
                if let Some(e) = w.endpoints {
                    cache.put_endpoints(e);
                }
                if w.endpoints_deleted {
                    cache.endpoints.remove(&key);
                }
                if w.backoff {
                    let tx = retry_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(BACKOFF).await;
                        let _ = tx.send(key);
                    });
                } else if w.retry {
                    mark(key, &mut dirty, &mut is_dirty);
                }
            }
            Some(k) = retry_rx.recv() => mark(k, &mut dirty, &mut is_dirty),
        }
    }
    for i in informers {
        i.abort();
    }
}

fn apply_update(
    cache: &mut Cache,
    source: Source,
    update: Update,
    synced: &mut [bool; 4],
    mark: &mut impl FnMut(Key),
) {
    match (source, update) {
        (Source::Services, Update::Relisted { objects, .. }) => {
            synced[0] = true;
            let fresh: HashMap<Key, Service> = objects
                .into_iter()
                .filter_map(decode::<Service>)
                .map(|s| (key_of(&s.metadata), s))
                .collect();
            for k in cache.services.keys().chain(fresh.keys()) {
                mark(k.clone());
            }
            cache.services = fresh;
        }
        (Source::Services, Update::Put { new, .. }) => {
            if let Some(s) = decode::<Service>(new) {
                let k = key_of(&s.metadata);
                cache.services.insert(k.clone(), s);
                mark(k);
            }
        }
        (Source::Services, Update::Deleted { old }) => {
            if let Some(s) = decode::<Service>(old) {
                let k = key_of(&s.metadata);
                cache.services.remove(&k);
                mark(k);
            }
        }
        (Source::Pods, Update::Relisted { objects, .. }) => {
            synced[1] = true;
            cache.pods.clear();
            cache.by_label.clear();
            for p in objects.into_iter().filter_map(decode::<Pod>) {
                cache.put_pod(p);
            }
            for k in cache.services.keys() {
                mark(k.clone());
            }
        }
        (Source::Pods, Update::Put { new, old }) => {
            let Some(p) = decode::<Pod>(new) else { return };
            let mut affected = cache.services_selecting(&p);
            let (ns, name) = key_of(&p.metadata);
            // The cached pod is what this controller last saw; decoding `old` only when the
            // cache doesn't have it.
            let cached = cache.pods.get(&ns).and_then(|m| m.get(&name)).cloned();
            match cached {
                Some(o) => affected.extend(cache.services_selecting(&o)),
                None => {
                    if let Some(o) = old.and_then(decode::<Pod>) {
                        affected.extend(cache.services_selecting(&o));
                    }
                }
            }
            cache.put_pod(p);
            for k in affected {
                mark(k);
            }
        }
        (Source::Pods, Update::Deleted { old }) => {
            let Some(p) = decode::<Pod>(old) else { return };
            let (ns, name) = key_of(&p.metadata);
            cache.remove_pod(&ns, &name);
            for k in cache.services_selecting(&p) {
                mark(k);
            }
        }
        (Source::Slices, Update::Relisted { objects, .. }) => {
            synced[2] = true;
            let old: Vec<Key> = cache.slices.keys().cloned().collect();
            cache.slices.clear();
            for s in objects.into_iter().filter_map(decode::<EndpointSlice>) {
                if let Some(k) = cache.put_slice(s) {
                    mark(k);
                }
            }
            for k in old {
                mark(k);
            }
        }
        (Source::Slices, Update::Put { new, .. }) => {
            if let Some(k) = decode::<EndpointSlice>(new).and_then(|s| cache.put_slice(s)) {
                mark(k);
            }
        }
        (Source::Slices, Update::Deleted { old }) => {
            if let Some(s) = decode::<EndpointSlice>(old)
                && let Some(k) = slice_owner(&s)
            {
                let name = s.metadata.name.clone().unwrap_or_default();
                cache.remove_slice(&k, &name);
                mark(k);
            }
        }
        (Source::Endpoints, Update::Relisted { objects, .. }) => {
            synced[3] = true;
            cache.endpoints.clear();
            for e in objects.into_iter().filter_map(decode::<Endpoints>) {
                let k = cache.put_endpoints(e);
                mark(k);
            }
        }
        (Source::Endpoints, Update::Put { new, .. }) => {
            if let Some(e) = decode::<Endpoints>(new) {
                let k = cache.put_endpoints(e);
                mark(k);
            }
        }
        (Source::Endpoints, Update::Deleted { old }) => {
            if let Some(e) = decode::<Endpoints>(old) {
                let k = key_of(&e.metadata);
                cache.endpoints.remove(&k);
                mark(k);
            }
        }
    }
}

fn opts(manager: &str) -> WriteOptions {
    WriteOptions {
        dry_run: false,
        field_manager: manager.into(),
        field_validation: FieldValidation::Strict,
        force: false,
    }
}

fn body<T: Serialize>(obj: &T) -> Vec<u8> {
    serde_json::to_vec(obj).unwrap_or_default()
}

/// Folds a write's error into what happens next: a lost race or a vanished object is looked
/// at again at once, anything else after a pause.
fn failed(w: &mut Written, what: &str, key: &Key, e: &ApiError) {
    match e.code {
        404 | 409 => w.retry = true,
        _ => {
            tracing::warn!(namespace = %key.0, service = %key.1, error = %e, "{what} failed");
            w.backoff = true;
        }
    }
}

async fn reconcile(registry: &Registry, kinds: &Kinds, job: Job) -> Written {
    let mut w = Written::default();
    let key = &job.key;
    let ns = key.0.as_str();

    let Some(svc) = job.service else {
        // The Service is gone: so are its slices and its Endpoints.
        for s in &job.slices {
            let name = s.metadata.name.clone().unwrap_or_default();
            let t = Target {
                kind: kinds.slices,
                namespace: Some(ns),
                name: &name,
                status: false,
            };
            match registry.delete(t, b"", false).await {
                Ok(_) => w.deleted_slices.push(name),
                Err(e) if e.code == 404 => w.deleted_slices.push(name),
                Err(e) => failed(&mut w, "deleting an EndpointSlice", key, &e),
            }
        }
        if job.endpoints.is_some() {
            let t = Target {
                kind: kinds.endpoints,
                namespace: Some(ns),
                name: &key.1,
                status: false,
            };
            match registry.delete(t, b"", false).await {
                Ok(_) => w.endpoints_deleted = true,
                Err(e) if e.code == 404 => w.endpoints_deleted = true,
                Err(e) => failed(&mut w, "deleting Endpoints", key, &e),
            }
        }
        return w;
    };

    let pods: Vec<&Pod> = job.pods.iter().map(|p| &**p).collect();
    let p = plan(&svc, &pods, &job.slices);
    let mut writes = Vec::new();
    for s in &p.create {
        writes.push(async {
            registry
                .create(
                    kinds.slices,
                    Some(ns),
                    &body(s),
                    BodyFormat::Json,
                    &opts(SLICE_MANAGER),
                )
                .await
        });
    }
    for r in futures_util::future::join_all(writes).await {
        match r {
            Ok(o) => {
                if let Some(s) = decode::<EndpointSlice>(o.object) {
                    w.slices.push(s);
                }
            }
            Err(e) => failed(&mut w, "creating an EndpointSlice", key, &e),
        }
    }
    let mut updates = Vec::new();
    for s in &p.update {
        let name = s.metadata.name.clone().unwrap_or_default();
        updates.push(async move {
            let t = Target {
                kind: kinds.slices,
                namespace: Some(ns),
                name: &name,
                status: false,
            };
            registry
                .update(t, &body(s), BodyFormat::Json, &opts(SLICE_MANAGER))
                .await
        });
    }
    for r in futures_util::future::join_all(updates).await {
        match r {
            Ok(o) => {
                if let Some(s) = decode::<EndpointSlice>(o.object) {
                    w.slices.push(s);
                }
            }
            Err(e) => failed(&mut w, "updating an EndpointSlice", key, &e),
        }
    }
    for name in &p.delete {
        let t = Target {
            kind: kinds.slices,
            namespace: Some(ns),
            name,
            status: false,
        };
        match registry.delete(t, b"", false).await {
            Ok(_) => w.deleted_slices.push(name.clone()),
            Err(e) if e.code == 404 => w.deleted_slices.push(name.clone()),
            Err(e) => failed(&mut w, "deleting an EndpointSlice", key, &e),
        }
    }

    // The legacy Endpoints object, primary family only.
    if let Some(desired) = endpoints(&svc, &pods) {
        let t = Target {
            kind: kinds.endpoints,
            namespace: Some(ns),
            name: &key.1,
            status: false,
        };
        let result = match &job.endpoints {
            None => Some(
                registry
                    .create(
                        kinds.endpoints,
                        Some(ns),
                        &body(&desired),
                        BodyFormat::Json,
                        &opts(ENDPOINTS_MANAGER),
                    )
                    .await,
            ),
            Some(cur) if endpoints_changed(cur, &desired) => {
                let mut next = desired;
                next.metadata.resource_version = cur.metadata.resource_version.clone();
                next.metadata.uid = cur.metadata.uid.clone();
                Some(
                    registry
                        .update(t, &body(&next), BodyFormat::Json, &opts(ENDPOINTS_MANAGER))
                        .await,
                )
            }
            Some(_) => None,
        };
        match result {
            Some(Ok(o)) => w.endpoints = decode::<Endpoints>(o.object),
            Some(Err(e)) if e.code == 409 && job.endpoints.is_none() => {
                // Created meanwhile (by the informer-lagging cache's view): look again.
                w.retry = true;
            }
            Some(Err(e)) => failed(&mut w, "writing Endpoints", key, &e),
            None => {}
        }
    }
    w
}
