//! Node podCIDR allocation (kube-controller-manager's range allocator), its registry hooks
//! and its repair.
//!
//! The store is the source of truth, as for ClusterIPs: every node range cut from a cluster
//! CIDR that a node holds is a key `/registry/allocations/podcidrs/<cidr>`, created (only if
//! absent) in the same transaction as the Node write that sets `spec.podCIDRs`, and deleted in
//! the transaction that deletes the Node. No range can be handed to two nodes, even by two
//! servers racing, and a crash can't lose or leak one. The [`RangeAllocator`] in memory is a
//! cache used to pick candidates fast and round-robin, as Kubernetes' cidrset does.
//!
//! The controller watches Nodes: a Node without `spec.podCIDRs` gets one range per cluster
//! CIDR, in `--cluster-cidr` order, by a merge patch of `spec.podCIDR` and `spec.podCIDRs`
//! (what kube-controller-manager writes). When a family is exhausted the Node gets a
//! `CIDRNotAvailable` Warning event and waits until a range is released.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duostack_core::alloc::cidrset::CidrSetStats;
use duostack_core::config::NetworkConfig;
use duostack_core::error::{ApiError, FieldError};
use duostack_core::kinds::Kind;
use duostack_core::net::{PodCidr, parse_cidr_sloppy};
use duostack_core::node_ipam::{NodeIpamError, RangeAllocator};
use duostack_core::resource::NODES;
use duostack_store::{Compare, Op, Txn};
use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use crate::events::{Involved, record};
use crate::hooks::{HookContext, Pending, RestHooks};
use crate::informer::{self, Update};
use crate::registry::{Registry, Target, store_error};
use crate::repair::{Reported, range_at};
use crate::request::{FieldValidation, PatchType, WriteOptions};

pub const POD_CIDR_PREFIX: &str = "/registry/allocations/podcidrs/";
/// Kubernetes' event source for the range allocator.
const COMPONENT: &str = "cidrAllocator";
const REPAIR_COMPONENT: &str = "podcidr-repair-controller";
const FIELD_MANAGER: &str = "duostack-node-ipam";
/// Allocations in flight at once: enough for the store's group commit to batch their writes.
const WORKERS: usize = 32;
/// How often nodes waiting for a range are retried without a release waking them.
const WAITING_RESYNC: Duration = Duration::from_secs(10);
/// Attempts at one node before it is retried later.
const ATTEMPTS: usize = 8;

pub fn pod_cidr_key(block: &IpNet) -> String {
    format!("{POD_CIDR_PREFIX}{block}")
}

/// What the controller needs of a Node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub uid: String,
    pub pod_cidrs: Vec<String>,
    pub deleting: bool,
}

impl NodeInfo {
    pub fn of(v: &Value) -> Self {
        let meta = v.get("metadata");
        let s = |f: &str| {
            meta.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let spec = v.get("spec");
        let mut pod_cidrs: Vec<String> = spec
            .and_then(|s| s.get("podCIDRs"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if pod_cidrs.is_empty()
            && let Some(single) = spec
                .and_then(|s| s.get("podCIDR"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        {
            pod_cidrs.push(single.to_owned());
        }
        Self {
            name: s("name"),
            uid: s("uid"),
            pod_cidrs,
            deleting: meta
                .and_then(|m| m.get("deletionTimestamp"))
                .is_some_and(|v| !v.is_null()),
        }
    }
}

struct State {
    alloc: RangeAllocator,
    /// The node holding each keyed range: memory's copy of the allocation keys. An empty
    /// name means "taken, owner unknown" (learned from a refused transaction).
    owners: HashMap<IpNet, String>,
    /// Nodes already told that no range is left, so waiting produces one event, not many.
    told_exhausted: HashSet<String>,
}

/// The node range allocator of one server.
pub struct NodeIpam {
    state: Mutex<State>,
    /// Woken when a range is released, so nodes waiting for one are retried.
    released: Notify,
}

impl NodeIpam {
    /// An allocator for the configured cluster CIDRs, with the service ranges inside them
    /// held back. Fails only on a configuration `NetworkConfig::from_flags` already refuses.
    pub fn new(network: &NetworkConfig) -> Result<Self, NodeIpamError> {
        Ok(Self {
            state: Mutex::new(State {
                alloc: Self::fresh(network)?,
                owners: HashMap::new(),
                told_exhausted: HashSet::new(),
            }),
            released: Notify::new(),
        })
    }

    fn fresh(network: &NetworkConfig) -> Result<RangeAllocator, NodeIpamError> {
        let cluster: Vec<_> = network
            .cluster_ranges
            .iter()
            .map(|r| (r.cidr, r.node_prefix))
            .collect();
        let (alloc, warnings) = RangeAllocator::new(&cluster, &network.service_cidrs)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(alloc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ranges of `cidrs` that are exactly one node range of a cluster CIDR: those get
    /// allocation keys. Other podCIDRs (outside the cluster CIDRs, or of another size) are
    /// accepted as Kubernetes accepts them, and only occupied in memory.
    fn keyed(st: &State, cidrs: &[String]) -> Vec<(usize, IpNet)> {
        cidrs
            .iter()
            .enumerate()
            .filter_map(|(i, text)| {
                let net = parse_cidr_sloppy(text)?;
                st.alloc
                    .sets()
                    .iter()
                    .any(|s| {
                        s.node_prefix() == net.prefix_len() && s.cluster().net().contains(&net)
                    })
                    .then_some((i, net))
            })
            .collect()
    }

    fn occupy(&self, info: &NodeInfo) {
        if info.pod_cidrs.is_empty() {
            return;
        }
        let mut st = self.lock();
        if let Err(e) = st.alloc.occupy_node(&info.name, &info.pod_cidrs) {
            tracing::warn!(node = %info.name, error = %e, "podCIDRs not marked as used");
        }
        st.told_exhausted.remove(&info.name);
    }

    fn release(&self, info: &NodeInfo) {
        if info.pod_cidrs.is_empty() {
            return;
        }
        {
            let mut st = self.lock();
            for e in st.alloc.release_node(&info.name, &info.pod_cidrs) {
                tracing::warn!(node = %info.name, error = %e, "podCIDRs not released");
            }
            st.told_exhausted.remove(&info.name);
        }
        self.released.notify_one();
    }

    /// Gives back ranges picked for `node` that did not reach it, except those the store
    /// showed to be someone else's.
    fn give_back(&self, blocks: &[PodCidr], node: &str) {
        let mut st = self.lock();
        for b in blocks {
            let net = b.net();
            if st.owners.get(&net).is_none_or(|o| o == node)
                && let Err(e) = st.alloc.release_cidr(&net)
            {
                tracing::warn!(podCIDR = %net, error = %e, "picked podCIDR not given back");
            }
        }
    }

    /// Replaces memory with the given nodes and keys.
    fn rebuild(&self, network: &NetworkConfig, nodes: &[NodeInfo], owners: HashMap<IpNet, String>) {
        let Ok(mut alloc) = Self::fresh(network) else {
            return;
        };
        for n in nodes {
            if let Err(e) = alloc.occupy_node(&n.name, &n.pod_cidrs) {
                tracing::warn!(node = %n.name, error = %e, "podCIDRs not marked as used");
            }
        }
        let mut st = self.lock();
        st.alloc = alloc;
        st.owners = owners;
    }

    /// `(cluster CIDR, stats)` per set, in `--cluster-cidr` order.
    pub fn stats(&self) -> Vec<(String, CidrSetStats)> {
        let st = self.lock();
        st.alloc
            .sets()
            .iter()
            .map(|s| (s.cluster().to_string(), s.stats()))
            .collect()
    }

    /// Prometheus text for the node range sets, with Kubernetes' metric names.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let stats = self.stats();
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, value: &dyn Fn(&CidrSetStats) -> String| {
                let _ = writeln!(out, "# HELP node_ipam_controller_{name} {help}");
                let _ = writeln!(out, "# TYPE node_ipam_controller_{name} {kind}");
                for (cidr, s) in &stats {
                    let _ = writeln!(
                        out,
                        "node_ipam_controller_{name}{{clusterCIDR=\"{cidr}\"}} {}",
                        value(s)
                    );
                }
            };
        family(
            "cidrset_usage_cidrs",
            "gauge",
            "Gauge measuring percentage of allocated CIDRs.",
            &|s| {
                format!(
                    "{}",
                    if s.max == 0 {
                        0.0
                    } else {
                        s.used as f64 / s.max as f64
                    }
                )
            },
        );
        family(
            "cidrset_allocated_cidrs",
            "gauge",
            "Node ranges in use.",
            &|s| s.used.to_string(),
        );
        family(
            "cirdset_max_cidrs",
            "gauge",
            "Maximum number of CIDRs that can be allocated.",
            &|s| s.max.to_string(),
        );
        family(
            "cidrset_cidrs_allocations_total",
            "counter",
            "Counter measuring total number of CIDR allocations.",
            &|s| s.allocations.to_string(),
        );
        family(
            "cidrset_cidrs_releases_total",
            "counter",
            "Counter measuring total number of CIDR releases.",
            &|s| s.releases.to_string(),
        );
        out
    }
}

fn owner_value(info: &NodeInfo) -> Vec<u8> {
    serde_json::to_vec(&json!({"kind": "Node", "name": info.name, "uid": info.uid}))
        .unwrap_or_default()
}

fn owner_name(value: &[u8]) -> String {
    serde_json::from_slice::<Value>(value)
        .ok()
        .and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The Node registry's hooks: allocation keys for the ranges a Node is given.
pub struct NodeHooks {
    pub ipam: Arc<NodeIpam>,
}

impl NodeHooks {
    fn reserve(&self, obj: &Value, dry_run: bool) -> Result<Pending, ApiError> {
        let info = NodeInfo::of(obj);
        let keyed = {
            let st = self.ipam.lock();
            let keyed = NodeIpam::keyed(&st, &info.pod_cidrs);
            for (i, net) in &keyed {
                if st.owners.get(net).is_some_and(|o| *o != info.name) {
                    return Err(ApiError::invalid(
                        NODES.group_kind(),
                        &info.name,
                        &[FieldError::invalid(
                            format!("spec.podCIDRs[{i}]"),
                            info.pod_cidrs[*i].as_str(),
                            "provided podCIDR is already allocated",
                        )],
                    ));
                }
            }
            keyed
        };
        if dry_run || keyed.is_empty() {
            return Ok(Pending::default());
        }
        let value = owner_value(&info);
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for (_, net) in &keyed {
            let key = pod_cidr_key(net);
            compares.push(Compare::ModRevision {
                key: key.clone(),
                revision: 0,
            });
            ops.push(Op::Put {
                key,
                value: value.clone().into(),
            });
        }
        let ipam = self.ipam.clone();
        Ok(Pending::new(
            compares,
            ops,
            move || {
                {
                    let mut st = ipam.lock();
                    for (_, net) in &keyed {
                        st.owners.insert(*net, info.name.clone());
                    }
                }
                ipam.occupy(&info);
            },
            || {},
        ))
    }
}

impl RestHooks for NodeHooks {
    fn begin_create(&self, obj: &mut Value, ctx: &HookContext<'_>) -> Result<Pending, ApiError> {
        self.reserve(obj, ctx.dry_run)
    }

    fn begin_update(
        &self,
        new: &mut Value,
        old: &Value,
        ctx: &HookContext<'_>,
    ) -> Result<Pending, ApiError> {
        // Once set, podCIDRs can't change (validation says so); only "" → valid reserves.
        if !NodeInfo::of(old).pod_cidrs.is_empty() {
            return Ok(Pending::default());
        }
        self.reserve(new, ctx.dry_run)
    }

    fn begin_delete(&self, old: &Value, dry_run: bool) -> Pending {
        let info = NodeInfo::of(old);
        if dry_run {
            return Pending::default();
        }
        let keyed: Vec<IpNet> = {
            let st = self.ipam.lock();
            NodeIpam::keyed(&st, &info.pod_cidrs)
                .into_iter()
                .map(|(_, n)| n)
                .filter(|n| st.owners.get(n).is_none_or(|o| *o == info.name))
                .collect()
        };
        let ops = keyed
            .iter()
            .map(|n| Op::Delete {
                key: pod_cidr_key(n),
            })
            .collect();
        let ipam = self.ipam.clone();
        Pending::new(
            Vec::new(),
            ops,
            move || {
                {
                    let mut st = ipam.lock();
                    for n in &keyed {
                        st.owners.remove(n);
                    }
                }
                ipam.release(&info);
            },
            || {},
        )
    }

    fn learn_taken(&self, key: &str) {
        let Some(net) = key
            .strip_prefix(POD_CIDR_PREFIX)
            .and_then(parse_cidr_sloppy)
        else {
            return;
        };
        let mut st = self.ipam.lock();
        st.owners.entry(net).or_default();
        if let Err(e) = st.alloc.occupy_cidr(&net) {
            tracing::warn!(podCIDR = %net, error = %e, "taken podCIDR not marked as used");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The controller

fn enqueue(name: &str, queue: &mut VecDeque<String>, queued: &mut HashSet<String>) {
    if queued.insert(name.to_owned()) {
        queue.push_back(name.to_owned());
    }
}

enum Assigned {
    /// The node has its ranges (or is gone).
    Done,
    /// A family is exhausted: wait for a release.
    Exhausted,
    /// Something else failed: try again later.
    Retry,
}

/// Allocates ranges to Nodes that have none, until the server stops.
pub async fn controller(registry: Arc<Registry>, ipam: Arc<NodeIpam>) {
    let Some(kind) = registry.kind_for(&NODES) else {
        return;
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let informer = tokio::spawn(informer::run(
        registry.store.clone(),
        NODES.prefix(None),
        (),
        tx,
    ));
    let mut nodes: HashMap<String, NodeInfo> = HashMap::new();
    let mut queue: VecDeque<String> = VecDeque::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut waiting: HashSet<String> = HashSet::new();
    let mut running: JoinSet<(String, Assigned)> = JoinSet::new();
    let mut resync = tokio::time::interval(WAITING_RESYNC);

    loop {
        while running.len() < WORKERS
            && let Some(name) = queue.pop_front()
        {
            let (registry, ipam) = (registry.clone(), ipam.clone());
            running.spawn(async move {
                let r = assign(&registry, kind, &ipam, &name).await;
                (name, r)
            });
        }
        tokio::select! {
            msg = rx.recv() => {
                let Some(((), update)) = msg else { break };
                match update {
                    Update::Relisted { objects, .. } => {
                        let fresh: HashMap<String, NodeInfo> = objects
                            .iter()
                            .map(NodeInfo::of)
                            .map(|n| (n.name.clone(), n))
                            .collect();
                        for (name, old) in &nodes {
                            if fresh.get(name).is_none_or(|n| n.uid != old.uid) {
                                ipam.release(old);
                            }
                        }
                        for n in fresh.values() {
                            ipam.occupy(n);
                            if n.pod_cidrs.is_empty() && !n.deleting {
                                enqueue(&n.name, &mut queue, &mut queued);
                            }
                        }
                        nodes = fresh;
                    }
                    Update::Put { new, .. } => {
                        let n = NodeInfo::of(&new);
                        if n.pod_cidrs.is_empty() {
                            if !n.deleting {
                                enqueue(&n.name, &mut queue, &mut queued);
                            }
                        } else {
                            ipam.occupy(&n);
                            waiting.remove(&n.name);
                        }
                        nodes.insert(n.name.clone(), n);
                    }
                    Update::Deleted { old } => {
                        let n = NodeInfo::of(&old);
                        nodes.remove(&n.name);
                        waiting.remove(&n.name);
                        ipam.release(&n);
                    }
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((name, result)) = done else { continue };
                queued.remove(&name);
                match result {
                    Assigned::Done => {}
                    Assigned::Exhausted => {
                        waiting.insert(name);
                    }
                    Assigned::Retry => {
                        waiting.insert(name);
                    }
                }
            }
            _ = ipam.released.notified() => {
                for name in waiting.drain() {
                    enqueue(&name, &mut queue, &mut queued);
                }
            }
            _ = resync.tick() => {
                for name in waiting.drain() {
                    enqueue(&name, &mut queue, &mut queued);
                }
            }
        }
    }
    informer.abort();
}

/// Gives one node its ranges.
async fn assign(
    registry: &Registry,
    kind: &'static dyn Kind,
    ipam: &NodeIpam,
    name: &str,
) -> Assigned {
    let t = Target {
        kind,
        namespace: None,
        name,
        status: false,
    };
    let opts = WriteOptions {
        dry_run: false,
        field_manager: FIELD_MANAGER.into(),
        field_validation: FieldValidation::Strict,
        force: false,
    };
    for _ in 0..ATTEMPTS {
        let node = match registry.get(t).await {
            Ok(v) => v,
            Err(e) if e.code == 404 => return Assigned::Done,
            Err(e) => {
                tracing::warn!(node = name, error = %e, "reading node for podCIDR allocation");
                return Assigned::Retry;
            }
        };
        let info = NodeInfo::of(&node);
        if info.deleting {
            return Assigned::Done;
        }
        if !info.pod_cidrs.is_empty() {
            ipam.occupy(&info);
            return Assigned::Done;
        }
        let picked = {
            let mut st = ipam.lock();
            match st.alloc.allocate_node() {
                Ok(b) => Ok(b),
                Err(e) => {
                    let first = st.told_exhausted.insert(info.name.clone());
                    Err((e, first))
                }
            }
        };
        let blocks = match picked {
            Ok(b) => b,
            Err((e, first)) => {
                tracing::warn!(node = name, error = %e, "no podCIDR for node");
                if first && e.is_exhausted() {
                    record(
                        registry,
                        COMPONENT,
                        Involved {
                            kind: "Node",
                            api_version: "v1",
                            namespace: "",
                            name,
                            uid: &info.uid,
                        },
                        true,
                        "CIDRNotAvailable",
                        &format!("Node {name} status is now: CIDRNotAvailable"),
                    )
                    .await;
                }
                return Assigned::Exhausted;
            }
        };
        let strings: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
        let patch = json!({"spec": {"podCIDR": strings[0], "podCIDRs": strings}});
        let body = serde_json::to_vec(&patch).unwrap_or_default();
        match registry.patch(t, &body, PatchType::Merge, &opts).await {
            Ok(_) => {
                tracing::debug!(node = name, podCIDRs = ?strings, "podCIDRs allocated");
                return Assigned::Done;
            }
            Err(e) => {
                ipam.give_back(&blocks, name);
                match e.code {
                    404 => return Assigned::Done,
                    // Conflict, or a range the store showed taken: look again and pick anew.
                    409 | 422 => continue,
                    _ => {
                        tracing::warn!(node = name, error = %e, "podCIDR assignment failed");
                        record(
                            registry,
                            COMPONENT,
                            Involved {
                                kind: "Node",
                                api_version: "v1",
                                namespace: "",
                                name,
                                uid: &info.uid,
                            },
                            true,
                            "CIDRAssignmentFailed",
                            &format!("Node {name} status is now: CIDRAssignmentFailed"),
                        )
                        .await;
                        return Assigned::Retry;
                    }
                }
            }
        }
    }
    Assigned::Retry
}

// ---------------------------------------------------------------------------------------------
// Repair

/// What one podCIDR repair pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodCidrReport {
    /// Ranges two nodes hold (reported on the later node).
    pub duplicates: Vec<String>,
    /// Ranges a node holds without a key (the key was written).
    pub not_allocated: Vec<String>,
    /// Keys no node holds (deleted).
    pub leaked: Vec<String>,
}

/// Compares the ranges Nodes hold with the allocation keys at one revision and fixes what
/// differs. With `rebuild`, memory is replaced by what the store holds.
pub async fn repair(
    registry: &Registry,
    ipam: &NodeIpam,
    network: &NetworkConfig,
    reported: &Reported,
    rebuild: bool,
) -> Result<PodCidrReport, ApiError> {
    let mut report = PodCidrReport::default();
    let (node_kvs, rev) = range_at(registry, &NODES.prefix(None), None).await?;
    let (keys, _) = range_at(registry, POD_CIDR_PREFIX, Some(rev)).await?;

    // Earliest node first, so it keeps a range two nodes claim.
    let mut nodes: Vec<(i64, NodeInfo)> = node_kvs
        .iter()
        .filter_map(|kv| {
            let v: Value = serde_json::from_slice(&kv.value).ok()?;
            Some((kv.create_revision, NodeInfo::of(&v)))
        })
        .collect();
    nodes.sort_by_key(|(rev, _)| *rev);
    let key_owners: BTreeMap<IpNet, (String, i64)> = keys
        .iter()
        .filter_map(|kv| {
            let net = parse_cidr_sloppy(kv.key.strip_prefix(POD_CIDR_PREFIX)?)?;
            Some((net, (owner_name(&kv.value), kv.mod_revision)))
        })
        .collect();

    let mut holders: HashMap<IpNet, NodeInfo> = HashMap::new();
    let mut duplicates: Vec<(NodeInfo, IpNet, String)> = Vec::new();
    {
        let st = ipam.lock();
        for (_, n) in &nodes {
            for (_, net) in NodeIpam::keyed(&st, &n.pod_cidrs) {
                match holders.get(&net) {
                    Some(first) if first.name != n.name => {
                        duplicates.push((n.clone(), net, first.name.clone()));
                    }
                    Some(_) => {}
                    None => {
                        holders.insert(net, n.clone());
                    }
                }
            }
        }
    }
    for (n, net, first) in duplicates {
        report.duplicates.push(net.to_string());
        if reported.first("PodCIDRAlreadyAllocated", &n.uid, &net.to_string()) {
            record(
                registry,
                REPAIR_COMPONENT,
                Involved {
                    kind: "Node",
                    api_version: "v1",
                    namespace: "",
                    name: &n.name,
                    uid: &n.uid,
                },
                true,
                "PodCIDRAlreadyAllocated",
                &format!(
                    "podCIDR {net} of node {} is also held by node {first}; recreate one of the nodes",
                    n.name
                ),
            )
            .await;
        }
    }

    // Keys for held ranges that lack one; keys of ranges nobody holds go.
    let mut txn_ops = Vec::new();
    for (net, holder) in &holders {
        if !key_owners.contains_key(net) {
            report.not_allocated.push(net.to_string());
            txn_ops.push(
                Txn::new()
                    .absent(pod_cidr_key(net))
                    .put(pod_cidr_key(net), owner_value(holder)),
            );
        }
    }
    for (net, (owner, mod_rev)) in &key_owners {
        if !holders.contains_key(net) {
            report.leaked.push(net.to_string());
            tracing::warn!(podCIDR = %net, owner, "leaked podCIDR allocation released");
            txn_ops.push(
                Txn::new()
                    .unchanged_since(pod_cidr_key(net), *mod_rev)
                    .delete(pod_cidr_key(net)),
            );
        }
    }
    for txn in txn_ops {
        registry.store.txn(txn).await.map_err(store_error)?;
    }
    for n in &report.not_allocated {
        tracing::warn!(podCIDR = %n, "podCIDR held by a node had no allocation key; key written");
    }

    if rebuild {
        let infos: Vec<NodeInfo> = nodes.into_iter().map(|(_, n)| n).collect();
        let owners = holders.into_iter().map(|(k, n)| (k, n.name)).collect();
        ipam.rebuild(network, &infos, owners);
    }
    Ok(report)
}
