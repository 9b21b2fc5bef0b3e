//! core/v1 Endpoints and discovery.k8s.io/v1 EndpointSlice: storage, validation, Tables.
//! The controllers that write them are in `crate::endpointslices` and the server.

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;

use crate::error::{FieldError, FieldErrors, FieldPath};
use crate::net::{IpFamily, parse_ip_sloppy};
use crate::resource::{ENDPOINT_SLICES, ENDPOINTS, ResourceInfo};
use crate::schema::{ENDPOINTS as ENDPOINTS_SCHEMA, TypeSchema};
use crate::table::{Column, age};
use crate::validation::{dns1123_subdomain, validate_object_meta, validate_object_meta_update};

use super::TypedKind;

pub struct EndpointsKind;
pub struct EndpointSliceKind;

static ENDPOINTS_COLUMNS: [Column; 3] = [
    Column::name_column(),
    Column::new("Endpoints", "Endpoints of the service, as address:port."),
    Column::age_column(),
];

static SLICE_COLUMNS: [Column; 5] = [
    Column::name_column(),
    Column::new("AddressType", "The type of addresses in the slice."),
    Column::new("Ports", "The ports of the endpoints."),
    Column::new("Endpoints", "The first addresses of the slice."),
    Column::age_column(),
];

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
/// Kubernetes' limits on a slice.
const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 20000;
const MAX_ADDRESSES: usize = 100;

fn too_many(field: impl Into<String>, n: usize, max: usize) -> FieldError {
    FieldError::new(
        crate::error::FieldErrorType::TooMany,
        field,
        crate::error::BadValue::Int(n as i64),
        format!("must have at most {max} items"),
    )
}

/// kubectl's list of the first three items and a count of the rest.
fn first_three(items: &[String]) -> String {
    match items.len() {
        0 => "<none>".into(),
        n if n <= 3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

impl TypedKind for EndpointsKind {
    type Object = Endpoints;

    fn info(&self) -> &'static ResourceInfo {
        &ENDPOINTS
    }
    fn schema(&self) -> &'static TypeSchema {
        &ENDPOINTS_SCHEMA
    }

    fn default(&self, ep: &mut Endpoints) {
        for s in ep.subsets.iter_mut().flatten() {
            for p in s.ports.iter_mut().flatten() {
                if p.protocol.as_deref().unwrap_or("").is_empty() {
                    p.protocol = Some("TCP".into());
                }
            }
        }
    }

    fn validate(&self, ep: &Endpoints) -> FieldErrors {
        let mut errs = validate_object_meta(&ep.metadata, true, ENDPOINTS.name_rule);
        let path = FieldPath::root("subsets");
        for (i, s) in ep.subsets.iter().flatten().enumerate() {
            let sp = path.index(i);
            let addrs = s.addresses.iter().flatten().map(|a| ("addresses", a));
            let not_ready = s
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| ("notReadyAddresses", a));
            for (j, (field, a)) in addrs.chain(not_ready).enumerate() {
                if parse_ip_sloppy(&a.ip).is_none() {
                    errs.push(FieldError::invalid(
                        sp.child(field).index(j).child("ip"),
                        &a.ip,
                        "must be a valid IP address",
                    ));
                }
            }
            for (j, p) in s.ports.iter().flatten().enumerate() {
                let pp = sp.child("ports").index(j);
                if !(1..=65535).contains(&p.port) {
                    errs.push(FieldError::invalid(
                        pp.child("port"),
                        i64::from(p.port),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = p.protocol.as_deref()
                    && !PROTOCOLS.contains(&proto)
                {
                    errs.push(FieldError::not_supported(
                        pp.child("protocol"),
                        proto,
                        PROTOCOLS,
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Endpoints, old: &Endpoints) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(self.validate(new));
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &ENDPOINTS_COLUMNS
    }

    fn cells(&self, ep: &Endpoints, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let mut list = Vec::new();
        for s in ep.subsets.iter().flatten() {
            for a in s.addresses.iter().flatten() {
                let ports: Vec<i32> = s.ports.iter().flatten().map(|p| p.port).collect();
                if ports.is_empty() {
                    list.push(a.ip.clone());
                }
                for p in ports {
                    if a.ip.contains(':') {
                        list.push(format!("[{}]:{p}", a.ip));
                    } else {
                        list.push(format!("{}:{p}", a.ip));
                    }
                }
            }
        }
        vec![
            ep.metadata.name.clone().unwrap_or_default().into(),
            first_three(&list).into(),
            age(raw, now).into(),
        ]
    }
}

impl TypedKind for EndpointSliceKind {
    type Object = EndpointSlice;

    fn info(&self) -> &'static ResourceInfo {
        &ENDPOINT_SLICES
    }
    fn schema(&self) -> &'static TypeSchema {
        &ENDPOINTS_SCHEMA
    }

    fn default(&self, s: &mut EndpointSlice) {
        for p in s.ports.iter_mut().flatten() {
            if p.protocol.as_deref().unwrap_or("").is_empty() {
                p.protocol = Some("TCP".into());
            }
        }
    }

    fn validate(&self, s: &EndpointSlice) -> FieldErrors {
        let mut errs = validate_object_meta(&s.metadata, true, ENDPOINT_SLICES.name_rule);
        let at = s.address_type.as_str();
        if !ADDRESS_TYPES.contains(&at) {
            errs.push(FieldError::not_supported("addressType", at, ADDRESS_TYPES));
        }
        let endpoints = s.endpoints.as_deref().unwrap_or_default();
        if endpoints.len() > MAX_ENDPOINTS {
            errs.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
        }
        for (i, e) in endpoints.iter().enumerate() {
            let ep = FieldPath::root("endpoints").index(i);
            if e.addresses.is_empty() {
                errs.push(FieldError::required(
                    ep.child("addresses"),
                    "must contain at least 1 address",
                ));
            } else if e.addresses.len() > MAX_ADDRESSES {
                errs.push(too_many(
                    ep.child("addresses"),
                    e.addresses.len(),
                    MAX_ADDRESSES,
                ));
            }
            for (j, a) in e.addresses.iter().enumerate() {
                let ok = match at {
                    "IPv4" => {
                        parse_ip_sloppy(a).is_some_and(|ip| IpFamily::of(&ip) == IpFamily::IPv4)
                    }
                    "IPv6" => {
                        parse_ip_sloppy(a).is_some_and(|ip| IpFamily::of(&ip) == IpFamily::IPv6)
                    }
                    _ => dns1123_subdomain(a).is_empty(),
                };
                if !ok {
                    let what = match at {
                        "IPv4" => "must be a valid IPv4 address",
                        "IPv6" => "must be a valid IPv6 address",
                        _ => "must be a valid DNS subdomain",
                    };
                    errs.push(FieldError::invalid(ep.child("addresses").index(j), a, what));
                }
            }
        }
        let ports = s.ports.clone().unwrap_or_default();
        if ports.len() > MAX_PORTS {
            errs.push(too_many("ports", ports.len(), MAX_PORTS));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = FieldPath::root("ports").index(i);
            let name = p.name.clone().unwrap_or_default();
            if !names.insert(name.clone()) {
                errs.push(FieldError::duplicate(pp.child("name"), name));
            }
            if let Some(port) = p.port
                && !(0..=65535).contains(&port)
            {
                errs.push(FieldError::invalid(
                    pp.child("port"),
                    i64::from(port),
                    "must be between 0 and 65535, inclusive",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &EndpointSlice, old: &EndpointSlice) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(self.validate(new));
        if new.address_type != old.address_type {
            errs.push(FieldError::invalid(
                "addressType",
                &new.address_type,
                "field is immutable",
            ));
        }
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &SLICE_COLUMNS
    }

    fn cells(&self, s: &EndpointSlice, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let ports: Vec<String> = s
            .ports
            .iter()
            .flatten()
            .map(|p| p.port.map_or("<unset>".into(), |n| n.to_string()))
            .collect();
        let ports = if ports.is_empty() {
            "<unset>".to_owned()
        } else {
            ports.join(",")
        };
        let addrs: Vec<String> = s
            .endpoints
            .iter()
            .flatten()
            .flat_map(|e| e.addresses.iter().cloned())
            .collect();
        vec![
            s.metadata.name.clone().unwrap_or_default().into(),
            s.address_type.clone().into(),
            ports.into(),
            first_three(&addrs).into(),
            age(raw, now).into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    #[test]
    fn slice_validation_and_cells() {
        let k: &dyn Kind = &EndpointSliceKind;
        let v = k
            .decode(json!({"metadata": {"name": "web-abc", "namespace": "d"}, "addressType": "IPv6",
                "endpoints": [{"addresses": ["fd00::1"]}, {"addresses": ["fd00::2"]}, {"addresses": ["fd00::3"]}, {"addresses": ["fd00::4"]}],
                "ports": [{"name": "http", "port": 80}]}))
            .unwrap()
            .value;
        assert!(k.validate(&v).is_empty());
        let now = "2030-01-01T00:00:00Z".parse().unwrap();
        let cells = k.cells(&v, now);
        assert_eq!(cells[1], "IPv6");
        assert_eq!(cells[2], "80");
        assert_eq!(cells[3], "fd00::1,fd00::2,fd00::3 + 1 more...");
        let bad = k
            .decode(
                json!({"metadata": {"name": "x", "namespace": "d"}, "addressType": "IPv4",
                "endpoints": [{"addresses": ["fd00::1"]}]}),
            )
            .unwrap()
            .value;
        let got: Vec<String> = k.validate(&bad).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            ["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"]
        );
    }

    #[test]
    fn endpoints_cells() {
        let k: &dyn Kind = &EndpointsKind;
        let v = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}]});
        let now = "2030-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(k.cells(&v, now)[1], "10.0.0.1:80,10.0.0.2:80");
    }
}
