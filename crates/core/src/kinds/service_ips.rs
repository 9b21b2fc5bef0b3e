//! Dual-stack Service semantics: how kube-apiserver's Service registry normalizes, defaults,
//! validates and allocates `clusterIP`/`clusterIPs`, `ipFamilies`, `ipFamilyPolicy` and node
//! ports on create and update (`shared/spec/services.md` §3–§9, with duostack's deliberate
//! differences of §13).
//!
//! Allocation goes through [`AllocOps`], which the server implements over its allocators and
//! store transaction; here only the decisions are made, in Kubernetes' order, so the errors a
//! client sees are Kubernetes' errors.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};

use crate::error::{BadValue, FieldError, FieldErrors, FieldPath};
use crate::kinds::service::{
    CLUSTER_IP_NONE, TYPE_CLUSTER_IP, TYPE_EXTERNAL_NAME, TYPE_LOAD_BALANCER, TYPE_NODE_PORT,
};
use crate::net::{IpFamily, parse_ip_sloppy};

pub const SINGLE_STACK: &str = "SingleStack";
pub const PREFER_DUAL_STACK: &str = "PreferDualStack";
pub const REQUIRE_DUAL_STACK: &str = "RequireDualStack";
const POLICIES: &[&str] = &[PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];

/// The families this cluster has service ranges for, primary first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub families: Vec<IpFamily>,
}

impl ServiceNetwork {
    pub fn primary(&self) -> IpFamily {
        self.families[0]
    }
    pub fn configured(&self, f: IpFamily) -> bool {
        self.families.contains(&f)
    }
    pub fn dual_stack(&self) -> bool {
        self.families.len() == 2
    }
}

/// Why an allocator refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocFailure {
    /// A requested value can't be had (taken, out of range): the client's error.
    Rejected(String),
    /// Nothing is free: Kubernetes answers 500.
    Exhausted(String),
}

/// What the registry's allocators offer a request. Releases are deferred until the write
/// commits; allocations are undone if it doesn't.
pub trait AllocOps {
    /// Reserves `requested` (the caller's text), or the next free address of `family`.
    /// Returns the address as it is to be stored.
    fn allocate_ip(
        &mut self,
        family: IpFamily,
        requested: Option<&str>,
    ) -> Result<String, AllocFailure>;
    fn release_ip(&mut self, ip: &str);
    /// Reserves `requested`, or the next free node port.
    fn allocate_port(&mut self, requested: Option<i32>) -> Result<i32, AllocFailure>;
    fn release_port(&mut self, port: i32);
}

/// A failure of the Service registry's create/update preparation.
#[derive(Clone, Debug, PartialEq)]
pub enum ServiceError {
    /// 422 with these causes.
    Invalid(FieldErrors),
    /// 500 with this message (after `Internal error occurred: `).
    Internal(String),
}

impl From<FieldErrors> for ServiceError {
    fn from(e: FieldErrors) -> Self {
        ServiceError::Invalid(e)
    }
}

fn spec_path() -> FieldPath {
    FieldPath::root("spec")
}

fn ty(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("")
}

fn ips(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or(&[])
}

fn fams(spec: &ServiceSpec) -> &[String] {
    spec.ip_families.as_deref().unwrap_or(&[])
}

fn policy(spec: &ServiceSpec) -> &str {
    spec.ip_family_policy.as_deref().unwrap_or("")
}

fn has_selector(spec: &ServiceSpec) -> bool {
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

/// Headless by `clusterIPs` (as validation sees it).
fn headless(spec: &ServiceSpec) -> bool {
    ips(spec).len() == 1 && ips(spec)[0] == CLUSTER_IP_NONE
}

fn ips_value(spec: &ServiceSpec) -> BadValue {
    BadValue::go_list("string", spec.cluster_ips.as_deref())
}

fn fams_value(spec: &ServiceSpec) -> BadValue {
    BadValue::go_list("core.IPFamily", spec.ip_families.as_deref())
}

fn policy_value(spec: &ServiceSpec) -> BadValue {
    BadValue::opt_str(spec.ip_family_policy.as_deref())
}

fn family_of(ip: &str) -> Option<IpFamily> {
    parse_ip_sloppy(ip).map(|a| IpFamily::of(&a))
}

fn family(s: &str) -> Option<IpFamily> {
    s.parse().ok()
}

/// Whether the type gets cluster IPs.
pub fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    ty(spec) != TYPE_EXTERNAL_NAME
}

/// Whether the type has node ports (NodePort, LoadBalancer).
pub fn needs_node_port(spec: &ServiceSpec) -> bool {
    matches!(ty(spec), TYPE_NODE_PORT | TYPE_LOAD_BALANCER)
}

/// Whether node ports are allocated automatically (not for LoadBalancers that opt out).
fn should_allocate_node_ports(spec: &ServiceSpec) -> bool {
    match ty(spec) {
        TYPE_NODE_PORT => true,
        TYPE_LOAD_BALANCER => spec.allocate_load_balancer_node_ports.unwrap_or(true),
        _ => false,
    }
}

/// LoadBalancer with `externalTrafficPolicy: Local` has a health-check node port.
pub fn needs_health_check(spec: &ServiceSpec) -> bool {
    ty(spec) == TYPE_LOAD_BALANCER && spec.external_traffic_policy.as_deref() == Some("Local")
}

// ---------------------------------------------------------------------------------------------
// §3 clusterIP <-> clusterIPs

/// §3.1 on create: an old client's singular field initializes the plural.
pub fn normalize_create(spec: &mut ServiceSpec) {
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    if !ip.is_empty() && ips(spec).is_empty() {
        spec.cluster_ips = Some(vec![ip]);
    }
}

/// §3.1 on update.
pub fn normalize_update(new: &mut ServiceSpec, old: &ServiceSpec) {
    let (n, o) = (
        new.cluster_ip.clone().unwrap_or_default(),
        old.cluster_ip.clone().unwrap_or_default(),
    );
    if n != o {
        let same = ips(new) == ips(old);
        if n.is_empty() && !o.is_empty() && same {
            new.cluster_ips = None;
        } else if same {
            new.cluster_ips = Some(vec![n]);
        }
        return;
    }
    if ips(new).is_empty() && !ips(old).is_empty() {
        new.cluster_ips = old.cluster_ips.clone();
    }
}

/// §3.2: values the server allocated and the client left out are kept.
pub fn patch_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if new.cluster_ip.as_deref().unwrap_or("").is_empty() {
            new.cluster_ip = old.cluster_ip.clone();
        }
        if ips(new).is_empty() && !ips(old).is_empty() {
            new.cluster_ips = old.cluster_ips.clone();
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let used = |s: &ServiceSpec| -> Vec<i32> {
            s.ports
                .iter()
                .flatten()
                .filter_map(|p| p.node_port.filter(|n| *n != 0))
                .collect()
        };
        let (old_used, new_used) = (used(old), used(new));
        let taken: Vec<i32> = old_used
            .iter()
            .copied()
            .filter(|p| new_used.contains(p))
            .collect();
        let by_name: Vec<(String, i32)> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.node_port.unwrap_or(0)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            if p.node_port.unwrap_or(0) == 0 {
                let name = p.name.clone().unwrap_or_default();
                // The last port of a name wins, as with a Go map built in order.
                let old_val = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, v)| *v);
                if old_val != 0 && !taken.contains(&old_val) {
                    p.node_port = Some(old_val);
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && new.health_check_node_port.unwrap_or(0) == 0
    {
        new.health_check_node_port = old.health_check_node_port;
    }
}

// ---------------------------------------------------------------------------------------------
// §7.2 ValidateServiceClusterIPsRelatedFields

const VALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

pub fn validate_cluster_ips_related(spec: &ServiceSpec) -> FieldErrors {
    let mut errs = Vec::new();
    if ty(spec) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    let p = spec_path();
    let ips_path = p.child("clusterIPs");
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if !cluster_ip.is_empty() {
        if ips(spec).is_empty() {
            errs.push(FieldError::required(&ips_path, ""));
        } else if ips(spec)[0] != cluster_ip {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value(spec),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips(spec).is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value(spec),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, f) in fams(spec).iter().enumerate() {
        let fp = p.child("ipFamilies").index(i);
        if !FAMILIES.contains(&f.as_str()) {
            errs.push(FieldError::not_supported(&fp, f, FAMILIES));
        }
        if seen.contains(&f.as_str()) {
            errs.push(FieldError::duplicate(&fp, f));
        }
        seen.push(f);
    }
    if let Some(pol) = spec.ip_family_policy.as_deref()
        && !POLICIES.contains(&pol)
    {
        errs.push(FieldError::not_supported(
            p.child("ipFamilyPolicy"),
            pol,
            POLICIES,
        ));
    }
    let mut bad_ips = false;
    for (i, ip) in ips(spec).iter().enumerate() {
        if i == 0 && ip == CLUSTER_IP_NONE {
            if ips(spec).len() > 1 {
                bad_ips = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips_value(spec),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        if parse_ip_sloppy(ip).is_none() {
            bad_ips = true;
            errs.push(FieldError::invalid(ips_path.index(i), ip, VALID_IP));
        }
    }
    if ips(spec).len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value(spec),
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return errs;
    }
    if ips(spec).len() > 1 {
        let dual = ips(spec)
            .iter()
            .any(|ip| family_of(ip) == Some(IpFamily::IPv4))
            && ips(spec)
                .iter()
                .any(|ip| family_of(ip) == Some(IpFamily::IPv6));
        if !dual {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value(spec),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !headless(spec) && !ips(spec).is_empty() && !fams(spec).is_empty() {
        for (i, ip) in ips(spec).iter().enumerate() {
            let Some(f) = fams(spec).get(i) else { break };
            let is6 = family_of(ip) == Some(IpFamily::IPv6);
            if f == "IPv4" && is6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if f == "IPv6" && !is6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// The dual-stack and node-port parts of `ValidateService` (§7.1) that depend on these fields.
pub fn validate_service_ips(spec: &ServiceSpec) -> FieldErrors {
    let p = spec_path();
    let mut errs = Vec::new();
    if ty(spec) == TYPE_EXTERNAL_NAME {
        if !ips(spec).is_empty() {
            errs.push(FieldError::forbidden(
                p.child("clusterIPs"),
                "may not be set for ExternalName services",
            ));
        }
        if !fams(spec).is_empty() {
            errs.push(FieldError::forbidden(
                p.child("ipFamilies"),
                "may not be set for ExternalName services",
            ));
        }
        if spec.ip_family_policy.is_some() {
            errs.push(FieldError::forbidden(
                p.child("ipFamilyPolicy"),
                "may not be set for ExternalName services",
            ));
        }
    }
    errs.extend(validate_cluster_ips_related(spec));
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(spec) && hc != 0 {
        errs.push(FieldError::invalid(
            p.child("healthCheckNodePort"),
            i64::from(hc),
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    errs
}

/// §7.3: what an update may not change.
pub fn validate_ips_update(new: &ServiceSpec, old: &ServiceSpec) -> FieldErrors {
    let p = spec_path();
    let mut errs = Vec::new();
    if ty(new) == TYPE_EXTERNAL_NAME || ty(old) == TYPE_EXTERNAL_NAME {
        return errs;
    }
    let (nh, oh) = (headless(new), headless(old));
    let ip0 = p.child("clusterIPs").index(0);
    if !(nh && oh) {
        let (n, o) = (ips(new), ips(old));
        if n.len() == o.len() {
            for (i, ip) in o.iter().enumerate() {
                if *ip != n[i] {
                    errs.push(FieldError::invalid(
                        p.child("clusterIPs").index(i),
                        ips_value(new),
                        "may not change once set",
                    ));
                }
            }
        } else if o.len() > n.len() {
            if n.is_empty() {
                errs.push(FieldError::invalid(
                    &ip0,
                    ips_value(new),
                    "primary clusterIP can not be unset",
                ));
            }
            if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
                errs.push(FieldError::invalid(
                    &ip0,
                    ips_value(new),
                    "may not change once set",
                ));
            }
            if n.len() == 1 && policy(new) != SINGLE_STACK {
                errs.push(FieldError::invalid(
                    p.child("ipFamilyPolicy"),
                    policy_value(new),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                &ip0,
                ips_value(new),
                "may not change once set",
            ));
        }
    }
    if nh == oh && !nh {
        let (n, o) = (fams(new), fams(old));
        let f0 = p.child("ipFamilies").index(0);
        if n.len() == o.len() {
            for (i, f) in o.iter().enumerate() {
                if *f != n[i] {
                    errs.push(FieldError::invalid(
                        &f0,
                        fams_value(new),
                        "may not change once set",
                    ));
                }
            }
        } else if o.len() > n.len() {
            if ips(new).is_empty() {
                errs.push(FieldError::invalid(
                    &f0,
                    fams_value(new),
                    "primary ipFamily can not be unset",
                ));
            }
            if !n.is_empty() && n[0] != o[0] {
                errs.push(FieldError::invalid(
                    &f0,
                    ips_value(new),
                    "may not change once set",
                ));
            }
            if n.len() == 1 && policy(new) != SINGLE_STACK {
                errs.push(FieldError::invalid(
                    p.child("ipFamilyPolicy"),
                    policy_value(new),
                    "must be set to 'SingleStack' when releasing the secondary ipFamily",
                ));
            }
        } else if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                &f0,
                ips_value(new),
                "may not change once set",
            ));
        }
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && old.health_check_node_port != new.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            p.child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
    if ty(old) == TYPE_LOAD_BALANCER
        && ty(new) == TYPE_LOAD_BALANCER
        && old.load_balancer_class != new.load_balancer_class
    {
        errs.push(FieldError::invalid(
            p.child("loadBalancerClass"),
            BadValue::opt_str(new.load_balancer_class.as_deref()),
            "may not change once set",
        ));
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// §4 initIPFamilyFields

fn matching_prefer_dual_stack(new: &ServiceSpec, old: Option<&ServiceSpec>) -> bool {
    let Some(old) = old else { return false };
    if new.ip_family_policy.is_none() || ty(old) != ty(new) {
        return false;
    }
    if !matches!(
        ty(new),
        TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER
    ) {
        return false;
    }
    if policy(new) != PREFER_DUAL_STACK {
        return false;
    }
    if old.ip_family_policy.is_some() && policy(old) != PREFER_DUAL_STACK {
        return false;
    }
    ips(old) == ips(new) && fams(old) == fams(new)
}

/// Defaults and checks the families and policy against the cluster (§4).
pub fn init_ip_family_fields(
    spec: &mut ServiceSpec,
    old: Option<&ServiceSpec>,
    net: &ServiceNetwork,
) -> Result<(), ServiceError> {
    if ty(spec) == TYPE_EXTERNAL_NAME || matching_prefer_dual_stack(spec, old) {
        return Ok(());
    }
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = match old.and_then(|o| o.ip_family_policy.clone()) {
            Some(p) => Some(p),
            None if spec.cluster_ip.as_deref() == Some(CLUSTER_IP_NONE) && !has_selector(spec) => {
                Some(REQUIRE_DUAL_STACK.into())
            }
            None => Some(SINGLE_STACK.into()),
        };
    }
    let errs = validate_cluster_ips_related(spec);
    if !errs.is_empty() {
        return Err(errs.into());
    }
    let p = spec_path();
    let mut errs = Vec::new();
    if let Some(old) = old {
        if policy(spec) == SINGLE_STACK {
            if ips(old) == ips(spec)
                && ips(spec).len() > 1
                && let Some(v) = spec.cluster_ips.as_mut()
            {
                v.truncate(1);
            }
            if fams(old) == fams(spec)
                && fams(spec).len() > 1
                && let Some(v) = spec.ip_families.as_mut()
            {
                v.truncate(1);
            }
        } else {
            if !ips(spec).is_empty() && ips(spec).len() < ips(old).len() {
                errs.push(FieldError::invalid(
                    p.child("ipFamilyPolicy"),
                    policy_value(spec),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if !fams(spec).is_empty() && fams(spec).len() < fams(old).len() {
                errs.push(FieldError::invalid(
                    p.child("ipFamilyPolicy"),
                    policy_value(spec),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy(spec) == SINGLE_STACK {
        if ips(spec).len() == 2 {
            errs.push(FieldError::invalid(
                p.child("ipFamilyPolicy"),
                policy_value(spec),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if fams(spec).len() == 2 {
            errs.push(FieldError::invalid(
                p.child("ipFamilyPolicy"),
                policy_value(spec),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    let cluster_ips: Vec<String> = ips(spec).to_vec();
    for (i, ip) in cluster_ips.iter().enumerate() {
        if ip == CLUSTER_IP_NONE {
            break;
        }
        if i >= fams(spec).len() {
            let Some(f) = family_of(ip) else { continue };
            if net.configured(f) {
                spec.ip_families
                    .get_or_insert_with(Vec::new)
                    .push(f.as_str().to_owned());
            } else {
                errs.push(FieldError::invalid(
                    p.child("clusterIPs").index(i),
                    ips_value(spec),
                    format!("{f} is not configured on this cluster"),
                ));
            }
        }
    }
    if !errs.is_empty() {
        return Err(errs.into());
    }

    if spec.cluster_ip.as_deref() == Some(CLUSTER_IP_NONE) && !has_selector(spec) {
        let families = spec.ip_families.get_or_insert_with(Vec::new);
        if families.is_empty() {
            families.push(net.primary().as_str().to_owned());
        }
        if families.len() < 2 && policy_of(&spec.ip_family_policy) != SINGLE_STACK {
            let other = family(&families[0]).unwrap_or(net.primary()).other();
            families.push(other.as_str().to_owned());
        }
        return Ok(());
    }

    if policy(spec) == REQUIRE_DUAL_STACK && !net.dual_stack() {
        errs.push(FieldError::invalid(
            p.child("ipFamilyPolicy"),
            policy_value(spec),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, f) in fams(spec).iter().enumerate() {
        if !family(f).is_some_and(|f| net.configured(f)) {
            errs.push(FieldError::invalid(
                p.child("ipFamilies").index(i),
                f,
                "not configured on this cluster",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(errs.into());
    }
    let policy_now = policy(spec).to_owned();
    let families = spec.ip_families.get_or_insert_with(Vec::new);
    if families.is_empty() {
        families.push(net.primary().as_str().to_owned());
    }
    if policy_now != SINGLE_STACK && families.len() == 1 && net.dual_stack() {
        let other = family(&families[0]).unwrap_or(net.primary()).other();
        families.push(other.as_str().to_owned());
    }
    Ok(())
}

fn policy_of(p: &Option<String>) -> &str {
    p.as_deref().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// §5, §6 cluster IP allocation

fn ip_failure(spec: &ServiceSpec, ip: &str, e: AllocFailure, what: &str) -> ServiceError {
    match e {
        AllocFailure::Rejected(reason) => ServiceError::Invalid(vec![FieldError::invalid(
            spec_path().child("clusterIPs"),
            ips_value(spec),
            format!("failed to allocate IP {ip}: {reason}"),
        )]),
        AllocFailure::Exhausted(reason) => {
            ServiceError::Internal(format!("failed to allocate a {what}: {reason}"))
        }
    }
}

/// Allocates an address for every family that has none yet, from index `from` on.
fn alloc_cluster_ips(
    spec: &mut ServiceSpec,
    ops: &mut dyn AllocOps,
    from: usize,
) -> Result<(), ServiceError> {
    if ty(spec) == TYPE_EXTERNAL_NAME || ips(spec).first().is_some_and(|ip| ip == CLUSTER_IP_NONE) {
        return Ok(());
    }
    let families: Vec<IpFamily> = fams(spec).iter().filter_map(|f| family(f)).collect();
    let mut list = spec.cluster_ips.clone().unwrap_or_default();
    while list.len() < families.len() {
        list.push(String::new());
    }
    for (i, fam) in families.iter().enumerate().skip(from) {
        let requested = (!list[i].is_empty()).then(|| list[i].clone());
        let got = ops
            .allocate_ip(*fam, requested.as_deref())
            .map_err(|e| ip_failure(spec, requested.as_deref().unwrap_or(""), e, "serviceIP"))?;
        list[i] = got;
    }
    spec.cluster_ip = list.first().cloned();
    spec.cluster_ips = Some(list);
    Ok(())
}

fn release_cluster_ips(spec: &ServiceSpec, ops: &mut dyn AllocOps) {
    if ty(spec) == TYPE_EXTERNAL_NAME || headless(spec) {
        return;
    }
    for ip in ips(spec) {
        if !ip.is_empty() && ip != CLUSTER_IP_NONE {
            ops.release_ip(ip);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// §9.3 node ports

fn port_failure(i: usize, value: i32, e: AllocFailure) -> ServiceError {
    match e {
        AllocFailure::Rejected(reason) => ServiceError::Invalid(vec![FieldError::invalid(
            spec_path().child("ports").index(i).child("nodePort"),
            i64::from(value),
            reason,
        )]),
        AllocFailure::Exhausted(reason) => {
            ServiceError::Internal(format!("failed to allocate a nodePort: {reason}"))
        }
    }
}

fn init_node_ports(spec: &mut ServiceSpec, ops: &mut dyn AllocOps) -> Result<(), ServiceError> {
    let auto = should_allocate_node_ports(spec);
    let ports: Vec<ServicePort> = spec.ports.clone().unwrap_or_default();
    let mut out = ports.clone();
    let mut by_port: Vec<(i32, i32)> = Vec::new();
    for (i, sp) in ports.iter().enumerate() {
        let requested = sp.node_port.unwrap_or(0);
        if requested == 0 && !auto {
            continue;
        }
        let allocated = by_port
            .iter()
            .find(|(p, _)| *p == sp.port)
            .map_or(0, |(_, n)| *n);
        if allocated == 0 {
            // The first entry of a port number takes any node port requested for that number.
            let np = ports
                .iter()
                .find(|p| p.port == sp.port && p.node_port.unwrap_or(0) != 0)
                .and_then(|p| p.node_port)
                .unwrap_or(0);
            let got = if np != 0 {
                ops.allocate_port(Some(np))
                    .map_err(|e| port_failure(i, np, e))?
            } else {
                ops.allocate_port(None).map_err(|e| port_failure(i, 0, e))?
            };
            out[i].node_port = Some(got);
            by_port.push((sp.port, got));
        } else if requested != allocated {
            if requested == 0 {
                out[i].node_port = Some(allocated);
            } else {
                ops.allocate_port(Some(requested))
                    .map_err(|e| port_failure(i, requested, e))?;
            }
        }
    }
    if spec.ports.is_some() {
        spec.ports = Some(out);
    }
    Ok(())
}

fn node_ports_of(spec: &ServiceSpec) -> Vec<i32> {
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port.filter(|n| *n != 0))
        .collect()
}

fn update_node_ports(
    spec: &mut ServiceSpec,
    old: &ServiceSpec,
    ops: &mut dyn AllocOps,
) -> Result<(), ServiceError> {
    let old_ports = node_ports_of(old);
    let auto = should_allocate_node_ports(spec);
    let mut allocated_now: Vec<i32> = Vec::new();
    let mut seen: Vec<(String, i32)> = Vec::new();
    let mut ports = spec.ports.clone().unwrap_or_default();
    for (i, sp) in ports.iter_mut().enumerate() {
        let np = sp.node_port.unwrap_or(0);
        if np == 0 && !auto {
            continue;
        }
        let np = if np != 0 {
            if !old_ports.contains(&np) && !allocated_now.contains(&np) {
                ops.allocate_port(Some(np))
                    .map_err(|e| port_failure(i, np, e))?;
                allocated_now.push(np);
            }
            np
        } else {
            let got = ops.allocate_port(None).map_err(|e| port_failure(i, 0, e))?;
            sp.node_port = Some(got);
            got
        };
        let key = (sp.protocol.clone().unwrap_or_default(), np);
        if seen.contains(&key) {
            return Err(ServiceError::Invalid(vec![FieldError::duplicate(
                spec_path().child("ports").index(i).child("nodePort"),
                i64::from(np),
            )]));
        }
        seen.push(key);
    }
    if spec.ports.is_some() {
        spec.ports = Some(ports);
    }
    let new_ports = node_ports_of(spec);
    for p in old_ports {
        if !new_ports.contains(&p) {
            ops.release_port(p);
        }
    }
    Ok(())
}

fn alloc_health_check(spec: &mut ServiceSpec, ops: &mut dyn AllocOps) -> Result<(), ServiceError> {
    let hc = spec.health_check_node_port.unwrap_or(0);
    if hc != 0 {
        // duostack answers a conflicting request with 422, not Kubernetes' 500 (§13.3).
        ops.allocate_port(Some(hc)).map_err(|e| match e {
            AllocFailure::Rejected(reason) | AllocFailure::Exhausted(reason) => {
                ServiceError::Invalid(vec![FieldError::invalid(
                    spec_path().child("healthCheckNodePort"),
                    i64::from(hc),
                    format!("failed to allocate requested HealthCheck NodePort {hc}: {reason}"),
                )])
            }
        })?;
    } else {
        let got = ops.allocate_port(None).map_err(|e| match e {
            AllocFailure::Rejected(r) | AllocFailure::Exhausted(r) => {
                ServiceError::Internal(format!("failed to allocate a HealthCheck NodePort: {r}"))
            }
        })?;
        spec.health_check_node_port = Some(got);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The legacy v1.16 alpha field `spec.ipFamily`.

/// The warning sent when `spec.ipFamily` was converted.
pub fn legacy_warning(family: &str) -> String {
    format!(
        "spec.ipFamily is the v1.16 alpha field, removed in v1.20; it was converted to spec.ipFamilyPolicy: SingleStack and spec.ipFamilies: [{family}]"
    )
}

/// On create, `spec.ipFamily: X` means `ipFamilyPolicy: SingleStack, ipFamilies: [X]`.
fn apply_legacy_create(
    spec: &mut ServiceSpec,
    legacy: &str,
    net: &ServiceNetwork,
) -> Result<(), ServiceError> {
    let path = spec_path().child("ipFamily");
    let Some(f) = family(legacy).filter(|f| net.configured(*f)) else {
        let allowed: Vec<&str> = net.families.iter().map(|f| f.as_str()).collect();
        return Err(ServiceError::Invalid(vec![FieldError::invalid(
            path,
            legacy,
            format!(
                "only the following families are allowed: {}",
                allowed.join(", ")
            ),
        )]));
    };
    if ty(spec) == TYPE_EXTERNAL_NAME {
        // ExternalName Services have no family; the alpha field was never enforced there.
        return Ok(());
    }
    match fams(spec).first() {
        None => spec.ip_families = Some(vec![f.as_str().to_owned()]),
        Some(first) if family(first) == Some(f) => {}
        Some(first) => {
            return Err(ServiceError::Invalid(vec![FieldError::invalid(
                path,
                legacy,
                format!("does not match spec.ipFamilies[0] ({first})"),
            )]));
        }
    }
    if spec.ip_family_policy.is_none() {
        spec.ip_family_policy = Some(SINGLE_STACK.into());
    }
    if let Some(ip) = ips(spec).first().filter(|ip| *ip != CLUSTER_IP_NONE)
        && family_of(ip) != Some(f)
    {
        let other = f.other();
        return Err(ServiceError::Invalid(vec![FieldError::invalid(
            path,
            legacy,
            format!("does not match {other} cluster IP"),
        )]));
    }
    Ok(())
}

/// On update, `spec.ipFamily` may only repeat the Service's primary family.
fn check_legacy_update(spec: &ServiceSpec, old: &ServiceSpec, legacy: &str) -> FieldErrors {
    let stored = fams(old).first().cloned().or_else(|| {
        ips(old)
            .first()
            .and_then(|ip| family_of(ip))
            .map(|f| f.as_str().to_owned())
    });
    match stored {
        Some(s) if s != legacy && ty(spec) != TYPE_EXTERNAL_NAME => vec![FieldError::invalid(
            spec_path().child("ipFamily"),
            legacy,
            "field is immutable",
        )],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points

/// `beginCreate`: normalize, default and check families, allocate addresses and node ports.
/// Runs before ordinary validation, as in Kubernetes, so these errors come first.
pub fn begin_create(
    svc: &mut Service,
    net: &ServiceNetwork,
    ops: &mut dyn AllocOps,
    legacy_family: Option<&str>,
) -> Result<(), ServiceError> {
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    normalize_create(spec);
    if let Some(l) = legacy_family {
        apply_legacy_create(spec, l, net)?;
    }
    init_ip_family_fields(spec, None, net)?;
    alloc_cluster_ips(spec, ops, 0)?;
    if needs_node_port(spec) {
        init_node_ports(spec, ops)?;
    }
    if needs_health_check(spec) {
        alloc_health_check(spec, ops)?;
    }
    Ok(())
}

/// `beginUpdate`: the same on update, with upgrade, downgrade and type changes.
pub fn begin_update(
    svc: &mut Service,
    old_svc: &Service,
    net: &ServiceNetwork,
    ops: &mut dyn AllocOps,
    legacy_family: Option<&str>,
) -> Result<(), ServiceError> {
    let mut old = old_svc.spec.clone().unwrap_or_default();
    default_on_read(&mut old, net);
    let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
    if let Some(l) = legacy_family {
        let errs = check_legacy_update(spec, &old, l);
        if !errs.is_empty() {
            return Err(errs.into());
        }
    }
    patch_allocated_values(spec, &old);
    normalize_update(spec, &old);
    init_ip_family_fields(spec, Some(&old), net)?;

    if !matching_prefer_dual_stack(spec, Some(&old)) {
        let old_headless = ips(&old).first().is_some_and(|ip| ip == CLUSTER_IP_NONE);
        if ty(&old) == TYPE_EXTERNAL_NAME && ty(spec) != TYPE_EXTERNAL_NAME {
            alloc_cluster_ips(spec, ops, 0)?;
        } else if old_headless {
            // Headless Services hold no addresses; their families may change freely.
        } else if ty(&old) != TYPE_EXTERNAL_NAME && ty(spec) == TYPE_EXTERNAL_NAME {
            release_cluster_ips(&old, ops);
        } else if fams(&old).len() == 1 && fams(spec).len() == 2 {
            alloc_cluster_ips(spec, ops, 1)?;
        } else if fams(&old).len() == 2
            && fams(spec).len() == 1
            && let Some(second) = ips(&old).get(1)
        {
            ops.release_ip(second);
        }
    }

    match (needs_node_port(&old), needs_node_port(spec)) {
        (false, true) => init_node_ports(spec, ops)?,
        (true, true) => update_node_ports(spec, &old, ops)?,
        (true, false) => {
            for p in node_ports_of(&old) {
                ops.release_port(p);
            }
        }
        (false, false) => {}
    }
    match (needs_health_check(&old), needs_health_check(spec)) {
        (false, true) => alloc_health_check(spec, ops)?,
        (true, false) => {
            if let Some(hc) = old.health_check_node_port.filter(|p| *p != 0) {
                ops.release_port(hc);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Everything a Service holds, released when it is deleted.
pub fn release_all(svc: &Service, ops: &mut dyn AllocOps) {
    let Some(spec) = svc.spec.as_ref() else {
        return;
    };
    release_cluster_ips(spec, ops);
    for p in node_ports_of(spec) {
        ops.release_port(p);
    }
    if let Some(hc) = spec.health_check_node_port.filter(|p| *p != 0) {
        ops.release_port(hc);
    }
}

/// §8: how a Service stored before dual-stack is read.
pub fn default_on_read(spec: &mut ServiceSpec, net: &ServiceNetwork) {
    if ips(spec).is_empty()
        && let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty())
    {
        spec.cluster_ips = Some(vec![ip]);
    }
    if !fams(spec).is_empty() {
        return;
    }
    if ty(spec) == TYPE_EXTERNAL_NAME {
        spec.internal_traffic_policy = None;
        return;
    }
    let primary = net.primary();
    if headless(spec) {
        if has_selector(spec) {
            spec.ip_family_policy = Some(SINGLE_STACK.into());
            spec.ip_families = Some(vec![primary.as_str().into()]);
        } else {
            spec.ip_family_policy = Some(REQUIRE_DUAL_STACK.into());
            spec.ip_families = Some(vec![
                primary.as_str().into(),
                primary.other().as_str().into(),
            ]);
        }
        return;
    }
    let families: Vec<String> = ips(spec)
        .iter()
        .filter_map(|ip| family_of(ip))
        .map(|f| f.as_str().to_owned())
        .collect();
    if families.is_empty() {
        return;
    }
    spec.ip_family_policy = Some(if families.len() == 1 {
        SINGLE_STACK.into()
    } else {
        REQUIRE_DUAL_STACK.into()
    });
    spec.ip_families = Some(families);
}

/// What moving to another type drops, unless the client changed it
/// (`dropTypeDependentFields`); the registry has already released what was held.
pub fn drop_type_dependent_fields(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if new.cluster_ip == old.cluster_ip {
            new.cluster_ip = None;
        }
        if new.cluster_ips == old.cluster_ips {
            new.cluster_ips = None;
        }
        if new.ip_families == old.ip_families {
            new.ip_families = None;
        }
        if new.ip_family_policy == old.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    if needs_node_port(old) && !needs_node_port(new) {
        let old_ports: Vec<(String, i32)> = old
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.node_port.unwrap_or(0)))
            .collect();
        for p in new.ports.iter_mut().flatten() {
            let name = p.name.clone().unwrap_or_default();
            if old_ports
                .iter()
                .any(|(n, np)| *n == name && Some(*np) == p.node_port)
            {
                p.node_port = None;
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(new)
        && new.health_check_node_port == old.health_check_node_port
    {
        new.health_check_node_port = None;
    }
    if ty(old) == TYPE_LOAD_BALANCER && ty(new) != TYPE_LOAD_BALANCER {
        if new.allocate_load_balancer_node_ports == old.allocate_load_balancer_node_ports {
            new.allocate_load_balancer_node_ports = None;
        }
        if new.load_balancer_class == old.load_balancer_class {
            new.load_balancer_class = None;
        }
    }
}

#[cfg(test)]
mod tests;
