//! core/v1 Service: v1 defaulting, the type-independent validation, Table columns.
//!
//! The dual-stack fields (`ipFamilyPolicy`, `ipFamilies`, `clusterIPs`) and allocation are
//! handled by the service registry, which runs before this validation (see
//! `docs/services.md`).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    LoadBalancerStatus, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::error::{BadValue, FieldError, FieldErrors, FieldPath};
use crate::resource::{ResourceInfo, SERVICES};
use crate::schema::{SERVICE, TypeSchema};
use crate::table::{Column, age};
use crate::validation::{
    dns1123_label, qualified_name, validate_labels, validate_object_meta,
    validate_object_meta_update,
};

use super::{TypedKind, service_ips};

pub const TYPE_CLUSTER_IP: &str = "ClusterIP";
pub const TYPE_NODE_PORT: &str = "NodePort";
pub const TYPE_LOAD_BALANCER: &str = "LoadBalancer";
pub const TYPE_EXTERNAL_NAME: &str = "ExternalName";
pub const CLUSTER_IP_NONE: &str = "None";
const SUPPORTED_TYPES: &[&str] = &[
    TYPE_CLUSTER_IP,
    TYPE_EXTERNAL_NAME,
    TYPE_LOAD_BALANCER,
    TYPE_NODE_PORT,
];
const SUPPORTED_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const SUPPORTED_AFFINITY: &[&str] = &["ClientIP", "None"];
const SUPPORTED_TRAFFIC_POLICY: &[&str] = &["Cluster", "Local"];

pub struct ServiceKind;

static COLUMNS: [Column; 7] = [
    Column::name_column(),
    Column::new(
        "Type",
        "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
    ),
    Column::new("Cluster-IP", "The primary cluster IP (spec.clusterIPs[0])."),
    Column::new(
        "External-IP",
        "Load balancer ingress addresses and external IPs.",
    ),
    Column::new(
        "Port(s)",
        "The service's ports as port[:nodePort]/protocol.",
    ),
    Column::age_column(),
    Column::new(
        "Selector",
        "The label selector of the pods behind the service.",
    )
    .wide(),
];

/// Whether traffic from outside the cluster can reach the service (`ExternallyAccessible`).
fn externally_accessible(spec: &ServiceSpec) -> bool {
    matches!(
        spec.type_.as_deref(),
        Some(TYPE_LOAD_BALANCER) | Some(TYPE_NODE_PORT)
    ) || (spec.type_.as_deref() == Some(TYPE_CLUSTER_IP)
        && spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()))
}

pub fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some(CLUSTER_IP_NONE)
        || spec
            .cluster_ips
            .as_ref()
            .and_then(|ips| ips.first())
            .is_some_and(|ip| ip == CLUSTER_IP_NONE)
}

impl TypedKind for ServiceKind {
    type Object = Service;

    fn info(&self) -> &'static ResourceInfo {
        &SERVICES
    }
    fn schema(&self) -> &'static TypeSchema {
        &SERVICE
    }

    fn pre_decode(&self, value: &mut Value, extra: &mut serde_json::Map<String, Value>) {
        // The v1.16 alpha `spec.ipFamily` is accepted (docs/services.md) and converted by the
        // Service registry, so it is lifted out before the typed decode would drop it.
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
            && let Some(f) = spec.remove("ipFamily")
            && !f.is_null()
        {
            extra.insert("ipFamily".into(), f);
        }
    }

    fn default(&self, svc: &mut Service) {
        // Kubernetes' SetDefaults_Service, applied on every decode.
        let spec = svc.spec.get_or_insert_with(ServiceSpec::default);
        if spec.session_affinity.as_deref().unwrap_or("").is_empty() {
            spec.session_affinity = Some("None".into());
        }
        if spec.session_affinity.as_deref() == Some("None") {
            spec.session_affinity_config = None;
        }
        if spec.type_.as_deref().unwrap_or("").is_empty() {
            spec.type_ = Some(TYPE_CLUSTER_IP.into());
        }
        for p in spec.ports.iter_mut().flatten() {
            if p.protocol.as_deref().unwrap_or("").is_empty() {
                p.protocol = Some("TCP".into());
            }
            let unset = match &p.target_port {
                None => true,
                Some(IntOrString::Int(0)) => true,
                Some(IntOrString::String(s)) => s.is_empty(),
                _ => false,
            };
            if unset {
                p.target_port = Some(IntOrString::Int(p.port));
            }
        }
        if externally_accessible(spec)
            && spec
                .external_traffic_policy
                .as_deref()
                .unwrap_or("")
                .is_empty()
        {
            spec.external_traffic_policy = Some("Cluster".into());
        }
        if spec.internal_traffic_policy.is_none()
            && matches!(
                spec.type_.as_deref(),
                Some(TYPE_NODE_PORT) | Some(TYPE_LOAD_BALANCER) | Some(TYPE_CLUSTER_IP)
            )
        {
            spec.internal_traffic_policy = Some("Cluster".into());
        }
        if spec.type_.as_deref() == Some(TYPE_LOAD_BALANCER)
            && spec.allocate_load_balancer_node_ports.is_none()
        {
            spec.allocate_load_balancer_node_ports = Some(true);
        }
    }

    fn prepare_for_create(&self, svc: &mut Service) {
        svc.status = Some(empty_status());
    }

    fn validate(&self, svc: &Service) -> FieldErrors {
        let mut errs = validate_object_meta(&svc.metadata, true, SERVICES.name_rule);
        errs.extend(validate_spec(svc.spec.as_ref()));
        errs.extend(service_ips::validate_service_ips(
            svc.spec.as_ref().unwrap_or(&ServiceSpec::default()),
        ));
        errs
    }

    fn prepare_for_update(&self, new: &mut Service, old: &Service) {
        new.status = old.status.clone().or_else(|| Some(empty_status()));
        if let (Some(n), Some(o)) = (new.spec.as_mut(), old.spec.as_ref()) {
            service_ips::drop_type_dependent_fields(n, o);
        }
    }

    fn validate_update(&self, new: &Service, old: &Service) -> FieldErrors {
        let default = ServiceSpec::default();
        let (n, o) = (
            new.spec.as_ref().unwrap_or(&default),
            old.spec.as_ref().unwrap_or(&default),
        );
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(validate_spec(Some(n)));
        errs.extend(service_ips::validate_service_ips(n));
        errs.extend(service_ips::validate_ips_update(n, o));
        errs
    }

    fn prepare_for_status_update(&self, new: &mut Service, old: &Service) {
        new.spec = old.spec.clone();
        super::namespace::keep_meta_for_status(&mut new.metadata, &old.metadata);
    }

    fn validate_status_update(&self, new: &Service, old: &Service) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        let ingress = new
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        let path = FieldPath::root("status")
            .child("loadBalancer")
            .child("ingress");
        for (i, ing) in ingress.into_iter().flatten().enumerate() {
            if let Some(ip) = &ing.ip
                && ip.parse::<std::net::IpAddr>().is_err()
            {
                errs.push(FieldError::invalid(
                    path.index(i).child("ip"),
                    ip,
                    "must be a valid IP address",
                ));
            }
        }
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn cells(&self, svc: &Service, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let spec = svc.spec.clone().unwrap_or_default();
        let cluster_ip = spec
            .cluster_ips
            .as_ref()
            .and_then(|ips| ips.first().cloned())
            .unwrap_or_else(|| "<none>".into());
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let proto = p.protocol.as_deref().unwrap_or("");
                match p.node_port {
                    Some(np) if np > 0 => format!("{}:{np}/{proto}", p.port),
                    _ => format!("{}/{proto}", p.port),
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let ports = if ports.is_empty() {
            "<none>".to_owned()
        } else {
            ports
        };
        let selector = match &spec.selector {
            Some(sel) if !sel.is_empty() => sel
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
            _ => "<none>".to_owned(),
        };
        vec![
            svc.metadata.name.clone().unwrap_or_default().into(),
            spec.type_.clone().unwrap_or_default().into(),
            cluster_ip.into(),
            external_ip(svc).into(),
            ports.into(),
            age(raw, now).into(),
            selector.into(),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "spec.clusterIP",
            "spec.type",
        ]
    }

    fn field(&self, svc: &Service, raw: &Value, name: &str) -> Option<String> {
        let spec = svc.spec.as_ref();
        match name {
            "spec.clusterIP" => Some(spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default()),
            "spec.type" => Some(spec.and_then(|s| s.type_.clone()).unwrap_or_default()),
            _ => super::generic_field(raw, name),
        }
    }
}

/// Kubernetes always serializes `status: {loadBalancer: {}}` for a Service.
fn empty_status() -> ServiceStatus {
    ServiceStatus {
        load_balancer: Some(LoadBalancerStatus::default()),
        ..Default::default()
    }
}

/// The EXTERNAL-IP cell (`getServiceExternalIP` of kubectl's printers, wide form).
fn external_ip(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let external: Vec<String> = spec.external_ips.clone().unwrap_or_default();
    match spec.type_.as_deref() {
        Some(TYPE_CLUSTER_IP) | Some(TYPE_NODE_PORT) => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        Some(TYPE_LOAD_BALANCER) => {
            let mut out: Vec<String> = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    i.ip.clone()
                        .filter(|s| !s.is_empty())
                        .or_else(|| i.hostname.clone().filter(|s| !s.is_empty()))
                })
                .collect();
            out.extend(external);
            if out.is_empty() {
                "<pending>".into()
            } else {
                out.join(",")
            }
        }
        Some(TYPE_EXTERNAL_NAME) => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".into(),
    }
}

fn validate_port_num(port: i32, path: &FieldPath, errs: &mut FieldErrors) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            path,
            i64::from(port),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// `IsValidPortName`: an IANA_SVC_NAME.
fn port_name_problems(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.is_empty() || name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

fn validate_port(
    p: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &FieldPath,
    errs: &mut FieldErrors,
) {
    let name = p.name.as_deref().unwrap_or("");
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        for m in dns1123_label(name) {
            errs.push(FieldError::invalid(path.child("name"), name, m));
        }
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    validate_port_num(p.port, &path.child("port"), errs);
    match p.protocol.as_deref() {
        None | Some("") => errs.push(FieldError::required(path.child("protocol"), "")),
        Some(proto) if !SUPPORTED_PROTOCOLS.contains(&proto) => errs.push(
            FieldError::not_supported(path.child("protocol"), proto, SUPPORTED_PROTOCOLS),
        ),
        _ => {}
    }
    match &p.target_port {
        Some(IntOrString::Int(n)) => validate_port_num(*n, &path.child("targetPort"), errs),
        Some(IntOrString::String(s)) => {
            for m in port_name_problems(s) {
                errs.push(FieldError::invalid(path.child("targetPort"), s, m));
            }
        }
        None => {}
    }
    if let Some(ap) = &p.app_protocol {
        for m in qualified_name(ap) {
            errs.push(FieldError::invalid(path.child("appProtocol"), ap, m));
        }
    }
}

/// The parts of `ValidateService` that do not depend on the cluster's IP configuration.
pub fn validate_spec(spec: Option<&ServiceSpec>) -> FieldErrors {
    let mut errs = Vec::new();
    let default = ServiceSpec::default();
    let spec = spec.unwrap_or(&default);
    let path = FieldPath::root("spec");
    let ty = spec.type_.as_deref().unwrap_or("");
    let headless = is_headless(spec);
    let ports = spec.ports.as_deref().unwrap_or(&[]);

    if ports.is_empty() && !headless && ty != TYPE_EXTERNAL_NAME {
        errs.push(FieldError::required(path.child("ports"), ""));
    }
    match ty {
        TYPE_LOAD_BALANCER if headless => errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            CLUSTER_IP_NONE,
            "may not be set to 'None' for LoadBalancer services",
        )),
        TYPE_NODE_PORT if headless => errs.push(FieldError::invalid(
            path.child("clusterIPs").index(0),
            CLUSTER_IP_NONE,
            "may not be set to 'None' for NodePort services",
        )),
        TYPE_EXTERNAL_NAME => {
            let name = spec.external_name.as_deref().unwrap_or("");
            if name.is_empty() {
                errs.push(FieldError::required(path.child("externalName"), ""));
            } else {
                let trimmed = name.strip_suffix('.').unwrap_or(name);
                for m in crate::validation::dns1123_subdomain(trimmed) {
                    errs.push(FieldError::invalid(path.child("externalName"), name, m));
                }
            }
        }
        _ => {}
    }

    let mut names = HashSet::new();
    let mut seen_ports = HashSet::new();
    let mut seen_node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        validate_port(p, ports.len() > 1, &mut names, &pp, &mut errs);
        let proto = p.protocol.clone().unwrap_or_default();
        if !seen_ports.insert((p.port, proto.clone())) {
            errs.push(FieldError::duplicate(
                pp.clone(),
                BadValue::Raw(format!("{}/{proto}", p.port)),
            ));
        }
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            if ty == TYPE_CLUSTER_IP {
                errs.push(FieldError::forbidden(
                    pp.child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
            if !seen_node_ports.insert((np, proto.clone())) {
                errs.push(FieldError::duplicate(pp.child("nodePort"), i64::from(np)));
            }
            validate_port_num(np, &pp.child("nodePort"), &mut errs);
        }
    }

    match ty {
        "" => errs.push(FieldError::required(path.child("type"), "")),
        t if !SUPPORTED_TYPES.contains(&t) => errs.push(FieldError::not_supported(
            path.child("type"),
            t,
            SUPPORTED_TYPES,
        )),
        _ => {}
    }
    match spec.session_affinity.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(path.child("sessionAffinity"), "")),
        a if !SUPPORTED_AFFINITY.contains(&a) => errs.push(FieldError::not_supported(
            path.child("sessionAffinity"),
            a,
            SUPPORTED_AFFINITY,
        )),
        _ => {}
    }
    if ty != TYPE_EXTERNAL_NAME {
        errs.extend(validate_labels(
            spec.selector.as_ref(),
            &path.child("selector"),
        ));
    }
    if let Some(p) = spec.external_traffic_policy.as_deref()
        && !p.is_empty()
        && !SUPPORTED_TRAFFIC_POLICY.contains(&p)
    {
        errs.push(FieldError::not_supported(
            path.child("externalTrafficPolicy"),
            p,
            SUPPORTED_TRAFFIC_POLICY,
        ));
    }
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty, TYPE_CLUSTER_IP | TYPE_NODE_PORT | TYPE_LOAD_BALANCER) => {
            errs.push(FieldError::required(
                path.child("internalTrafficPolicy"),
                "",
            ));
        }
        Some(p) if !SUPPORTED_TRAFFIC_POLICY.contains(&p) => errs.push(FieldError::not_supported(
            path.child("internalTrafficPolicy"),
            p,
            SUPPORTED_TRAFFIC_POLICY,
        )),
        _ => {}
    }
    if ty != TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_some() {
        errs.push(FieldError::forbidden(
            path.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == TYPE_LOAD_BALANCER && spec.allocate_load_balancer_node_ports.is_none() {
        // Upstream reports this one without the `spec.` prefix.
        errs.push(FieldError::required("allocateLoadBalancerNodePorts", ""));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                path.child("externalIPs").index(i),
                ip,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    fn decode(v: Value) -> Value {
        let k: &dyn Kind = &ServiceKind;
        let mut d = k.decode(v).unwrap().value;
        k.prepare_for_create(&mut d);
        d
    }

    #[test]
    fn defaults_match_kubernetes() {
        let v = decode(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns", "name": "dns"}]}
        }));
        assert_eq!(v["spec"]["type"], "ClusterIP");
        assert_eq!(v["spec"]["sessionAffinity"], "None");
        assert_eq!(v["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(v["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(v["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(v["spec"]["ports"][1]["targetPort"], "dns");
        assert!(v["spec"].get("externalTrafficPolicy").is_none());
        assert_eq!(v["status"], json!({"loadBalancer": {}}));

        let lb = decode(
            json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    }

    #[test]
    fn validation_errors() {
        let k: &dyn Kind = &ServiceKind;
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {}}),
                vec!["spec.ports: Required value"],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"ports": [{"port": 0}]}}),
                vec![
                    "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                    "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}}),
                vec![
                    "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                ],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"type": "Bogus", "ports": [{"port": 80}]}}),
                vec![
                    "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
                ],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"ports": [{"port": 80}, {"port": 81}]}}),
                vec![
                    "spec.ports[0].name: Required value",
                    "spec.ports[1].name: Required value",
                ],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"ports": [{"port": 80, "nodePort": 30000}]}}),
                vec![
                    "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                ],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"type": "ExternalName"}}),
                vec!["spec.externalName: Required value"],
            ),
            (
                json!({"metadata": {"name": "a", "namespace": "d"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}}),
                vec![],
            ),
        ];
        for (input, want) in cases {
            let v = decode(input.clone());
            let got: Vec<String> = k.validate(&v).iter().map(|e| e.to_string()).collect();
            assert_eq!(got, want, "input {input}");
        }
    }

    /// §7.1 of services.md, one row each (validation of already-defaulted objects).
    #[test]
    fn service_type_rules() {
        let k: &dyn Kind = &ServiceKind;
        let base = |spec: Value| {
            let mut v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "d"},
                "spec": {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                         "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}]}});
            for (key, val) in spec.as_object().unwrap() {
                if val.is_null() {
                    v["spec"].as_object_mut().unwrap().remove(key);
                } else {
                    v["spec"][key] = val.clone();
                }
            }
            v
        };
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (
                json!({"type": "LoadBalancer", "clusterIP": "None", "clusterIPs": ["None"], "allocateLoadBalancerNodePorts": true, "externalTrafficPolicy": "Cluster"}),
                vec![
                    "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services",
                ],
            ),
            (
                json!({"type": "NodePort", "clusterIP": "None", "clusterIPs": ["None"], "externalTrafficPolicy": "Cluster"}),
                vec![
                    "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services",
                ],
            ),
            (
                json!({"type": "ExternalName", "externalName": "db.example.com.", "ports": null, "internalTrafficPolicy": null}),
                vec![],
            ),
            (
                json!({"type": "ExternalName", "externalName": "Not_A_Name", "internalTrafficPolicy": null}),
                vec![
                    "spec.externalName: Invalid value: \"Not_A_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                ],
            ),
            (
                json!({"ports": [{"port": 80, "protocol": "TCP", "name": "a"}, {"port": 80, "protocol": "TCP", "name": "b"}]}),
                vec!["spec.ports[1]: Duplicate value: 80/TCP"],
            ),
            (
                json!({"type": "NodePort", "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "protocol": "TCP", "name": "a", "nodePort": 30001}, {"port": 81, "protocol": "TCP", "name": "b", "nodePort": 30001}]}),
                vec!["spec.ports[1].nodePort: Duplicate value: 30001"],
            ),
            (
                json!({"allocateLoadBalancerNodePorts": true}),
                vec![
                    "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
                ],
            ),
            (
                json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster"}),
                vec!["allocateLoadBalancerNodePorts: Required value"],
            ),
            (
                json!({"healthCheckNodePort": 31000}),
                vec![
                    "spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
                ],
            ),
            (
                json!({"internalTrafficPolicy": null}),
                vec!["spec.internalTrafficPolicy: Required value"],
            ),
            (json!({"type": null}), vec!["spec.type: Required value"]),
            (
                json!({"sessionAffinity": "Sticky"}),
                vec![
                    "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
                ],
            ),
        ];
        for (spec, want) in cases {
            let v = base(spec.clone());
            let got: Vec<String> = k.validate(&v).iter().map(|e| e.to_string()).collect();
            assert_eq!(got, want, "spec {spec}");
        }
    }

    #[test]
    fn table_cells() {
        let k: &dyn Kind = &ServiceKind;
        let v = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.11", "fd00::b"], "selector": {"b": "2", "a": "1"},
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}
        });
        let now = "2026-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(
            k.cells(&v, now),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.96.0.11"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("5m"),
                json!("a=1,b=2")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert_eq!(k.cells(&lb, now)[3], json!("<pending>"));
        assert_eq!(k.cells(&lb, now)[2], json!("<none>"));
    }
}
