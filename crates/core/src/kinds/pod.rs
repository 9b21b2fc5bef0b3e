//! core/v1 Pod: defaulting, the parts of validation that matter here, the `podIP`/`podIPs`
//! and `hostIP`/`hostIPs` conversion and validation (spec section B.4), Table columns.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP, PodSpec, PodStatus};
use serde_json::Value;

use crate::error::{BadValue, FieldError, FieldErrors, FieldPath};
use crate::net::{IpFamily, parse_ip_sloppy};
use crate::resource::{PODS, ResourceInfo};
use crate::schema::{POD, TypeSchema};
use crate::table::{Column, age};
use crate::validation::{dns1123_label, validate_object_meta, validate_object_meta_update};

use super::TypedKind;

pub struct PodKind;

static COLUMNS: [Column; 9] = [
    Column::name_column(),
    Column::new(
        "Ready",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    Column::new(
        "Status",
        "The aggregate status of the containers in this pod.",
    ),
    Column::new(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    Column::age_column(),
    Column::new("IP", "The primary IP address of the pod (status.podIP).").wide(),
    Column::new("Node", "The node the pod is bound to (spec.nodeName).").wide(),
    Column::new(
        "Nominated Node",
        "The node the scheduler nominated for this pod.",
    )
    .wide(),
    Column::new("Readiness Gates", "The readiness gates of the pod.").wide(),
];

const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

const UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The v1 ↔ internal round trip of the pod IP fields: the singular wins when both are set and
/// differ (old clients); afterwards the singular is the list's first entry.
pub fn convert_ips(status: &mut PodStatus) {
    let pod_ip = status.pod_ip.clone().filter(|s| !s.is_empty());
    let pod_ips = status.pod_ips.clone().unwrap_or_default();
    let pod_ips = match pod_ip {
        Some(ip) if pod_ips.first().map(|p| &p.ip) != Some(&ip) => vec![PodIP { ip }],
        _ => pod_ips,
    };
    status.pod_ip = pod_ips.first().map(|p| p.ip.clone());
    status.pod_ips = (!pod_ips.is_empty()).then_some(pod_ips);

    let host_ip = status.host_ip.clone().filter(|s| !s.is_empty());
    let host_ips = status.host_ips.clone().unwrap_or_default();
    let host_ips = match host_ip {
        Some(ip) if host_ips.first().map(|p| &p.ip) != Some(&ip) => vec![HostIP { ip }],
        _ => host_ips,
    };
    status.host_ip = host_ips.first().map(|p| p.ip.clone());
    status.host_ips = (!host_ips.is_empty()).then_some(host_ips);
}

/// The address fields kubelet reports for a pod on a node whose host IPs are `host_ips`
/// (`GetNodeHostIPs`, section B.3), as far as they are missing from `pod`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStatus {
    /// New `status.hostIPs` (and `hostIP`, its first entry).
    pub host_ips: Option<Vec<String>>,
    /// New `status.podIPs` (and `podIP`) of a host-network pod.
    pub pod_ips: Option<Vec<String>>,
}

impl HostStatus {
    pub fn is_empty(&self) -> bool {
        self.host_ips.is_none() && self.pod_ips.is_none()
    }
}

/// Section B.3: a pod bound to a node gets the node's host IPs when it reports none, and a
/// host-network pod without pod IPs gets the host IPs as its pod IPs (the second family is
/// added to a single pod IP of the other family). Reported addresses are never rewritten.
pub fn host_status(pod: &Pod, host_ips: &[String]) -> HostStatus {
    let mut out = HostStatus::default();
    let Some(first) = host_ips.first() else {
        return out;
    };
    let status = pod.status.clone().unwrap_or_default();
    let reported_host = status.host_ips.as_ref().is_some_and(|l| !l.is_empty())
        || status.host_ip.as_deref().is_some_and(|s| !s.is_empty());
    if !reported_host {
        out.host_ips = Some(host_ips.to_vec());
    }
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if !host_network {
        return out;
    }
    let mut pod_ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    if pod_ips.is_empty()
        && let Some(ip) = status.pod_ip.filter(|s| !s.is_empty())
    {
        pod_ips.push(ip);
    }
    let family = |s: &str| parse_ip_sloppy(s).map(|ip| IpFamily::of(&ip));
    if pod_ips.is_empty() {
        let mut ips = vec![first.clone()];
        ips.extend(host_ips.get(1).cloned());
        out.pod_ips = Some(ips);
    } else if pod_ips.len() == 1
        && let Some(second) = host_ips.get(1)
        && family(&pod_ips[0]) != family(second)
    {
        pod_ips.push(second.clone());
        out.pod_ips = Some(pod_ips);
    }
    out
}

/// One `core.PodIP`/`core.HostIP` as Go's `%#v` prints it.
fn go_ip(type_name: &str, ip: &str) -> String {
    format!("core.{type_name}{{IP:{}}}", crate::error::go_quote(ip))
}

fn go_ips(type_name: &str, ips: &[String]) -> BadValue {
    BadValue::Raw(format!(
        "[]core.{type_name}{{{}}}",
        ips.iter()
            .map(|ip| go_ip(type_name, ip))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `validatePodIPs` / `validateHostIPs`: each a valid IP; more than one must be a dual-stack
/// pair; no duplicates. Kubernetes runs every check, so an unparseable entry in a list of two
/// also fails the dual-stack check, with the error of `IsDualStackIPStrings`.
fn validate_ip_list(path: &FieldPath, type_name: &str, ips: &[String]) -> FieldErrors {
    let parsed: Vec<Option<IpAddr>> = ips.iter().map(|ip| parse_ip_sloppy(ip)).collect();
    let mut errs = Vec::new();
    for (i, (ip, p)) in ips.iter().zip(&parsed).enumerate() {
        if p.is_none() {
            errs.push(FieldError::invalid(
                path.index(i).child("ip"),
                ip,
                "must be a valid IP address",
            ));
        }
    }
    if ips.len() <= 1 {
        return errs;
    }
    let unparsed = parsed.iter().position(Option::is_none);
    if let Some(i) = unparsed {
        errs.push(FieldError::internal(
            path,
            format!(
                "failed to check for dual stack with error:invalid IP[{i}]: {}",
                ips[i]
            ),
        ));
    }
    let has = |f: IpFamily| parsed.iter().flatten().any(|ip| IpFamily::of(ip) == f);
    let dual = unparsed.is_none() && has(IpFamily::IPv4) && has(IpFamily::IPv6);
    if !dual || ips.len() > 2 {
        errs.push(FieldError::invalid(
            path,
            go_ips(type_name, ips),
            "may specify no more than one IP for each IP family",
        ));
    }
    let mut seen = HashSet::new();
    for (i, ip) in ips.iter().enumerate() {
        if !seen.insert(ip) {
            // The whole entry is the bad value, printed as Go prints the struct.
            errs.push(FieldError::duplicate(
                path.index(i),
                BadValue::Raw(go_ip(type_name, ip)),
            ));
        }
    }
    errs
}

/// Status validation of section B.4.
pub fn validate_status_ips(status: &PodStatus) -> FieldErrors {
    let sp = FieldPath::root("status");
    let pod_ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    let mut errs = validate_ip_list(&sp.child("podIPs"), "PodIP", &pod_ips);
    let host_ips: Vec<String> = status
        .host_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    errs.extend(validate_ip_list(&sp.child("hostIPs"), "HostIP", &host_ips));
    if let Some(first) = host_ips.first()
        && status.host_ip.as_deref().unwrap_or("") != first
    {
        errs.push(FieldError::invalid(
            sp.child("hostIPs").index(0).child("ip"),
            first,
            "must be equal to `hostIP`",
        ));
    }
    errs
}

fn default_container(c: &mut Container) {
    if c.termination_message_path.is_none() {
        c.termination_message_path = Some("/dev/termination-log".into());
    }
    if c.termination_message_policy.is_none() {
        c.termination_message_policy = Some("File".into());
    }
    if c.image_pull_policy.is_none() {
        // Kubernetes pulls `:latest` (or untagged) images always, others if not present.
        let image = c.image.as_deref().unwrap_or("");
        let last = image.rsplit('/').next().unwrap_or("");
        let tagged = last.contains(':') && !last.ends_with(":latest");
        let digest = image.contains('@');
        c.image_pull_policy = Some(
            if tagged || digest {
                "IfNotPresent"
            } else {
                "Always"
            }
            .into(),
        );
    }
    if c.resources.is_none() {
        c.resources = Some(Default::default());
    }
    for p in c.ports.iter_mut().flatten() {
        if p.protocol.as_deref().unwrap_or("").is_empty() {
            p.protocol = Some("TCP".into());
        }
    }
}

/// Kubernetes' QoS class of a pod.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let r = c.resources.clone().unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        if !limits.is_empty() || !requests.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match limits.get(res) {
                None => guaranteed = false,
                Some(l) => {
                    if requests.get(res).is_some_and(|q| q != l) {
                        guaranteed = false;
                    }
                }
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn validate_containers(
    list: &[Container],
    path: &FieldPath,
    names: &mut HashSet<String>,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let cp = path.index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(cp.child("name"), ""));
        } else {
            for m in dns1123_label(&c.name) {
                errs.push(FieldError::invalid(cp.child("name"), &c.name, m));
            }
            if !names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(cp.child("name"), &c.name));
            }
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            errs.push(FieldError::required(cp.child("image"), ""));
        }
        let mut port_names = HashSet::new();
        for (j, p) in c.ports.iter().flatten().enumerate() {
            let pp = cp.child("ports").index(j);
            if !(1..=65535).contains(&p.container_port) {
                errs.push(FieldError::invalid(
                    pp.child("containerPort"),
                    i64::from(p.container_port),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(hp) = p.host_port
                && hp != 0
                && !(1..=65535).contains(&hp)
            {
                errs.push(FieldError::invalid(
                    pp.child("hostPort"),
                    i64::from(hp),
                    "must be between 1 and 65535, inclusive",
                ));
            }
            match p.protocol.as_deref() {
                None | Some("") => errs.push(FieldError::required(pp.child("protocol"), "")),
                Some(proto) if !PROTOCOLS.contains(&proto) => errs.push(FieldError::not_supported(
                    pp.child("protocol"),
                    proto,
                    PROTOCOLS,
                )),
                _ => {}
            }
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty())
                && !port_names.insert(n.to_owned())
            {
                errs.push(FieldError::duplicate(pp.child("name"), n));
            }
        }
    }
    errs
}

fn validate_spec(spec: Option<&PodSpec>) -> FieldErrors {
    let default = PodSpec::default();
    let spec = spec.unwrap_or(&default);
    let sp = FieldPath::root("spec");
    let mut errs = Vec::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(sp.child("containers"), ""));
    }
    let mut names = HashSet::new();
    errs.extend(validate_containers(
        &spec.containers,
        &sp.child("containers"),
        &mut names,
    ));
    errs.extend(validate_containers(
        spec.init_containers.as_deref().unwrap_or(&[]),
        &sp.child("initContainers"),
        &mut names,
    ));
    if let Some(p) = spec.restart_policy.as_deref()
        && !RESTART_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported(
            sp.child("restartPolicy"),
            p,
            RESTART_POLICIES,
        ));
    }
    if let Some(p) = spec.dns_policy.as_deref()
        && !DNS_POLICIES.contains(&p)
    {
        errs.push(FieldError::not_supported(
            sp.child("dnsPolicy"),
            p,
            DNS_POLICIES,
        ));
    }
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        for m in crate::validation::dns1123_subdomain(n) {
            errs.push(FieldError::invalid(sp.child("nodeName"), n, m));
        }
    }
    errs
}

/// What an update may change: images, activeDeadlineSeconds, added tolerations,
/// terminationGracePeriodSeconds. Everything else must be equal.
fn mutable_parts_neutralized(spec: &PodSpec) -> Value {
    let mut s = spec.clone();
    for c in s
        .containers
        .iter_mut()
        .chain(s.init_containers.iter_mut().flatten())
    {
        c.image = None;
    }
    s.active_deadline_seconds = None;
    s.tolerations = None;
    s.termination_grace_period_seconds = None;
    serde_json::to_value(s).unwrap_or(Value::Null)
}

impl TypedKind for PodKind {
    type Object = Pod;

    fn info(&self) -> &'static ResourceInfo {
        &PODS
    }
    fn schema(&self) -> &'static TypeSchema {
        &POD
    }

    fn default(&self, pod: &mut Pod) {
        let spec = pod.spec.get_or_insert_with(PodSpec::default);
        spec.restart_policy.get_or_insert_with(|| "Always".into());
        spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
        spec.termination_grace_period_seconds.get_or_insert(30);
        spec.scheduler_name
            .get_or_insert_with(|| "default-scheduler".into());
        spec.security_context.get_or_insert_with(Default::default);
        spec.enable_service_links.get_or_insert(true);
        spec.priority.get_or_insert(0);
        spec.preemption_policy
            .get_or_insert_with(|| "PreemptLowerPriority".into());
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            default_container(c);
        }
        if let Some(st) = pod.status.as_mut() {
            convert_ips(st);
        }
    }

    fn prepare_for_create(&self, pod: &mut Pod) {
        let qos = pod.spec.as_ref().map_or("BestEffort", qos_class);
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some(qos.into()),
            ..Default::default()
        });
    }

    fn validate(&self, pod: &Pod) -> FieldErrors {
        let mut errs = validate_object_meta(&pod.metadata, true, PODS.name_rule);
        errs.extend(validate_spec(pod.spec.as_ref()));
        errs
    }

    fn prepare_for_update(&self, new: &mut Pod, old: &Pod) {
        new.status = old.status.clone();
    }

    fn validate_update(&self, new: &Pod, old: &Pod) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(validate_spec(new.spec.as_ref()));
        let default = PodSpec::default();
        let (n, o) = (
            new.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        if mutable_parts_neutralized(n) != mutable_parts_neutralized(o) {
            errs.push(FieldError::forbidden("spec", UPDATE_FORBIDDEN));
        }
        errs
    }

    fn prepare_for_status_update(&self, new: &mut Pod, old: &Pod) {
        new.spec = old.spec.clone();
        super::namespace::keep_meta_for_status(&mut new.metadata, &old.metadata);
    }

    fn validate_status_update(&self, new: &Pod, old: &Pod) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(validate_status_ips(&new.status.clone().unwrap_or_default()));
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn cells(&self, pod: &Pod, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let ready = statuses.iter().filter(|s| s.ready).count();
        let restarts: i32 = statuses.iter().map(|s| s.restart_count).sum();
        let mut reason = status
            .reason
            .clone()
            .or_else(|| status.phase.clone())
            .unwrap_or_default();
        if let Some(waiting) = statuses
            .iter()
            .filter_map(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .next()
        {
            reason = waiting;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            reason = "Terminating".into();
        }
        let none = |s: Option<String>| {
            s.filter(|s| !s.is_empty())
                .unwrap_or_else(|| "<none>".into())
        };
        let gates = spec.readiness_gates.clone().unwrap_or_default();
        let gates = if gates.is_empty() {
            "<none>".to_owned()
        } else {
            let conds = status.conditions.clone().unwrap_or_default();
            let passed = gates
                .iter()
                .filter(|g| {
                    conds
                        .iter()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
                .count();
            format!("{passed}/{}", gates.len())
        };
        vec![
            pod.metadata.name.clone().unwrap_or_default().into(),
            format!("{ready}/{}", spec.containers.len()).into(),
            reason.into(),
            restarts.to_string().into(),
            age(raw, now).into(),
            none(status.pod_ip.clone()).into(),
            none(spec.node_name.clone()).into(),
            none(status.nominated_node_name.clone()).into(),
            gates.into(),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ]
    }

    fn field(&self, pod: &Pod, raw: &Value, name: &str) -> Option<String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        let s = |v: Option<String>| Some(v.unwrap_or_default());
        match name {
            "spec.nodeName" => s(spec.node_name),
            "spec.restartPolicy" => s(spec.restart_policy),
            "spec.schedulerName" => s(spec.scheduler_name),
            "spec.serviceAccountName" => s(spec.service_account_name),
            "spec.hostNetwork" => Some(spec.host_network.unwrap_or(false).to_string()),
            "status.phase" => s(status.phase),
            "status.podIP" => s(status.pod_ip),
            // Kubernetes matches the list as its comma-joined addresses.
            "status.podIPs" => Some(
                status
                    .pod_ips
                    .iter()
                    .flatten()
                    .map(|p| p.ip.clone())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "status.nominatedNodeName" => s(status.nominated_node_name),
            _ => super::generic_field(raw, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    fn pod(extra: Value) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}});
        json_patch::merge(&mut v, &extra);
        v
    }

    #[test]
    fn host_status_rules() {
        let dual = ["10.0.0.5".to_string(), "fd00::5".to_string()];
        let v4 = ["10.0.0.5".to_string()];
        let p = |hn: bool, status: Value| -> Pod {
            serde_json::from_value(pod(json!({"spec": {"hostNetwork": hn}, "status": status})))
                .unwrap()
        };
        let s = |l: &[&str]| Some(l.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let cases: Vec<(&str, Pod, &[String], HostStatus)> = vec![
            (
                "no host IPs known",
                p(true, json!({})),
                &[],
                HostStatus::default(),
            ),
            (
                "ordinary pod gets host IPs only",
                p(false, json!({})),
                &dual,
                HostStatus {
                    host_ips: s(&["10.0.0.5", "fd00::5"]),
                    pod_ips: None,
                },
            ),
            (
                "host-network pod gets both families",
                p(true, json!({})),
                &dual,
                HostStatus {
                    host_ips: s(&["10.0.0.5", "fd00::5"]),
                    pod_ips: s(&["10.0.0.5", "fd00::5"]),
                },
            ),
            (
                "single-stack node",
                p(true, json!({})),
                &v4,
                HostStatus {
                    host_ips: s(&["10.0.0.5"]),
                    pod_ips: s(&["10.0.0.5"]),
                },
            ),
            (
                "one pod IP of the other family gets the second",
                p(
                    true,
                    json!({"hostIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}),
                ),
                &dual,
                HostStatus {
                    host_ips: None,
                    pod_ips: s(&["10.0.0.5", "fd00::5"]),
                },
            ),
            (
                "reported addresses are not rewritten",
                p(
                    true,
                    json!({"hostIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}, {"ip": "fd00::9"}]}),
                ),
                &dual,
                HostStatus::default(),
            ),
            (
                "a single pod IP of the second host IP's family stays",
                p(true, json!({"hostIP": "10.0.0.5", "podIP": "fd00::5"})),
                &dual,
                HostStatus::default(),
            ),
        ];
        for (name, pod, host, want) in cases {
            assert_eq!(host_status(&pod, host), want, "{name}");
        }
    }

    #[test]
    fn defaults_and_create() {
        let k: &dyn Kind = &PodKind;
        let mut v = k.decode(pod(json!({}))).unwrap().value;
        k.prepare_for_create(&mut v);
        assert_eq!(v["spec"]["restartPolicy"], "Always");
        assert_eq!(v["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(
            v["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(v["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["status"]["phase"], "Pending");
        assert_eq!(v["status"]["qosClass"], "BestEffort");
        let latest = k
            .decode(pod(
                json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
            ))
            .unwrap()
            .value;
        assert_eq!(latest["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(k.validate(&v).is_empty());
    }

    #[test]
    fn validation() {
        let k: &dyn Kind = &PodKind;
        let cases = [
            (
                json!({"spec": {"containers": null}}),
                vec!["spec.containers: Required value"],
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "image": ""}]}}),
                vec!["spec.containers[0].image: Required value"],
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}}),
                vec!["spec.containers[1].name: Duplicate value: \"c\""],
            ),
            (
                json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 0}]}]}}),
                vec![
                    "spec.containers[0].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"spec": {"restartPolicy": "Sometimes"}}),
                vec![
                    "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
                ],
            ),
        ];
        for (extra, want) in cases {
            let v = k.decode(pod(extra.clone())).unwrap().value;
            let got: Vec<String> = k.validate(&v).iter().map(|e| e.to_string()).collect();
            assert_eq!(got, want, "{extra}");
        }
    }

    #[test]
    fn status_ips_rules_and_conversion() {
        let k: &dyn Kind = &PodKind;
        let status = |st: Value| -> Vec<String> {
            let v = k.decode(pod(json!({"status": st}))).unwrap().value;
            k.validate_status_update(&v, &v)
                .iter()
                .map(|e| e.to_string())
                .collect()
        };
        assert!(
            status(json!({"podIPs": [{"ip": "10.244.1.4"}, {"ip": "fd00:10:244:1::4"}]}))
                .is_empty()
        );
        assert_eq!(
            status(json!({"podIPs": [{"ip": "10.244.1.4"}, {"ip": "10.244.1.5"}]})),
            [
                "status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.244.1.4\"}, core.PodIP{IP:\"10.244.1.5\"}}: may specify no more than one IP for each IP family"
            ]
        );
        assert_eq!(
            status(
                json!({"podIPs": [{"ip": "10.244.1.4"}, {"ip": "fd00::1"}, {"ip": "10.244.1.5"}]})
            ),
            [
                "status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.244.1.4\"}, core.PodIP{IP:\"fd00::1\"}, core.PodIP{IP:\"10.244.1.5\"}}: may specify no more than one IP for each IP family"
            ]
        );
        assert_eq!(
            status(json!({"podIPs": [{"ip": "nope"}]})),
            ["status.podIPs[0].ip: Invalid value: \"nope\": must be a valid IP address"]
        );
        assert_eq!(
            status(json!({"hostIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.1"}]}))[0],
            "status.hostIPs: Invalid value: []core.HostIP{core.HostIP{IP:\"10.0.0.1\"}, core.HostIP{IP:\"10.0.0.1\"}}: may specify no more than one IP for each IP family"
        );
        // The remaining rules of B.4, all errors in Kubernetes' order.
        let table: &[(Value, &[&str])] = &[
            (json!({"podIPs": [{"ip": "fd00::1"}]}), &[]),
            (
                json!({"podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}),
                &[],
            ),
            (
                json!({"podIPs": [{"ip": "10.244.1.4"}, {"ip": "10.244.1.4"}]}),
                &[
                    "status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.244.1.4\"}, core.PodIP{IP:\"10.244.1.4\"}}: may specify no more than one IP for each IP family",
                    "status.podIPs[1]: Duplicate value: core.PodIP{IP:\"10.244.1.4\"}",
                ],
            ),
            (
                json!({"podIPs": [{"ip": "10.244.1.4"}, {"ip": "1.2.3"}]}),
                &[
                    "status.podIPs[1].ip: Invalid value: \"1.2.3\": must be a valid IP address",
                    "status.podIPs: Internal error: failed to check for dual stack with error:invalid IP[1]: 1.2.3",
                    "status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.244.1.4\"}, core.PodIP{IP:\"1.2.3\"}}: may specify no more than one IP for each IP family",
                ],
            ),
            // Conversion puts a disagreeing hostIP first (it wins, as podIP does), so the
            // `must be equal to hostIP` rule cannot fire through the API.
            (
                json!({"hostIP": "10.0.0.2", "hostIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}),
                &[],
            ),
            (
                json!({"hostIP": "10.0.0.1", "hostIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}),
                &[],
            ),
            (
                json!({"hostIP": "fd00::1", "hostIPs": [{"ip": "fd00::1"}, {"ip": "x"}]}),
                &[
                    "status.hostIPs[1].ip: Invalid value: \"x\": must be a valid IP address",
                    "status.hostIPs: Internal error: failed to check for dual stack with error:invalid IP[1]: x",
                    "status.hostIPs: Invalid value: []core.HostIP{core.HostIP{IP:\"fd00::1\"}, core.HostIP{IP:\"x\"}}: may specify no more than one IP for each IP family",
                ],
            ),
        ];
        for (st, want) in table {
            assert_eq!(status(st.clone()), *want, "{st}");
        }
        let v = k
            .decode(pod(json!({"status": {"hostIP": "10.0.0.2", "hostIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}})))
            .unwrap()
            .value;
        assert_eq!(v["status"]["hostIPs"], json!([{"ip": "10.0.0.2"}]));
        // The rule itself, on a status conversion would not produce.
        let direct = PodStatus {
            host_ip: Some("10.0.0.2".into()),
            host_ips: Some(vec![HostIP {
                ip: "10.0.0.1".into(),
            }]),
            ..Default::default()
        };
        assert_eq!(
            validate_status_ips(&direct)
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
            ["status.hostIPs[0].ip: Invalid value: \"10.0.0.1\": must be equal to `hostIP`"]
        );
        // podIP alone fills podIPs; podIP disagreeing with podIPs[0] wins.
        let v = k
            .decode(pod(json!({"status": {"podIP": "10.244.1.4"}})))
            .unwrap()
            .value;
        assert_eq!(v["status"]["podIPs"], json!([{"ip": "10.244.1.4"}]));
        let v = k.decode(pod(json!({"status": {"podIP": "10.244.1.9", "podIPs": [{"ip": "10.244.1.4"}, {"ip": "fd00::4"}]}}))).unwrap().value;
        assert_eq!(v["status"]["podIPs"], json!([{"ip": "10.244.1.9"}]));
        let v = k
            .decode(pod(
                json!({"status": {"podIPs": [{"ip": "fd00::4"}, {"ip": "10.244.1.4"}]}}),
            ))
            .unwrap()
            .value;
        assert_eq!(v["status"]["podIP"], "fd00::4");
    }

    #[test]
    fn spec_updates_are_limited() {
        let k: &dyn Kind = &PodKind;
        let old = k.decode(pod(json!({}))).unwrap().value;
        let image = k.decode(pod(json!({"spec": {"containers": [{"name": "c", "image": "nginx:1.28", "ports": [{"containerPort": 80}]}]}}))).unwrap().value;
        assert!(k.validate_update(&image, &old).is_empty());
        let node = k
            .decode(pod(json!({"spec": {"nodeName": "n1"}})))
            .unwrap()
            .value;
        let got: Vec<String> = k
            .validate_update(&node, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("spec: Forbidden: pod updates may not change fields other than")
        );
    }
}
