//! API discovery: `/version`, `/api`, `/apis`, per-group-version resource lists, and the
//! aggregated (`apidiscovery.k8s.io/v2`) form kubectl prefers.

use std::collections::BTreeMap;

use duostack_core::kinds::Kind;
use duostack_core::resource::{STATUS_VERBS, VERBS};
use serde_json::{Value, json};

/// The Kubernetes version duostack's API corresponds to.
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "37";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-duostack.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "n/a (Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}

/// `/api`: the legacy core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn groups(kinds: &[&'static dyn Kind]) -> BTreeMap<&'static str, Vec<&'static dyn Kind>> {
    let mut out: BTreeMap<&'static str, Vec<&'static dyn Kind>> = BTreeMap::new();
    for k in kinds {
        let g = k.info().group;
        if !g.is_empty() {
            out.entry(g).or_default().push(*k);
        }
    }
    out
}

fn group_entry(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version},
    })
}

/// `/apis`: every named group.
pub fn group_list(kinds: &[&'static dyn Kind]) -> Value {
    let groups: Vec<Value> = groups(kinds)
        .iter()
        .map(|(g, ks)| group_entry(g, ks[0].info().version))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(kinds: &[&'static dyn Kind], name: &str) -> Option<Value> {
    let gs = groups(kinds);
    let ks = gs.get(name)?;
    let mut v = group_entry(name, ks[0].info().version);
    v["kind"] = "APIGroup".into();
    v["apiVersion"] = "v1".into();
    Some(v)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(kinds: &[&'static dyn Kind], group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for k in kinds {
        let i = k.info();
        if i.group != group || i.version != version {
            continue;
        }
        let mut r = json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": i.namespaced,
            "kind": i.kind,
            "verbs": VERBS,
        });
        if !i.short_names.is_empty() {
            r["shortNames"] = json!(i.short_names);
        }
        if !i.categories.is_empty() {
            r["categories"] = json!(i.categories);
        }
        resources.push(r);
        if i.has_status {
            resources.push(json!({
                "name": format!("{}/status", i.plural),
                "singularName": "",
                "namespaced": i.namespaced,
                "kind": i.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn aggregated_resources(ks: &[&'static dyn Kind]) -> Vec<Value> {
    ks.iter()
        .map(|k| {
            let i = k.info();
            let kind = json!({"group": i.group, "version": i.version, "kind": i.kind});
            let mut r = json!({
                "resource": i.plural,
                "responseKind": kind,
                "scope": if i.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": i.singular,
                "verbs": VERBS,
            });
            if !i.short_names.is_empty() {
                r["shortNames"] = json!(i.short_names);
            }
            if !i.categories.is_empty() {
                r["categories"] = json!(i.categories);
            }
            if i.has_status {
                r["subresources"] =
                    json!([{"subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS}]);
            }
            r
        })
        .collect()
}

/// Aggregated discovery for `/api` (`core == true`) or `/apis`.
pub fn aggregated(kinds: &[&'static dyn Kind], core: bool) -> Value {
    let items: Vec<Value> = if core {
        let ks: Vec<_> = kinds
            .iter()
            .copied()
            .filter(|k| k.info().group.is_empty())
            .collect();
        vec![json!({
            "metadata": {"creationTimestamp": null},
            "versions": [{"version": "v1", "resources": aggregated_resources(&ks), "freshness": "Current"}],
        })]
    } else {
        groups(kinds)
            .iter()
            .map(|(g, ks)| {
                json!({
                    "metadata": {"name": g, "creationTimestamp": null},
                    "versions": [{"version": ks[0].info().version, "resources": aggregated_resources(ks), "freshness": "Current"}],
                })
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resources_have_short_names_and_status() {
        let kinds = duostack_core::kinds::all();
        let l = resource_list(&kinds, "", "v1").unwrap();
        let names: Vec<_> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"services"));
        assert!(names.contains(&"services/status"));
        let svc = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "services")
            .unwrap();
        assert_eq!(svc["shortNames"], json!(["svc"]));
        let agg = aggregated(&kinds, true);
        assert_eq!(agg["items"][0]["versions"][0]["version"], "v1");
        assert!(resource_list(&kinds, "nope", "v1").is_none());
    }
}
