//! core/v1 Node: `spec.podCIDR`/`podCIDRs` conversion and validation (spec section A.7),
//! node addresses, Table columns.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use serde_json::Value;

use crate::error::{FieldError, FieldErrors, FieldPath};
use crate::net::{IpFamily, parse_cidr_sloppy, parse_ip_sloppy};
use crate::resource::{NODES, ResourceInfo};
use crate::schema::{NODE, TypeSchema};
use crate::table::{Column, age};
use crate::validation::{qualified_name, validate_object_meta, validate_object_meta_update};

use super::TypedKind;

pub struct NodeKind;

static COLUMNS: [Column; 10] = [
    Column::name_column(),
    Column::new("Status", "The status of the node"),
    Column::new("Roles", "The roles of the node"),
    Column::age_column(),
    Column::new("Version", "Kubelet Version reported by the node."),
    Column::new("Internal-IP", "List of internal IPs in the node.").wide(),
    Column::new("External-IP", "List of external IPs in the node.").wide(),
    Column::new(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release.",
    )
    .wide(),
    Column::new("Kernel-Version", "Kernel Version reported by the node.").wide(),
    Column::new(
        "Container-Runtime",
        "Container Runtime Version reported by the node.",
    )
    .wide(),
];

const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];

/// v1 → internal → v1: the singular field wins when both are set and differ (old clients);
/// afterwards `podCIDR` is always `podCIDRs[0]`.
pub fn convert_pod_cidrs(spec: &mut NodeSpec) {
    let single = spec.pod_cidr.clone().filter(|s| !s.is_empty());
    let list = spec.pod_cidrs.clone().unwrap_or_default();
    let list = match single {
        Some(s) if list.first() != Some(&s) => vec![s],
        _ => list,
    };
    spec.pod_cidr = list.first().cloned();
    spec.pod_cidrs = (!list.is_empty()).then_some(list);
}

/// The node's host IPs (`GetNodeHostIPs`): the first InternalIP (else ExternalIP), plus the
/// first address of the other family.
pub fn node_host_ips(node: &Node) -> Vec<String> {
    let addrs = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .cloned()
        .unwrap_or_default();
    let ordered: Vec<String> = addrs
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .chain(addrs.iter().filter(|a| a.type_ == "ExternalIP"))
        .filter(|a| parse_ip_sloppy(&a.address).is_some())
        .map(|a| a.address.clone())
        .collect();
    let Some(first) = ordered.first().cloned() else {
        return Vec::new();
    };
    let fam = |s: &str| parse_ip_sloppy(s).map(|ip| IpFamily::of(&ip));
    let mut out = vec![first.clone()];
    if let Some(second) = ordered.iter().find(|a| fam(a) != fam(&first)) {
        out.push(second.clone());
    }
    out
}

fn validate_pod_cidrs(spec: Option<&NodeSpec>) -> FieldErrors {
    let mut errs = Vec::new();
    let path = FieldPath::root("spec").child("podCIDRs");
    let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    for (i, c) in cidrs.iter().enumerate() {
        if parse_cidr_sloppy(c).is_none() {
            errs.push(FieldError::invalid(
                path.index(i),
                c,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if cidrs.len() > 1 && errs.is_empty() {
        let fams: Vec<IpFamily> = cidrs
            .iter()
            .filter_map(|c| parse_cidr_sloppy(c))
            .map(|n| IpFamily::of_net(&n))
            .collect();
        let dual = fams.contains(&IpFamily::IPv4) && fams.contains(&IpFamily::IPv6);
        if !dual || cidrs.len() > 2 {
            errs.push(FieldError::invalid(
                &path,
                crate::error::BadValue::go_list("string", Some(&cidrs)),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = HashSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(c) {
                errs.push(FieldError::duplicate(path.index(i), c));
            }
        }
    }
    errs
}

fn validate_spec(node: &Node) -> FieldErrors {
    let mut errs = validate_pod_cidrs(node.spec.as_ref());
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let path = FieldPath::root("spec").child("taints");
    for (i, t) in taints.iter().enumerate() {
        for m in qualified_name(&t.key) {
            errs.push(FieldError::invalid(path.index(i).child("key"), &t.key, m));
        }
        if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                path.index(i).child("effect"),
                &t.effect,
                TAINT_EFFECTS,
            ));
        }
    }
    let addrs = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, a) in addrs.iter().enumerate() {
        if !seen.insert((a.type_.clone(), a.address.clone())) {
            errs.push(FieldError::duplicate(
                FieldPath::root("status").child("addresses").index(i),
                crate::error::BadValue::Raw(format!(
                    "core.NodeAddress{{Type:\"{}\", Address:\"{}\"}}",
                    a.type_, a.address
                )),
            ));
        }
    }
    errs
}

impl TypedKind for NodeKind {
    type Object = Node;

    fn info(&self) -> &'static ResourceInfo {
        &NODES
    }
    fn schema(&self) -> &'static TypeSchema {
        &NODE
    }

    fn default(&self, node: &mut Node) {
        convert_pod_cidrs(node.spec.get_or_insert_with(NodeSpec::default));
        if let Some(st) = node.status.as_mut()
            && st.allocatable.is_none()
        {
            st.allocatable = st.capacity.clone();
        }
    }

    fn validate(&self, node: &Node) -> FieldErrors {
        let mut errs = validate_object_meta(&node.metadata, false, NODES.name_rule);
        errs.extend(validate_spec(node));
        errs
    }

    fn prepare_for_update(&self, new: &mut Node, old: &Node) {
        new.status = old.status.clone();
    }

    fn validate_update(&self, new: &Node, old: &Node) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(validate_spec(new));
        let old_cidrs = old
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default();
        let new_cidrs = new
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default();
        if !old_cidrs.is_empty() && old_cidrs != new_cidrs {
            errs.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        errs
    }

    fn prepare_for_status_update(&self, new: &mut Node, old: &Node) {
        new.spec = old.spec.clone();
    }

    fn validate_status_update(&self, new: &Node, old: &Node) -> FieldErrors {
        self.validate_update(new, old)
    }

    fn columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn cells(&self, node: &Node, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let status = node.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| match c.status.as_str() {
                "True" => "Ready",
                "False" => "NotReady",
                _ => "Unknown",
            })
            .unwrap_or("Unknown");
        let mut state = ready.to_owned();
        if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            state.push_str(",SchedulingDisabled");
        }
        let mut roles: Vec<String> = node
            .metadata
            .labels
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                k.strip_prefix("node-role.kubernetes.io/")
                    .map(str::to_owned)
                    .or_else(|| (k == "kubernetes.io/role").then(|| v.clone()))
            })
            .filter(|r| !r.is_empty())
            .collect();
        roles.sort();
        let roles = if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        };
        let addr = |t: &str| {
            status
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == t)
                .map_or("<none>".to_owned(), |a| a.address.clone())
        };
        let info = status.node_info.clone().unwrap_or_default();
        let unknown = |s: &str| {
            if s.is_empty() {
                "<unknown>".to_owned()
            } else {
                s.to_owned()
            }
        };
        vec![
            node.metadata.name.clone().unwrap_or_default().into(),
            state.into(),
            roles.into(),
            age(raw, now).into(),
            info.kubelet_version.clone().into(),
            addr("InternalIP").into(),
            addr("ExternalIP").into(),
            unknown(&info.os_image).into(),
            unknown(&info.kernel_version).into(),
            unknown(&info.container_runtime_version).into(),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "spec.unschedulable"]
    }

    fn field(&self, node: &Node, raw: &Value, name: &str) -> Option<String> {
        match name {
            "spec.unschedulable" => Some(
                node.spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
                    .to_string(),
            ),
            _ => super::generic_field(raw, name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    fn errs(spec: Value) -> Vec<String> {
        let k: &dyn Kind = &NodeKind;
        let d = k
            .decode(json!({"metadata": {"name": "n1"}, "spec": spec}))
            .unwrap();
        k.validate(&d.value).iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn pod_cidrs_rules() {
        assert!(errs(json!({"podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]})).is_empty());
        assert!(errs(json!({"podCIDRs": ["fd00:10:244:1::/64", "10.244.1.0/24"]})).is_empty());
        assert_eq!(
            errs(json!({"podCIDRs": ["10.244.1.0/24", "10.244.2.0/24"]})),
            [
                "spec.podCIDRs: Invalid value: []string{\"10.244.1.0/24\", \"10.244.2.0/24\"}: may specify no more than one CIDR for each IP family"
            ]
        );
        assert_eq!(
            errs(json!({"podCIDRs": ["10.244.1.0/24", "fd00::/64", "10.244.2.0/24"]}))[0],
            "spec.podCIDRs: Invalid value: []string{\"10.244.1.0/24\", \"fd00::/64\", \"10.244.2.0/24\"}: may specify no more than one CIDR for each IP family"
        );
        assert_eq!(
            errs(json!({"podCIDRs": ["banana"]})),
            [
                "spec.podCIDRs[0]: Invalid value: \"banana\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            ]
        );
        assert_eq!(
            errs(json!({"taints": [{"key": "a", "effect": "Sometimes"}]})),
            [
                "spec.taints[0].effect: Unsupported value: \"Sometimes\": supported values: \"NoExecute\", \"NoSchedule\", \"PreferNoSchedule\""
            ]
        );
    }

    #[test]
    fn pod_cidr_conversion() {
        let cases = [
            (
                json!({"podCIDR": "10.0.0.0/24"}),
                Some("10.0.0.0/24"),
                Some(vec!["10.0.0.0/24"]),
            ),
            (
                json!({"podCIDRs": ["fd00::/64", "10.0.0.0/24"]}),
                Some("fd00::/64"),
                Some(vec!["fd00::/64", "10.0.0.0/24"]),
            ),
            // The singular wins for old clients.
            (
                json!({"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}),
                Some("10.1.0.0/24"),
                Some(vec!["10.1.0.0/24"]),
            ),
            (json!({}), None, None),
        ];
        for (spec, single, list) in cases {
            let mut s: NodeSpec = serde_json::from_value(spec.clone()).unwrap();
            convert_pod_cidrs(&mut s);
            assert_eq!(s.pod_cidr.as_deref(), single, "{spec}");
            assert_eq!(
                s.pod_cidrs,
                list.map(|l| l.into_iter().map(String::from).collect()),
                "{spec}"
            );
        }
    }

    #[test]
    fn pod_cidrs_are_immutable_once_set() {
        let k: &dyn Kind = &NodeKind;
        let old = k
            .decode(json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}))
            .unwrap()
            .value;
        let new = k
            .decode(json!({"metadata": {"name": "n"}, "spec": {"podCIDRs": ["10.0.1.0/24"]}}))
            .unwrap()
            .value;
        let got: Vec<String> = k
            .validate_update(&new, &old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            [
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
            ]
        );
        let unset = k.decode(json!({"metadata": {"name": "n"}})).unwrap().value;
        assert!(k.validate_update(&old, &unset).is_empty());
    }

    #[test]
    fn host_ips() {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"addresses": [
            {"type": "Hostname", "address": "n"},
            {"type": "InternalIP", "address": "fd00::5"},
            {"type": "InternalIP", "address": "fd00::6"},
            {"type": "ExternalIP", "address": "192.0.2.5"},
            {"type": "InternalIP", "address": "10.0.0.5"}]}}))
            .unwrap();
        assert_eq!(node_host_ips(&node), ["fd00::5", "10.0.0.5"]);
    }
}
