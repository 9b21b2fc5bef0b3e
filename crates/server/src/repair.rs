//! The allocation repair pass (Kubernetes' ipallocator and portallocator repair controllers).
//!
//! Reads every Service and every allocation key at one store revision, so the two are
//! consistent with each other (they are written in the same transactions), then:
//! - an address or port two Services claim is reported on the later claimant
//!   (`ClusterIPAlreadyAllocated`, `PortAlreadyAllocated`);
//! - one a Service holds without a key gets its key (`ClusterIPNotAllocated`,
//!   `PortNotAllocated`);
//! - one outside the configured ranges is reported (`ClusterIPOutOfRange`, `PortOutOfRange`);
//! - a key no Service holds is released (`ClusterIPLeaked`, `PortLeaked`).
//!
//! Then it compares the in-memory allocators with the keys, so that a reservation a request
//! left behind in memory (a leak the store never saw) is freed within one pass; at start this
//! fills memory from the store.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use duostack_core::error::ApiError;
use duostack_core::k8s_openapi::api::core::v1::Service;
use duostack_core::net::{normalize, parse_ip_sloppy};
use duostack_core::resource::SERVICES;
use duostack_store::{KeyValue, RangeRequest, Txn};
use serde_json::Value;

use crate::allocations::{
    CLUSTER_IP_PREFIX, NODE_PORT_PREFIX, ServiceAllocations, ip_key, port_key,
};
use crate::events::{Involved, record};
use crate::registry::{Registry, store_error};

const COMPONENT: &str = "ipallocator-repair-controller";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Owner {
    namespace: String,
    name: String,
    uid: String,
}

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub duplicates: Vec<String>,
    pub not_allocated: Vec<String>,
    pub out_of_range: Vec<String>,
    pub leaked: Vec<String>,
    /// Values memory held without a key (leaked reservations), freed.
    pub memory_freed: Vec<String>,
    /// Keys memory had as free, marked used.
    pub memory_marked: Vec<String>,
}

/// Remembers what was already reported, so a persisting problem is one event, not one per pass.
#[derive(Default)]
pub struct Reported(Mutex<HashSet<(String, String, String)>>);

impl Reported {
    /// Whether this is the first report of `what` for `reason` on the object `uid`.
    pub(crate) fn first(&self, reason: &str, uid: &str, what: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert((
            reason.into(),
            uid.into(),
            what.into(),
        ))
    }
}

/// Everything under `prefix`, at `revision` (or the newest), with the revision read.
pub(crate) async fn range_at(
    registry: &Registry,
    prefix: &str,
    revision: Option<i64>,
) -> Result<(Vec<KeyValue>, i64), ApiError> {
    let r = registry
        .store
        .range(RangeRequest {
            prefix: prefix.to_owned(),
            revision,
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
    Ok((r.kvs, r.revision))
}

async fn event(
    registry: &Registry,
    reported: &Reported,
    owner: &Owner,
    reason: &str,
    what: &str,
    message: String,
) {
    if !reported.first(reason, &owner.uid, what) {
        return;
    }
    record(
        registry,
        COMPONENT,
        Involved {
            kind: "Service",
            api_version: "v1",
            namespace: &owner.namespace,
            name: &owner.name,
            uid: &owner.uid,
        },
        true,
        reason,
        &message,
    )
    .await;
}

fn owner_of(value: &[u8]) -> Owner {
    let v: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    let s = |f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    Owner {
        namespace: s("namespace"),
        name: s("name"),
        uid: s("uid"),
    }
}

/// One repair pass. Memory is then made to match the store's keys (see
/// [`ServiceAllocations::finish_reconcile`]); `rebuild` says that memory starts empty (the
/// pass at start), so filling it is not reported.
pub async fn repair(
    registry: &Registry,
    alloc: &ServiceAllocations,
    reported: &Reported,
    rebuild: bool,
) -> Result<RepairReport, ApiError> {
    let mut report = RepairReport::default();
    let (services, rev) = range_at(registry, &SERVICES.prefix(None), None).await?;
    let (ip_keys, _) = range_at(registry, CLUSTER_IP_PREFIX, Some(rev)).await?;
    let (port_keys, _) = range_at(registry, NODE_PORT_PREFIX, Some(rev)).await?;

    // What the Services claim, in creation order so the earliest claimant keeps a duplicate.
    let mut svcs: Vec<(String, Owner, Service)> = Vec::new();
    for kv in &services {
        let Ok(svc) = serde_json::from_slice::<Service>(&kv.value) else {
            continue;
        };
        let m = &svc.metadata;
        let owner = Owner {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
        };
        let created = m
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        svcs.push((format!("{created}/{:020}", kv.create_revision), owner, svc));
    }
    svcs.sort_by(|a, b| a.0.cmp(&b.0));

    let mut ip_claims: BTreeMap<IpAddr, Vec<Owner>> = BTreeMap::new();
    let mut port_claims: BTreeMap<i32, Vec<Owner>> = BTreeMap::new();
    for (_, owner, svc) in &svcs {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() != Some("ExternalName") {
            for ip in spec.cluster_ips.iter().flatten() {
                if ip == "None" || ip.is_empty() {
                    continue;
                }
                let Some(addr) = parse_ip_sloppy(ip).map(normalize) else {
                    continue;
                };
                if !alloc.in_range(addr) {
                    report.out_of_range.push(ip.clone());
                    let cidrs: Vec<String> = alloc
                        .network
                        .service_cidrs
                        .iter()
                        .map(|c| c.to_string())
                        .collect();
                    event(
                        registry,
                        reported,
                        owner,
                        "ClusterIPOutOfRange",
                        ip,
                        format!(
                            "Cluster IP [{}]:{ip} is not within the configured Service CIDR(s) {}; please recreate service",
                            duostack_core::net::IpFamily::of(&addr),
                            cidrs.join(",")
                        ),
                    )
                    .await;
                    continue;
                }
                let claims = ip_claims.entry(addr).or_default();
                if !claims.contains(owner) {
                    claims.push(owner.clone());
                }
            }
        }
        let mut ports: Vec<i32> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.node_port.filter(|n| *n != 0))
            .collect();
        ports.extend(spec.health_check_node_port.filter(|n| *n != 0));
        ports.sort_unstable();
        ports.dedup();
        for p in ports {
            if !alloc.port_in_range(p) {
                report.out_of_range.push(p.to_string());
                event(
                    registry,
                    reported,
                    owner,
                    "PortOutOfRange",
                    &p.to_string(),
                    format!(
                        "Port {p} is not within the port range {}; please recreate service",
                        alloc.network.node_port_range
                    ),
                )
                .await;
                continue;
            }
            let claims = port_claims.entry(p).or_default();
            if !claims.contains(owner) {
                claims.push(owner.clone());
            }
        }
    }

    let ip_held: BTreeMap<IpAddr, (KeyValue, Owner)> = ip_keys
        .iter()
        .filter_map(|kv| {
            let ip = parse_ip_sloppy(kv.key.strip_prefix(CLUSTER_IP_PREFIX)?)?;
            Some((ip, (kv.clone(), owner_of(&kv.value))))
        })
        .collect();
    let port_held: BTreeMap<i32, (KeyValue, Owner)> = port_keys
        .iter()
        .filter_map(|kv| {
            let p = kv.key.strip_prefix(NODE_PORT_PREFIX)?.parse().ok()?;
            Some((p, (kv.clone(), owner_of(&kv.value))))
        })
        .collect();

    for (ip, claims) in &ip_claims {
        let keeper = ip_held
            .get(ip)
            .and_then(|(_, o)| claims.iter().find(|c| c.uid == o.uid))
            .unwrap_or(&claims[0]);
        for other in claims.iter().filter(|c| *c != keeper) {
            report.duplicates.push(ip.to_string());
            event(
                registry,
                reported,
                other,
                "ClusterIPAlreadyAllocated",
                &ip.to_string(),
                format!(
                    "Cluster IP [{}]:{ip} was assigned to multiple services ({}/{} holds it); please recreate service",
                    duostack_core::net::IpFamily::of(ip),
                    keeper.namespace,
                    keeper.name
                ),
            )
            .await;
        }
        if !ip_held.contains_key(ip) {
            report.not_allocated.push(ip.to_string());
            let value = serde_json::to_vec(&serde_json::json!({"kind": "Service", "namespace": keeper.namespace, "name": keeper.name, "uid": keeper.uid})).unwrap_or_default();
            let k = ip_key(*ip);
            registry
                .store
                .txn(Txn::new().absent(k.clone()).put(k.clone(), value))
                .await
                .map_err(store_error)?;
            alloc.mark_key(&k);
            event(
                registry,
                reported,
                keeper,
                "ClusterIPNotAllocated",
                &ip.to_string(),
                format!(
                    "Cluster IP [{}]:{ip} is not allocated; repairing",
                    duostack_core::net::IpFamily::of(ip)
                ),
            )
            .await;
        }
    }
    for (ip, (kv, o)) in &ip_held {
        if ip_claims.contains_key(ip) {
            continue;
        }
        report.leaked.push(ip.to_string());
        let resp = registry
            .store
            .txn(
                Txn::new()
                    .unchanged_since(kv.key.to_string(), kv.mod_revision)
                    .delete(kv.key.to_string()),
            )
            .await
            .map_err(store_error)?;
        if resp.succeeded {
            alloc.unmark_key(&kv.key);
            event(
                registry,
                reported,
                o,
                "ClusterIPLeaked",
                &ip.to_string(),
                format!(
                    "Cluster IP {ip} was marked allocated to {}/{}, which does not hold it; released",
                    o.namespace, o.name
                ),
            )
            .await;
        }
    }

    for (p, claims) in &port_claims {
        let keeper = port_held
            .get(p)
            .and_then(|(_, o)| claims.iter().find(|c| c.uid == o.uid))
            .unwrap_or(&claims[0]);
        for other in claims.iter().filter(|c| *c != keeper) {
            report.duplicates.push(p.to_string());
            event(
                registry,
                reported,
                other,
                "PortAlreadyAllocated",
                &p.to_string(),
                format!(
                    "Port {p} was assigned to multiple services ({}/{} holds it); please recreate service",
                    keeper.namespace, keeper.name
                ),
            )
            .await;
        }
        if !port_held.contains_key(p) {
            report.not_allocated.push(p.to_string());
            let value = serde_json::to_vec(&serde_json::json!({"kind": "Service", "namespace": keeper.namespace, "name": keeper.name, "uid": keeper.uid})).unwrap_or_default();
            let k = port_key(*p);
            registry
                .store
                .txn(Txn::new().absent(k.clone()).put(k.clone(), value))
                .await
                .map_err(store_error)?;
            alloc.mark_key(&k);
            event(
                registry,
                reported,
                keeper,
                "PortNotAllocated",
                &p.to_string(),
                format!("Port {p} is not allocated; repairing"),
            )
            .await;
        }
    }
    for (p, (kv, o)) in &port_held {
        if port_claims.contains_key(p) {
            continue;
        }
        report.leaked.push(p.to_string());
        let resp = registry
            .store
            .txn(
                Txn::new()
                    .unchanged_since(kv.key.to_string(), kv.mod_revision)
                    .delete(kv.key.to_string()),
            )
            .await
            .map_err(store_error)?;
        if resp.succeeded {
            alloc.unmark_key(&kv.key);
            event(
                registry,
                reported,
                o,
                "PortLeaked",
                &p.to_string(),
                format!(
                    "Port {p} was marked allocated to {}/{}, which does not hold it; released",
                    o.namespace, o.name
                ),
            )
            .await;
        }
    }

    // Memory against the keys as they are now: heals whatever a request left reserved in
    // memory without a key (a leak), and learns keys memory missed.
    alloc.begin_reconcile();
    let keys = async {
        let (ip_keys, _) = range_at(registry, CLUSTER_IP_PREFIX, None).await?;
        let (port_keys, _) = range_at(registry, NODE_PORT_PREFIX, None).await?;
        Ok::<_, ApiError>((ip_keys, port_keys))
    }
    .await;
    let (ip_keys, port_keys) = match keys {
        Ok(k) => k,
        Err(e) => {
            alloc.finish_reconcile_aborted();
            return Err(e);
        }
    };
    let ips: Vec<IpAddr> = ip_keys
        .iter()
        .filter_map(|kv| parse_ip_sloppy(kv.key.strip_prefix(CLUSTER_IP_PREFIX)?))
        .collect();
    let ports: Vec<i32> = port_keys
        .iter()
        .filter_map(|kv| kv.key.strip_prefix(NODE_PORT_PREFIX)?.parse().ok())
        .collect();
    let memory = alloc.finish_reconcile(&ips, &ports);
    // At start memory is empty: filling it is not a finding.
    if !rebuild {
        for v in &memory.freed {
            tracing::warn!(
                value = %v,
                "allocation held in memory without a key in the store (a leaked reservation); freed"
            );
        }
        for v in &memory.marked {
            tracing::warn!(value = %v, "allocation key in the store was free in memory; marked used");
        }
        report.memory_freed = memory.freed;
        report.memory_marked = memory.marked;
    }
    Ok(report)
}

/// Repairs every `interval`.
pub async fn repair_loop(
    registry: Arc<Registry>,
    alloc: Arc<ServiceAllocations>,
    ipam: Arc<crate::node_ipam::NodeIpam>,
    network: duostack_core::config::NetworkConfig,
    reported: Arc<Reported>,
    interval: Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.tick().await;
    loop {
        tick.tick().await;
        match repair(&registry, &alloc, &reported, false).await {
            Ok(r) if r != RepairReport::default() => {
                tracing::warn!(?r, "allocation repair found problems");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "allocation repair failed"),
        }
        match crate::node_ipam::repair(&registry, &ipam, &network, &reported, false).await {
            Ok(r) if r != crate::node_ipam::PodCidrReport::default() => {
                tracing::warn!(?r, "podCIDR repair found problems");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "podCIDR repair failed"),
        }
    }
}
