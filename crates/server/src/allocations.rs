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
use duostack_core::alloc::port::PortAllocator;
use duostack_core::config::NetworkConfig;
use duostack_core::error::{ApiError, FieldError};
use duostack_core::k8s_openapi::api::core::v1::Service;
use duostack_core::kinds::service_ips::{
    self, AllocFailure, AllocOps, ServiceError, ServiceNetwork,
};
use duostack_core::net::{IpFamily, normalize, parse_ip_sloppy};
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
}

struct State {
    ranges: Vec<Range>,
    ports: PortAllocator,
    port_counters: Counters,
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
            .map(|c| Range {
                alloc: IpAllocator::new(*c),
                counters: Counters::default(),
            })
            .collect();
        let ports = PortAllocator::new(network.node_port_range);
        Self {
            network,
            svc_net,
            state: Mutex::new(State {
                ranges,
                ports,
                port_counters: Counters::default(),
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

    /// Replaces what memory holds with what the store holds.
    pub fn rebuild(&self, ips: &[IpAddr], ports: &[i32]) {
        let mut st = self.lock();
        for r in st.ranges.iter_mut() {
            r.alloc = IpAllocator::new(r.alloc.cidr());
        }
        st.ports = PortAllocator::new(self.network.node_port_range);
        for ip in ips {
            if let Some(r) = st.ranges.iter_mut().find(|r| r.alloc.contains(*ip)) {
                let _ = r.alloc.allocate(*ip);
            }
        }
        for p in ports {
            let _ = st.ports.allocate(*p);
        }
    }

    /// Marks a key found taken in the store as used.
    pub fn mark_key(&self, key: &str) {
        let mut st = self.lock();
        if let Some(ip) = key
            .strip_prefix(CLUSTER_IP_PREFIX)
            .and_then(parse_ip_sloppy)
        {
            if let Some(r) = st.ranges.iter_mut().find(|r| r.alloc.contains(ip)) {
                let _ = r.alloc.allocate(ip);
            }
        } else if let Some(p) = key
            .strip_prefix(NODE_PORT_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        {
            let _ = st.ports.allocate(p);
        }
    }

    /// Forgets a key removed from the store.
    pub fn unmark_key(&self, key: &str) {
        let mut st = self.lock();
        if let Some(ip) = key
            .strip_prefix(CLUSTER_IP_PREFIX)
            .and_then(parse_ip_sloppy)
        {
            for r in st.ranges.iter_mut() {
                r.alloc.release(ip);
            }
        } else if let Some(p) = key
            .strip_prefix(NODE_PORT_PREFIX)
            .and_then(|p| p.parse::<i32>().ok())
        {
            st.ports.release(p);
        }
    }

    /// Allocated and free counts per range, for tests and the repair report.
    pub fn usage(&self) -> Vec<(String, u128, u128)> {
        self.lock()
            .ranges
            .iter()
            .map(|r| (r.alloc.cidr().to_string(), r.alloc.used(), r.alloc.free()))
            .collect()
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
                r.alloc.used()
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
struct Operation {
    alloc: Arc<ServiceAllocations>,
    dry_run: bool,
    reserved_ips: Vec<IpAddr>,
    reserved_ports: Vec<i32>,
    released_ips: Vec<IpAddr>,
    released_ports: Vec<i32>,
}

fn failure(e: AllocError, range: &str, family: IpFamily) -> AllocFailure {
    match e {
        AllocError::Full => AllocFailure::Exhausted(format!(
            "range is full: no free {family} address left in {range}"
        )),
        other => AllocFailure::Rejected(other.to_string()),
    }
}

impl AllocOps for Operation {
    fn allocate_ip(
        &mut self,
        family: IpFamily,
        requested: Option<&str>,
    ) -> Result<String, AllocFailure> {
        let mut st = self.alloc.lock();
        let Some(r) = st.ranges.iter_mut().find(|r| r.alloc.family() == family) else {
            return Err(AllocFailure::Rejected(format!(
                "{family} is not configured on this cluster"
            )));
        };
        let range = r.alloc.cidr().to_string();
        match requested {
            Some(text) => {
                let ip = parse_ip_sloppy(text).ok_or_else(|| {
                    AllocFailure::Rejected(format!("{text} is not a valid IP address"))
                })?;
                let scope = if r.alloc.in_static_band(ip) {
                    STATIC
                } else {
                    DYNAMIC
                };
                let res = if self.dry_run {
                    r.alloc.check(ip)
                } else {
                    r.alloc.allocate(ip)
                };
                match res {
                    Ok(()) => {
                        if !self.dry_run {
                            r.counters.allocations[scope] += 1;
                            self.reserved_ips.push(ip);
                        }
                        Ok(text.to_owned())
                    }
                    Err(e) => {
                        r.counters.errors[scope] += 1;
                        Err(failure(e, &range, family))
                    }
                }
            }
            None => {
                let random: u128 = rand::random();
                let res = if self.dry_run {
                    r.alloc.peek_next(random)
                } else {
                    r.alloc.allocate_next(random)
                };
                match res {
                    Ok(ip) => {
                        if !self.dry_run {
                            let scope = if r.alloc.in_static_band(ip) {
                                STATIC
                            } else {
                                DYNAMIC
                            };
                            r.counters.allocations[scope] += 1;
                            self.reserved_ips.push(ip);
                        }
                        Ok(ip.to_string())
                    }
                    Err(e) => {
                        r.counters.errors[DYNAMIC] += 1;
                        Err(failure(e, &range, family))
                    }
                }
            }
        }
    }

    fn release_ip(&mut self, ip: &str) {
        if let Some(ip) = parse_ip_sloppy(ip) {
            self.released_ips.push(ip);
        }
    }

    fn allocate_port(&mut self, requested: Option<i32>) -> Result<i32, AllocFailure> {
        let mut st = self.alloc.lock();
        let range = st.ports.range().to_string();
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
                    self.reserved_ports.push(p);
                }
                Ok(p)
            }
            Err(AllocError::Full) => {
                st.port_counters.errors[DYNAMIC] += 1;
                Err(AllocFailure::Exhausted(format!(
                    "range is full: no free port left in {range}"
                )))
            }
            Err(e) => {
                st.port_counters.errors[DYNAMIC] += 1;
                Err(AllocFailure::Rejected(e.to_string()))
            }
        }
    }

    fn release_port(&mut self, port: i32) {
        self.released_ports.push(port);
    }
}

impl Operation {
    fn new(alloc: &Arc<ServiceAllocations>, dry_run: bool) -> Self {
        Self {
            alloc: alloc.clone(),
            dry_run,
            reserved_ips: vec![],
            reserved_ports: vec![],
            released_ips: vec![],
            released_ports: vec![],
        }
    }

    /// Turns the operation into the store writes and the in-memory follow-up.
    fn into_pending(self, owner: &Value) -> Pending {
        if self.dry_run {
            return Pending::default();
        }
        let owner_bytes = serde_json::to_vec(owner).unwrap_or_default();
        let mut compares = Vec::new();
        let mut ops = Vec::new();
        for ip in &self.reserved_ips {
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
        for p in &self.reserved_ports {
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
            .filter(|ip| !self.reserved_ips.contains(ip))
            .collect();
        let released_ports: Vec<i32> = self
            .released_ports
            .iter()
            .copied()
            .filter(|p| !self.reserved_ports.contains(p))
            .collect();
        for ip in &released_ips {
            ops.push(Op::Delete { key: ip_key(*ip) });
        }
        for p in &released_ports {
            ops.push(Op::Delete { key: port_key(*p) });
        }
        let (commit_alloc, abort_alloc) = (self.alloc.clone(), self.alloc.clone());
        let (reserved_ips, reserved_ports) = (self.reserved_ips, self.reserved_ports);
        Pending::new(
            compares,
            ops,
            move || {
                let mut st = commit_alloc.lock();
                for ip in released_ips {
                    for r in st.ranges.iter_mut() {
                        r.alloc.release(ip);
                    }
                }
                for p in released_ports {
                    st.ports.release(p);
                }
            },
            move || {
                let mut st = abort_alloc.lock();
                for ip in reserved_ips {
                    for r in st.ranges.iter_mut() {
                        r.alloc.release(ip);
                    }
                }
                for p in reserved_ports {
                    st.ports.release(p);
                }
            },
        )
    }
}

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
        let mut op = Operation::new(&self.alloc, ctx.dry_run);
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
        let mut op = Operation::new(&self.alloc, ctx.dry_run);
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
        let mut op = Operation::new(&self.alloc, dry_run);
        service_ips::release_all(&svc, &mut op);
        op.into_pending(&owner(old))
    }

    fn learn_taken(&self, key: &str) {
        self.alloc.mark_key(key);
    }
}
