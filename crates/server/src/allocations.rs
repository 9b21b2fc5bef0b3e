//! ClusterIP and NodePort allocation for Services.
//!
//! The store is the source of truth: every allocated address is a key
//! `/registry/allocations/clusterips/<ip>` and every node port a key
//! `/registry/allocations/nodeports/<port>`, written (or deleted) in the same transaction as
//! the Service that owns it and created only if absent. A failed create therefore leaks
//! nothing, a crash never leaves an address both free and in use, and two writers racing for
//! one address cannot both win. The allocators in memory are a cache of those keys used to
//! pick candidates fast; a candidate the store refuses is learned and another is picked.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use duostack_core::alloc::AllocError;
use duostack_core::alloc::ip::IpAllocator;
use duostack_core::alloc::ledger::{self, Ledger};
use duostack_core::alloc::port::PortAllocator;
use duostack_core::config::NetworkConfig;
use duostack_core::error::{ApiError, FieldError};
use duostack_core::k8s_openapi::api::core::v1::Service;
use duostack_core::kinds::service_ips::{
    self, AllocFailure, AllocOps, ServiceError, ServiceNetwork,
};
use duostack_core::net::{IpFamily, ServiceCidr, normalize, parse_ip_sloppy};
use duostack_core::resource::SERVICES;
use duostack_store::{Compare, Op};
use serde_json::{Value, json};

use crate::hooks::{HookContext, Pending, RestHooks};

pub const CLUSTER_IP_PREFIX: &str = "/registry/allocations/clusterips/";
pub const NODE_PORT_PREFIX: &str = "/registry/allocations/nodeports/";

pub fn ip_key(ip: IpAddr) -> String {
    format!("{CLUSTER_IP_PREFIX}{}", normalize(ip))
}

pub fn port_key(port: i32) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

/// Counters of one allocator, by scope (`static` band or `dynamic`).
#[derive(Default, Clone, Copy, Debug)]
struct Counters {
    allocations: [u64; 2],
    errors: [u64; 2],
}

const STATIC: usize = 0;
const DYNAMIC: usize = 1;

struct Range {
    alloc: IpAllocator,
    counters: Counters,
    /// The first address of the range, kept for the `kubernetes` Service.
    reserved: IpAddr,
    /// Whether `reserved` is marked used in `alloc` only to keep it from other Services (no
    /// Service holds it): counted neither as allocated nor as available.
    placeholder: bool,
}

impl Range {
    fn new(cidr: ServiceCidr) -> Self {
        let alloc = IpAllocator::new(cidr);
        let reserved = first_address(cidr);
        let mut r = Self {
            alloc,
            counters: Counters::default(),
            reserved,
            placeholder: false,
        };
        r.hold_reserved();
        r
    }

    /// Keeps the reserved address from dynamic allocation and from other Services.
    fn hold_reserved(&mut self) {
        if self.alloc.allocate(self.reserved).is_ok() {
            self.placeholder = true;
        }
    }

    /// Marks an address used because the store holds it.
    fn occupy(&mut self, ip: IpAddr) {
        if ip == self.reserved && self.placeholder {
            self.placeholder = false;
        } else {
            let _ = self.alloc.allocate(ip);
        }
    }

    /// Frees an address no Service holds any more; the reserved one goes back to being held.
    fn free(&mut self, ip: IpAddr) {
        if ip == self.reserved {
            self.placeholder = true;
        } else {
            self.alloc.release(ip);
        }
    }

    /// Addresses Services hold, as memory sees them.
    fn held(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.alloc
            .allocated()
            .filter(move |ip| !(self.placeholder && *ip == self.reserved))
    }

    fn allocated(&self) -> u128 {
        self.alloc.used() - u128::from(self.placeholder)
    }
}

/// The first address of a service range: the `kubernetes` Service's ClusterIP in the primary
/// range, and kept free of other Services in every range.
pub fn first_address(cidr: ServiceCidr) -> IpAddr {
    match cidr.net().network() {
        IpAddr::V4(v4) => IpAddr::V4(u32::from(v4).wrapping_add(1).into()),
        IpAddr::V6(v6) => IpAddr::V6(u128::from(v6).wrapping_add(1).into()),
    }
}

struct State {
    ranges: Vec<Range>,
    ports: PortAllocator,
    port_counters: Counters,
    ip_ledger: Ledger<IpAddr>,
    port_ledger: Ledger<i32>,
}

impl State {
    fn range_of(&mut self, ip: IpAddr) -> Option<&mut Range> {
        self.ranges.iter_mut().find(|r| r.alloc.contains(ip))
    }

    fn free_ip(&mut self, ip: IpAddr) {
        if let Some(r) = self.range_of(ip) {
            r.free(ip);
        }
    }

    fn occupy_ip(&mut self, ip: IpAddr) {
        if let Some(r) = self.range_of(ip) {
            r.occupy(ip);
        }
    }
}

/// What a comparison of memory with the store changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryRepair {
    /// Values memory held that no allocation key backs (leaked reservations), now free.
    pub freed: Vec<String>,
    /// Values the store holds that memory had as free, now marked used.
    pub marked: Vec<String>,
}

/// The allocators of one server, shared by all requests.
pub struct ServiceAllocations {
    pub network: NetworkConfig,
    svc_net: ServiceNetwork,
    state: Mutex<State>,
}

impl ServiceAllocations {
    pub fn new(network: NetworkConfig) -> Self {
        let svc_net = ServiceNetwork {
            families: network.service_cidrs.iter().map(|c| c.family()).collect(),
        };
        let ranges = network
            .service_cidrs
            .iter()
            .map(|c| Range::new(*c))
            .collect();
        let ports = PortAllocator::new(network.node_port_range);
        Self {
            network,
            svc_net,
            state: Mutex::new(State {
                ranges,
                ports,
                port_counters: Counters::default(),
                ip_ledger: Ledger::default(),
                port_ledger: Ledger::default(),
            }),
        }
    }

    pub fn service_network(&self) -> &ServiceNetwork {
        &self.svc_net
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an address belongs to one of the service ranges.
    pub fn in_range(&self, ip: IpAddr) -> bool {
        self.lock().ranges.iter().any(|r| r.alloc.contains(ip))
    }

    pub fn port_in_range(&self, port: i32) -> bool {
        self.lock().ports.contains(port)
    }

    /// Marks a key found taken in the store as used.
    pub fn mark_key(&self, key: &str) {
        let mut st = self.lock();
        if let Some(ip) = key
            .strip_prefix(CLUSTER_IP_PREFIX)
            .and_then(parse_ip_sloppy)
        {
            st.occupy_ip(ip);
            st.ip_ledger.touch(ip);
        } else if let Some(p) = key
            .strip_prefix(NODE_PORT_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        {
            let _ = st.ports.allocate(p);
            st.port_ledger.touch(p);
        }
    }

    /// Forgets a key removed from the store.
    pub fn unmark_key(&self, key: &str) {
        let mut st = self.lock();
        if let Some(ip) = key
            .strip_prefix(CLUSTER_IP_PREFIX)
            .and_then(parse_ip_sloppy)
        {
            st.free_ip(ip);
            st.ip_ledger.touch(ip);
        } else if let Some(p) = key
            .strip_prefix(NODE_PORT_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        {
            st.ports.release(p);
            st.port_ledger.touch(p);
        }
    }

    /// Starts a comparison of memory with the store: call before reading the allocation keys
    /// that [`ServiceAllocations::finish_reconcile`] is then given.
    pub fn begin_reconcile(&self) {
        let mut st = self.lock();
        st.ip_ledger.begin();
        st.port_ledger.begin();
    }

    /// Makes memory match the allocation keys read since
    /// [`ServiceAllocations::begin_reconcile`], except for values requests have in flight or
    /// changed meanwhile. Heals any leak a failed request left in memory.
    pub fn finish_reconcile(&self, ips: &[IpAddr], ports: &[i32]) -> MemoryRepair {
        let mut guard = self.lock();
        let st = &mut *guard;
        let skip_ips = st.ip_ledger.finish();
        let skip_ports = st.port_ledger.finish();
        let memory_ips: Vec<IpAddr> = st.ranges.iter().flat_map(Range::held).collect();
        // Keys outside the ranges (a range that was changed) have nothing to mark.
        let store_ips: Vec<IpAddr> = ips
            .iter()
            .map(|ip| normalize(*ip))
            .filter(|ip| st.ranges.iter().any(|r| r.alloc.contains(*ip)))
            .collect();
        let ip_plan = ledger::reconcile(memory_ips, store_ips, &skip_ips);
        let store_ports: Vec<i32> = ports
            .iter()
            .copied()
            .filter(|p| st.ports.contains(*p))
            .collect();
        let port_plan = ledger::reconcile(
            st.ports.allocated().collect::<Vec<_>>(),
            store_ports,
            &skip_ports,
        );
        let mut out = MemoryRepair::default();
        for ip in ip_plan.release {
            st.free_ip(ip);
            out.freed.push(ip.to_string());
        }
        for ip in ip_plan.occupy {
            st.occupy_ip(ip);
            out.marked.push(ip.to_string());
        }
        for p in port_plan.release {
            st.ports.release(p);
            out.freed.push(p.to_string());
        }
        for p in port_plan.occupy {
            let _ = st.ports.allocate(p);
            out.marked.push(p.to_string());
        }
        out
    }

    /// Ends a comparison whose store read failed.
    pub fn finish_reconcile_aborted(&self) {
        let mut st = self.lock();
        st.ip_ledger.finish();
        st.port_ledger.finish();
    }

    /// Marks `key` used in memory without a store write, as a bug that leaks a reservation
    /// would. Only for tests of the repair pass.
    #[doc(hidden)]
    pub fn leak_for_test(&self, key: &str) {
        self.mark_key(key);
    }

    /// Allocated and free counts per range, for tests and the repair report.
    pub fn usage(&self) -> Vec<(String, u128, u128)> {
        self.lock()
            .ranges
            .iter()
            .map(|r| (r.alloc.cidr().to_string(), r.allocated(), r.alloc.free()))
            .collect()
    }

    /// Allocated node ports.
    pub fn ports_used(&self) -> u128 {
        self.lock().ports.used()
    }

    /// Reservations of requests that have not committed or given up yet.
    pub fn inflight(&self) -> (usize, usize) {
        let st = self.lock();
        (st.ip_ledger.inflight(), st.port_ledger.inflight())
    }

    /// Prometheus text exposition of the allocators, kept incrementally (nothing is counted
    /// by listing Services).
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let st = self.lock();
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        let counter = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        };
        let labels = |r: &Range| {
            format!(
                "cidr=\"{}\",family=\"{}\"",
                r.alloc.cidr(),
                r.alloc.family()
            )
        };
        gauge(
            &mut out,
            "kube_apiserver_clusterip_allocator_allocated_ips",
            "Number of allocated ClusterIPs of a service range.",
        );
        for r in &st.ranges {
            let _ = writeln!(
                out,
                "kube_apiserver_clusterip_allocator_allocated_ips{{{}}} {}",
                labels(r),
                r.allocated()
            );
        }
        gauge(
            &mut out,
            "kube_apiserver_clusterip_allocator_available_ips",
            "Number of free ClusterIPs of a service range.",
        );
        for r in &st.ranges {
            let _ = writeln!(
                out,
                "kube_apiserver_clusterip_allocator_available_ips{{{}}} {}",
                labels(r),
                r.alloc.free()
            );
        }
        counter(
            &mut out,
            "kube_apiserver_clusterip_allocator_allocation_total",
            "ClusterIPs allocated, by band of the range (static or dynamic).",
        );
        for r in &st.ranges {
            for (scope, i) in [("static", STATIC), ("dynamic", DYNAMIC)] {
                let _ = writeln!(
                    out,
                    "kube_apiserver_clusterip_allocator_allocation_total{{{},scope=\"{scope}\"}} {}",
                    labels(r),
                    r.counters.allocations[i]
                );
            }
        }
        counter(
            &mut out,
            "kube_apiserver_clusterip_allocator_allocation_errors_total",
            "ClusterIP allocations that failed, by band of the range.",
        );
        for r in &st.ranges {
            for (scope, i) in [("static", STATIC), ("dynamic", DYNAMIC)] {
                let _ = writeln!(
                    out,
                    "kube_apiserver_clusterip_allocator_allocation_errors_total{{{},scope=\"{scope}\"}} {}",
                    labels(r),
                    r.counters.errors[i]
                );
            }
        }
        let range = self.network.node_port_range.to_string();
        gauge(
            &mut out,
            "kube_apiserver_nodeport_allocator_allocated_ports",
            "Number of allocated NodePorts.",
        );
        let _ = writeln!(
            out,
            "kube_apiserver_nodeport_allocator_allocated_ports{{range=\"{range}\"}} {}",
            st.ports.used()
        );
        gauge(
            &mut out,
            "kube_apiserver_nodeport_allocator_available_ports",
            "Number of free NodePorts.",
        );
        let _ = writeln!(
            out,
            "kube_apiserver_nodeport_allocator_available_ports{{range=\"{range}\"}} {}",
            st.ports.capacity() - st.ports.used()
        );
        counter(
            &mut out,
            "kube_apiserver_nodeport_allocator_allocation_total",
            "NodePorts allocated.",
        );
        let _ = writeln!(
            out,
            "kube_apiserver_nodeport_allocator_allocation_total{{range=\"{range}\"}} {}",
            st.port_counters.allocations[DYNAMIC] + st.port_counters.allocations[STATIC]
        );
        counter(
            &mut out,
            "kube_apiserver_nodeport_allocator_allocation_errors_total",
            "NodePort allocations that failed.",
        );
        let _ = writeln!(
            out,
            "kube_apiserver_nodeport_allocator_allocation_errors_total{{range=\"{range}\"}} {}",
            st.port_counters.errors[DYNAMIC] + st.port_counters.errors[STATIC]
        );
        out
    }
}

/// One request's allocations: reservations made now, releases deferred to the commit.
///
/// Every reservation is given back unless the operation is turned into a [`Pending`] (which
/// then owns it until the store transaction commits or fails): a request that fails half way,
/// after some of its values were reserved, leaks nothing, whichever step failed.
struct Operation {
    alloc: Arc<ServiceAllocations>,
    dry_run: bool,
    /// The request is the `kubernetes` Service's, which may take the reserved first address.
    apiserver: bool,
    reserved_ips: Vec<IpAddr>,
    reserved_ports: Vec<i32>,
    released_ips: Vec<IpAddr>,
    released_ports: Vec<i32>,
}

impl Drop for Operation {
    fn drop(&mut self) {
        let (ips, ports) = (
            std::mem::take(&mut self.reserved_ips),
            std::mem::take(&mut self.reserved_ports),
        );
        give_back(&self.alloc, ips, ports);
    }
}

/// Frees reservations that did not reach the store.
fn give_back(alloc: &ServiceAllocations, ips: Vec<IpAddr>, ports: Vec<i32>) {
    if ips.is_empty() && ports.is_empty() {
        return;
    }
    let mut st = alloc.lock();
    for ip in ips {
        st.free_ip(ip);
        st.ip_ledger.settle(ip);
    }
    for p in ports {
        st.ports.release(p);
        st.port_ledger.settle(p);
    }
}

/// Kubernetes' reason when a range has nothing left (`range is full`, answered as an internal
/// error), followed by which range it is.
fn failure(e: AllocError, range: &dyn std::fmt::Display, what: &str) -> AllocFailure {
    match e {
        AllocError::Full => AllocFailure::Exhausted(format!("{e}: no free {what} left in {range}")),
        other => AllocFailure::Rejected(other.to_string()),
    }
}

impl AllocOps for Operation {
    fn allocate_ip(
        &mut self,
        family: IpFamily,
        requested: Option<&str>,
    ) -> Result<String, AllocFailure> {
        let mut guard = self.alloc.lock();
        let st = &mut *guard;
        let Some(r) = st.ranges.iter_mut().find(|r| r.alloc.family() == family) else {
            return Err(AllocFailure::Rejected(format!(
                "{family} is not configured on this cluster"
            )));
        };
        let (ip, text) = match requested {
            Some(text) => {
                let ip = parse_ip_sloppy(text).ok_or_else(|| {
                    AllocFailure::Rejected(format!("{text} is not a valid IP address"))
                })?;
                let scope = if r.alloc.in_static_band(ip) {
                    STATIC
                } else {
                    DYNAMIC
                };
                let apiserver_takes_reserved =
                    self.apiserver && r.placeholder && normalize(ip) == r.reserved;
                let res = if apiserver_takes_reserved {
                    Ok(())
                } else if self.dry_run {
                    r.alloc.check(ip)
                } else {
                    r.alloc.allocate(ip)
                };
                if let Err(e) = res {
                    r.counters.errors[scope] += 1;
                    return Err(failure(e, &r.alloc.cidr(), &format!("{family} address")));
                }
                if self.dry_run {
                    return Ok(text.to_owned());
                }
                if apiserver_takes_reserved {
                    r.placeholder = false;
                }
                r.counters.allocations[scope] += 1;
                (normalize(ip), text.to_owned())
            }
            None => {
                let random: u128 = rand::random();
                let res = if self.dry_run {
                    r.alloc.peek_next(random)
                } else {
                    r.alloc.allocate_next(random)
                };
                let ip = match res {
                    Ok(ip) => ip,
                    Err(e) => {
                        r.counters.errors[DYNAMIC] += 1;
                        return Err(failure(e, &r.alloc.cidr(), &format!("{family} address")));
                    }
                };
                if self.dry_run {
                    return Ok(ip.to_string());
                }
                let scope = if r.alloc.in_static_band(ip) {
                    STATIC
                } else {
                    DYNAMIC
                };
                r.counters.allocations[scope] += 1;
                (ip, ip.to_string())
            }
        };
        st.ip_ledger.reserve(ip);
        self.reserved_ips.push(ip);
        Ok(text)
    }

    fn release_ip(&mut self, ip: &str) {
        if let Some(ip) = parse_ip_sloppy(ip) {
            self.released_ips.push(normalize(ip));
        }
    }

    fn allocate_port(&mut self, requested: Option<i32>) -> Result<i32, AllocFailure> {
        let mut st = self.alloc.lock();
        let res = match (requested, self.dry_run) {
            (Some(p), true) => st.ports.check(p).map(|_| p),
            (Some(p), false) => st.ports.allocate(p).map(|_| p),
            (None, true) => st.ports.peek_next(rand::random()),
            (None, false) => st.ports.allocate_next(rand::random()),
        };
        match res {
            Ok(p) => {
                if !self.dry_run {
                    st.port_counters.allocations[DYNAMIC] += 1;
                    st.port_ledger.reserve(p);
                    self.reserved_ports.push(p);
                }
                Ok(p)
            }
            Err(e) => {
                st.port_counters.errors[DYNAMIC] += 1;
                Err(failure(e, &st.ports.range(), "port"))
            }
        }
    }

    fn release_port(&mut self, port: i32) {
        self.released_ports.push(port);
    }
}

impl Operation {
    fn new(alloc: &Arc<ServiceAllocations>, dry_run: bool, owner: &Value) -> Self {
        let apiserver = owner.pointer("/metadata/namespace").and_then(Value::as_str)
            == Some(APISERVER_SERVICE.0)
            && owner.pointer("/metadata/name").and_then(Value::as_str) == Some(APISERVER_SERVICE.1);
        Self {
            alloc: alloc.clone(),
            dry_run,
            apiserver,
            reserved_ips: vec![],
            reserved_ports: vec![],
            released_ips: vec![],
            released_ports: vec![],
        }
    }

    /// Turns the operation into the store writes and the in-memory follow-up; the returned
    /// [`Pending`] now owns the reservations.
    fn into_pending(mut self, owner: &Value) -> Pending {
        let reserved_ips = std::mem::take(&mut self.reserved_ips);
        let reserved_ports = std::mem::take(&mut self.reserved_ports);
        if self.dry_run {
            return Pending::default();
        }
        let owner_bytes = serde_json::to_vec(owner).unwrap_or_default();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for ip in &reserved_ips {
            let k = ip_key(*ip);
            compares.push(Compare::ModRevision {
                key: k.clone(),
                revision: 0,
            });
            ops.push(Op::Put {
                key: k,
                value: owner_bytes.clone().into(),
            });
        }
        for p in &reserved_ports {
            let k = port_key(*p);
            compares.push(Compare::ModRevision {
                key: k.clone(),
                revision: 0,
            });
            ops.push(Op::Put {
                key: k,
                value: owner_bytes.clone().into(),
            });
        }
        // A value released and taken again in one request (a node port moving between two
        // ports of the Service) stays held.
        let released_ips: Vec<IpAddr> = self
            .released_ips
            .iter()
            .copied()
            .filter(|ip| !reserved_ips.contains(ip))
            .collect();
        let released_ports: Vec<i32> = self
            .released_ports
            .iter()
            .copied()
            .filter(|p| !reserved_ports.contains(p))
            .collect();
        for ip in &released_ips {
            ops.push(Op::Delete { key: ip_key(*ip) });
        }
        for p in &released_ports {
            ops.push(Op::Delete { key: port_key(*p) });
        }
        let (commit_alloc, abort_alloc) = (self.alloc.clone(), self.alloc.clone());
        let (committed_ips, committed_ports) = (reserved_ips.clone(), reserved_ports.clone());
        Pending::new(
            compares,
            ops,
            move || {
                let mut st = commit_alloc.lock();
                for ip in committed_ips {
                    st.ip_ledger.settle(ip);
                }
                for p in committed_ports {
                    st.port_ledger.settle(p);
                }
                for ip in released_ips {
                    st.free_ip(ip);
                    st.ip_ledger.touch(ip);
                }
                for p in released_ports {
                    st.ports.release(p);
                    st.port_ledger.touch(p);
                }
            },
            move || give_back(&abort_alloc, reserved_ips, reserved_ports),
        )
    }
}

/// The Service kube-apiserver keeps for itself, `(namespace, name)`.
pub const APISERVER_SERVICE: (&str, &str) = ("default", "kubernetes");

/// The owner recorded in an allocation key.
fn owner(obj: &Value) -> Value {
    let m = obj.get("metadata");
    let s = |f: &str| m.and_then(|m| m.get(f)).cloned().unwrap_or(Value::Null);
    json!({"kind": "Service", "namespace": s("namespace"), "name": s("name"), "uid": s("uid")})
}

fn to_service(v: &Value) -> Result<Service, ApiError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ApiError::internal(format!("decoding Service: {e}")))
}

fn write_back(svc: &Service, into: &mut Value) -> Result<(), ApiError> {
    let (av, kind) = (into.get("apiVersion").cloned(), into.get("kind").cloned());
    *into = serde_json::to_value(svc).map_err(ApiError::internal)?;
    if let Some(m) = into.as_object_mut() {
        m.insert("apiVersion".into(), av.unwrap_or_else(|| "v1".into()));
        m.insert("kind".into(), kind.unwrap_or_else(|| "Service".into()));
    }
    Ok(())
}

fn api_error(name: &str, e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(errs) => ApiError::invalid(SERVICES.group_kind(), name, &errs),
        ServiceError::Internal(m) => ApiError::internal(m),
    }
}

fn legacy_family(ctx: &HookContext<'_>, name: &str) -> Result<Option<String>, ApiError> {
    match ctx.extra.get("ipFamily") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::invalid(
            SERVICES.group_kind(),
            name,
            &[FieldError::invalid(
                "spec.ipFamily",
                duostack_core::error::BadValue::Raw(other.to_string()),
                "must be a string: IPv4 or IPv6",
            )],
        )),
    }
}

/// The Service registry's hooks.
pub struct ServiceHooks {
    pub alloc: Arc<ServiceAllocations>,
}

impl RestHooks for ServiceHooks {
    fn begin_create(&self, obj: &mut Value, ctx: &HookContext<'_>) -> Result<Pending, ApiError> {
        let mut svc = to_service(obj)?;
        let name = svc.metadata.name.clone().unwrap_or_default();
        let legacy = legacy_family(ctx, &name)?;
        let mut op = Operation::new(&self.alloc, ctx.dry_run, obj);
        service_ips::begin_create(
            &mut svc,
            self.alloc.service_network(),
            &mut op,
            legacy.as_deref(),
        )
        .map_err(|e| api_error(&name, e))?;
        write_back(&svc, obj)?;
        let mut pending = op.into_pending(&owner(obj));
        if let Some(f) = legacy {
            pending.warnings.push(service_ips::legacy_warning(&f));
        }
        Ok(pending)
    }

    fn begin_update(
        &self,
        new: &mut Value,
        old: &Value,
        ctx: &HookContext<'_>,
    ) -> Result<Pending, ApiError> {
        let mut svc = to_service(new)?;
        let old_svc = to_service(old)?;
        let name = svc.metadata.name.clone().unwrap_or_default();
        let legacy = legacy_family(ctx, &name)?;
        let mut op = Operation::new(&self.alloc, ctx.dry_run, new);
        service_ips::begin_update(
            &mut svc,
            &old_svc,
            self.alloc.service_network(),
            &mut op,
            legacy.as_deref(),
        )
        .map_err(|e| api_error(&name, e))?;
        write_back(&svc, new)?;
        let mut pending = op.into_pending(&owner(new));
        if legacy.is_some() {
            pending.warnings.push(
                "spec.ipFamily is the v1.16 alpha field, removed in v1.20; on update it is only checked against the Service's family: use spec.ipFamilies and spec.ipFamilyPolicy".into(),
            );
        }
        Ok(pending)
    }

    fn begin_delete(&self, old: &Value, dry_run: bool) -> Pending {
        let Ok(svc) = to_service(old) else {
            return Pending::default();
        };
        let mut op = Operation::new(&self.alloc, dry_run, old);
        service_ips::release_all(&svc, &mut op);
        op.into_pending(&owner(old))
    }

    fn learn_taken(&self, key: &str) {
        self.alloc.mark_key(key);
    }
}
