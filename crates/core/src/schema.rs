//! Structural facts about the served types that the JSON alone does not carry: how each list
//! merges (strategic merge patch) and is owned (server-side apply), and which maps are atomic.
//!
//! Kubernetes keeps these as struct tags (`patchStrategy`, `patchMergeKey`, `listType`,
//! `listMapKey`, `mapType`); here they are a table per type. A path is the sequence of field
//! names from the object root; list items add no segment, so `["spec", "ports"]` is the ports
//! list and `["spec", "containers", "ports"]` the ports of every container.

/// How a list is owned and merged by server-side apply (Kubernetes' `listType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is a single value: replaced as a whole, owned as one field.
    Atomic,
    /// A list of distinct scalars, each owned separately (`listType=set`).
    Set,
    /// A list of objects identified by the values of these fields (`listType=map`).
    Map(&'static [&'static str]),
}

/// How strategic merge patch treats a list (Kubernetes' `patchStrategy`/`patchMergeKey`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchStrategy {
    /// The patch's list replaces the original.
    Replace,
    /// Scalars are unioned; objects are merged by `merge_key`.
    Merge { merge_key: Option<&'static str> },
}

/// The rule for one list field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRule {
    pub path: &'static [&'static str],
    pub list_type: ListType,
    pub patch: PatchStrategy,
}

/// The structural facts of one type.
#[derive(Debug)]
pub struct TypeSchema {
    /// The type's own list rules; ObjectMeta's are shared and need not be repeated.
    pub lists: &'static [ListRule],
    /// String-keyed dictionaries (as opposed to structs with fixed fields), such as labels.
    /// Server-side apply owns a granular map itself as well as each of its keys.
    pub maps: &'static [&'static [&'static str]],
    /// Maps that are one value (`mapType=atomic`): replaced and owned as a whole.
    pub atomic_maps: &'static [&'static [&'static str]],
}

impl TypeSchema {
    /// Every list rule of the type, ObjectMeta's included.
    pub fn rules(&self) -> impl Iterator<Item = &ListRule> {
        META_LISTS.iter().chain(self.lists)
    }

    /// The rule for the list at `path`; lists without a rule are atomic and replaced.
    pub fn list(&self, path: &[&str]) -> ListRule {
        META_LISTS
            .iter()
            .chain(self.lists)
            .find(|r| r.path == path)
            .copied()
            .unwrap_or(ListRule {
                path: &[],
                list_type: ListType::Atomic,
                patch: PatchStrategy::Replace,
            })
    }

    pub fn is_atomic_map(&self, path: &[&str]) -> bool {
        self.atomic_maps.contains(&path)
    }

    /// Whether the object at `path` is a string-keyed map (not a struct); atomic maps are
    /// checked with `is_atomic_map` first.
    pub fn is_map(&self, path: &[&str]) -> bool {
        META_MAPS.iter().chain(self.maps).any(|p| *p == path)
    }
}

const fn merge_by(key: &'static str) -> PatchStrategy {
    PatchStrategy::Merge {
        merge_key: Some(key),
    }
}

const MERGE_SCALARS: PatchStrategy = PatchStrategy::Merge { merge_key: None };

macro_rules! rule {
    ([$($seg:literal),+], $lt:expr, $patch:expr) => {
        ListRule { path: &[$($seg),+], list_type: $lt, patch: $patch }
    };
}

/// ObjectMeta's maps, shared by every type.
const META_MAPS: &[&[&str]] = &[&["metadata", "labels"], &["metadata", "annotations"]];

/// ObjectMeta's lists, shared by every type.
const META_LISTS: &[ListRule] = &[
    rule!(["metadata", "finalizers"], ListType::Set, MERGE_SCALARS),
    rule!(
        ["metadata", "ownerReferences"],
        ListType::Map(&["uid"]),
        merge_by("uid")
    ),
    rule!(
        ["metadata", "managedFields"],
        ListType::Atomic,
        PatchStrategy::Replace
    ),
];

pub static NAMESPACE: TypeSchema = TypeSchema {
    lists: &[rule!(
        ["status", "conditions"],
        ListType::Map(&["type"]),
        merge_by("type")
    )],
    maps: &[],
    atomic_maps: &[],
};

pub static SERVICE: TypeSchema = TypeSchema {
    lists: &[
        rule!(
            ["spec", "ports"],
            ListType::Map(&["port", "protocol"]),
            merge_by("port")
        ),
        rule!(
            ["status", "conditions"],
            ListType::Map(&["type"]),
            merge_by("type")
        ),
    ],
    maps: &[],
    atomic_maps: &[&["spec", "selector"]],
};

pub static NODE: TypeSchema = TypeSchema {
    lists: &[
        rule!(["spec", "podCIDRs"], ListType::Set, MERGE_SCALARS),
        // Several addresses may share a type (two InternalIPs), so SSA owns the list whole
        // while strategic merge still merges by type.
        rule!(["status", "addresses"], ListType::Atomic, merge_by("type")),
        rule!(
            ["status", "conditions"],
            ListType::Map(&["type"]),
            merge_by("type")
        ),
    ],
    maps: &[&["status", "capacity"], &["status", "allocatable"]],
    atomic_maps: &[],
};

pub static POD: TypeSchema = TypeSchema {
    lists: &[
        rule!(
            ["spec", "containers"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "initContainers"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "ephemeralContainers"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "containers", "ports"],
            ListType::Map(&["containerPort", "protocol"]),
            merge_by("containerPort")
        ),
        rule!(
            ["spec", "initContainers", "ports"],
            ListType::Map(&["containerPort", "protocol"]),
            merge_by("containerPort")
        ),
        rule!(
            ["spec", "containers", "env"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "initContainers", "env"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "containers", "volumeMounts"],
            ListType::Map(&["mountPath"]),
            merge_by("mountPath")
        ),
        rule!(
            ["spec", "initContainers", "volumeMounts"],
            ListType::Map(&["mountPath"]),
            merge_by("mountPath")
        ),
        rule!(
            ["spec", "volumes"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "imagePullSecrets"],
            ListType::Map(&["name"]),
            merge_by("name")
        ),
        rule!(
            ["spec", "hostAliases"],
            ListType::Map(&["ip"]),
            merge_by("ip")
        ),
        rule!(
            ["status", "conditions"],
            ListType::Map(&["type"]),
            merge_by("type")
        ),
        rule!(["status", "podIPs"], ListType::Map(&["ip"]), merge_by("ip")),
        rule!(["status", "hostIPs"], ListType::Atomic, merge_by("ip")),
    ],
    maps: &[
        &["spec", "containers", "resources", "limits"],
        &["spec", "containers", "resources", "requests"],
    ],
    atomic_maps: &[&["spec", "nodeSelector"]],
};

/// Endpoints and EndpointSlices: their lists are atomic.
pub static ENDPOINTS: TypeSchema = TypeSchema {
    lists: &[],
    maps: &[],
    atomic_maps: &[],
};

/// A type with only ObjectMeta's rules (used for kinds without list semantics of their own).
pub static META_ONLY: TypeSchema = TypeSchema {
    lists: &[],
    maps: &[],
    atomic_maps: &[],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(
            SERVICE.list(&["spec", "ports"]).list_type,
            ListType::Map(&["port", "protocol"])
        );
        assert_eq!(
            SERVICE.list(&["spec", "ports"]).patch,
            PatchStrategy::Merge {
                merge_key: Some("port")
            }
        );
        assert_eq!(
            SERVICE.list(&["spec", "clusterIPs"]).list_type,
            ListType::Atomic
        );
        assert_eq!(
            NAMESPACE.list(&["metadata", "finalizers"]).list_type,
            ListType::Set
        );
        assert!(SERVICE.is_atomic_map(&["spec", "selector"]));
        assert!(!SERVICE.is_atomic_map(&["metadata", "labels"]));
        assert!(SERVICE.is_map(&["metadata", "labels"]));
        assert!(!SERVICE.is_map(&["spec"]));
    }
}
