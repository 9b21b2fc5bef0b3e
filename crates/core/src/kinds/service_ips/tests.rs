//! Table-driven tests of the dual-stack Service rules (`shared/spec/services.md` §3–§9), on the
//! four cluster layouts.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::alloc::AllocError;
use crate::alloc::ip::IpAllocator;
use crate::alloc::port::PortAllocator;
use crate::net::{PortRange, ServiceCidr, parse_cidr_sloppy};

/// Allocators over 10.0.0.0/24 and 2000::/120, with a log of deferred releases.
struct Fake {
    ips: Vec<IpAllocator>,
    ports: PortAllocator,
    released: Vec<String>,
    released_ports: Vec<i32>,
    next: u128,
}

impl Fake {
    fn new(layout: &[IpFamily]) -> Self {
        let ips = layout
            .iter()
            .map(|f| {
                let c = match f {
                    IpFamily::IPv4 => "10.0.0.0/24",
                    IpFamily::IPv6 => "2000::/120",
                };
                IpAllocator::new(ServiceCidr(parse_cidr_sloppy(c).unwrap()))
            })
            .collect();
        Self {
            ips,
            ports: PortAllocator::new(PortRange::parse("30000-32767").unwrap()),
            released: vec![],
            released_ports: vec![],
            next: 0,
        }
    }
}

fn failure(e: AllocError) -> AllocFailure {
    match e {
        AllocError::Full => AllocFailure::Exhausted(e.to_string()),
        other => AllocFailure::Rejected(other.to_string()),
    }
}

impl AllocOps for Fake {
    fn allocate_ip(
        &mut self,
        family: IpFamily,
        requested: Option<&str>,
    ) -> Result<String, AllocFailure> {
        let a = self
            .ips
            .iter_mut()
            .find(|a| a.family() == family)
            .ok_or(AllocFailure::Rejected("no range".into()))?;
        match requested {
            Some(r) => {
                let ip: IpAddr =
                    crate::net::parse_ip_sloppy(r).ok_or(AllocFailure::Rejected("bad".into()))?;
                a.allocate(ip).map_err(failure)?;
                Ok(r.to_owned())
            }
            None => {
                self.next += 7;
                a.allocate_next(self.next)
                    .map(|ip| ip.to_string())
                    .map_err(failure)
            }
        }
    }
    fn release_ip(&mut self, ip: &str) {
        self.released.push(ip.to_owned());
    }
    fn allocate_port(&mut self, requested: Option<i32>) -> Result<i32, AllocFailure> {
        match requested {
            Some(p) => self.ports.allocate(p).map(|_| p).map_err(failure),
            None => {
                self.next += 13;
                self.ports.allocate_next(self.next).map_err(failure)
            }
        }
    }
    fn release_port(&mut self, port: i32) {
        self.released_ports.push(port);
    }
}

const V4: &[IpFamily] = &[IpFamily::IPv4];
const V6: &[IpFamily] = &[IpFamily::IPv6];
const V4V6: &[IpFamily] = &[IpFamily::IPv4, IpFamily::IPv6];
const V6V4: &[IpFamily] = &[IpFamily::IPv6, IpFamily::IPv4];
const LAYOUTS: [&[IpFamily]; 4] = [V4, V6, V4V6, V6V4];

fn net(layout: &[IpFamily]) -> ServiceNetwork {
    ServiceNetwork {
        families: layout.to_vec(),
    }
}

fn service(spec: Value) -> Service {
    let mut v = json!({"metadata": {"name": "svc", "namespace": "default"}, "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "protocol": "TCP"}], "type": "ClusterIP"}});
    for (k, val) in spec.as_object().unwrap() {
        if val.is_null() {
            v["spec"].as_object_mut().unwrap().remove(k);
        } else {
            v["spec"][k] = val.clone();
        }
    }
    serde_json::from_value(v).unwrap()
}

fn create(layout: &[IpFamily], spec: Value) -> (Result<Service, ServiceError>, Fake) {
    let mut ops = Fake::new(layout);
    let mut svc = service(spec);
    let r = begin_create(&mut svc, &net(layout), &mut ops, None).map(|_| svc);
    (r, ops)
}

/// Policy and families after create.
fn outcome(layout: &[IpFamily], spec: Value) -> Result<(String, Vec<String>, usize), Vec<String>> {
    match create(layout, spec).0 {
        Ok(svc) => {
            let s = svc.spec.unwrap();
            Ok((
                s.ip_family_policy.unwrap_or_default(),
                s.ip_families.unwrap_or_default(),
                s.cluster_ips.map_or(0, |v| v.len()),
            ))
        }
        Err(ServiceError::Invalid(errs)) => Err(errs.iter().map(|e| e.to_string()).collect()),
        Err(ServiceError::Internal(m)) => Err(vec![format!("500: {m}")]),
    }
}

fn p(f: IpFamily) -> String {
    f.as_str().to_owned()
}

#[test]
fn the_defaulting_table_of_section_4() {
    for layout in LAYOUTS {
        let (pri, dual) = (layout[0], layout.len() == 2);
        let other = pri.other();
        let all = if dual {
            vec![p(pri), p(other)]
        } else {
            vec![p(pri)]
        };
        // nothing
        assert_eq!(
            outcome(layout, json!({})),
            Ok((SINGLE_STACK.into(), vec![p(pri)], 1)),
            "{layout:?}"
        );
        // ipFamilies: [X]
        for x in [IpFamily::IPv4, IpFamily::IPv6] {
            let got = outcome(layout, json!({"ipFamilies": [x.as_str()]}));
            if layout.contains(&x) {
                assert_eq!(
                    got,
                    Ok((SINGLE_STACK.into(), vec![p(x)], 1)),
                    "{layout:?} [{x}]"
                );
            } else {
                assert_eq!(
                    got,
                    Err(vec![format!(
                        "spec.ipFamilies[0]: Invalid value: \"{x}\": not configured on this cluster"
                    )])
                );
            }
        }
        // two families without a dual policy
        for pol in [Value::Null, json!(SINGLE_STACK)] {
            let got = outcome(
                layout,
                json!({"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": pol}),
            );
            assert_eq!(
                got,
                Err(vec!["spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified".into()]),
                "{layout:?}"
            );
        }
        // PreferDualStack
        assert_eq!(
            outcome(layout, json!({"ipFamilyPolicy": PREFER_DUAL_STACK})),
            Ok((PREFER_DUAL_STACK.into(), all.clone(), all.len()))
        );
        // PreferDualStack + [X, Y]
        let got = outcome(
            layout,
            json!({"ipFamilyPolicy": PREFER_DUAL_STACK, "ipFamilies": ["IPv6", "IPv4"]}),
        );
        if dual {
            assert_eq!(
                got,
                Ok((
                    PREFER_DUAL_STACK.into(),
                    vec!["IPv6".into(), "IPv4".into()],
                    2
                ))
            );
        } else {
            assert!(got.unwrap_err()[0].ends_with("not configured on this cluster"));
        }
        // RequireDualStack
        let got = outcome(layout, json!({"ipFamilyPolicy": REQUIRE_DUAL_STACK}));
        if dual {
            assert_eq!(got, Ok((REQUIRE_DUAL_STACK.into(), all.clone(), 2)));
        } else {
            assert_eq!(
                got,
                Err(vec!["spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services".into()])
            );
        }
        // Headless with a selector behaves like the non-headless row, without addresses.
        let (svc, _) = create(layout, json!({"clusterIP": "None"}));
        let s = svc.unwrap().spec.unwrap();
        assert_eq!(s.cluster_ips, Some(vec!["None".into()]));
        assert_eq!(s.ip_families, Some(vec![p(pri)]));
        assert_eq!(s.ip_family_policy.as_deref(), Some(SINGLE_STACK));
        // Headless without a selector: RequireDualStack [P, O] on every cluster.
        assert_eq!(
            outcome(layout, json!({"clusterIP": "None", "selector": null})),
            Ok((REQUIRE_DUAL_STACK.into(), vec![p(pri), p(other)], 1))
        );
        assert_eq!(
            outcome(
                layout,
                json!({"clusterIP": "None", "selector": null, "ipFamilies": ["IPv6"]})
            ),
            Ok((
                REQUIRE_DUAL_STACK.into(),
                vec!["IPv6".into(), "IPv4".into()],
                1
            ))
        );
        assert_eq!(
            outcome(
                layout,
                json!({"clusterIP": "None", "selector": null, "ipFamilyPolicy": SINGLE_STACK})
            ),
            Ok((SINGLE_STACK.into(), vec![p(pri)], 1))
        );
        // ... and its families are not checked against the cluster.
        assert_eq!(
            outcome(
                layout,
                json!({"clusterIP": "None", "selector": null, "ipFamilyPolicy": SINGLE_STACK, "ipFamilies": [p(other)]})
            ),
            Ok((SINGLE_STACK.into(), vec![p(other)], 1))
        );
        assert!(outcome(layout, json!({"clusterIP": "None", "selector": null, "ipFamilyPolicy": SINGLE_STACK, "ipFamilies": ["IPv4", "IPv6"]})).is_err());
        // ExternalName: nothing defaulted.
        let got = outcome(
            layout,
            json!({"type": "ExternalName", "externalName": "example.com", "ports": null}),
        );
        assert_eq!(got, Ok((String::new(), vec![], 0)));
    }
}

#[test]
fn requested_cluster_ips() {
    // clusterIPs: [a] with policy unset: the family comes from the address.
    let (svc, _) = create(V6V4, json!({"clusterIP": "10.0.0.50"}));
    let s = svc.unwrap().spec.unwrap();
    assert_eq!(s.cluster_ips, Some(vec!["10.0.0.50".into()]));
    assert_eq!(s.ip_families, Some(vec!["IPv4".into()]));
    // Two addresses need a dual policy.
    let got = outcome(
        V4V6,
        json!({"clusterIP": "10.0.0.50", "clusterIPs": ["10.0.0.50", "2000::50"]}),
    );
    assert_eq!(got, Err(vec!["spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified".into()]));
    let (svc, _) = create(
        V4V6,
        json!({"clusterIP": "10.0.0.50", "clusterIPs": ["10.0.0.50", "2000::50"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
    );
    let s = svc.unwrap().spec.unwrap();
    assert_eq!(s.ip_families, Some(vec!["IPv4".into(), "IPv6".into()]));
    assert_eq!(
        s.cluster_ips,
        Some(vec!["10.0.0.50".into(), "2000::50".into()])
    );
    // An address of an unconfigured family.
    let got = outcome(V4, json!({"clusterIP": "2000::5"}));
    assert_eq!(got, Err(vec!["spec.clusterIPs[0]: Invalid value: []string{\"2000::5\"}: IPv6 is not configured on this cluster".into()]));
    // Address and family disagree.
    let got = outcome(
        V4V6,
        json!({"clusterIP": "2000::5", "ipFamilies": ["IPv4"]}),
    );
    assert_eq!(got, Err(vec!["spec.clusterIPs[0]: Invalid value: \"2000::5\": expected an IPv4 value as indicated by `ipFamilies[0]`".into()]));
    // Allocation failures of a requested address are 422 on spec.clusterIPs.
    let got = outcome(V4, json!({"clusterIP": "10.0.1.1"}));
    assert_eq!(got, Err(vec!["spec.clusterIPs: Invalid value: []string{\"10.0.1.1\"}: failed to allocate IP 10.0.1.1: provided IP 10.0.1.1 is not in the valid range. The range of valid IPs is 10.0.0.0/24".into()]));
    let mut ops = Fake::new(V4);
    let mut a = service(json!({"clusterIP": "10.0.0.9"}));
    begin_create(&mut a, &net(V4), &mut ops, None).unwrap();
    let mut b = service(json!({"clusterIP": "10.0.0.9"}));
    let e = begin_create(&mut b, &net(V4), &mut ops, None).unwrap_err();
    assert_eq!(
        e,
        ServiceError::Invalid(vec![FieldError::invalid(
            "spec.clusterIPs",
            BadValue::Raw("[]string{\"10.0.0.9\"}".into()),
            "failed to allocate IP 10.0.0.9: provided IP is already allocated"
        )])
    );
    // Exhaustion is a 500.
    let mut ops = Fake::new(V4);
    for _ in 0..254 {
        begin_create(&mut service(json!({})), &net(V4), &mut ops, None).unwrap();
    }
    assert_eq!(
        begin_create(&mut service(json!({})), &net(V4), &mut ops, None).unwrap_err(),
        ServiceError::Internal("failed to allocate a serviceIP: range is full".into())
    );
}

#[test]
fn cluster_ips_related_validation() {
    let v = |spec: Value| -> Vec<String> {
        let s = service(spec).spec.unwrap();
        validate_cluster_ips_related(&s)
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    assert_eq!(
        v(json!({"clusterIPs": ["10.0.0.1"]})),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: must be empty when `clusterIP` is not specified"
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1"})),
        ["spec.clusterIPs: Required value"]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.2"]})),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.2\"}: first value must match `clusterIP`"
        ]
    );
    assert_eq!(
        v(json!({"ipFamilies": ["IPv5"]})),
        ["spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\""]
    );
    assert_eq!(
        v(json!({"ipFamilies": ["IPv4", "IPv4"]})),
        ["spec.ipFamilies[1]: Duplicate value: \"IPv4\""]
    );
    assert_eq!(
        v(json!({"ipFamilyPolicy": "Sometimes"})),
        [
            "spec.ipFamilyPolicy: Unsupported value: \"Sometimes\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\""
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"]})),
        [
            "spec.clusterIPs: Invalid value: []string{\"None\", \"10.0.0.1\"}: 'None' must be the first and only value"
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "nope"]})),
        [
            "spec.clusterIPs[1]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::1", "10.0.0.2"]})),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\", \"2000::1\", \"10.0.0.2\"}: may only hold up to 2 values"
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "10.0.0.2"]})),
        [
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\", \"10.0.0.2\"}: may specify no more than one IP for each IP family"
        ]
    );
    assert_eq!(
        v(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv6"]})),
        [
            "spec.clusterIPs[0]: Invalid value: \"10.0.0.1\": expected an IPv6 value as indicated by `ipFamilies[0]`"
        ]
    );
    // ExternalName skips these and has its own.
    let s = service(json!({"type": "ExternalName", "externalName": "x.io", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": SINGLE_STACK})).spec.unwrap();
    let got: Vec<String> = validate_service_ips(&s)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilies: Forbidden: may not be set for ExternalName services",
            "spec.ipFamilyPolicy: Forbidden: may not be set for ExternalName services",
        ]
    );
}

fn created(layout: &[IpFamily], spec: Value, ops: &mut Fake) -> Service {
    let mut svc = service(spec);
    begin_create(&mut svc, &net(layout), ops, None).unwrap();
    svc
}

/// Applies `patch` (a merge of spec fields) to `old` and runs the update path.
fn update(
    layout: &[IpFamily],
    old: &Service,
    patch: Value,
    ops: &mut Fake,
) -> Result<Service, ServiceError> {
    let mut v = serde_json::to_value(old).unwrap();
    json_patch::merge(&mut v["spec"], &patch);
    let mut new: Service = serde_json::from_value(v).unwrap();
    begin_update(&mut new, old, &net(layout), ops, None)?;
    let errs = validate_ips_update(new.spec.as_ref().unwrap(), old.spec.as_ref().unwrap());
    if errs.is_empty() {
        Ok(new)
    } else {
        Err(ServiceError::Invalid(errs))
    }
}

#[test]
fn upgrade_and_downgrade() {
    for layout in [V4V6, V6V4] {
        let mut ops = Fake::new(layout);
        let single = created(layout, json!({}), &mut ops);
        assert_eq!(
            single
                .spec
                .as_ref()
                .unwrap()
                .cluster_ips
                .as_ref()
                .unwrap()
                .len(),
            1
        );
        // Upgrade: only the missing family is allocated.
        let dual = update(
            layout,
            &single,
            json!({"ipFamilyPolicy": PREFER_DUAL_STACK}),
            &mut ops,
        )
        .unwrap();
        let s = dual.spec.as_ref().unwrap();
        assert_eq!(s.ip_families.as_ref().unwrap().len(), 2);
        let ips = s.cluster_ips.clone().unwrap();
        assert_eq!(
            ips[0],
            single.spec.as_ref().unwrap().cluster_ips.as_ref().unwrap()[0]
        );
        assert_eq!(family_of(&ips[1]), Some(layout[1]));
        // Removing the secondary without SingleStack is refused.
        let e = update(
            layout,
            &dual,
            json!({"ipFamilies": [layout[0].as_str()]}),
            &mut ops,
        )
        .unwrap_err();
        assert_eq!(
            e,
            ServiceError::Invalid(vec![FieldError::invalid(
                "spec.ipFamilyPolicy",
                "PreferDualStack",
                "must be 'SingleStack' to release the secondary IP family"
            )])
        );
        // Downgrade: SingleStack with both values re-sent keeps the first, releases the second.
        ops.released.clear();
        let down = update(
            layout,
            &dual,
            json!({"ipFamilyPolicy": SINGLE_STACK}),
            &mut ops,
        )
        .unwrap();
        let s = down.spec.as_ref().unwrap();
        assert_eq!(s.cluster_ips, Some(vec![ips[0].clone()]));
        assert_eq!(s.ip_families, Some(vec![layout[0].as_str().to_owned()]));
        assert_eq!(ops.released, vec![ips[1].clone()]);
        // The primary address and family never change.
        // (An address of the other family trips the family check first, as in Kubernetes.)
        let e = update(
            layout,
            &down,
            json!({"clusterIP": ips[1], "clusterIPs": [ips[1]]}),
            &mut ops,
        )
        .unwrap_err();
        let ServiceError::Invalid(errs) = e else {
            panic!()
        };
        assert!(errs[0].detail.starts_with("expected an IPv"), "{errs:?}");
        let same_family = if layout[0] == IpFamily::IPv4 {
            "10.0.0.200"
        } else {
            "2000::c8"
        };
        let e = update(
            layout,
            &down,
            json!({"clusterIP": same_family, "clusterIPs": [same_family]}),
            &mut ops,
        )
        .unwrap_err();
        let ServiceError::Invalid(errs) = e else {
            panic!()
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.clusterIPs[0]");
        assert_eq!(errs[0].detail, "may not change once set");
        // An upgrade with the families swapped fails on ipFamilies[0].
        let e = update(layout, &down, json!({"ipFamilyPolicy": REQUIRE_DUAL_STACK, "ipFamilies": [layout[1].as_str(), layout[0].as_str()]}), &mut ops).unwrap_err();
        let ServiceError::Invalid(errs) = e else {
            panic!()
        };
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.clusterIPs[0]" || e.field == "spec.ipFamilies[0]"),
            "{errs:?}"
        );
    }
}

#[test]
fn prefer_dual_stack_is_not_upgraded_by_a_cluster_change() {
    // Created on a single-stack cluster, then read by a dual-stack one: an unchanged update
    // keeps one address.
    let mut ops4 = Fake::new(V4);
    let svc = created(V4, json!({"ipFamilyPolicy": PREFER_DUAL_STACK}), &mut ops4);
    let mut ops = Fake::new(V4V6);
    let same = update(V4V6, &svc, json!({}), &mut ops).unwrap();
    assert_eq!(same.spec.unwrap().cluster_ips.unwrap().len(), 1);
    let required = update(
        V4V6,
        &svc,
        json!({"ipFamilyPolicy": REQUIRE_DUAL_STACK}),
        &mut ops,
    )
    .unwrap();
    assert_eq!(required.spec.unwrap().cluster_ips.unwrap().len(), 2);
}

#[test]
fn old_clients_and_type_changes() {
    let mut ops = Fake::new(V4V6);
    let svc = created(
        V4V6,
        json!({"ipFamilyPolicy": REQUIRE_DUAL_STACK, "type": "NodePort"}),
        &mut ops,
    );
    let s = svc.spec.as_ref().unwrap();
    let np = s.ports.as_ref().unwrap()[0].node_port.unwrap();
    assert!((30000..=32767).contains(&np));
    // A PUT without any cluster-IP or node-port fields keeps them.
    let mut bare = serde_json::to_value(&svc).unwrap();
    for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        bare["spec"].as_object_mut().unwrap().remove(k);
    }
    bare["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    let mut new: Service = serde_json::from_value(bare).unwrap();
    begin_update(&mut new, &svc, &net(V4V6), &mut ops, None).unwrap();
    assert_eq!(new.spec.as_ref().unwrap().cluster_ips, s.cluster_ips);
    assert_eq!(
        new.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port,
        Some(np)
    );
    // To ExternalName: addresses and node ports are released and dropped.
    ops.released.clear();
    let mut ext = new.clone();
    {
        let es = ext.spec.as_mut().unwrap();
        es.type_ = Some("ExternalName".into());
        es.external_name = Some("example.com".into());
    }
    begin_update(&mut ext, &new, &net(V4V6), &mut ops, None).unwrap();
    drop_type_dependent_fields(ext.spec.as_mut().unwrap(), new.spec.as_ref().unwrap());
    let es = ext.spec.as_ref().unwrap();
    assert_eq!(ops.released.len(), 2);
    assert_eq!(ops.released_ports, vec![np]);
    assert!(es.cluster_ips.is_none() && es.ip_families.is_none() && es.ip_family_policy.is_none());
    assert_eq!(es.ports.as_ref().unwrap()[0].node_port, None);
    // And back: everything allocated again.
    let back = update(
        V4V6,
        &ext,
        json!({"type": "ClusterIP", "externalName": null, "ipFamilyPolicy": PREFER_DUAL_STACK}),
        &mut ops,
    )
    .unwrap();
    assert_eq!(back.spec.unwrap().cluster_ips.unwrap().len(), 2);
}

#[test]
fn node_ports() {
    let mut ops = Fake::new(V4);
    // Same port number, two protocols: one node port.
    let svc = created(
        V4,
        json!({"type": "NodePort", "ports": [{"port": 53, "protocol": "TCP", "name": "a"}, {"port": 53, "protocol": "UDP", "name": "b"}]}),
        &mut ops,
    );
    let ports = svc.spec.unwrap().ports.unwrap();
    assert_eq!(ports[0].node_port, ports[1].node_port);
    // A requested node port is honoured; a taken one is refused on the second port.
    let taken = ports[0].node_port.unwrap();
    let mut s = service(
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "name": "a", "nodePort": 30080}, {"port": 81, "protocol": "TCP", "name": "b", "nodePort": taken}]}),
    );
    let e = begin_create(&mut s, &net(V4), &mut ops, None).unwrap_err();
    assert_eq!(
        e,
        ServiceError::Invalid(vec![FieldError::invalid(
            "spec.ports[1].nodePort",
            i64::from(taken),
            "provided port is already allocated"
        )])
    );
    let mut s = service(
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 40000}]}),
    );
    let e = begin_create(&mut s, &net(V4), &mut ops, None).unwrap_err();
    assert_eq!(
        e,
        ServiceError::Invalid(vec![FieldError::invalid(
            "spec.ports[0].nodePort",
            40000i64,
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        )])
    );
    // LoadBalancer without node-port allocation: only explicit requests.
    let lb = created(
        V4,
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "protocol": "TCP", "name": "a"}, {"port": 81, "protocol": "TCP", "name": "b", "nodePort": 30181}]}),
        &mut ops,
    );
    let ports = lb.spec.unwrap().ports.unwrap();
    assert_eq!(
        (ports[0].node_port, ports[1].node_port),
        (None, Some(30181))
    );
    // Health-check node port for Local; a conflicting request is 422 (duostack).
    let local = created(
        V4,
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}),
        &mut ops,
    );
    assert!(
        local
            .spec
            .unwrap()
            .health_check_node_port
            .is_some_and(|p| p >= 30000)
    );
    let mut s = service(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30181}),
    );
    let e = begin_create(&mut s, &net(V4), &mut ops, None).unwrap_err();
    let ServiceError::Invalid(errs) = e else {
        panic!()
    };
    assert_eq!(
        errs[0].to_string(),
        "spec.healthCheckNodePort: Invalid value: 30181: failed to allocate requested HealthCheck NodePort 30181: provided port is already allocated"
    );
}

#[test]
fn legacy_ip_family() {
    for layout in LAYOUTS {
        for x in ["IPv4", "IPv6"] {
            let mut ops = Fake::new(layout);
            let mut svc = service(json!({}));
            let r = begin_create(&mut svc, &net(layout), &mut ops, Some(x));
            let configured = layout.iter().any(|f| f.as_str() == x);
            if configured {
                r.unwrap();
                let s = svc.spec.as_ref().unwrap();
                assert_eq!(s.ip_families, Some(vec![x.to_owned()]));
                assert_eq!(s.ip_family_policy.as_deref(), Some(SINGLE_STACK));
                assert_eq!(
                    family_of(&s.cluster_ips.as_ref().unwrap()[0])
                        .unwrap()
                        .as_str(),
                    x
                );
                // Same family on update: fine; the other one: immutable.
                let mut same = svc.clone();
                begin_update(&mut same, &svc, &net(layout), &mut ops, Some(x)).unwrap();
                let other = if x == "IPv4" { "IPv6" } else { "IPv4" };
                let mut changed = svc.clone();
                let e = begin_update(&mut changed, &svc, &net(layout), &mut ops, Some(other))
                    .unwrap_err();
                assert_eq!(
                    e,
                    ServiceError::Invalid(vec![FieldError::invalid(
                        "spec.ipFamily",
                        other,
                        "field is immutable"
                    )])
                );
            } else {
                let e = r.unwrap_err();
                let ServiceError::Invalid(errs) = e else {
                    panic!()
                };
                assert!(errs[0].to_string().starts_with(&format!(
                    "spec.ipFamily: Invalid value: \"{x}\": only the following families are allowed"
                )));
            }
        }
    }
}

#[test]
fn default_on_read_of_pre_dual_stack_objects() {
    let n = net(V4V6);
    let cases = [
        (
            json!({"clusterIP": "10.0.0.5"}),
            Some(SINGLE_STACK),
            vec!["IPv4"],
        ),
        (
            json!({"clusterIP": "None"}),
            Some(SINGLE_STACK),
            vec!["IPv4"],
        ),
        (
            json!({"clusterIP": "None", "selector": null}),
            Some(REQUIRE_DUAL_STACK),
            vec!["IPv4", "IPv6"],
        ),
        (
            json!({"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.5", "2000::5"]}),
            Some(REQUIRE_DUAL_STACK),
            vec!["IPv4", "IPv6"],
        ),
    ];
    for (spec, pol, fams) in cases {
        let mut s = service(spec.clone()).spec.unwrap();
        default_on_read(&mut s, &n);
        assert_eq!(s.ip_family_policy.as_deref(), pol, "{spec}");
        assert_eq!(s.ip_families.unwrap(), fams, "{spec}");
    }
}

/// §3.1 and §3.2, case by case.
#[test]
fn normalization_and_kept_allocations() {
    let spec = |v: Value| service(v).spec.unwrap();
    // Create: the singular fills the plural, never the reverse.
    let mut s = spec(json!({"clusterIP": "10.0.0.1"}));
    normalize_create(&mut s);
    assert_eq!(s.cluster_ips, Some(vec!["10.0.0.1".into()]));
    let mut s = spec(json!({"clusterIPs": ["10.0.0.1"]}));
    normalize_create(&mut s);
    assert_eq!(s.cluster_ip, None);
    let old = spec(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::1"]}));
    // Update, singular unchanged, plural missing: the stored plural is kept.
    let mut s = spec(json!({"clusterIP": "10.0.0.1"}));
    normalize_update(&mut s, &old);
    assert_eq!(s.cluster_ips, old.cluster_ips);
    // Singular cleared with the plural untouched: both cleared.
    let mut s = spec(json!({"clusterIP": null, "clusterIPs": ["10.0.0.1", "2000::1"]}));
    normalize_update(&mut s, &old);
    assert_eq!(s.cluster_ips, None);
    // Singular changed, plural untouched: the plural follows (and then trips immutability).
    let mut s = spec(json!({"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.1", "2000::1"]}));
    normalize_update(&mut s, &old);
    assert_eq!(s.cluster_ips, Some(vec!["10.0.0.9".into()]));
    // Both changed: left for validation.
    let mut s = spec(json!({"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.8"]}));
    normalize_update(&mut s, &old);
    assert_eq!(s.cluster_ips, Some(vec!["10.0.0.8".into()]));

    // §3.2: node ports by port name, unless the number is in use by another port on both sides.
    let old = spec(
        json!({"type": "NodePort", "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
        "ports": [{"name": "a", "port": 80, "protocol": "TCP", "nodePort": 30001}, {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30002}]}),
    );
    let mut s = spec(json!({"type": "NodePort", "clusterIP": null,
        "ports": [{"name": "a", "port": 80, "protocol": "TCP"}, {"name": "b", "port": 81, "protocol": "TCP", "nodePort": 30001}]}));
    patch_allocated_values(&mut s, &old);
    assert_eq!(s.cluster_ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(s.cluster_ips, old.cluster_ips);
    let ports = s.ports.unwrap();
    // 30001 is used by "b" in the new object and by "a" in the old: "a" doesn't get it back.
    assert_eq!(
        (ports[0].node_port, ports[1].node_port),
        (None, Some(30001))
    );
    // ExternalName on either side: nothing is kept.
    let mut s = spec(json!({"type": "ExternalName", "externalName": "x.io"}));
    patch_allocated_values(&mut s, &old);
    assert_eq!(s.cluster_ip, None);
    // Health-check port kept for LoadBalancer + Local on both sides.
    let old = spec(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000}),
    );
    let mut s = spec(json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local"}));
    patch_allocated_values(&mut s, &old);
    assert_eq!(s.health_check_node_port, Some(31000));
}

/// §7.3, one row each.
#[test]
fn update_validation_table() {
    let spec = |v: Value| service(v).spec.unwrap();
    let dual = spec(
        json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::1"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
    );
    let cases: Vec<(Value, &ServiceSpec, Vec<&str>)> = vec![
        (
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::2"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
            &dual,
            vec![
                "spec.clusterIPs[1]: Invalid value: []string{\"10.0.0.1\", \"2000::2\"}: may not change once set",
            ],
        ),
        (
            json!({"clusterIP": null, "clusterIPs": null, "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
            &dual,
            vec![
                "spec.clusterIPs[0]: Invalid value: []string(nil): primary clusterIP can not be unset",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
            &dual,
            vec![
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be set to 'SingleStack' when releasing the secondary clusterIP",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
            &dual,
            vec![
                "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": must be set to 'SingleStack' when releasing the secondary ipFamily",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "2000::1"], "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": REQUIRE_DUAL_STACK}),
            &dual,
            vec![
                "spec.ipFamilies[0]: Invalid value: []core.IPFamily{\"IPv6\", \"IPv4\"}: may not change once set",
                "spec.ipFamilies[0]: Invalid value: []core.IPFamily{\"IPv6\", \"IPv4\"}: may not change once set",
            ],
        ),
    ];
    for (i, (new, old, want)) in cases.into_iter().enumerate() {
        let n = spec(new);
        let got: Vec<String> = validate_ips_update(&n, old)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(got, want, "case {i}");
    }
    // The families shrinking to nothing with no addresses: primary ipFamily can not be unset.
    let old = spec(
        json!({"clusterIP": "None", "clusterIPs": ["None"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": SINGLE_STACK}),
    );
    let headful_old = spec(
        json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": SINGLE_STACK}),
    );
    let n = spec(json!({"clusterIP": null, "ipFamilies": null, "ipFamilyPolicy": SINGLE_STACK}));
    let got: Vec<String> = validate_ips_update(&n, &headful_old)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(got.contains(&"spec.ipFamilies[0]: Invalid value: []core.IPFamily(nil): primary ipFamily can not be unset".to_string()), "{got:?}");
    // Headless to headless may change families.
    let n = spec(
        json!({"clusterIP": "None", "clusterIPs": ["None"], "ipFamilies": ["IPv6"], "ipFamilyPolicy": SINGLE_STACK}),
    );
    assert!(validate_ips_update(&n, &old).is_empty());
    // Health-check node port and loadBalancerClass are immutable.
    let lb = spec(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000, "loadBalancerClass": "a.io/x"}),
    );
    let n = spec(
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31001, "loadBalancerClass": "a.io/y"}),
    );
    let got: Vec<String> = validate_ips_update(&n, &lb)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        got,
        [
            "spec.healthCheckNodePort: Forbidden: field is immutable",
            "spec.loadBalancerClass: Invalid value: \"a.io/y\": may not change once set",
        ]
    );
}

/// §4 rule 5: reducing lists without SingleStack, on the update path.
#[test]
fn releasing_needs_single_stack() {
    let mut ops = Fake::new(V4V6);
    let dual = created(
        V4V6,
        json!({"ipFamilyPolicy": REQUIRE_DUAL_STACK}),
        &mut ops,
    );
    let ip0 = dual.spec.as_ref().unwrap().cluster_ips.as_ref().unwrap()[0].clone();
    let e = update(V4V6, &dual, json!({"clusterIPs": [ip0]}), &mut ops).unwrap_err();
    assert_eq!(
        e,
        ServiceError::Invalid(vec![FieldError::invalid(
            "spec.ipFamilyPolicy",
            "RequireDualStack",
            "must be 'SingleStack' to release the secondary cluster IP"
        )])
    );
    // The policy set to SingleStack with only the primary address re-sent is the other valid
    // downgrade form.
    let down = update(V4V6, &dual, json!({"ipFamilyPolicy": SINGLE_STACK, "clusterIPs": [ip0.clone()], "ipFamilies": ["IPv4"]}), &mut ops).unwrap();
    assert_eq!(down.spec.unwrap().cluster_ips, Some(vec![ip0]));
}
