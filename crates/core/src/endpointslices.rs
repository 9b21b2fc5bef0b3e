//! EndpointSlice and Endpoints computation, as kube-controller-manager's
//! endpointslice controller (reconciler) and endpoints controller do it, as pure
//! functions: a Service, the Pods and the existing slices in, a plan out.
//!
//! Behaviour follows `staging/src/k8s.io/endpointslice/{reconciler.go,utils.go}`,
//! `staging/src/k8s.io/endpointslice/util/{controller_utils.go,endpointset.go}`,
//! `pkg/controller/endpointslice/endpointslice_controller.go`,
//! `pkg/controller/endpoint/endpoints_controller.go` and
//! `pkg/api/v1/endpoints/util.go` (RepackSubsets). Where Kubernetes is random
//! (Go map iteration, `PopAny`) this module picks a fixed order instead, so the
//! same input always gives the same plan.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::net::parse_ip_sloppy;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CoreEndpointPort, EndpointSubset, Endpoints, ObjectReference,
    Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// `kubernetes.io/service-name`: the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: which controller owns a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on slices this controller manages.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// `service.kubernetes.io/headless`, set (empty) on slices and Endpoints of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// `endpoints.kubernetes.io/managed-by`: set on the Endpoints objects the endpoints controller writes.
pub const ENDPOINTS_LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// The value of [`ENDPOINTS_LABEL_MANAGED_BY`].
pub const ENDPOINTS_CONTROLLER_NAME: &str = "endpoint-controller";
/// `endpoints.kubernetes.io/last-change-trigger-time`.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";
/// `endpoints.kubernetes.io/over-capacity`, `truncated` when an Endpoints object was cut.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// kube-controller-manager's default `--max-endpoints-per-slice`.
pub const DEFAULT_MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// The largest `--max-endpoints-per-slice` kube-controller-manager accepts.
pub const MAX_ENDPOINTS_PER_SLICE_LIMIT: usize = 1000;
/// The most addresses the endpoints controller keeps in one Endpoints object.
pub const ENDPOINTS_MAX_CAPACITY: usize = 1000;

const CLUSTER_IP_NONE: &str = "None";
const DEFAULT_PROTOCOL: &str = "TCP";

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointSliceError {
    /// The slice size is outside what kube-controller-manager accepts for
    /// `--max-endpoints-per-slice` (1 to 1000); zero would never finish filling a slice.
    #[error(
        "max endpoints per slice must be between 1 and {MAX_ENDPOINTS_PER_SLICE_LIMIT}, got {0}"
    )]
    InvalidMaxEndpointsPerSlice(usize),
}

/// An EndpointSlice address type this controller produces (never `FQDN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressType {
    /// `IPv4`
    IPv4,
    /// `IPv6`
    IPv6,
}

impl AddressType {
    /// The API spelling (`IPv4` / `IPv6`), used for both `addressType` and `ipFamilies`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::IPv4 => "IPv4",
            AddressType::IPv6 => "IPv6",
        }
    }

    /// Parses the API spelling; anything else (`FQDN`, typos) is `None`.
    pub fn from_api(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(AddressType::IPv4),
            "IPv6" => Some(AddressType::IPv6),
            _ => None,
        }
    }

    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddressType::IPv4,
            IpAddr::V6(_) => AddressType::IPv6,
        }
    }

    fn index(self) -> usize {
        match self {
            AddressType::IPv4 => 0,
            AddressType::IPv6 => 1,
        }
    }
}

/// What the reconciler wants written for one Service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// New slices; they carry `generateName` and no name (the server picks it).
    pub create: Vec<EndpointSlice>,
    /// Full replacements of existing slices, keyed by `metadata.name`.
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl Plan {
    /// True when nothing needs writing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Knobs of [`plan_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Most endpoints in one slice (`--max-endpoints-per-slice`, 1..=1000).
    pub max_endpoints_per_slice: usize,
    /// Value for [`ANNOTATION_LAST_CHANGE_TRIGGER_TIME`] on every written slice
    /// (RFC 3339 with nanoseconds, UTC). `None` removes the annotation from
    /// written slices, which is what Kubernetes does when it has no trigger time.
    pub trigger_time: Option<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            max_endpoints_per_slice: DEFAULT_MAX_ENDPOINTS_PER_SLICE,
            trigger_time: None,
        }
    }
}

// ---------------------------------------------------------------------------
// Small accessors. Every field of the API types is optional, so these collapse
// absent and empty the way Go's zero values do.

fn meta_name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn meta_namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

fn opt_str(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

fn cluster_ip(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("")
}

/// `isServiceIPSet`: headful means a real clusterIP; empty counts as headless too.
fn is_service_ip_set(svc: &Service) -> bool {
    let ip = cluster_ip(svc);
    !ip.is_empty() && ip != CLUSTER_IP_NONE
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

fn ip_families(svc: &Service) -> &[String] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.as_deref())
        .unwrap_or(&[])
}

/// Both controllers skip ExternalName Services and Services without a selector.
/// An empty selector counts as none: the apiserver never hands out an empty map
/// (it is omitted on the wire), so in Kubernetes `selector: {}` reads back as nil.
fn is_managed(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    spec.selector.as_ref().is_some_and(|s| !s.is_empty())
}

fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn pod_ips(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|p| p.ip.as_str())
}

/// `ShouldPodBeInEndpoints`: terminal pods and pods without any IP never count;
/// pods being deleted count only when the caller keeps terminating endpoints.
fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        return false;
    }
    let has_ip = status.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        || status.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty());
    if !has_ip {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// `ShouldSetHostname`: Kubernetes checks only hostname + subdomain == Service
/// name, not whether the Service is headless.
fn hostname_for<'p>(pod: &'p Pod, svc: &Service) -> Option<&'p str> {
    let spec = pod.spec.as_ref()?;
    let hostname = non_empty(spec.hostname.as_deref())?;
    (opt_str(&spec.subdomain) == meta_name(&svc.metadata)
        && meta_namespace(&svc.metadata) == meta_namespace(&pod.metadata))
    .then_some(hostname)
}

/// `utilnet.IsIPv6String`: anything that does not parse counts as IPv4.
fn is_ipv6_string(s: &str) -> bool {
    matches!(parse_ip_sloppy(s), Some(IpAddr::V6(_)))
}

/// RFC 5952 text of an IPv6 address (lowercase, no leading zeros, the first
/// longest run of two or more zero groups as `::`), as Go's `IP.String` and
/// Rust's `Display` write it for addresses that are not IPv4-mapped. Written by
/// hand into a stack buffer because the formatter showed up first in profiles.
fn ipv6_text(ip: std::net::Ipv6Addr, out: &mut [u8; 40]) -> usize {
    let segments = ip.segments();
    let (mut run_start, mut run_len) = (8, 0);
    let mut i = 0;
    while i < 8 {
        if segments[i] == 0 {
            let start = i;
            while i < 8 && segments[i] == 0 {
                i += 1;
            }
            if i - start > run_len {
                (run_start, run_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if run_len < 2 {
        (run_start, run_len) = (8, 0);
    }
    let mut len = 0;
    let mut i = 0;
    while i < 8 {
        if i == run_start {
            out[len..len + 2].copy_from_slice(b"::");
            len += 2;
            i += run_len;
            continue;
        }
        if i > 0 && i != run_start + run_len {
            out[len] = b':';
            len += 1;
        }
        let segment = segments[i];
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let nibble = (segment >> shift) & 0xf;
            if started || nibble != 0 || shift == 0 {
                started = true;
                out[len] = b"0123456789abcdef"[usize::from(nibble)];
                len += 1;
            }
        }
        i += 1;
    }
    len
}

/// A pod IP as the slice controller publishes it (`ParseIPSloppy(ip).String()`),
/// borrowing the pod's text when it already is in that form, which it nearly
/// always is.
fn canonical_ip(raw: &str) -> Option<(AddressType, Cow<'_, str>)> {
    match raw.parse::<IpAddr>() {
        // The strict parser rejects leading zeros, so what it accepts is canonical.
        Ok(IpAddr::V4(_)) => Some((AddressType::IPv4, Cow::Borrowed(raw))),
        Ok(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Some((AddressType::IPv4, Cow::Owned(v4.to_string())));
            }
            let mut text = [0u8; 40];
            let len = ipv6_text(v6, &mut text);
            let shown = if &text[..len] == raw.as_bytes() {
                Cow::Borrowed(raw)
            } else {
                Cow::Owned(v6.to_string())
            };
            Some((AddressType::IPv6, shown))
        }
        Err(_) => parse_ip_sloppy(raw).map(|ip| (AddressType::of(ip), Cow::Owned(ip.to_string()))),
    }
}

fn svc_port_protocol(sp: &ServicePort) -> &str {
    non_empty(sp.protocol.as_deref()).unwrap_or(DEFAULT_PROTOCOL)
}

/// `FindPort`. An unset (or zero / empty) targetPort is what the apiserver
/// defaults to `port`, so it resolves to `port` here; named ports are looked up
/// in the containers, then in sidecars (restartPolicy Always init containers).
fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let name = match &sp.target_port {
        None | Some(IntOrString::Int(0)) => return Some(sp.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(s)) if s.is_empty() => return Some(sp.port),
        Some(IntOrString::String(s)) => s.as_str(),
    };
    let spec = pod.spec.as_ref()?;
    let protocol = svc_port_protocol(sp);
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name)
                && non_empty(p.protocol.as_deref()).unwrap_or(DEFAULT_PROTOCOL) == protocol
        })
        .map(|p| p.container_port)
}

/// True when the Service's equality selector selects the pod: same namespace,
/// every selector label present with the same value. A Service without a
/// selector (or with an empty one) selects nothing.
pub fn selector_matches(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() || meta_namespace(&svc.metadata) != meta_namespace(&pod.metadata) {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The address types a Service gets slices for (`getAddressTypesForService`):
/// its `ipFamilies`; without any, the clusterIP's family; headless (or no
/// clusterIP yet) without families, both. Sorted, IPv4 first.
pub fn address_types(svc: &Service) -> Vec<AddressType> {
    let mut types: Vec<AddressType> = ip_families(svc)
        .iter()
        .filter_map(|f| AddressType::from_api(f))
        .collect();
    types.sort();
    types.dedup();
    if !types.is_empty() {
        return types;
    }
    if is_service_ip_set(svc) {
        return vec![if is_ipv6_string(cluster_ip(svc)) {
            AddressType::IPv6
        } else {
            AddressType::IPv4
        }];
    }
    vec![AddressType::IPv4, AddressType::IPv6]
}

// ---------------------------------------------------------------------------
// EndpointSlice reconciler.

/// `isReservedLabelKey`: labels the controller owns, never copied from the Service.
fn is_reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

fn non_reserved(
    labels: Option<&BTreeMap<String, String>>,
) -> impl Iterator<Item = (&String, &String)> {
    labels
        .into_iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_label(k))
}

/// `setEndpointSliceLabels`, first half: the labels every slice of the
/// Service should carry.
fn wanted_slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut wanted: BTreeMap<String, String> = non_reserved(svc.metadata.labels.as_ref())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !is_service_ip_set(svc) {
        wanted.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    wanted.insert(
        LABEL_SERVICE_NAME.to_owned(),
        meta_name(&svc.metadata).to_owned(),
    );
    wanted.insert(LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned());
    wanted
}

/// `setEndpointSliceLabels`, second half: whether the slice's labels need a
/// rewrite. Only the Service-copied labels count; a change of the reserved
/// ones alone (e.g. the headless label) deliberately does not, as in Kubernetes.
fn slice_labels_changed(slice: &EndpointSlice, svc: &Service) -> bool {
    !non_reserved(slice.metadata.labels.as_ref()).eq(non_reserved(svc.metadata.labels.as_ref()))
}

/// `ownedBy`: only slices whose owner reference names this Service instance are
/// reconciled; others (e.g. left over from a deleted Service of the same name) go.
fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    let uid = opt_str(&svc.metadata.uid);
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "Service" && o.api_version == "v1")
}

/// `getEndpointSlicePrefix`: `<svc>-` unless that is not a valid name prefix.
fn generate_name(svc_name: &str) -> String {
    let prefix = format!("{svc_name}-");
    let valid = prefix.len() <= 253
        && prefix.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !prefix.contains("..")
        && !prefix.contains(".-")
        && !prefix.contains("-.");
    if valid { prefix } else { svc_name.to_owned() }
}

/// Identity of an endpoint inside one address type (`hashEndpoint`): addresses
/// (as a set), hostname, and the target's namespace/name. Everything else can be
/// updated in place.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct EpKey<'a> {
    name: &'a str,
    namespace: &'a str,
    hostname: &'a str,
    addresses: Addrs<'a>,
}

/// Nearly every endpoint has one address; keeping that case allocation-free
/// matters because keys are built for every endpoint of every existing slice.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Addrs<'a> {
    One(&'a str),
    Many(Vec<&'a str>),
}

impl<'a> Addrs<'a> {
    fn new<S: AsRef<str>>(addresses: &'a [S]) -> Self {
        if let [one] = addresses {
            Addrs::One(one.as_ref())
        } else {
            let mut all: Vec<&str> = addresses.iter().map(AsRef::as_ref).collect();
            all.sort_unstable();
            Addrs::Many(all)
        }
    }
}

fn ep_key(ep: &Endpoint) -> EpKey<'_> {
    let target = ep.target_ref.as_ref();
    EpKey {
        name: target.map_or("", |t| opt_str(&t.name)),
        namespace: target.map_or("", |t| opt_str(&t.namespace)),
        hostname: opt_str(&ep.hostname),
        addresses: Addrs::new(&ep.addresses),
    }
}

fn conditions(ep: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
    ep.conditions
        .as_ref()
        .map_or((None, None, None), |c| (c.ready, c.serving, c.terminating))
}

/// Go drops empty strings of ObjectReference on the wire (omitempty), so an
/// empty string and an absent field are the same value.
fn target_refs_equal_ignoring_rv(a: Option<&ObjectReference>, b: Option<&ObjectReference>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            opt_str(&a.api_version) == opt_str(&b.api_version)
                && opt_str(&a.field_path) == opt_str(&b.field_path)
                && opt_str(&a.kind) == opt_str(&b.kind)
                && opt_str(&a.name) == opt_str(&b.name)
                && opt_str(&a.namespace) == opt_str(&b.namespace)
                && opt_str(&a.uid) == opt_str(&b.uid)
        }
        _ => false,
    }
}

/// What one selected pod contributes, computed once and shared by both
/// families. Endpoint objects are only built from it for slices being written,
/// which keeps the common no-change reconcile nearly allocation-free.
struct PodEndpoint<'p> {
    group: usize,
    ready: bool,
    serving: bool,
    terminating: bool,
    namespace: &'p str,
    name: &'p str,
    uid: &'p str,
    hostname: Option<&'p str>,
    node_name: Option<&'p str>,
    /// IPv4 addresses first, then IPv6 from `ipv6_from` on.
    addresses: Vec<Cow<'p, str>>,
    ipv6_from: usize,
}

impl PodEndpoint<'_> {
    fn addresses(&self, family: AddressType) -> &[Cow<'_, str>] {
        match family {
            AddressType::IPv4 => &self.addresses[..self.ipv6_from],
            AddressType::IPv6 => &self.addresses[self.ipv6_from..],
        }
    }

    fn key(&self, family: AddressType) -> EpKey<'_> {
        EpKey {
            name: self.name,
            namespace: self.namespace,
            hostname: self.hostname.unwrap_or(""),
            addresses: Addrs::new(self.addresses(family)),
        }
    }

    /// `podToEndpoint` for one address type.
    fn to_endpoint(&self, family: AddressType) -> Endpoint {
        let owned = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Endpoint {
            addresses: self
                .addresses(family)
                .iter()
                .map(|a| a.as_ref().to_owned())
                .collect(),
            conditions: Some(EndpointConditions {
                ready: Some(self.ready),
                serving: Some(self.serving),
                terminating: Some(self.terminating),
            }),
            hostname: self.hostname.map(str::to_owned),
            node_name: self.node_name.map(str::to_owned),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".to_owned()),
                namespace: owned(self.namespace),
                name: owned(self.name),
                uid: owned(self.uid),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// `EndpointsEqualBeyondHash` of the endpoint this pod would produce and an
    /// existing one with the same identity: the fields whose change needs a
    /// write. Hints are left out on purpose, as in Kubernetes.
    fn same_beyond_key(&self, ep: &Endpoint) -> bool {
        let target_same = ep.target_ref.as_ref().is_some_and(|t| {
            opt_str(&t.kind) == "Pod"
                && opt_str(&t.namespace) == self.namespace
                && opt_str(&t.name) == self.name
                && opt_str(&t.uid) == self.uid
                && opt_str(&t.api_version).is_empty()
                && opt_str(&t.field_path).is_empty()
        });
        target_same
            && ep.node_name.as_deref() == self.node_name
            && ep.zone.is_none()
            && conditions(ep) == (Some(self.ready), Some(self.serving), Some(self.terminating))
    }
}

/// A distinct set of resolved ports; pods resolving a named targetPort
/// differently land in different groups and so in different slices.
struct PortGroup {
    resolved: Vec<Option<i32>>,
    ports: Vec<EndpointPort>,
}

/// Order-insensitive identity of a port list (`NewPortMapKey`).
type PortsKey<'a> = Vec<(
    Option<&'a str>,
    Option<i32>,
    Option<&'a str>,
    Option<&'a str>,
)>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey<'_> {
    let mut key: PortsKey<'_> = ports
        .iter()
        .map(|p| {
            (
                p.name.as_deref(),
                p.port,
                p.protocol.as_deref(),
                p.app_protocol.as_deref(),
            )
        })
        .collect();
    key.sort_unstable();
    key
}

/// The desired state of a Service: the selected pods, their port groups and,
/// per family and group, the pods with an address of that family, sorted by
/// endpoint identity.
struct DesiredState<'p> {
    pods: Vec<PodEndpoint<'p>>,
    groups: Vec<PortGroup>,
    /// `[family][group]` → indexes into `pods`.
    members: [Vec<Vec<usize>>; 2],
}

fn desired_state<'p>(svc: &Service, pods: &[&'p Pod]) -> DesiredState<'p> {
    let svc_ports = service_ports(svc);
    // Headless Services may have no ports at all; every pod then shares the
    // empty port set.
    let headless_without_ports = svc_ports.is_empty() && cluster_ip(svc) == CLUSTER_IP_NONE;
    let publish = publish_not_ready(svc);

    let mut groups: Vec<PortGroup> = Vec::new();
    let mut pod_eps: Vec<PodEndpoint<'p>> = Vec::with_capacity(pods.len());
    let mut resolved: Vec<Option<i32>> = Vec::with_capacity(svc_ports.len());

    for &pod in pods {
        if !selector_matches(svc, pod) || !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        resolved.clear();
        if !headless_without_ports {
            resolved.extend(svc_ports.iter().map(|sp| find_port(pod, sp)));
        }
        let group = match groups.iter().position(|g| g.resolved == resolved) {
            Some(g) => g,
            None => {
                let ports: Vec<EndpointPort> = svc_ports
                    .iter()
                    .zip(&resolved)
                    .filter_map(|(sp, port)| {
                        port.map(|port| EndpointPort {
                            name: Some(sp.name.clone().unwrap_or_default()),
                            port: Some(port),
                            protocol: Some(svc_port_protocol(sp).to_owned()),
                            app_protocol: sp.app_protocol.clone(),
                        })
                    })
                    .collect();
                groups.push(PortGroup {
                    resolved: resolved.clone(),
                    ports,
                });
                groups.len() - 1
            }
        };

        let mut addresses: Vec<(AddressType, Cow<'p, str>)> =
            pod_ips(pod).filter_map(canonical_ip).collect();
        addresses.sort_by_key(|(family, _)| *family);
        let ipv6_from = addresses
            .iter()
            .position(|(family, _)| *family == AddressType::IPv6)
            .unwrap_or(addresses.len());
        let serving = is_pod_ready(pod);
        let terminating = is_terminating(pod);
        let meta = &pod.metadata;
        pod_eps.push(PodEndpoint {
            group,
            // A terminating pod is never ready unless the Service publishes
            // not-ready addresses.
            ready: publish || (serving && !terminating),
            serving,
            terminating,
            namespace: meta_namespace(meta),
            name: meta_name(meta),
            uid: opt_str(&meta.uid),
            hostname: hostname_for(pod, svc),
            node_name: non_empty(pod.spec.as_ref().and_then(|s| s.node_name.as_deref())),
            addresses: addresses.into_iter().map(|(_, a)| a).collect(),
            ipv6_from,
        });
    }

    // Different resolutions can still describe the same port set (odd
    // Services with duplicate ports); Kubernetes keys groups by the port set.
    let mut canonical: Vec<usize> = (0..groups.len()).collect();
    for g in 1..groups.len() {
        let key = ports_key(&groups[g].ports);
        if let Some(first) =
            (0..g).find(|&h| canonical[h] == h && ports_key(&groups[h].ports) == key)
        {
            canonical[g] = first;
        }
    }
    for pe in &mut pod_eps {
        pe.group = canonical[pe.group];
    }

    let members = [AddressType::IPv4, AddressType::IPv6].map(|family| {
        let mut per_group: Vec<Vec<usize>> = vec![Vec::new(); groups.len()];
        for (i, pe) in pod_eps.iter().enumerate() {
            if !pe.addresses(family).is_empty() {
                per_group[pe.group].push(i);
            }
        }
        for members in &mut per_group {
            members.sort_by(|&a, &b| pod_eps[a].key(family).cmp(&pod_eps[b].key(family)));
            members.dedup_by(|a, b| pod_eps[*a].key(family) == pod_eps[*b].key(family));
        }
        per_group
    });

    DesiredState {
        pods: pod_eps,
        groups,
        members,
    }
}

/// The desired endpoints of one port set and address type (`EndpointSet`).
/// Endpoints are handed out in identity order, where Kubernetes pops them at
/// random; lookups are binary searches over that order.
struct Desired<'d> {
    family: AddressType,
    pods: &'d [PodEndpoint<'d>],
    members: &'d [usize],
    keys: Vec<EpKey<'d>>,
    taken: Vec<bool>,
    remaining: usize,
    cursor: usize,
}

impl<'d> Desired<'d> {
    fn new(state: &'d DesiredState<'d>, family: AddressType, group: usize) -> Self {
        let members = &state.members[family.index()][group];
        Desired {
            family,
            pods: &state.pods,
            members,
            keys: members.iter().map(|&i| state.pods[i].key(family)).collect(),
            taken: vec![false; members.len()],
            remaining: members.len(),
            cursor: 0,
        }
    }

    /// Get-and-delete of the desired endpoint with the same identity. A second
    /// existing copy of the same endpoint finds nothing and is dropped.
    fn take(&mut self, existing: &Endpoint) -> Option<&'d PodEndpoint<'d>> {
        let i = self.keys.binary_search(&ep_key(existing)).ok()?;
        if self.taken[i] {
            return None;
        }
        self.taken[i] = true;
        self.remaining -= 1;
        Some(&self.pods[self.members[i]])
    }

    fn pop(&mut self) -> Option<&'d PodEndpoint<'d>> {
        while self.cursor < self.members.len() {
            let i = self.cursor;
            self.cursor += 1;
            if !self.taken[i] {
                self.taken[i] = true;
                self.remaining -= 1;
                return Some(&self.pods[self.members[i]]);
            }
        }
        None
    }
}

struct Ctx<'s> {
    svc: &'s Service,
    max: usize,
    /// Built on first need: a reconcile that writes nothing never needs it.
    labels: OnceCell<BTreeMap<String, String>>,
}

impl<'s> Ctx<'s> {
    fn new(svc: &'s Service, max: usize) -> Self {
        Ctx {
            svc,
            max,
            labels: OnceCell::new(),
        }
    }

    fn labels(&self) -> &BTreeMap<String, String> {
        self.labels.get_or_init(|| wanted_slice_labels(self.svc))
    }

    /// `newEndpointSlice`.
    fn new_slice(&self, family: AddressType, ports: &[EndpointPort]) -> EndpointSlice {
        let svc = self.svc;
        let name = meta_name(&svc.metadata);
        EndpointSlice {
            address_type: family.as_str().to_owned(),
            endpoints: Some(Vec::new()),
            metadata: ObjectMeta {
                generate_name: Some(generate_name(name)),
                namespace: svc.metadata.namespace.clone(),
                labels: Some(self.labels().clone()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "v1".to_owned(),
                    kind: "Service".to_owned(),
                    name: name.to_owned(),
                    uid: opt_str(&svc.metadata.uid).to_owned(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            ports: Some(ports.to_vec()),
        }
    }
}

fn slice_len(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}

fn fill(slice: &mut EndpointSlice, desired: &mut Desired<'_>, max: usize) {
    let eps = slice.endpoints.get_or_insert_with(Vec::new);
    while eps.len() < max {
        let Some(pe) = desired.pop() else { break };
        eps.push(pe.to_endpoint(desired.family));
    }
}

#[derive(Default)]
struct Changes<'e> {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<&'e EndpointSlice>,
}

/// `reconcileByPortMapping`: keep what is still wanted where it is, update
/// slices that lost or changed endpoints, top up the slices being written
/// anyway, then put the rest into the unchanged slice that ends up closest to
/// full, and only then into new slices.
fn reconcile_port_group<'e>(
    ctx: &Ctx<'_>,
    ports: &[EndpointPort],
    existing: &[&'e EndpointSlice],
    desired: &mut Desired<'_>,
    out: &mut Changes<'e>,
) {
    let family = desired.family;
    let mut update: Vec<EndpointSlice> = Vec::new();
    let mut unchanged: Vec<&'e EndpointSlice> = Vec::new();
    let mut kept: Vec<&PodEndpoint<'_>> = Vec::new();

    for &slice in existing {
        kept.clear();
        let mut endpoint_changed = false;
        let current = slice.endpoints.as_deref().unwrap_or(&[]);
        for ep in current {
            if let Some(pe) = desired.take(ep) {
                endpoint_changed |= !pe.same_beyond_key(ep);
                kept.push(pe);
            }
        }
        let labels_changed = slice_labels_changed(slice, ctx.svc);
        if endpoint_changed || kept.len() != current.len() {
            if kept.is_empty() {
                out.delete.push(slice);
            } else {
                let mut s = slice.clone();
                s.endpoints = Some(kept.iter().map(|pe| pe.to_endpoint(family)).collect());
                s.metadata.labels = Some(ctx.labels().clone());
                update.push(s);
            }
        } else if labels_changed {
            let mut s = slice.clone();
            s.metadata.labels = Some(ctx.labels().clone());
            update.push(s);
        } else {
            unchanged.push(slice);
        }
    }

    if desired.remaining > 0 && !update.is_empty() {
        // Fullest first, so the endpoints spread over as few slices as possible.
        update.sort_by(|a, b| {
            slice_len(b)
                .cmp(&slice_len(a))
                .then_with(|| meta_name(&a.metadata).cmp(meta_name(&b.metadata)))
        });
        for slice in &mut update {
            fill(slice, desired, ctx.max);
        }
    }

    while desired.remaining > 0 {
        let mut target = None;
        if desired.remaining < ctx.max && !unchanged.is_empty() {
            target = slice_to_fill(&unchanged, desired.remaining, ctx.max);
        }
        match target {
            Some(i) => {
                let mut s = unchanged.remove(i).clone();
                fill(&mut s, desired, ctx.max);
                update.push(s);
            }
            None => {
                let mut s = ctx.new_slice(family, ports);
                fill(&mut s, desired, ctx.max);
                out.create.push(s);
            }
        }
    }

    out.update.append(&mut update);
}

/// `getSliceToFill`: the slice that will be closest to full after taking
/// `n` more endpoints, if any has room for all of them.
fn slice_to_fill(slices: &[&EndpointSlice], n: usize, max: usize) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, slice) in slices.iter().enumerate() {
        let Some(diff) = max.checked_sub(n + slice_len(slice)) else {
            continue;
        };
        if diff < best.map_or(max, |(_, d)| d) {
            best = Some((i, diff));
            if diff == 0 {
                break;
            }
        }
    }
    best.map(|(i, _)| i)
}

/// `placeholderSliceCompare`: only namespace, labels (a missing label equals an
/// empty one), address type, and emptiness of ports and endpoints matter.
fn is_same_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice) -> bool {
    let labels_cover = |a: &ObjectMeta, b: &ObjectMeta| {
        a.labels.iter().flatten().all(|(k, v)| {
            b.labels
                .as_ref()
                .and_then(|l| l.get(k))
                .map_or("", String::as_str)
                == v
        })
    };
    meta_namespace(&slice.metadata) == meta_namespace(&placeholder.metadata)
        && labels_cover(&slice.metadata, &placeholder.metadata)
        && labels_cover(&placeholder.metadata, &slice.metadata)
        && slice.address_type == placeholder.address_type
        && slice_len(slice) == 0
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

fn strip_hints(slice: &mut EndpointSlice) {
    for ep in slice.endpoints.iter_mut().flatten() {
        ep.hints = None;
    }
}

fn has_hints(slice: &EndpointSlice) -> bool {
    slice
        .endpoints
        .iter()
        .flatten()
        .any(|ep| ep.hints.is_some())
}

/// `reconcileByAddressType` up to (not including) `finalize`.
fn reconcile_family<'e>(
    ctx: &Ctx<'_>,
    family: AddressType,
    state: &DesiredState<'_>,
    existing: &[&'e EndpointSlice],
) -> Changes<'e> {
    let mut out = Changes::default();
    let mut by_ports: Vec<(PortsKey<'e>, Vec<&'e EndpointSlice>)> = Vec::new();
    for &slice in existing {
        if !owned_by(slice, ctx.svc) {
            out.delete.push(slice);
            continue;
        }
        let key = ports_key(slice.ports.as_deref().unwrap_or(&[]));
        match by_ports.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slices)) => slices.push(slice),
            None => by_ports.push((key, vec![slice])),
        }
    }

    let mut claimed = vec![false; by_ports.len()];
    for (g, group) in state.groups.iter().enumerate() {
        // Groups merged into an earlier one by port set have no pods left.
        if !state.pods.iter().any(|pe| pe.group == g) {
            continue;
        }
        let key = ports_key(&group.ports);
        let slot = by_ports.iter().position(|(k, _)| *k == key);
        let group_existing: &[&EndpointSlice] = match slot {
            Some(i) => {
                claimed[i] = true;
                &by_ports[i].1
            }
            None => &[],
        };
        let mut desired = Desired::new(state, family, g);
        reconcile_port_group(ctx, &group.ports, group_existing, &mut desired, &mut out);
    }
    // Port sets no pod resolves to any more.
    for (i, (_, slices)) in by_ports.iter().enumerate() {
        if !claimed[i] {
            out.delete.extend(slices.iter().copied());
        }
    }

    // Keep one (empty) slice per address type so consumers can tell "no
    // endpoints" from "not reconciled yet"; an identical one is left alone.
    if existing.len() == out.delete.len() && out.create.is_empty() {
        let placeholder = ctx.new_slice(family, &[]);
        if out.delete.len() == 1 && is_same_placeholder(out.delete[0], &placeholder) {
            out.delete.clear();
        } else {
            out.create.push(placeholder);
        }
    }

    // No topology hints are computed here, so hints are dropped everywhere:
    // from what is written anyway, and by rewriting unchanged slices that carry some.
    for slice in out.create.iter_mut().chain(out.update.iter_mut()) {
        strip_hints(slice);
    }
    let hinted: Vec<EndpointSlice> = existing
        .iter()
        .filter(|s| has_hints(s))
        .filter(|s| {
            let name = meta_name(&s.metadata);
            !out.update.iter().any(|u| meta_name(&u.metadata) == name)
                && !out.delete.iter().any(|d| meta_name(&d.metadata) == name)
        })
        .map(|&s| {
            let mut s = s.clone();
            strip_hints(&mut s);
            s
        })
        .collect();
    out.update.extend(hinted);
    out
}

fn set_trigger_time(slice: &mut EndpointSlice, trigger_time: Option<&str>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match trigger_time {
        Some(t) => {
            annotations.insert(ANNOTATION_LAST_CHANGE_TRIGGER_TIME.to_owned(), t.to_owned());
        }
        None => {
            annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME);
        }
    }
    if annotations.is_empty() {
        slice.metadata.annotations = None;
    }
}

/// The slices of `existing` the controller would see for this Service: the
/// lister's `kubernetes.io/service-name` + managed-by selector in the Service's
/// namespace, minus slices already being deleted; nameless and duplicate
/// entries cannot be addressed and are ignored. Sorted by name so the plan does
/// not depend on the caller's order.
fn relevant_existing<'e>(svc: &Service, existing: &'e [EndpointSlice]) -> Vec<&'e EndpointSlice> {
    let name = meta_name(&svc.metadata);
    let namespace = meta_namespace(&svc.metadata);
    let mut out: Vec<&EndpointSlice> = existing
        .iter()
        .filter(|s| {
            let labels = s.metadata.labels.as_ref();
            let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
            !meta_name(&s.metadata).is_empty()
                && meta_namespace(&s.metadata) == namespace
                && s.metadata.deletion_timestamp.is_none()
                && label(LABEL_SERVICE_NAME) == Some(name)
                && label(LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
        })
        .collect();
    out.sort_by(|a, b| meta_name(&a.metadata).cmp(meta_name(&b.metadata)));
    out.dedup_by(|a, b| meta_name(&a.metadata) == meta_name(&b.metadata));
    out
}

fn check_max(max: usize) -> Result<(), EndpointSliceError> {
    if (1..=MAX_ENDPOINTS_PER_SLICE_LIMIT).contains(&max) {
        Ok(())
    } else {
        Err(EndpointSliceError::InvalidMaxEndpointsPerSlice(max))
    }
}

/// The slices Kubernetes would create for this Service from scratch (no
/// existing slices): per address type, endpoints grouped by resolved port set,
/// at most `max_endpoints_per_slice` each, and one empty placeholder slice for
/// an address type without endpoints. Empty for unmanaged Services.
pub fn desired_slices(
    svc: &Service,
    pods: &[&Pod],
    max_endpoints_per_slice: usize,
) -> Result<Vec<EndpointSlice>, EndpointSliceError> {
    check_max(max_endpoints_per_slice)?;
    if !is_managed(svc) {
        return Ok(Vec::new());
    }
    let ctx = Ctx::new(svc, max_endpoints_per_slice);
    let state = desired_state(svc, pods);
    Ok(address_types(svc)
        .into_iter()
        .flat_map(|family| reconcile_family(&ctx, family, &state, &[]).create)
        .collect())
}

/// [`plan_with`] with the defaults (100 endpoints a slice, no trigger time).
pub fn plan(svc: &Service, pods: &[&Pod], existing: &[EndpointSlice]) -> Plan {
    // The default options are valid, so this never falls back.
    plan_with(svc, pods, existing, &PlanOptions::default()).unwrap_or_default()
}

/// The writes that bring the Service's EndpointSlices to the desired state, as
/// the endpointslice reconciler decides them.
///
/// `pods` may hold any pods: those the selector does not pick are ignored.
/// `existing` may hold any slices: only this Service's controller-managed ones
/// count. Unmanaged Services (no selector, ExternalName) get an empty plan and
/// their slices are left alone.
pub fn plan_with(
    svc: &Service,
    pods: &[&Pod],
    existing: &[EndpointSlice],
    options: &PlanOptions,
) -> Result<Plan, EndpointSliceError> {
    check_max(options.max_endpoints_per_slice)?;
    if !is_managed(svc) {
        return Ok(Plan::default());
    }
    let ctx = Ctx::new(svc, options.max_endpoints_per_slice);
    let families = address_types(svc);
    let existing = relevant_existing(svc, existing);
    let state = desired_state(svc, pods);

    let mut plan = Plan::default();
    for &family in &families {
        let of_family: Vec<&EndpointSlice> = existing
            .iter()
            .copied()
            .filter(|s| AddressType::from_api(&s.address_type) == Some(family))
            .collect();
        let Changes {
            mut create,
            mut update,
            mut delete,
        } = reconcile_family(&ctx, family, &state, &of_family);

        // `finalize`: rather than create one slice and delete another, reuse
        // the doomed slice's name. Only slices owned by this Service are
        // reused; Kubernetes also requires the same address type, which every
        // slice here has.
        let mut i = 0;
        while i < delete.len() && !create.is_empty() {
            if owned_by(delete[i], svc) {
                let Some(mut slice) = create.pop() else { break };
                let doomed = delete.remove(i);
                slice.metadata.name = doomed.metadata.name.clone();
                // Like every other update in the plan, a conditional write of
                // the version this plan was computed from.
                slice.metadata.resource_version = doomed.metadata.resource_version.clone();
                update.push(slice);
            } else {
                i += 1;
            }
        }
        // A Service being deleted gets no new slices: the garbage collector
        // would race the controller for them.
        if svc.metadata.deletion_timestamp.is_some() {
            create.clear();
        }
        plan.create.append(&mut create);
        plan.update.append(&mut update);
        plan.delete
            .extend(delete.iter().map(|s| meta_name(&s.metadata).to_owned()));
    }

    // Slices of address types the Service no longer has (or never could, like FQDN).
    plan.delete.extend(
        existing
            .iter()
            .filter(|s| {
                !AddressType::from_api(&s.address_type).is_some_and(|t| families.contains(&t))
            })
            .map(|s| meta_name(&s.metadata).to_owned()),
    );

    let trigger_time = options.trigger_time.as_deref();
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        set_trigger_time(slice, trigger_time);
    }
    plan.update
        .sort_by(|a, b| meta_name(&a.metadata).cmp(meta_name(&b.metadata)));
    Ok(plan)
}

// ---------------------------------------------------------------------------
// Legacy Endpoints (endpoints controller).

/// `podToEndpointAddressForService`: the one family the legacy object carries.
fn endpoints_family(svc: &Service, pod: &Pod) -> AddressType {
    let v6 = if let Some(first) = ip_families(svc).first() {
        first == "IPv6"
    } else if is_service_ip_set(svc) {
        is_ipv6_string(cluster_ip(svc))
    } else {
        // Headless without families: trust the pod's primary IP.
        pod.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(is_ipv6_string)
    };
    if v6 {
        AddressType::IPv6
    } else {
        AddressType::IPv4
    }
}

fn endpoint_address(svc: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let family = endpoints_family(svc, pod);
    // Kubernetes publishes the podIPs entry verbatim; entries that do not
    // parse as an IP are skipped here rather than published.
    let ip = pod_ips(pod)
        .find(|ip| parse_ip_sloppy(ip).is_some_and(|p| AddressType::of(p) == family))?;
    let meta = &pod.metadata;
    Some(EndpointAddress {
        ip: ip.to_owned(),
        hostname: hostname_for(pod, svc).map(str::to_owned),
        // Kubernetes always sets the pointer, even to an empty node name.
        node_name: Some(
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
        ),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: non_empty(meta.namespace.as_deref()).map(str::to_owned),
            name: non_empty(meta.name.as_deref()).map(str::to_owned),
            uid: non_empty(meta.uid.as_deref()).map(str::to_owned),
            ..Default::default()
        }),
    })
}

type CorePortKey<'a> = (&'a str, i32, &'a str, &'a str);

/// One pod's address, its readiness and the ports it serves.
type RepackEntry = (EndpointAddress, bool, Vec<CoreEndpointPort>);

fn core_port_key(p: &CoreEndpointPort) -> CorePortKey<'_> {
    (
        opt_str(&p.name),
        p.port,
        opt_str(&p.protocol),
        opt_str(&p.app_protocol),
    )
}

fn address_uid(a: &EndpointAddress) -> &str {
    a.target_ref.as_ref().map_or("", |t| opt_str(&t.uid))
}

/// `LessEndpointAddress`: by IP bytes, then target UID.
fn address_order(a: &EndpointAddress, b: &EndpointAddress) -> std::cmp::Ordering {
    a.ip.as_bytes()
        .cmp(b.ip.as_bytes())
        .then_with(|| address_uid(a).cmp(address_uid(b)))
}

/// `RepackSubsets`: one subset per distinct set of (address, ready) sharing the
/// same ports. A port with an address both ready and not ready keeps it not
/// ready. Port-less entries (headless without ports) form a port-less subset.
/// A port (`None`: the sentinel of port-less entries) and the addresses
/// offering it, by entry index, with their readiness.
type PortAddresses<'a> = (Option<&'a CoreEndpointPort>, BTreeMap<usize, bool>);

/// Not ready trumps ready: an address is ready on a port only if every entry
/// offering it there is.
fn record_port<'a>(
    by_port: &mut BTreeMap<Option<CorePortKey<'a>>, PortAddresses<'a>>,
    port: Option<&'a CoreEndpointPort>,
    address: usize,
    ready: bool,
) {
    let slot = by_port
        .entry(port.map(core_port_key))
        .or_insert_with(|| (port, BTreeMap::new()));
    let was = slot.1.entry(address).or_insert(ready);
    *was = *was && ready;
}

fn subset_ports(s: &EndpointSubset) -> Vec<CorePortKey<'_>> {
    s.ports.iter().flatten().map(core_port_key).collect()
}

fn first_ip(s: &EndpointSubset) -> Option<&str> {
    s.addresses
        .iter()
        .chain(s.not_ready_addresses.iter())
        .flatten()
        .next()
        .map(|a| a.ip.as_str())
}

fn repack(entries: &[RepackEntry]) -> Vec<EndpointSubset> {
    // Addresses are the same address when IP and target UID match; the first
    // entry's copy is the one published.
    let mut first_entry: HashMap<(&str, &str), usize> = HashMap::new();
    let mut by_port: BTreeMap<Option<CorePortKey<'_>>, PortAddresses<'_>> = BTreeMap::new();
    for (i, (address, ready, ports)) in entries.iter().enumerate() {
        let idx = *first_entry
            .entry((address.ip.as_str(), address_uid(address)))
            .or_insert(i);
        if ports.is_empty() {
            record_port(&mut by_port, None, idx, *ready);
        }
        for port in ports {
            record_port(&mut by_port, Some(port), idx, *ready);
        }
    }

    let mut by_addresses: BTreeMap<Vec<(usize, bool)>, Vec<&CoreEndpointPort>> = BTreeMap::new();
    for (_, (port, addrs)) in by_port {
        let signature: Vec<(usize, bool)> = addrs.into_iter().collect();
        by_addresses.entry(signature).or_default().extend(port);
    }

    let mut subsets: Vec<EndpointSubset> = by_addresses
        .into_iter()
        .map(|(signature, mut ports)| {
            let mut ready: Vec<EndpointAddress> = Vec::new();
            let mut not_ready: Vec<EndpointAddress> = Vec::new();
            for (idx, is_ready) in signature {
                let a = entries[idx].0.clone();
                if is_ready {
                    ready.push(a);
                } else {
                    not_ready.push(a);
                }
            }
            ready.sort_by(address_order);
            not_ready.sort_by(address_order);
            ports.sort_by_key(|p| core_port_key(p));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| ports.into_iter().cloned().collect()),
            }
        })
        .collect();
    // Kubernetes orders subsets by an MD5 of their dump; any fixed order will
    // do for consumers, this one is readable.
    subsets.sort_by(|a, b| {
        subset_ports(a)
            .cmp(&subset_ports(b))
            .then_with(|| first_ip(a).cmp(&first_ip(b)))
    });
    subsets
}

/// `truncateEndpoints`: past the capacity, keep ready addresses first and cut
/// each subset in proportion to its size. True when anything was cut.
fn truncate_subsets(subsets: &mut [EndpointSubset]) -> bool {
    let count = |v: &Option<Vec<EndpointAddress>>| v.as_ref().map_or(0, Vec::len);
    let total_ready: usize = subsets.iter().map(|s| count(&s.addresses)).sum();
    let total_not_ready: usize = subsets.iter().map(|s| count(&s.not_ready_addresses)).sum();
    if total_ready + total_not_ready <= ENDPOINTS_MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > ENDPOINTS_MAX_CAPACITY;
    let (max, total) = if truncate_ready {
        (ENDPOINTS_MAX_CAPACITY, total_ready)
    } else {
        (ENDPOINTS_MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut can_be_added = max;
    for subset in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            count(&subset.addresses)
        } else {
            count(&subset.not_ready_addresses)
        };
        // Integer ceil(in_subset / total * max), as Kubernetes computes it in floats.
        let share = (in_subset * max).div_ceil(total).min(can_be_added);
        if truncate_ready {
            if let Some(a) = subset.addresses.as_mut() {
                a.truncate(share);
            }
            subset.not_ready_addresses = None;
            can_be_added -= count(&subset.addresses);
        } else {
            if let Some(a) = subset.not_ready_addresses.as_mut() {
                a.truncate(share);
            }
            can_be_added -= count(&subset.not_ready_addresses);
        }
    }
    true
}

/// The legacy `v1/Endpoints` object the endpoints controller wants for this
/// Service: same name and namespace, the Service's labels plus
/// `endpoints.kubernetes.io/managed-by` (and the headless label when headless),
/// one address family only (`ipFamilies[0]`, else the clusterIP's family, else
/// per pod its `podIP`'s). Pods without an IP of that family are left out (the
/// controller logs `failed to find a matching endpoint for service <name>`).
/// `None` for Services the controller does not manage (no selector, ExternalName).
pub fn endpoints(svc: &Service, pods: &[&Pod]) -> Option<Endpoints> {
    if !is_managed(svc) {
        return None;
    }
    let publish = publish_not_ready(svc);
    let svc_ports = service_ports(svc);
    let headless = cluster_ip(svc) == CLUSTER_IP_NONE;

    let mut entries: Vec<RepackEntry> = Vec::new();
    for &pod in pods {
        if !selector_matches(svc, pod) || !should_pod_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = endpoint_address(svc, pod) else {
            continue;
        };
        let ready = publish || is_pod_ready(pod);
        if svc_ports.is_empty() {
            if headless {
                entries.push((address, ready, Vec::new()));
            }
            continue;
        }
        let ports: Vec<CoreEndpointPort> = svc_ports
            .iter()
            .filter_map(|sp| {
                find_port(pod, sp).map(|port| CoreEndpointPort {
                    name: non_empty(sp.name.as_deref()).map(str::to_owned),
                    port,
                    protocol: Some(svc_port_protocol(sp).to_owned()),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        // A pod none of whose ports resolve contributes nothing.
        if !ports.is_empty() {
            entries.push((address, ready, ports));
        }
    }

    let mut subsets = repack(&entries);
    let truncated = truncate_subsets(&mut subsets);

    let mut labels: BTreeMap<String, String> = svc.metadata.labels.clone().unwrap_or_default();
    if is_service_ip_set(svc) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.to_owned(), String::new());
    }
    labels.insert(
        ENDPOINTS_LABEL_MANAGED_BY.to_owned(),
        ENDPOINTS_CONTROLLER_NAME.to_owned(),
    );
    let annotations = truncated
        .then(|| BTreeMap::from([(ANNOTATION_OVER_CAPACITY.to_owned(), "truncated".to_owned())]));

    Some(Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations,
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    })
}

/// Whether `current` must be rewritten to become `desired` (from [`endpoints`]),
/// with the controller's tolerance: target `resourceVersion`s and the headless
/// label do not count, absent and empty lists are equal, and the over-capacity
/// annotation must be present exactly when `desired` has it.
pub fn endpoints_changed(current: &Endpoints, desired: &Endpoints) -> bool {
    fn labels(e: &Endpoints) -> BTreeMap<&str, &str> {
        e.metadata
            .labels
            .iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != LABEL_HEADLESS)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
    fn over_capacity(e: &Endpoints) -> bool {
        e.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY))
    }
    fn addresses_equal(a: &Option<Vec<EndpointAddress>>, b: &Option<Vec<EndpointAddress>>) -> bool {
        let (a, b) = (a.as_deref().unwrap_or(&[]), b.as_deref().unwrap_or(&[]));
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                x.ip == y.ip
                    && x.hostname == y.hostname
                    && x.node_name == y.node_name
                    && target_refs_equal_ignoring_rv(x.target_ref.as_ref(), y.target_ref.as_ref())
            })
    }
    let (a, b) = (
        current.subsets.as_deref().unwrap_or(&[]),
        desired.subsets.as_deref().unwrap_or(&[]),
    );
    let subsets_equal = a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            addresses_equal(&x.addresses, &y.addresses)
                && addresses_equal(&x.not_ready_addresses, &y.not_ready_addresses)
                && x.ports.as_deref().unwrap_or(&[]) == y.ports.as_deref().unwrap_or(&[])
        });
    !(subsets_equal
        && labels(current) == labels(desired)
        && over_capacity(current) == over_capacity(desired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn dual_stack() -> Service {
        service(json!({
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00::10"],
            "ipFamilies": ["IPv4", "IPv6"],
            "ipFamilyPolicy": "RequireDualStack",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        }))
    }

    struct PodSpec<'a> {
        name: &'a str,
        ips: &'a [&'a str],
        ready: bool,
        extra: Value,
    }

    fn pod_with(p: PodSpec<'_>) -> Pod {
        let mut v = json!({
            "metadata": {"name": p.name, "namespace": "ns", "uid": format!("uid-{}", p.name), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {
                "phase": "Running",
                "podIP": p.ips.first().copied().unwrap_or(""),
                "podIPs": p.ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                "conditions": [{"type": "Ready", "status": if p.ready { "True" } else { "False" }}],
            },
        });
        merge(&mut v, p.extra);
        serde_json::from_value(v).unwrap()
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn pod(name: &str, ips: &[&str], ready: bool) -> Pod {
        pod_with(PodSpec {
            name,
            ips,
            ready,
            extra: json!({}),
        })
    }

    fn dual_pod(i: usize) -> Pod {
        let v4 = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let v6 = format!("fd00::{:x}", i + 1);
        pod(&format!("p{i}"), &[&v4, &v6], true)
    }

    fn refs(pods: &[Pod]) -> Vec<&Pod> {
        pods.iter().collect()
    }

    /// Applies a plan the way the apiserver would, naming created slices.
    fn apply(existing: &[EndpointSlice], plan: &Plan, counter: &mut usize) -> Vec<EndpointSlice> {
        let mut out: Vec<EndpointSlice> = existing
            .iter()
            .filter(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()))
            .cloned()
            .collect();
        for u in &plan.update {
            let slot = out
                .iter_mut()
                .find(|s| s.metadata.name == u.metadata.name)
                .expect("update of a slice that exists");
            *slot = u.clone();
        }
        for c in &plan.create {
            let mut c = c.clone();
            assert!(c.metadata.name.is_none());
            *counter += 1;
            c.metadata.name = Some(format!(
                "{}{}",
                c.metadata.generate_name.clone().unwrap(),
                counter
            ));
            out.push(c);
        }
        out
    }

    fn converge(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSlice> {
        let mut n = 0;
        let slices = apply(&[], &plan(svc, pods, &[]), &mut n);
        assert!(plan(svc, pods, &slices).is_empty());
        slices
    }

    fn of_type<'a>(slices: &'a [EndpointSlice], t: &str) -> Vec<&'a EndpointSlice> {
        slices.iter().filter(|s| s.address_type == t).collect()
    }

    fn addresses(slices: &[&EndpointSlice]) -> Vec<String> {
        let mut v: Vec<String> = slices
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .flat_map(|e| e.addresses.clone())
            .collect();
        v.sort();
        v
    }

    fn find_ep<'a>(slices: &'a [EndpointSlice], t: &str, pod: &str) -> &'a Endpoint {
        slices
            .iter()
            .filter(|s| s.address_type == t)
            .flat_map(|s| s.endpoints.iter().flatten())
            .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some(pod))
            .unwrap()
    }

    fn conds(ep: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        conditions(ep)
    }

    #[test]
    fn address_types_follow_families_cluster_ip_or_headless() {
        let cases: &[(Value, &[AddressType])] = &[
            (
                json!({"ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.0.0.1"}),
                &[AddressType::IPv4, AddressType::IPv6],
            ),
            (
                json!({"ipFamilies": ["IPv6", "IPv4"], "clusterIP": "fd00::1"}),
                &[AddressType::IPv4, AddressType::IPv6],
            ),
            (
                json!({"ipFamilies": ["IPv6"], "clusterIP": "fd00::1"}),
                &[AddressType::IPv6],
            ),
            (json!({"clusterIP": "fd00::1"}), &[AddressType::IPv6]),
            (json!({"clusterIP": "10.0.0.1"}), &[AddressType::IPv4]),
            (
                json!({"clusterIP": "None"}),
                &[AddressType::IPv4, AddressType::IPv6],
            ),
            (json!({}), &[AddressType::IPv4, AddressType::IPv6]),
            (
                json!({"ipFamilies": ["Bogus"], "clusterIP": "fd00::1"}),
                &[AddressType::IPv6],
            ),
            (
                json!({"ipFamilies": ["IPv6"], "clusterIP": "None"}),
                &[AddressType::IPv6],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(address_types(&service(spec.clone())), *want, "{spec}");
        }
        let no_spec: Service = serde_json::from_value(json!({"metadata": {}})).unwrap();
        assert_eq!(
            address_types(&no_spec),
            vec![AddressType::IPv4, AddressType::IPv6]
        );
    }

    #[test]
    fn slices_per_family_for_each_service_shape() {
        struct Case {
            name: &'static str,
            spec: Value,
            pods: Vec<Pod>,
            want_v4: &'static [&'static str],
            want_v6: Option<&'static [&'static str]>,
        }
        let sel = json!({"app": "web"});
        let cases = vec![
            Case {
                name: "dual-stack service, dual-stack pods",
                spec: json!({"selector": sel, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
                pods: vec![
                    pod("a", &["10.0.0.1", "fd00::1"], true),
                    pod("b", &["10.0.0.2", "fd00::2"], true),
                ],
                want_v4: &["10.0.0.1", "10.0.0.2"],
                want_v6: Some(&["fd00::1", "fd00::2"]),
            },
            Case {
                name: "single-stack IPv6 service",
                spec: json!({"selector": sel, "clusterIP": "fd00::a", "ipFamilies": ["IPv6"], "ports": [{"port": 80}]}),
                pods: vec![pod("a", &["10.0.0.1", "fd00::1"], true)],
                want_v4: &[],
                want_v6: Some(&["fd00::1"]),
            },
            Case {
                name: "headless without ipFamilies gets both",
                spec: json!({"selector": sel, "clusterIP": "None"}),
                pods: vec![pod("a", &["10.0.0.1", "fd00::1"], true)],
                want_v4: &["10.0.0.1"],
                want_v6: Some(&["fd00::1"]),
            },
            Case {
                name: "IPv4-only pod in a dual-stack service",
                spec: json!({"selector": sel, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
                pods: vec![
                    pod("a", &["10.0.0.1", "fd00::1"], true),
                    pod("b", &["10.0.0.2"], true),
                ],
                want_v4: &["10.0.0.1", "10.0.0.2"],
                want_v6: Some(&["fd00::1"]),
            },
            Case {
                name: "irregular IPs are normalised like ParseIPSloppy",
                spec: json!({"selector": sel, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
                pods: vec![
                    pod("a", &["010.000.000.001", "FD00:0:0::1"], true),
                    pod("b", &["::ffff:10.0.0.2"], true),
                ],
                want_v4: &["10.0.0.1", "10.0.0.2"],
                want_v6: Some(&["fd00::1"]),
            },
        ];
        for c in cases {
            let svc = service(c.spec);
            let slices = converge(&svc, &refs(&c.pods));
            let v4 = of_type(&slices, "IPv4");
            let v6 = of_type(&slices, "IPv6");
            if c.want_v4.is_empty() {
                assert!(v4.is_empty(), "{}: {v4:?}", c.name);
            } else {
                assert_eq!(v4.len(), 1, "{}", c.name);
                assert_eq!(addresses(&v4), c.want_v4, "{}", c.name);
            }
            match c.want_v6 {
                Some(want) => {
                    assert_eq!(v6.len(), 1, "{}", c.name);
                    assert_eq!(addresses(&v6), want, "{}", c.name);
                }
                None => assert!(v6.is_empty(), "{}", c.name),
            }
            assert_eq!(slices.len(), v4.len() + v6.len(), "{}", c.name);
        }
    }

    #[test]
    fn slice_metadata_labels_owner_and_ports() {
        let mut svc = dual_stack();
        svc.metadata.labels = Some(BTreeMap::from([
            ("app".to_owned(), "web".to_owned()),
            ("team".to_owned(), "a".to_owned()),
            (LABEL_MANAGED_BY.to_owned(), "someone-else".to_owned()),
        ]));
        let pods = [dual_pod(0)];
        let slices = desired_slices(&svc, &refs(&pods), 100).unwrap();
        assert_eq!(slices.len(), 2);
        let s = &slices[0];
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.metadata.name, None);
        assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                ("team".to_owned(), "a".to_owned()),
                (LABEL_SERVICE_NAME.to_owned(), "web".to_owned()),
                (LABEL_MANAGED_BY.to_owned(), CONTROLLER_NAME.to_owned()),
            ])
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str()
            ),
            ("v1", "Service", "web", "svc-uid")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("http"));
        assert_eq!(port.port, Some(8080));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        let ep = &s.endpoints.as_ref().unwrap()[0];
        assert_eq!(ep.node_name.as_deref(), Some("node-1"));
        assert_eq!(ep.zone, None);
        assert_eq!(ep.hostname, None);
        let t = ep.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                t.kind.as_deref(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.uid.as_deref()
            ),
            (Some("Pod"), Some("ns"), Some("p0"), Some("uid-p0"))
        );

        // Headless services get the headless label; unnamed ports get name "".
        let headless = service(
            json!({"selector": {"app": "web"}, "clusterIP": "None", "ipFamilies": ["IPv4"], "ports": [{"port": 53, "protocol": "UDP", "appProtocol": "dns"}]}),
        );
        let s = &desired_slices(&headless, &refs(&pods), 100).unwrap()[0];
        assert_eq!(
            s.metadata
                .labels
                .as_ref()
                .unwrap()
                .get(LABEL_HEADLESS)
                .map(String::as_str),
            Some("")
        );
        let port = &s.ports.as_ref().unwrap()[0];
        assert_eq!(
            (
                port.name.as_deref(),
                port.port,
                port.protocol.as_deref(),
                port.app_protocol.as_deref()
            ),
            (Some(""), Some(53), Some("UDP"), Some("dns"))
        );
    }

    #[test]
    fn endpoint_conditions_readiness_and_termination() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let pods = vec![
            pod("ready", &["10.0.0.1", "fd00::1"], true),
            pod("unready", &["10.0.0.2", "fd00::2"], false),
            pod_with(PodSpec {
                name: "term-ready",
                ips: &["10.0.0.3", "fd00::3"],
                ready: true,
                extra: deleting.clone(),
            }),
            pod_with(PodSpec {
                name: "term-unready",
                ips: &["10.0.0.4", "fd00::4"],
                ready: false,
                extra: deleting,
            }),
            pod_with(PodSpec {
                name: "succeeded",
                ips: &["10.0.0.5"],
                ready: false,
                extra: json!({"status": {"phase": "Succeeded"}}),
            }),
            pod_with(PodSpec {
                name: "failed",
                ips: &["10.0.0.6"],
                ready: false,
                extra: json!({"status": {"phase": "Failed"}}),
            }),
            pod("no-ip", &[], false),
        ];
        let cases = [
            (
                false,
                [
                    ("ready", (Some(true), Some(true), Some(false))),
                    ("unready", (Some(false), Some(false), Some(false))),
                    ("term-ready", (Some(false), Some(true), Some(true))),
                    ("term-unready", (Some(false), Some(false), Some(true))),
                ],
            ),
            (
                true,
                [
                    ("ready", (Some(true), Some(true), Some(false))),
                    ("unready", (Some(true), Some(false), Some(false))),
                    ("term-ready", (Some(true), Some(true), Some(true))),
                    ("term-unready", (Some(true), Some(false), Some(true))),
                ],
            ),
        ];
        for (publish, want) in cases {
            let mut svc = dual_stack();
            svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(publish);
            let slices = converge(&svc, &refs(&pods));
            for family in ["IPv4", "IPv6"] {
                let n: usize = of_type(&slices, family).iter().map(|s| slice_len(s)).sum();
                assert_eq!(n, 4, "publish={publish} {family}");
                for (name, c) in want {
                    assert_eq!(
                        conds(find_ep(&slices, family, name)),
                        c,
                        "publish={publish} {family} {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn hostname_only_with_matching_subdomain() {
        let svc = dual_stack();
        let pods = vec![
            pod_with(PodSpec {
                name: "a",
                ips: &["10.0.0.1"],
                ready: true,
                extra: json!({"spec": {"hostname": "h-a", "subdomain": "web"}}),
            }),
            pod_with(PodSpec {
                name: "b",
                ips: &["10.0.0.2"],
                ready: true,
                extra: json!({"spec": {"hostname": "h-b", "subdomain": "other"}}),
            }),
            pod_with(PodSpec {
                name: "c",
                ips: &["10.0.0.3"],
                ready: true,
                extra: json!({"spec": {"hostname": "h-c"}}),
            }),
        ];
        let slices = converge(&svc, &refs(&pods));
        assert_eq!(
            find_ep(&slices, "IPv4", "a").hostname.as_deref(),
            Some("h-a")
        );
        assert_eq!(find_ep(&slices, "IPv4", "b").hostname, None);
        assert_eq!(find_ep(&slices, "IPv4", "c").hostname, None);
    }

    #[test]
    fn named_target_port_resolving_differently_splits_slices() {
        let svc = service(json!({
            "selector": {"app": "web"}, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"],
            "ports": [{"name": "http", "port": 80, "targetPort": "web"}, {"name": "metrics", "port": 9090}],
        }));
        let container = |port: i32| json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": port}]}]}});
        let sidecar = json!({"spec": {
            "containers": [{"name": "c"}],
            "initContainers": [{"name": "side", "restartPolicy": "Always", "ports": [{"name": "web", "containerPort": 9000}]}],
        }});
        let udp_only = json!({"spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 7000, "protocol": "UDP"}]}]}});
        let pods = vec![
            pod_with(PodSpec {
                name: "a",
                ips: &["10.0.0.1", "fd00::1"],
                ready: true,
                extra: container(8080),
            }),
            pod_with(PodSpec {
                name: "b",
                ips: &["10.0.0.2", "fd00::2"],
                ready: true,
                extra: container(8081),
            }),
            pod_with(PodSpec {
                name: "c",
                ips: &["10.0.0.3", "fd00::3"],
                ready: true,
                extra: container(8080),
            }),
            pod_with(PodSpec {
                name: "d",
                ips: &["10.0.0.4", "fd00::4"],
                ready: true,
                extra: sidecar,
            }),
            pod_with(PodSpec {
                name: "e",
                ips: &["10.0.0.5", "fd00::5"],
                ready: true,
                extra: udp_only,
            }),
        ];
        let slices = converge(&svc, &refs(&pods));
        for family in ["IPv4", "IPv6"] {
            let mut groups: Vec<(Vec<(String, i32)>, usize)> = of_type(&slices, family)
                .iter()
                .map(|s| {
                    let ports = s
                        .ports
                        .iter()
                        .flatten()
                        .map(|p| (p.name.clone().unwrap(), p.port.unwrap()))
                        .collect();
                    (ports, slice_len(s))
                })
                .collect();
            groups.sort();
            let http = |n: i32| ("http".to_owned(), n);
            let metrics = ("metrics".to_owned(), 9090);
            assert_eq!(
                groups,
                vec![
                    (vec![http(8080), metrics.clone()], 2),
                    (vec![http(8081), metrics.clone()], 1),
                    (vec![http(9000), metrics.clone()], 1),
                    // An unresolvable port is left out, the pod stays.
                    (vec![metrics], 1),
                ],
                "{family}"
            );
        }
    }

    #[test]
    fn large_service_is_split_at_max_endpoints() {
        let svc = dual_stack();
        let pods: Vec<Pod> = (0..250).map(dual_pod).collect();
        let slices = converge(&svc, &refs(&pods));
        for family in ["IPv4", "IPv6"] {
            let mut sizes: Vec<usize> = of_type(&slices, family)
                .iter()
                .map(|s| slice_len(s))
                .collect();
            sizes.sort();
            assert_eq!(sizes, vec![50, 100, 100], "{family}");
            assert_eq!(addresses(&of_type(&slices, family)).len(), 250);
        }
        // A smaller limit is honoured too.
        let small = desired_slices(&svc, &refs(&pods), 7).unwrap();
        assert!(small.iter().all(|s| slice_len(s) <= 7));
        assert_eq!(small.len(), 2 * 250usize.div_ceil(7));
        assert_eq!(
            desired_slices(&svc, &refs(&pods), 0),
            Err(EndpointSliceError::InvalidMaxEndpointsPerSlice(0))
        );
        assert!(desired_slices(&svc, &refs(&pods), 1001).is_err());
    }

    #[test]
    fn one_pod_change_touches_only_its_slices() {
        let svc = dual_stack();
        let mut pods: Vec<Pod> = (0..250).map(dual_pod).collect();
        let slices = converge(&svc, &refs(&pods));
        let slice_of = |t: &str, ip: &str| {
            slices
                .iter()
                .find(|s| {
                    s.address_type == t && s.endpoints.iter().flatten().any(|e| e.addresses == [ip])
                })
                .unwrap()
                .metadata
                .name
                .clone()
        };

        // New IPv4 address: only the IPv4 slice holding the pod changes.
        let old_v4 = "10.0.0.8";
        pods[7] = pod("p7", &["10.9.9.9", "fd00::8"], true);
        let p = plan(&svc, &refs(&pods), &slices);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        assert_eq!(p.update.len(), 1);
        assert_eq!(p.update[0].metadata.name, slice_of("IPv4", old_v4));
        let before = slices
            .iter()
            .find(|s| s.metadata.name == p.update[0].metadata.name)
            .unwrap();
        assert_eq!(slice_len(&p.update[0]), slice_len(before));
        let moved: Vec<_> = p.update[0]
            .endpoints
            .iter()
            .flatten()
            .map(|e| e.addresses[0].clone())
            .collect();
        assert!(moved.contains(&"10.9.9.9".to_owned()) && !moved.contains(&old_v4.to_owned()));
        let mut n = 100;
        let applied = apply(&slices, &p, &mut n);
        assert!(plan(&svc, &refs(&pods), &applied).is_empty());

        // Readiness flips: one slice per family is rewritten.
        pods[7] = pod("p7", &["10.9.9.9", "fd00::8"], false);
        let p = plan(&svc, &refs(&pods), &applied);
        assert!(p.create.is_empty() && p.delete.is_empty());
        let mut names: Vec<_> = p.update.iter().map(|s| s.metadata.name.clone()).collect();
        names.sort();
        let mut want = vec![slice_of("IPv4", old_v4), slice_of("IPv6", "fd00::8")];
        want.sort();
        assert_eq!(names, want);

        // A pod going away: its slices shrink, nothing else moves.
        let original: Vec<Pod> = (0..250).map(dual_pod).collect();
        let fewer: Vec<&Pod> = original
            .iter()
            .filter(|p| p.metadata.name.as_deref() != Some("p3"))
            .collect();
        let p = plan(&svc, &fewer, &slices);
        assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 2, 0));
        assert!(p.update.iter().all(|s| slice_len(s) == 99));

        // A new pod fills the slice with room (the 50-endpoint one), no new slice.
        let mut more = original.clone();
        more.push(dual_pod(250));
        let p = plan(&svc, &refs(&more), &slices);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert_eq!(p.update.len(), 2);
        assert!(
            p.update.iter().all(|s| slice_len(s) == 51),
            "{:?}",
            p.update.iter().map(slice_len).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dropping_a_family_deletes_its_slices() {
        let mut svc = dual_stack();
        let pods: Vec<Pod> = (0..150).map(dual_pod).collect();
        let slices = converge(&svc, &refs(&pods));
        let v6_names: Vec<String> = of_type(&slices, "IPv6")
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(v6_names.len(), 2);
        let spec = svc.spec.as_mut().unwrap();
        spec.ip_families = Some(vec!["IPv4".to_owned()]);
        spec.ip_family_policy = Some("SingleStack".to_owned());
        let p = plan(&svc, &refs(&pods), &slices);
        assert!(p.create.is_empty() && p.update.is_empty());
        let mut deleted = p.delete.clone();
        deleted.sort();
        let mut want = v6_names;
        want.sort();
        assert_eq!(deleted, want);
    }

    #[test]
    fn unchanged_input_gives_empty_plan_regardless_of_order() {
        let mut svc = dual_stack();
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let mut pods: Vec<Pod> = (0..230).map(dual_pod).collect();
        pods.push(pod("v4only", &["10.1.0.1"], false));
        let slices = converge(&svc, &refs(&pods));
        let mut rev_pods = refs(&pods);
        rev_pods.reverse();
        let mut rev_slices = slices.clone();
        rev_slices.reverse();
        assert!(plan(&svc, &rev_pods, &rev_slices).is_empty());
        // Same input, same plan.
        assert_eq!(plan(&svc, &refs(&pods), &[]), plan(&svc, &rev_pods, &[]));
        // Resource-version-only target changes are not changes.
        let mut touched = slices.clone();
        for s in &mut touched {
            for e in s.endpoints.iter_mut().flatten() {
                e.target_ref.as_mut().unwrap().resource_version = Some("42".to_owned());
            }
        }
        assert!(plan(&svc, &refs(&pods), &touched).is_empty());
    }

    #[test]
    fn selectorless_and_external_name_services_are_left_alone() {
        let pods = [dual_pod(0)];
        let slices = converge(&dual_stack(), &refs(&pods));
        for spec in [
            json!({"clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"]}),
            json!({"selector": {}, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"]}),
            json!({"selector": {"app": "web"}, "type": "ExternalName", "externalName": "example.com"}),
        ] {
            let svc = service(spec.clone());
            assert!(plan(&svc, &refs(&pods), &slices).is_empty(), "{spec}");
            assert!(desired_slices(&svc, &refs(&pods), 100).unwrap().is_empty());
            assert!(endpoints(&svc, &refs(&pods)).is_none(), "{spec}");
        }
    }

    #[test]
    fn selector_matching() {
        let svc = dual_stack();
        let matching = dual_pod(0);
        assert!(selector_matches(&svc, &matching));
        let mut other_ns = matching.clone();
        other_ns.metadata.namespace = Some("elsewhere".to_owned());
        assert!(!selector_matches(&svc, &other_ns));
        let mut other_label = matching.clone();
        other_label.metadata.labels = Some(BTreeMap::from([("app".to_owned(), "db".to_owned())]));
        assert!(!selector_matches(&svc, &other_label));
        let mut no_labels = matching.clone();
        no_labels.metadata.labels = None;
        assert!(!selector_matches(&svc, &no_labels));
        // Pods the selector does not pick are ignored by plan and endpoints.
        let slices = converge(&svc, &[&matching, &other_ns, &other_label]);
        assert_eq!(addresses(&of_type(&slices, "IPv4")), vec!["10.0.0.1"]);
    }

    #[test]
    fn placeholder_slices_and_create_update_reuse() {
        let svc = dual_stack();
        let slices = converge(&svc, &[]);
        assert_eq!(slices.len(), 2);
        assert!(
            slices
                .iter()
                .all(|s| slice_len(s) == 0 && s.ports.as_ref().unwrap().is_empty())
        );

        // The first pod reuses each placeholder's name instead of create + delete.
        let pods = [dual_pod(0)];
        let p = plan(&svc, &refs(&pods), &slices);
        assert!(p.create.is_empty() && p.delete.is_empty(), "{p:?}");
        assert_eq!(p.update.len(), 2);
        let mut n = 10;
        let slices = apply(&slices, &p, &mut n);
        assert!(plan(&svc, &refs(&pods), &slices).is_empty());

        // And back to a placeholder when the pod goes.
        let p = plan(&svc, &[], &slices);
        assert!(p.create.is_empty() && p.delete.is_empty());
        assert!(p.update.iter().all(|s| slice_len(s) == 0));
    }

    #[test]
    fn foreign_and_stale_slices() {
        let svc = dual_stack();
        let pods = [dual_pod(0)];
        let mut slices = converge(&svc, &refs(&pods));

        // A slice owned by an older Service of the same name is replaced; its
        // name is reused for the new content.
        let mut orphan = slices[0].clone();
        orphan.metadata.name = Some("web-old".to_owned());
        orphan.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".to_owned();
        // Slices of other controllers, Services or being deleted are invisible.
        let mut foreign = slices[0].clone();
        foreign.metadata.name = Some("web-mirror".to_owned());
        foreign.metadata.labels.as_mut().unwrap().insert(
            LABEL_MANAGED_BY.to_owned(),
            "endpointslicemirroring-controller.k8s.io".to_owned(),
        );
        let mut dying = slices[0].clone();
        dying.metadata.name = Some("web-dying".to_owned());
        dying.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        let mut fqdn = slices[0].clone();
        fqdn.metadata.name = Some("web-fqdn".to_owned());
        fqdn.address_type = "FQDN".to_owned();
        slices.extend([orphan, foreign, dying, fqdn]);
        let p = plan(&svc, &refs(&pods), &slices);
        assert!(p.create.is_empty() && p.update.is_empty());
        let mut deleted = p.delete.clone();
        deleted.sort();
        assert_eq!(deleted, vec!["web-fqdn".to_owned(), "web-old".to_owned()]);
    }

    #[test]
    fn label_changes_and_hints_rewrite_slices() {
        let mut svc = dual_stack();
        let pods = [dual_pod(0)];
        let slices = converge(&svc, &refs(&pods));
        svc.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".to_owned(), "front".to_owned());
        let p = plan(&svc, &refs(&pods), &slices);
        assert_eq!(p.update.len(), 2);
        assert!(p.update.iter().all(|s| {
            s.metadata
                .labels
                .as_ref()
                .unwrap()
                .get("tier")
                .map(String::as_str)
                == Some("front")
        }));

        let svc = dual_stack();
        let mut hinted = slices.clone();
        hinted[0].endpoints.as_mut().unwrap()[0].hints =
            serde_json::from_value(json!({"forZones": [{"name": "a"}]})).unwrap();
        let p = plan(&svc, &refs(&pods), &hinted);
        assert_eq!(p.update.len(), 1);
        assert!(!has_hints(&p.update[0]));
    }

    #[test]
    fn trigger_time_and_deleting_service() {
        let svc = dual_stack();
        let pods = [dual_pod(0)];
        let opts = PlanOptions {
            trigger_time: Some("2026-01-01T00:00:00.5Z".to_owned()),
            ..Default::default()
        };
        let p = plan_with(&svc, &refs(&pods), &[], &opts).unwrap();
        assert!(
            p.create
                .iter()
                .all(|s| s.metadata.annotations.as_ref().unwrap()
                    [ANNOTATION_LAST_CHANGE_TRIGGER_TIME]
                    == "2026-01-01T00:00:00.5Z")
        );
        let mut n = 0;
        let slices = apply(&[], &p, &mut n);
        // An update without a trigger time clears the annotation.
        let p = plan(&svc, &[], &slices);
        assert!(p.update.iter().all(|s| s.metadata.annotations.is_none()));

        let mut dying = svc.clone();
        dying.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        assert!(plan(&dying, &refs(&pods), &[]).create.is_empty());
        assert_eq!(plan(&dying, &[], &slices).update.len(), 2);
    }

    // ------------------------------------------------------------------
    // Endpoints

    fn all_ips(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for s in ep.subsets.iter().flatten() {
            ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
            not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        }
        ready.sort();
        not_ready.sort();
        (ready, not_ready)
    }

    #[test]
    fn endpoints_carry_the_primary_family_only() {
        let sel = json!({"app": "web"});
        let pods = vec![
            pod("a", &["10.0.0.1", "fd00::1"], true),
            pod("b", &["10.0.0.2", "fd00::2"], false),
            pod("c", &["fd00::3"], true),
            pod("d", &["10.0.0.4"], true),
        ];
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (
                "dual-stack IPv4 primary",
                json!({"selector": sel, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4", "IPv6"], "ports": [{"port": 80}]}),
                s(&["10.0.0.1", "10.0.0.4"]),
                s(&["10.0.0.2"]),
            ),
            (
                "dual-stack IPv6 primary",
                json!({"selector": sel, "clusterIP": "fd00::a", "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]}),
                s(&["fd00::1", "fd00::3"]),
                s(&["fd00::2"]),
            ),
            (
                "no families, IPv6 clusterIP",
                json!({"selector": sel, "clusterIP": "fd00::a", "ports": [{"port": 80}]}),
                s(&["fd00::1", "fd00::3"]),
                s(&["fd00::2"]),
            ),
            (
                "headless without families follows podIP",
                json!({"selector": sel, "clusterIP": "None"}),
                s(&["10.0.0.1", "10.0.0.4", "fd00::3"]),
                s(&["10.0.0.2"]),
            ),
            (
                "publishNotReadyAddresses",
                json!({"selector": sel, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"], "publishNotReadyAddresses": true, "ports": [{"port": 80}]}),
                s(&["10.0.0.1", "10.0.0.2", "10.0.0.4"]),
                s(&[]),
            ),
        ];
        for (name, spec, ready, not_ready) in cases {
            let ep = endpoints(&service(spec), &refs(&pods)).unwrap();
            assert_eq!(all_ips(&ep), (ready, not_ready), "{name}");
        }
    }

    #[test]
    fn endpoints_metadata_and_subsets() {
        let svc = service(json!({
            "selector": {"app": "web"}, "clusterIP": "None", "ipFamilies": ["IPv4"],
            "ports": [{"name": "http", "port": 80, "targetPort": "web"}],
        }));
        let web = |port: i32| json!({"spec": {"hostname": "h", "subdomain": "web", "containers": [{"name": "c", "ports": [{"name": "web", "containerPort": port}]}]}});
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 1}]}]}});
        let pods = vec![
            pod_with(PodSpec {
                name: "a",
                ips: &["10.0.0.1"],
                ready: true,
                extra: web(8080),
            }),
            pod_with(PodSpec {
                name: "b",
                ips: &["10.0.0.2"],
                ready: false,
                extra: web(8080),
            }),
            pod_with(PodSpec {
                name: "c",
                ips: &["10.0.0.3"],
                ready: true,
                extra: web(9090),
            }),
            pod_with(PodSpec {
                name: "gone",
                ips: &["10.0.0.9"],
                ready: true,
                extra: deleting,
            }),
        ];
        let ep = endpoints(&svc, &refs(&pods)).unwrap();
        assert_eq!(ep.metadata.name.as_deref(), Some("web"));
        assert_eq!(ep.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            ep.metadata.labels.clone().unwrap(),
            BTreeMap::from([
                ("app".to_owned(), "web".to_owned()),
                (LABEL_HEADLESS.to_owned(), String::new()),
                (
                    ENDPOINTS_LABEL_MANAGED_BY.to_owned(),
                    ENDPOINTS_CONTROLLER_NAME.to_owned()
                ),
            ])
        );
        let subsets = ep.subsets.clone().unwrap();
        assert_eq!(subsets.len(), 2);
        let s8080 = subsets
            .iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == 8080)
            .unwrap();
        assert_eq!(s8080.addresses.as_ref().unwrap().len(), 1);
        assert_eq!(
            s8080.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.0.0.2"
        );
        let a = &s8080.addresses.as_ref().unwrap()[0];
        assert_eq!(a.hostname.as_deref(), Some("h"));
        assert_eq!(a.node_name.as_deref(), Some("node-1"));
        assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        let port = &s8080.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.protocol.as_deref()),
            (Some("http"), Some("TCP"))
        );

        assert!(!endpoints_changed(
            &ep,
            &endpoints(&svc, &refs(&pods)).unwrap()
        ));
        let mut rv = ep.clone();
        rv.subsets.as_mut().unwrap()[0].addresses.as_mut().unwrap()[0]
            .target_ref
            .as_mut()
            .unwrap()
            .resource_version = Some("7".to_owned());
        assert!(!endpoints_changed(&rv, &ep));
        let fewer = endpoints(&svc, &refs(&pods[..2])).unwrap();
        assert!(endpoints_changed(&ep, &fewer));

        // Headless without ports: one port-less subset.
        let bare = service(
            json!({"selector": {"app": "web"}, "clusterIP": "None", "ipFamilies": ["IPv4"]}),
        );
        let ep = endpoints(&bare, &refs(&pods)).unwrap();
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 2);
        // Headful without ports: nothing.
        let headful = service(
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"]}),
        );
        assert!(endpoints(&headful, &refs(&pods)).unwrap().subsets.is_none());
    }

    #[test]
    fn endpoints_over_capacity_are_truncated() {
        let mut svc = dual_stack();
        svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv4".to_owned()]);
        let pods: Vec<Pod> = (0..1200)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &[&format!(
                        "10.{}.{}.{}",
                        i / 62500,
                        (i / 250) % 250,
                        i % 250 + 1
                    )],
                    i % 3 != 0,
                )
            })
            .collect();
        let ep = endpoints(&svc, &refs(&pods)).unwrap();
        let (ready, not_ready) = all_ips(&ep);
        assert_eq!(ready.len(), 800);
        assert_eq!(not_ready.len(), 200);
        assert_eq!(
            ep.metadata.annotations.unwrap()[ANNOTATION_OVER_CAPACITY],
            "truncated"
        );
    }

    // ------------------------------------------------------------------
    // Properties

    fn arb_pod() -> impl Strategy<Value = (u8, Option<u8>, Option<u16>, u8, bool, bool, u8, bool)> {
        // (name, v4 octet, v6 suffix, phase, ready, deleting, target port variant, matching)
        (
            0u8..40,
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u16>()),
            0u8..4,
            any::<bool>(),
            any::<bool>(),
            0u8..3,
            proptest::bool::weighted(0.9),
        )
    }

    fn build_pod(t: &(u8, Option<u8>, Option<u16>, u8, bool, bool, u8, bool), salt: u8) -> Pod {
        let (name, v4, v6, phase, ready, deleting, port, matching) = *t;
        let mut ips: Vec<String> = Vec::new();
        if let Some(o) = v4 {
            ips.push(format!("10.{salt}.{name}.{o}"));
        }
        if let Some(s) = v6 {
            ips.push(format!("fd00::{salt:x}:{name:x}:{s:x}"));
        }
        let phases = ["Running", "Pending", "Succeeded", "Unknown"];
        let mut v = json!({
            "metadata": {"name": format!("p{name}"), "namespace": "ns", "labels": {"app": if matching { "web" } else { "db" }}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8000 + port as i32}]}]},
            "status": {"phase": phases[phase as usize], "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if port == 2 {
            v["spec"]["containers"][0]["ports"] = json!([]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn arb_service() -> impl Strategy<Value = Service> {
        (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(shape, publish, named)| {
            let (families, cip) = match shape {
                0 => (json!(["IPv4", "IPv6"]), json!("10.96.0.1")),
                1 => (json!(["IPv6", "IPv4"]), json!("fd00::1")),
                2 => (json!(["IPv6"]), json!("fd00::1")),
                3 => (json!(["IPv4"]), json!("10.96.0.1")),
                4 => (Value::Null, json!("None")),
                _ => (Value::Null, Value::Null),
            };
            let target = if named { json!("web") } else { json!(8080) };
            service(json!({"selector": {"app": "web"}, "ipFamilies": families, "clusterIP": cip,
                           "publishNotReadyAddresses": publish, "ports": [{"name": "http", "port": 80, "targetPort": target}]}))
        })
    }

    fn check_invariants(svc: &Service, pods: &[&Pod], slices: &[EndpointSlice], max: usize) {
        let families = address_types(svc);
        for family in [AddressType::IPv4, AddressType::IPv6] {
            let of: Vec<&EndpointSlice> = slices
                .iter()
                .filter(|s| s.address_type == family.as_str())
                .collect();
            if !families.contains(&family) {
                assert!(of.is_empty());
                continue;
            }
            assert!(
                !of.is_empty(),
                "every address type has at least a placeholder"
            );
            let mut seen: Vec<String> = Vec::new();
            for s in &of {
                assert!(slice_len(s) <= max);
                for e in s.endpoints.iter().flatten() {
                    for a in &e.addresses {
                        assert_eq!(AddressType::of(a.parse().unwrap()), family);
                    }
                    seen.push(e.target_ref.as_ref().unwrap().name.clone().unwrap());
                }
            }
            seen.sort();
            let mut want: Vec<String> = pods
                .iter()
                .filter(|p| selector_matches(svc, p) && should_pod_be_in_endpoints(p, true))
                .filter(|p| {
                    pod_ips(p)
                        .filter_map(parse_ip_sloppy)
                        .any(|ip| AddressType::of(ip) == family)
                })
                .map(|p| p.metadata.name.clone().unwrap())
                .collect();
            want.sort();
            assert_eq!(seen, want, "{family:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn ipv6_text_matches_display(segments in proptest::array::uniform8(prop_oneof![Just(0u16), Just(1u16), any::<u16>()])) {
            let ip = std::net::Ipv6Addr::from(segments);
            prop_assume!(ip.to_ipv4_mapped().is_none());
            let mut text = [0u8; 40];
            let len = ipv6_text(ip, &mut text);
            prop_assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), ip.to_string());
        }

        #[test]
        fn reconcile_converges_from_any_state(
            svc in arb_service(),
            before in proptest::collection::vec(arb_pod(), 0..30),
            after in proptest::collection::vec(arb_pod(), 0..30),
            max in 1usize..6,
        ) {
            let opts = PlanOptions { max_endpoints_per_slice: max, trigger_time: None };
            // Pod names are unique within a namespace.
            let unique = |v: Vec<_>, salt| {
                let by_name: BTreeMap<u8, _> = v.into_iter().map(|t: (u8, _, _, _, _, _, _, _)| (t.0, t)).collect();
                by_name.values().map(|t| build_pod(t, salt)).collect::<Vec<Pod>>()
            };
            let before = unique(before, 1);
            let after = unique(after, 2);
            let mut n = 0;
            let slices = apply(&[], &plan_with(&svc, &refs(&before), &[], &opts).unwrap(), &mut n);
            check_invariants(&svc, &refs(&before), &slices, max);
            prop_assert!(plan_with(&svc, &refs(&before), &slices, &opts).unwrap().is_empty());
            let p = plan_with(&svc, &refs(&after), &slices, &opts).unwrap();
            let slices = apply(&slices, &p, &mut n);
            check_invariants(&svc, &refs(&after), &slices, max);
            prop_assert!(plan_with(&svc, &refs(&after), &slices, &opts).unwrap().is_empty());
            // The Endpoints object is always computable.
            let _ = endpoints(&svc, &refs(&after));
        }

        #[test]
        fn odd_input_never_panics(svc in any::<Option<String>>(), pod in any::<Option<String>>(), slice in any::<Option<String>>()) {
            // Arbitrary strings where IPs, ports, names and families go.
            let s = |o: &Option<String>| o.clone().map_or(Value::Null, Value::String);
            let families: Vec<Value> = [s(&svc)].into_iter().filter(|v| !v.is_null()).collect();
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": s(&svc)},
                "spec": {"selector": {"a": "b"}, "clusterIP": s(&svc), "ipFamilies": families,
                         "ports": [{"port": 1, "targetPort": s(&pod).as_str().map_or(json!(0), |x| json!(x))}]},
            })).unwrap();
            let pods: Vec<Pod> = vec![
                serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}}})).unwrap(),
                serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}}, "status": {"podIP": s(&pod)}})).unwrap(),
                serde_json::from_value(json!({"metadata": {"labels": {"a": "b"}, "name": s(&pod)},
                    "status": {"podIPs": [{"ip": s(&pod).as_str().unwrap_or("")}, {"ip": "::1"}]}})).unwrap(),
            ];
            let existing: Vec<EndpointSlice> = vec![
                serde_json::from_value(json!({"addressType": s(&slice).as_str().unwrap_or(""), "endpoints": [], "metadata": {"name": s(&slice)}})).unwrap(),
                serde_json::from_value(json!({"addressType": "IPv4", "endpoints": [{"addresses": []}, {"addresses": [s(&slice).as_str().unwrap_or("")]}],
                    "metadata": {"name": "x", "labels": {LABEL_SERVICE_NAME: s(&svc).as_str().unwrap_or(""), LABEL_MANAGED_BY: CONTROLLER_NAME}}})).unwrap(),
            ];
            let pods = refs(&pods);
            let _ = plan(&service, &pods, &existing);
            let _ = desired_slices(&service, &pods, 1);
            let _ = endpoints(&service, &pods);
            let _ = address_types(&service);
        }
    }
}
