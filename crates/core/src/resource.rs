//! What the server knows about each resource it serves: names, scope, verbs, and where its
//! objects live in the store.

use crate::error::{GroupKind, GroupResource};

/// Static description of one served resource (one entry of discovery).
#[derive(Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The resource name in URLs (`services`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    /// Whether the `status` subresource is served.
    pub has_status: bool,
    /// Whether `metadata.generation` is kept (set to 1 on create, bumped when anything but
    /// metadata and status changes). Kubernetes does this per type; Services and Namespaces
    /// don't.
    pub tracks_generation: bool,
    /// Whether an update of a missing object creates it (Kubernetes' `AllowCreateOnUpdate`).
    pub allow_create_on_update: bool,
    /// Whether DELETE returns the deleted object (Kubernetes' `ReturnDeletedObject`) rather than
    /// a `Status`.
    pub delete_returns_object: bool,
    /// Whether the object's own name must be a DNS-1035 label (Services) rather than a
    /// DNS-1123 subdomain.
    pub name_rule: NameRule,
}

/// Which rule an object's name must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

/// The verbs every served resource supports.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Verbs of a `status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> &'static str {
        // The group/version pairs are static, so build them once per resource.
        match (self.group, self.version) {
            ("", v) => v,
            ("discovery.k8s.io", "v1") => "discovery.k8s.io/v1",
            ("networking.k8s.io", "v1") => "networking.k8s.io/v1",
            ("events.k8s.io", "v1") => "events.k8s.io/v1",
            _ => unreachable!("api_version of an unknown group {}", self.group),
        }
    }

    pub fn group_resource(&self) -> GroupResource<'static> {
        GroupResource {
            group: self.group,
            resource: self.plural,
        }
    }

    pub fn group_kind(&self) -> GroupKind<'static> {
        GroupKind {
            group: self.group,
            kind: self.kind,
        }
    }

    fn store_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    /// The store prefix of every object of this resource, or of one namespace's objects.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/{}/", self.store_group(), self.plural, ns),
            _ => format!("/registry/{}/{}/", self.store_group(), self.plural),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!(
                "/registry/{}/{}/{}/{}",
                self.store_group(),
                self.plural,
                ns,
                name
            ),
            _ => format!("/registry/{}/{}/{}", self.store_group(), self.plural, name),
        }
    }
}

pub static NAMESPACES: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Namespace",
    list_kind: "NamespaceList",
    plural: "namespaces",
    singular: "namespace",
    short_names: &["ns"],
    categories: &[],
    namespaced: false,
    has_status: true,
    tracks_generation: false,
    allow_create_on_update: false,
    delete_returns_object: true,
    name_rule: NameRule::Dns1123Label,
};

pub static SERVICES: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Service",
    list_kind: "ServiceList",
    plural: "services",
    singular: "service",
    short_names: &["svc"],
    categories: &["all"],
    namespaced: true,
    has_status: true,
    tracks_generation: false,
    allow_create_on_update: true,
    delete_returns_object: true,
    name_rule: NameRule::Dns1035Label,
};

pub static EVENTS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Event",
    list_kind: "EventList",
    plural: "events",
    singular: "event",
    short_names: &["ev"],
    categories: &[],
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    allow_create_on_update: true,
    delete_returns_object: false,
    name_rule: NameRule::Dns1123Subdomain,
};

pub static NODES: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Node",
    list_kind: "NodeList",
    plural: "nodes",
    singular: "node",
    short_names: &["no"],
    categories: &[],
    namespaced: false,
    has_status: true,
    tracks_generation: false,
    allow_create_on_update: false,
    delete_returns_object: false,
    name_rule: NameRule::Dns1123Subdomain,
};

pub static PODS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Pod",
    list_kind: "PodList",
    plural: "pods",
    singular: "pod",
    short_names: &["po"],
    categories: &["all"],
    namespaced: true,
    has_status: true,
    // Pods carry metadata.generation since Kubernetes 1.33 (observed generation tracking).
    tracks_generation: true,
    allow_create_on_update: false,
    delete_returns_object: true,
    name_rule: NameRule::Dns1123Subdomain,
};

pub static ENDPOINTS: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    kind: "Endpoints",
    list_kind: "EndpointsList",
    plural: "endpoints",
    singular: "endpoints",
    short_names: &["ep"],
    categories: &[],
    namespaced: true,
    has_status: false,
    tracks_generation: false,
    allow_create_on_update: true,
    delete_returns_object: false,
    name_rule: NameRule::Dns1123Subdomain,
};

pub static ENDPOINT_SLICES: ResourceInfo = ResourceInfo {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    list_kind: "EndpointSliceList",
    plural: "endpointslices",
    singular: "endpointslice",
    short_names: &[],
    categories: &[],
    namespaced: true,
    has_status: false,
    tracks_generation: true,
    allow_create_on_update: false,
    delete_returns_object: false,
    name_rule: NameRule::Dns1123Subdomain,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            SERVICES.key(Some("default"), "web"),
            "/registry/core/services/default/web"
        );
        assert_eq!(SERVICES.prefix(None), "/registry/core/services/");
        assert_eq!(
            SERVICES.prefix(Some("kube-system")),
            "/registry/core/services/kube-system/"
        );
        assert_eq!(NAMESPACES.key(None, "a"), "/registry/core/namespaces/a");
        assert_eq!(
            NAMESPACES.key(Some("x"), "a"),
            "/registry/core/namespaces/a"
        );
    }
}
