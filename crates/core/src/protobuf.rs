//! Decoding of Kubernetes protobuf request bodies into their JSON form.
//!
//! Typed kubectl generators (`kubectl create namespace`, `kubectl create
//! service ...`) and client-go based controllers send bodies as
//! `application/vnd.kubernetes.protobuf`. The rest of the server only speaks
//! JSON, so [`decode`] turns such a body into the `serde_json::Value` that
//! kube-apiserver would end up with after its protobuf unmarshal followed by
//! `json.Marshal`: the Go structs' JSON tags (`omitempty`, `omitzero`,
//! pointer vs value fields) decide which fields appear, exactly as they do for
//! a body sent as JSON by the same client.
//!
//! There is no generated code here: each supported message is a static table
//! of `(field number, JSON name, value type, cardinality, emptiness rule)`
//! rows. The field numbers are the wire contract of Kubernetes'
//! `generated.proto` files, and the rows are listed in Go struct order so the
//! JSON keys come out in the order Go would write them. Supporting another
//! kind means adding its message tables and one `KINDS` row.
//!
//! Supported: core/v1 Namespace, Service, Node, Endpoints, Event;
//! discovery.k8s.io/v1 EndpointSlice; meta/v1 DeleteOptions under any
//! apiVersion.
//!
//! Deliberate differences from kube-apiserver, all on inputs no real client
//! sends:
//! - a non-empty `contentEncoding` is refused (kube-apiserver ignores it);
//! - quantities are passed through as written rather than canonicalized
//!   (the JSON pipeline parses them like any JSON body), and only an empty
//!   quantity is rejected here;
//! - CBOR `FieldsV1` payloads are refused rather than transcoded;
//! - an envelope without `typeMeta` is refused; kube-apiserver would
//!   default the kind from the request URL, which this pure function does
//!   not see;
//! - a wrong wire type inside a map entry is an error, where Go's generated
//!   code would misread it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

/// The media type kubectl and client-go use for protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Nesting limit for embedded messages.
///
/// Go's generated code has no limit of its own and relies on its growable
/// stack; ours is fixed, and a hostile body must not be able to exhaust it
/// once recursive types (e.g. JSONSchemaProps) are added to the tables.
pub const MAX_DEPTH: usize = 64;

/// The envelope marker: "k8s" plus a version byte, where 0 means the rest is
/// a `runtime.Unknown` message.
const MAGIC: &[u8; 4] = b"k8s\0";

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// `time.Time{}` (Go's zero time, 0001-01-01T00:00:00Z) in Unix seconds; a
/// `metav1.Time` at this instant is "zero" and marshals as `null`.
const GO_ZERO_TIME_UNIX: i64 = -62_135_596_800;

/// Why a protobuf body could not be turned into JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The body is empty or holds only the `k8s\0` marker, so there is no object to decode.
    #[error("empty protobuf body")]
    EmptyBody,
    /// The body does not start with the `k8s\0` marker of a Kubernetes protobuf envelope.
    #[error("body does not appear to be a Kubernetes protobuf message (missing k8s\\0 prefix)")]
    MissingMagic,
    /// The envelope's `typeMeta.kind` is empty.
    #[error("object has no kind in its protobuf envelope")]
    MissingKind,
    /// The envelope's `typeMeta.apiVersion` is empty or not of the form `version` or `group/version`.
    #[error("object has a missing or malformed apiVersion {0:?} in its protobuf envelope")]
    MissingApiVersion(String),
    /// The envelope names a kind this decoder has no descriptor table for.
    #[error("protobuf decoding of {api_version}, Kind={kind} is not supported")]
    UnsupportedKind {
        /// `apiVersion` from the envelope.
        api_version: String,
        /// `kind` from the envelope.
        kind: String,
    },
    /// The envelope declares a content encoding (e.g. gzip) for `raw`, which we cannot undo.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedContentEncoding(String),
    /// The input ended in the middle of a tag, varint, fixed-width value or length-delimited field.
    #[error("proto: {message}: unexpected end of input")]
    Truncated {
        /// The message being decoded.
        message: &'static str,
    },
    /// A varint ran past 10 bytes and cannot fit in 64 bits.
    #[error("proto: {message}: varint overflows 64 bits")]
    VarintOverflow {
        /// The message being decoded.
        message: &'static str,
    },
    /// A length prefix is too large to be a valid length (negative as a Go `int`).
    #[error("proto: {message}: negative length found during unmarshaling")]
    InvalidLength {
        /// The message being decoded.
        message: &'static str,
    },
    /// A tag carries field number 0 or one beyond protobuf's maximum.
    #[error("proto: {message}: illegal tag {field} (wire type {wire_type})")]
    IllegalTag {
        /// The message being decoded.
        message: &'static str,
        /// The field number found in the tag.
        field: u64,
        /// The wire type found in the tag.
        wire_type: u8,
    },
    /// An end-group tag appeared where no group was open.
    #[error("proto: {message}: wiretype end group for non-group")]
    UnexpectedEndGroup {
        /// The message being decoded.
        message: &'static str,
    },
    /// An unknown field uses wire type 6 or 7, which do not exist.
    #[error("proto: {message}: illegal wireType {wire_type}")]
    IllegalWireType {
        /// The message being decoded.
        message: &'static str,
        /// The wire type found in the tag.
        wire_type: u8,
    },
    /// A known field arrived with a wire type that does not match its declared type.
    #[error("proto: {message}: wrong wireType = {wire_type} for field {field}")]
    WrongWireType {
        /// The message being decoded.
        message: &'static str,
        /// The JSON name of the field.
        field: &'static str,
        /// The wire type found in the tag.
        wire_type: u8,
    },
    /// Embedded messages are nested deeper than [`MAX_DEPTH`].
    #[error("protobuf message nesting exceeds {MAX_DEPTH} levels")]
    TooDeep,
    /// An `intstr.IntOrString` has a `type` other than 0 (int) or 1 (string), which Go cannot marshal.
    #[error("impossible IntOrString.Type {0}")]
    InvalidIntOrString(i64),
    /// A `resource.Quantity` carries an empty string, which Go's ParseQuantity rejects.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    EmptyQuantity,
    /// A `metav1.FieldsV1` payload is CBOR, or is not valid JSON.
    #[error("invalid metav1.FieldsV1 payload: {0}")]
    InvalidFieldsV1(String),
}

/// Whether a `Content-Type` header value names the Kubernetes protobuf media type,
/// ignoring parameters and case.
pub fn is_protobuf_content_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case(CONTENT_TYPE)
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the
/// JSON object Kubernetes would produce for the same object, with `kind` and
/// `apiVersion` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    if body.is_empty() {
        return Err(ProtoError::EmptyBody);
    }
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(ProtoError::MissingMagic);
    };
    if envelope.is_empty() {
        return Err(ProtoError::EmptyBody);
    }

    let slots = collect(&UNKNOWN, &[envelope], 0)?;
    let [type_meta, raw, content_encoding, _content_type] = slots.as_slice() else {
        return Err(ProtoError::Truncated {
            message: UNKNOWN.name,
        });
    };
    let content_encoding = go_string(raw_bytes(content_encoding));
    if !content_encoding.is_empty() {
        return Err(ProtoError::UnsupportedContentEncoding(content_encoding));
    }
    let type_meta_parts = match type_meta {
        Raw::Parts(parts) => parts.as_slice(),
        _ => &[],
    };
    let type_meta = collect(&TYPE_META, type_meta_parts, 1)?;
    let [api_version, kind] = type_meta.as_slice() else {
        return Err(ProtoError::Truncated {
            message: TYPE_META.name,
        });
    };
    let api_version = go_string(raw_bytes(api_version));
    let kind = go_string(raw_bytes(kind));
    if kind.is_empty() {
        return Err(ProtoError::MissingKind);
    }
    let (group, version) = parse_group_version(&api_version)
        .ok_or_else(|| ProtoError::MissingApiVersion(api_version.clone()))?;

    let Some(entry) = KINDS.iter().find(|k| k.matches(group, version, &kind)) else {
        return Err(ProtoError::UnsupportedKind { api_version, kind });
    };

    let fields = collect(entry.message, &[raw_bytes(raw)], 0)?;
    let mut object = Map::new();
    object.insert("kind".into(), Value::String(kind));
    // Kubernetes re-derives apiVersion from the parsed group/version, so
    // "/v1" comes back out as "v1".
    let api_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    render_fields(entry.message, fields, 0, &mut object)?;
    Ok(Value::Object(object))
}

/// Splits an apiVersion the way `schema.ParseGroupVersion` does; `None` when
/// no version can be had from it.
fn parse_group_version(api_version: &str) -> Option<(&str, &str)> {
    let (group, version) = match api_version.split_once('/') {
        None => ("", api_version),
        Some((_, rest)) if rest.contains('/') => return None,
        Some((group, version)) => (group, version),
    };
    (!version.is_empty()).then_some((group, version))
}

// ---------------------------------------------------------------------------
// Descriptor tables
// ---------------------------------------------------------------------------

/// What a field holds on the wire and how it becomes JSON.
#[derive(Clone, Copy)]
enum Ty {
    /// `string` (Go string or string-kinded type); JSON string.
    Str,
    /// `bytes` (Go `[]byte`); JSON base64 string.
    Bytes,
    /// `int32`; truncated from the varint like Go's generated code does.
    I32,
    /// `int64`.
    I64,
    /// `bool`.
    Bool,
    /// A nested message, rendered as a JSON object.
    Msg(&'static Message),
    /// `metav1.Time`: RFC 3339 with whole seconds, `null` when zero.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds, `null` when zero.
    MicroTime,
    /// `intstr.IntOrString`: JSON number or string.
    IntOrString,
    /// `resource.Quantity`: its string form.
    Quantity,
    /// `metav1.FieldsV1`: the JSON document it carries.
    FieldsV1,
}

impl Ty {
    /// Types that Go represents as structs, which `omitempty` never drops.
    fn is_struct(self) -> bool {
        !matches!(self, Ty::Str | Ty::Bytes | Ty::I32 | Ty::I64 | Ty::Bool)
    }

    fn is_varint(self) -> bool {
        matches!(self, Ty::I32 | Ty::I64 | Ty::Bool)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    /// A singular field; repeated occurrences merge (messages) or replace (scalars).
    One,
    /// A repeated field, rendered as an array.
    List,
    /// A `map<string, V>`, rendered as an object with keys sorted like Go's encoding/json.
    Map,
}

/// How the Go field's type and JSON tag decide whether the key is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emit {
    /// Value type without `omitempty`: always written, zero value when absent
    /// (`null` for nil slices, maps and zero times).
    Required,
    /// Value type with `omitempty`: scalars, slices and maps are dropped when
    /// empty; structs are always written because encoding/json never treats
    /// them as empty.
    OmitEmpty,
    /// `omitempty,omitzero`: dropped when equal to the type's zero value.
    OmitZero,
    /// Pointer with `omitempty`: written exactly when the field was on the
    /// wire, whatever its value.
    Pointer,
}

struct Field {
    number: u32,
    json: &'static str,
    ty: Ty,
    card: Card,
    emit: Emit,
}

struct Message {
    /// The Go type name, used in error messages.
    name: &'static str,
    fields: &'static [Field],
}

const fn one(number: u32, json: &'static str, ty: Ty, emit: Emit) -> Field {
    Field {
        number,
        json,
        ty,
        card: Card::One,
        emit,
    }
}

const fn list(number: u32, json: &'static str, ty: Ty, emit: Emit) -> Field {
    Field {
        number,
        json,
        ty,
        card: Card::List,
        emit,
    }
}

const fn map(number: u32, json: &'static str, ty: Ty, emit: Emit) -> Field {
    Field {
        number,
        json,
        ty,
        card: Card::Map,
        emit,
    }
}

/// Which envelope `apiVersion`s a kind is accepted under.
enum Gv {
    Exact(&'static str, &'static str),
    /// Meta types such as DeleteOptions are registered in every group version
    /// and keep the same wire format there.
    Any,
}

struct KindEntry {
    gv: Gv,
    kind: &'static str,
    message: &'static Message,
}

impl KindEntry {
    fn matches(&self, group: &str, version: &str, kind: &str) -> bool {
        let gv_ok = match self.gv {
            Gv::Exact(g, v) => g == group && v == version,
            Gv::Any => true,
        };
        gv_ok && self.kind == kind
    }
}

static KINDS: &[KindEntry] = &[
    KindEntry {
        gv: Gv::Exact("", "v1"),
        kind: "Namespace",
        message: &NAMESPACE,
    },
    KindEntry {
        gv: Gv::Exact("", "v1"),
        kind: "Service",
        message: &SERVICE,
    },
    KindEntry {
        gv: Gv::Exact("", "v1"),
        kind: "Node",
        message: &NODE,
    },
    KindEntry {
        gv: Gv::Exact("", "v1"),
        kind: "Endpoints",
        message: &ENDPOINTS,
    },
    KindEntry {
        gv: Gv::Exact("", "v1"),
        kind: "Event",
        message: &EVENT,
    },
    KindEntry {
        gv: Gv::Exact("discovery.k8s.io", "v1"),
        kind: "EndpointSlice",
        message: &ENDPOINT_SLICE,
    },
    KindEntry {
        gv: Gv::Any,
        kind: "DeleteOptions",
        message: &DELETE_OPTIONS,
    },
];

use Emit::{OmitEmpty, OmitZero, Pointer, Required};
use Ty::{Bool, Bytes, I32, I64, IntOrString, MicroTime, Msg, Quantity, Str, Time};

// --- k8s.io/apimachinery/pkg/runtime ---

static UNKNOWN: Message = Message {
    name: "Unknown",
    fields: &[
        one(1, "typeMeta", Msg(&TYPE_META), Pointer),
        one(2, "raw", Bytes, Pointer),
        one(3, "contentEncoding", Str, Pointer),
        one(4, "contentType", Str, Pointer),
    ],
};

static TYPE_META: Message = Message {
    name: "TypeMeta",
    fields: &[
        one(1, "apiVersion", Str, Pointer),
        one(2, "kind", Str, Pointer),
    ],
};

// --- wire shapes of the special types ---

static TIMESTAMP: Message = Message {
    name: "Timestamp",
    fields: &[
        one(1, "seconds", I64, Pointer),
        one(2, "nanos", I32, Pointer),
    ],
};

static INT_OR_STRING: Message = Message {
    name: "IntOrString",
    fields: &[
        one(1, "type", I64, Pointer),
        one(2, "intVal", I32, Pointer),
        one(3, "strVal", Str, Pointer),
    ],
};

static QUANTITY: Message = Message {
    name: "Quantity",
    fields: &[one(1, "string", Str, Pointer)],
};

static FIELDS_V1: Message = Message {
    name: "FieldsV1",
    fields: &[one(1, "Raw", Bytes, Pointer)],
};

// --- k8s.io/apimachinery/pkg/apis/meta/v1 ---

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        one(1, "name", Str, OmitEmpty),
        one(2, "generateName", Str, OmitEmpty),
        one(3, "namespace", Str, OmitEmpty),
        one(4, "selfLink", Str, OmitEmpty),
        one(5, "uid", Str, OmitEmpty),
        one(6, "resourceVersion", Str, OmitEmpty),
        one(7, "generation", I64, OmitEmpty),
        one(8, "creationTimestamp", Time, OmitZero),
        one(9, "deletionTimestamp", Time, Pointer),
        one(10, "deletionGracePeriodSeconds", I64, Pointer),
        map(11, "labels", Str, OmitEmpty),
        map(12, "annotations", Str, OmitEmpty),
        list(13, "ownerReferences", Msg(&OWNER_REFERENCE), OmitEmpty),
        list(14, "finalizers", Str, OmitEmpty),
        list(17, "managedFields", Msg(&MANAGED_FIELDS_ENTRY), OmitEmpty),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        one(5, "apiVersion", Str, Required),
        one(1, "kind", Str, Required),
        one(3, "name", Str, Required),
        one(4, "uid", Str, Required),
        one(6, "controller", Bool, Pointer),
        one(7, "blockOwnerDeletion", Bool, Pointer),
    ],
};

static MANAGED_FIELDS_ENTRY: Message = Message {
    name: "ManagedFieldsEntry",
    fields: &[
        one(1, "manager", Str, OmitEmpty),
        one(2, "operation", Str, OmitEmpty),
        one(3, "apiVersion", Str, OmitEmpty),
        one(4, "time", Time, Pointer),
        one(6, "fieldsType", Str, OmitEmpty),
        one(7, "fieldsV1", Ty::FieldsV1, Pointer),
        one(8, "subresource", Str, OmitEmpty),
    ],
};

static CONDITION: Message = Message {
    name: "Condition",
    fields: &[
        one(1, "type", Str, Required),
        one(2, "status", Str, Required),
        one(3, "observedGeneration", I64, OmitEmpty),
        one(4, "lastTransitionTime", Time, Required),
        one(5, "reason", Str, Required),
        one(6, "message", Str, Required),
    ],
};

static DELETE_OPTIONS: Message = Message {
    name: "DeleteOptions",
    fields: &[
        one(1, "gracePeriodSeconds", I64, Pointer),
        one(2, "preconditions", Msg(&PRECONDITIONS), Pointer),
        one(3, "orphanDependents", Bool, Pointer),
        one(4, "propagationPolicy", Str, Pointer),
        list(5, "dryRun", Str, OmitEmpty),
        one(
            6,
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            Bool,
            Pointer,
        ),
    ],
};

static PRECONDITIONS: Message = Message {
    name: "Preconditions",
    fields: &[
        one(1, "uid", Str, Pointer),
        one(2, "resourceVersion", Str, Pointer),
    ],
};

// --- k8s.io/api/core/v1: Namespace ---

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), OmitEmpty),
        one(2, "spec", Msg(&NAMESPACE_SPEC), OmitEmpty),
        one(3, "status", Msg(&NAMESPACE_STATUS), OmitEmpty),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[list(1, "finalizers", Str, OmitEmpty)],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[
        one(1, "phase", Str, OmitEmpty),
        list(2, "conditions", Msg(&NAMESPACE_CONDITION), OmitEmpty),
    ],
};

static NAMESPACE_CONDITION: Message = Message {
    name: "NamespaceCondition",
    fields: &[
        one(1, "type", Str, Required),
        one(2, "status", Str, Required),
        one(4, "lastTransitionTime", Time, OmitEmpty),
        one(5, "reason", Str, OmitEmpty),
        one(6, "message", Str, OmitEmpty),
    ],
};

// --- k8s.io/api/core/v1: Service ---

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), OmitEmpty),
        one(2, "spec", Msg(&SERVICE_SPEC), OmitEmpty),
        one(3, "status", Msg(&SERVICE_STATUS), OmitEmpty),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        list(1, "ports", Msg(&SERVICE_PORT), OmitEmpty),
        map(2, "selector", Str, OmitEmpty),
        one(3, "clusterIP", Str, OmitEmpty),
        list(18, "clusterIPs", Str, OmitEmpty),
        one(4, "type", Str, OmitEmpty),
        list(5, "externalIPs", Str, OmitEmpty),
        one(7, "sessionAffinity", Str, OmitEmpty),
        one(8, "loadBalancerIP", Str, OmitEmpty),
        list(9, "loadBalancerSourceRanges", Str, OmitEmpty),
        one(10, "externalName", Str, OmitEmpty),
        one(11, "externalTrafficPolicy", Str, OmitEmpty),
        one(12, "healthCheckNodePort", I32, OmitEmpty),
        one(13, "publishNotReadyAddresses", Bool, OmitEmpty),
        one(
            14,
            "sessionAffinityConfig",
            Msg(&SESSION_AFFINITY_CONFIG),
            Pointer,
        ),
        list(19, "ipFamilies", Str, OmitEmpty),
        one(17, "ipFamilyPolicy", Str, Pointer),
        one(20, "allocateLoadBalancerNodePorts", Bool, Pointer),
        one(21, "loadBalancerClass", Str, Pointer),
        one(22, "internalTrafficPolicy", Str, Pointer),
        one(23, "trafficDistribution", Str, Pointer),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        one(1, "name", Str, OmitEmpty),
        one(2, "protocol", Str, OmitEmpty),
        one(6, "appProtocol", Str, Pointer),
        one(3, "port", I32, Required),
        one(4, "targetPort", IntOrString, OmitEmpty),
        one(5, "nodePort", I32, OmitEmpty),
    ],
};

static SESSION_AFFINITY_CONFIG: Message = Message {
    name: "SessionAffinityConfig",
    fields: &[one(1, "clientIP", Msg(&CLIENT_IP_CONFIG), Pointer)],
};

static CLIENT_IP_CONFIG: Message = Message {
    name: "ClientIPConfig",
    fields: &[one(1, "timeoutSeconds", I32, Pointer)],
};

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[
        one(1, "loadBalancer", Msg(&LOAD_BALANCER_STATUS), OmitEmpty),
        list(2, "conditions", Msg(&CONDITION), OmitEmpty),
    ],
};

static LOAD_BALANCER_STATUS: Message = Message {
    name: "LoadBalancerStatus",
    fields: &[list(1, "ingress", Msg(&LOAD_BALANCER_INGRESS), OmitEmpty)],
};

static LOAD_BALANCER_INGRESS: Message = Message {
    name: "LoadBalancerIngress",
    fields: &[
        one(1, "ip", Str, OmitEmpty),
        one(2, "hostname", Str, OmitEmpty),
        one(3, "ipMode", Str, Pointer),
        list(4, "ports", Msg(&PORT_STATUS), OmitEmpty),
    ],
};

static PORT_STATUS: Message = Message {
    name: "PortStatus",
    fields: &[
        one(1, "port", I32, Required),
        one(2, "protocol", Str, Required),
        one(3, "error", Str, Pointer),
    ],
};

// --- k8s.io/api/core/v1: Node ---

static NODE: Message = Message {
    name: "Node",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), OmitEmpty),
        one(2, "spec", Msg(&NODE_SPEC), OmitEmpty),
        one(3, "status", Msg(&NODE_STATUS), OmitEmpty),
    ],
};

static NODE_SPEC: Message = Message {
    name: "NodeSpec",
    fields: &[
        one(1, "podCIDR", Str, OmitEmpty),
        list(7, "podCIDRs", Str, OmitEmpty),
        one(3, "providerID", Str, OmitEmpty),
        one(4, "unschedulable", Bool, OmitEmpty),
        list(5, "taints", Msg(&TAINT), OmitEmpty),
        one(6, "configSource", Msg(&NODE_CONFIG_SOURCE), Pointer),
        one(2, "externalID", Str, OmitEmpty),
        one(
            8,
            "podPreemptionPolicy",
            Msg(&NODE_POD_PREEMPTION_POLICY),
            Pointer,
        ),
    ],
};

static TAINT: Message = Message {
    name: "Taint",
    fields: &[
        one(1, "key", Str, Required),
        one(2, "value", Str, OmitEmpty),
        one(3, "effect", Str, Required),
        one(4, "timeAdded", Time, Pointer),
    ],
};

static NODE_CONFIG_SOURCE: Message = Message {
    name: "NodeConfigSource",
    fields: &[one(
        2,
        "configMap",
        Msg(&CONFIG_MAP_NODE_CONFIG_SOURCE),
        Pointer,
    )],
};

static CONFIG_MAP_NODE_CONFIG_SOURCE: Message = Message {
    name: "ConfigMapNodeConfigSource",
    fields: &[
        one(1, "namespace", Str, Required),
        one(2, "name", Str, Required),
        one(3, "uid", Str, OmitEmpty),
        one(4, "resourceVersion", Str, OmitEmpty),
        one(5, "kubeletConfigKey", Str, Required),
    ],
};

static NODE_POD_PREEMPTION_POLICY: Message = Message {
    name: "NodePodPreemptionPolicy",
    fields: &[list(1, "disableResizePreemption", Str, OmitEmpty)],
};

static NODE_STATUS: Message = Message {
    name: "NodeStatus",
    fields: &[
        map(1, "capacity", Quantity, OmitEmpty),
        map(2, "allocatable", Quantity, OmitEmpty),
        one(3, "phase", Str, OmitEmpty),
        list(4, "conditions", Msg(&NODE_CONDITION), OmitEmpty),
        list(5, "addresses", Msg(&NODE_ADDRESS), OmitEmpty),
        one(6, "daemonEndpoints", Msg(&NODE_DAEMON_ENDPOINTS), OmitEmpty),
        one(7, "nodeInfo", Msg(&NODE_SYSTEM_INFO), OmitEmpty),
        list(8, "images", Msg(&CONTAINER_IMAGE), OmitEmpty),
        list(9, "volumesInUse", Str, OmitEmpty),
        list(10, "volumesAttached", Msg(&ATTACHED_VOLUME), OmitEmpty),
        one(11, "config", Msg(&NODE_CONFIG_STATUS), Pointer),
        list(12, "runtimeHandlers", Msg(&NODE_RUNTIME_HANDLER), OmitEmpty),
        one(13, "features", Msg(&NODE_FEATURES), Pointer),
        list(14, "declaredFeatures", Str, OmitEmpty),
    ],
};

static NODE_CONDITION: Message = Message {
    name: "NodeCondition",
    fields: &[
        one(1, "type", Str, Required),
        one(2, "status", Str, Required),
        one(3, "lastHeartbeatTime", Time, OmitEmpty),
        one(4, "lastTransitionTime", Time, OmitEmpty),
        one(5, "reason", Str, OmitEmpty),
        one(6, "message", Str, OmitEmpty),
    ],
};

static NODE_ADDRESS: Message = Message {
    name: "NodeAddress",
    fields: &[
        one(1, "type", Str, Required),
        one(2, "address", Str, Required),
    ],
};

static NODE_DAEMON_ENDPOINTS: Message = Message {
    name: "NodeDaemonEndpoints",
    fields: &[one(1, "kubeletEndpoint", Msg(&DAEMON_ENDPOINT), OmitEmpty)],
};

static DAEMON_ENDPOINT: Message = Message {
    name: "DaemonEndpoint",
    // Upper-case on purpose: the Go tag has been "Port" since an early
    // release and the JSON API kept it.
    fields: &[one(1, "Port", I32, Required)],
};

static NODE_SYSTEM_INFO: Message = Message {
    name: "NodeSystemInfo",
    fields: &[
        one(1, "machineID", Str, Required),
        one(2, "systemUUID", Str, Required),
        one(3, "bootID", Str, Required),
        one(4, "kernelVersion", Str, Required),
        one(5, "osImage", Str, Required),
        one(6, "containerRuntimeVersion", Str, Required),
        one(7, "kubeletVersion", Str, Required),
        one(8, "kubeProxyVersion", Str, Required),
        one(9, "operatingSystem", Str, Required),
        one(10, "architecture", Str, Required),
        one(11, "swap", Msg(&NODE_SWAP_STATUS), Pointer),
    ],
};

static NODE_SWAP_STATUS: Message = Message {
    name: "NodeSwapStatus",
    fields: &[one(1, "capacity", I64, Pointer)],
};

static CONTAINER_IMAGE: Message = Message {
    name: "ContainerImage",
    fields: &[
        list(1, "names", Str, Required),
        one(2, "sizeBytes", I64, OmitEmpty),
    ],
};

static ATTACHED_VOLUME: Message = Message {
    name: "AttachedVolume",
    fields: &[
        one(1, "name", Str, Required),
        one(2, "devicePath", Str, Required),
    ],
};

static NODE_CONFIG_STATUS: Message = Message {
    name: "NodeConfigStatus",
    fields: &[
        one(1, "assigned", Msg(&NODE_CONFIG_SOURCE), Pointer),
        one(2, "active", Msg(&NODE_CONFIG_SOURCE), Pointer),
        one(3, "lastKnownGood", Msg(&NODE_CONFIG_SOURCE), Pointer),
        one(4, "error", Str, OmitEmpty),
    ],
};

static NODE_RUNTIME_HANDLER: Message = Message {
    name: "NodeRuntimeHandler",
    fields: &[
        one(1, "name", Str, Required),
        one(2, "features", Msg(&NODE_RUNTIME_HANDLER_FEATURES), Pointer),
    ],
};

static NODE_RUNTIME_HANDLER_FEATURES: Message = Message {
    name: "NodeRuntimeHandlerFeatures",
    fields: &[
        one(1, "recursiveReadOnlyMounts", Bool, Pointer),
        one(2, "userNamespaces", Bool, Pointer),
    ],
};

static NODE_FEATURES: Message = Message {
    name: "NodeFeatures",
    fields: &[one(1, "supplementalGroupsPolicy", Bool, Pointer)],
};

// --- k8s.io/api/core/v1: Endpoints ---

static ENDPOINTS: Message = Message {
    name: "Endpoints",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), OmitEmpty),
        list(2, "subsets", Msg(&ENDPOINT_SUBSET), OmitEmpty),
    ],
};

static ENDPOINT_SUBSET: Message = Message {
    name: "EndpointSubset",
    fields: &[
        list(1, "addresses", Msg(&ENDPOINT_ADDRESS), OmitEmpty),
        list(2, "notReadyAddresses", Msg(&ENDPOINT_ADDRESS), OmitEmpty),
        list(3, "ports", Msg(&CORE_ENDPOINT_PORT), OmitEmpty),
    ],
};

static ENDPOINT_ADDRESS: Message = Message {
    name: "EndpointAddress",
    fields: &[
        one(1, "ip", Str, Required),
        one(3, "hostname", Str, OmitEmpty),
        one(4, "nodeName", Str, Pointer),
        one(2, "targetRef", Msg(&OBJECT_REFERENCE), Pointer),
    ],
};

static CORE_ENDPOINT_PORT: Message = Message {
    name: "EndpointPort",
    fields: &[
        one(1, "name", Str, OmitEmpty),
        one(2, "port", I32, Required),
        one(3, "protocol", Str, OmitEmpty),
        one(4, "appProtocol", Str, Pointer),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        one(1, "kind", Str, OmitEmpty),
        one(2, "namespace", Str, OmitEmpty),
        one(3, "name", Str, OmitEmpty),
        one(4, "uid", Str, OmitEmpty),
        one(5, "apiVersion", Str, OmitEmpty),
        one(6, "resourceVersion", Str, OmitEmpty),
        one(7, "fieldPath", Str, OmitEmpty),
    ],
};

// --- k8s.io/api/core/v1: Event ---

static EVENT: Message = Message {
    name: "Event",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), Required),
        one(2, "involvedObject", Msg(&OBJECT_REFERENCE), Required),
        one(3, "reason", Str, OmitEmpty),
        one(4, "message", Str, OmitEmpty),
        one(5, "source", Msg(&EVENT_SOURCE), OmitEmpty),
        one(6, "firstTimestamp", Time, OmitEmpty),
        one(7, "lastTimestamp", Time, OmitEmpty),
        one(8, "count", I32, OmitEmpty),
        one(9, "type", Str, OmitEmpty),
        one(10, "eventTime", MicroTime, OmitEmpty),
        one(11, "series", Msg(&EVENT_SERIES), Pointer),
        one(12, "action", Str, OmitEmpty),
        one(13, "related", Msg(&OBJECT_REFERENCE), Pointer),
        one(14, "reportingComponent", Str, Required),
        one(15, "reportingInstance", Str, Required),
    ],
};

static EVENT_SOURCE: Message = Message {
    name: "EventSource",
    fields: &[
        one(1, "component", Str, OmitEmpty),
        one(2, "host", Str, OmitEmpty),
    ],
};

static EVENT_SERIES: Message = Message {
    name: "EventSeries",
    fields: &[
        one(1, "count", I32, OmitEmpty),
        one(2, "lastObservedTime", MicroTime, OmitEmpty),
    ],
};

// --- k8s.io/api/discovery/v1: EndpointSlice ---

static ENDPOINT_SLICE: Message = Message {
    name: "EndpointSlice",
    fields: &[
        one(1, "metadata", Msg(&OBJECT_META), OmitEmpty),
        one(4, "addressType", Str, Required),
        list(2, "endpoints", Msg(&DISCOVERY_ENDPOINT), Required),
        list(3, "ports", Msg(&DISCOVERY_ENDPOINT_PORT), Required),
    ],
};

static DISCOVERY_ENDPOINT: Message = Message {
    name: "Endpoint",
    fields: &[
        list(1, "addresses", Str, Required),
        one(2, "conditions", Msg(&ENDPOINT_CONDITIONS), OmitEmpty),
        one(3, "hostname", Str, Pointer),
        one(4, "targetRef", Msg(&OBJECT_REFERENCE), Pointer),
        map(5, "deprecatedTopology", Str, OmitEmpty),
        one(6, "nodeName", Str, Pointer),
        one(7, "zone", Str, Pointer),
        one(8, "hints", Msg(&ENDPOINT_HINTS), Pointer),
    ],
};

static ENDPOINT_CONDITIONS: Message = Message {
    name: "EndpointConditions",
    fields: &[
        one(1, "ready", Bool, Pointer),
        one(2, "serving", Bool, Pointer),
        one(3, "terminating", Bool, Pointer),
    ],
};

static ENDPOINT_HINTS: Message = Message {
    name: "EndpointHints",
    fields: &[
        list(1, "forZones", Msg(&FOR_NAME), OmitEmpty),
        list(2, "forNodes", Msg(&FOR_NAME), OmitEmpty),
    ],
};

/// ForZone and ForNode share this shape.
static FOR_NAME: Message = Message {
    name: "ForZone",
    fields: &[one(1, "name", Str, Required)],
};

static DISCOVERY_ENDPOINT_PORT: Message = Message {
    name: "EndpointPort",
    fields: &[
        one(1, "name", Str, Pointer),
        one(2, "protocol", Str, Pointer),
        one(3, "port", I32, Pointer),
        one(4, "appProtocol", Str, Pointer),
    ],
};

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn truncated(&self) -> ProtoError {
        ProtoError::Truncated {
            message: self.message,
        }
    }

    /// Like Go's generated loops: at most 10 bytes, and bits shifted past 64
    /// are silently dropped rather than rejected.
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ProtoError::VarintOverflow {
            message: self.message,
        })
    }

    fn advance(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| self.truncated())?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(slice)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], ProtoError> {
        let len = self.varint()?;
        // Go converts the length to int first, so anything that does not fit
        // an int64 is "negative" rather than merely too long.
        let len = i64::try_from(len).map_err(|_| ProtoError::InvalidLength {
            message: self.message,
        })?;
        let len = usize::try_from(len).map_err(|_| self.truncated())?;
        self.advance(len)
    }

    fn tag(&mut self) -> Result<(u32, u8), ProtoError> {
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let field = key >> 3;
        if wire_type == 4 {
            return Err(ProtoError::UnexpectedEndGroup {
                message: self.message,
            });
        }
        if field == 0 || field > MAX_FIELD_NUMBER {
            return Err(ProtoError::IllegalTag {
                message: self.message,
                field,
                wire_type,
            });
        }
        let field = u32::try_from(field).map_err(|_| ProtoError::IllegalTag {
            message: self.message,
            field,
            wire_type,
        })?;
        Ok((field, wire_type))
    }

    /// Skips the value of an unknown field whose tag was just read. Groups
    /// are skipped iteratively with a depth counter, as Go's skipGenerated
    /// does, so nesting cannot grow the stack.
    fn skip(&mut self, wire_type: u8) -> Result<(), ProtoError> {
        let mut depth = 0usize;
        let mut wire_type = wire_type;
        loop {
            match wire_type {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.advance(8)?;
                }
                2 => {
                    self.length_delimited()?;
                }
                3 => depth += 1,
                4 => {
                    depth = depth.checked_sub(1).ok_or(ProtoError::UnexpectedEndGroup {
                        message: self.message,
                    })?;
                }
                5 => {
                    self.advance(4)?;
                }
                other => {
                    return Err(ProtoError::IllegalWireType {
                        message: self.message,
                        wire_type: other,
                    });
                }
            }
            if depth == 0 {
                return Ok(());
            }
            wire_type = (self.varint()? & 7) as u8;
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Scalar<'a> {
    Bytes(&'a [u8]),
    Int(i64),
    Bool(bool),
}

/// What the wire held for one field before it is rendered.
enum Raw<'a> {
    Absent,
    /// Last occurrence wins, as in Go.
    Scalar(Scalar<'a>),
    /// Every occurrence of a singular message field, in order: Go merges
    /// them into the same struct, so rendering replays them all.
    Parts(Vec<&'a [u8]>),
    List(Vec<Value>),
    /// Keyed by the raw key bytes so ordering matches Go's sort of Go strings.
    Map(BTreeMap<&'a [u8], Value>),
}

fn raw_bytes<'a>(raw: &Raw<'a>) -> &'a [u8] {
    match raw {
        Raw::Scalar(Scalar::Bytes(bytes)) => bytes,
        _ => &[],
    }
}

fn wrong_wire_type(message: &Message, field: &Field, wire_type: u8) -> ProtoError {
    ProtoError::WrongWireType {
        message: message.name,
        field: field.json,
        wire_type,
    }
}

/// Reads one scalar whose tag was just read and whose wire type matched.
fn read_scalar<'a>(reader: &mut Reader<'a>, ty: Ty) -> Result<Scalar<'a>, ProtoError> {
    Ok(match ty {
        Ty::I32 => Scalar::Int(i64::from(reader.varint()? as i32)),
        Ty::I64 => Scalar::Int(reader.varint()? as i64),
        Ty::Bool => Scalar::Bool(reader.varint()? != 0),
        _ => Scalar::Bytes(reader.length_delimited()?),
    })
}

/// Parses every part of a message into one slot per descriptor row.
fn collect<'a>(
    message: &'static Message,
    parts: &[&'a [u8]],
    depth: usize,
) -> Result<Vec<Raw<'a>>, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let mut slots: Vec<Raw<'a>> = message.fields.iter().map(|_| Raw::Absent).collect();
    for part in parts {
        let mut reader = Reader::new(part, message.name);
        while !reader.at_end() {
            let (number, wire_type) = reader.tag()?;
            let Some(index) = message.fields.iter().position(|f| f.number == number) else {
                reader.skip(wire_type)?;
                continue;
            };
            let (Some(field), Some(slot)) = (message.fields.get(index), slots.get_mut(index))
            else {
                reader.skip(wire_type)?;
                continue;
            };
            read_field(message, field, slot, &mut reader, wire_type, depth)?;
        }
    }
    Ok(slots)
}

fn read_field<'a>(
    message: &'static Message,
    field: &Field,
    slot: &mut Raw<'a>,
    reader: &mut Reader<'a>,
    wire_type: u8,
    depth: usize,
) -> Result<(), ProtoError> {
    let expected = if field.ty.is_varint() { 0 } else { 2 };
    match field.card {
        Card::One => {
            if wire_type != expected {
                return Err(wrong_wire_type(message, field, wire_type));
            }
            if field.ty.is_struct() {
                let bytes = reader.length_delimited()?;
                match slot {
                    Raw::Parts(parts) => parts.push(bytes),
                    _ => *slot = Raw::Parts(vec![bytes]),
                }
            } else {
                *slot = Raw::Scalar(read_scalar(reader, field.ty)?);
            }
        }
        Card::List => {
            if !matches!(slot, Raw::List(_)) {
                *slot = Raw::List(Vec::new());
            }
            let Raw::List(items) = slot else {
                return Ok(());
            };
            if field.ty.is_varint() && wire_type == 2 {
                // Packed encoding; Go accepts it for every repeated scalar.
                let packed = reader.length_delimited()?;
                let mut inner = Reader::new(packed, message.name);
                while !inner.at_end() {
                    let scalar = read_scalar(&mut inner, field.ty)?;
                    items.push(scalar_value(field.ty, scalar));
                }
            } else if wire_type != expected {
                return Err(wrong_wire_type(message, field, wire_type));
            } else if field.ty.is_struct() {
                let bytes = reader.length_delimited()?;
                items.push(render(field.ty, Raw::Parts(vec![bytes]), depth + 1)?);
            } else {
                let scalar = read_scalar(reader, field.ty)?;
                items.push(scalar_value(field.ty, scalar));
            }
        }
        Card::Map => {
            if wire_type != 2 {
                return Err(wrong_wire_type(message, field, wire_type));
            }
            let entry = reader.length_delimited()?;
            let (key, value) = read_map_entry(message, field, entry, depth)?;
            if !matches!(slot, Raw::Map(_)) {
                *slot = Raw::Map(BTreeMap::new());
            }
            if let Raw::Map(entries) = slot {
                entries.insert(key, value);
            }
        }
    }
    Ok(())
}

/// Decodes a `map<string, V>` entry message (key = 1, value = 2). Missing
/// halves take their zero values; a later occurrence of either half replaces
/// the earlier one, and message values are not merged because Go builds a
/// fresh value for each occurrence.
fn read_map_entry<'a>(
    message: &'static Message,
    field: &Field,
    entry: &'a [u8],
    depth: usize,
) -> Result<(&'a [u8], Value), ProtoError> {
    let mut reader = Reader::new(entry, message.name);
    let mut key: &[u8] = &[];
    let mut value = Raw::Absent;
    let value_wire_type = if field.ty.is_varint() { 0 } else { 2 };
    while !reader.at_end() {
        let (number, wire_type) = reader.tag()?;
        match number {
            1 => {
                if wire_type != 2 {
                    return Err(wrong_wire_type(message, field, wire_type));
                }
                key = reader.length_delimited()?;
            }
            2 => {
                if wire_type != value_wire_type {
                    return Err(wrong_wire_type(message, field, wire_type));
                }
                value = if field.ty.is_struct() {
                    Raw::Parts(vec![reader.length_delimited()?])
                } else {
                    Raw::Scalar(read_scalar(&mut reader, field.ty)?)
                };
            }
            _ => reader.skip(wire_type)?,
        }
    }
    Ok((key, render(field.ty, value, depth + 1)?))
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

fn scalar_value(ty: Ty, scalar: Scalar<'_>) -> Value {
    match (ty, scalar) {
        (Ty::Bytes, Scalar::Bytes(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (_, Scalar::Bytes(bytes)) => Value::String(go_string(bytes)),
        (_, Scalar::Int(n)) => Value::from(n),
        (_, Scalar::Bool(b)) => Value::Bool(b),
    }
}

/// Renders a singular value; `Raw::Absent` yields the Go zero value's JSON.
fn render(ty: Ty, raw: Raw<'_>, depth: usize) -> Result<Value, ProtoError> {
    if let Raw::Scalar(scalar) = raw {
        return Ok(scalar_value(ty, scalar));
    }
    let parts = match raw {
        Raw::Parts(parts) => parts,
        _ => Vec::new(),
    };
    match ty {
        Ty::Str => Ok(Value::String(String::new())),
        // A nil []byte marshals as null.
        Ty::Bytes => Ok(Value::Null),
        Ty::I32 | Ty::I64 => Ok(Value::from(0)),
        Ty::Bool => Ok(Value::Bool(false)),
        Ty::Msg(message) => {
            let slots = collect(message, &parts, depth)?;
            let mut object = Map::new();
            render_fields(message, slots, depth, &mut object)?;
            Ok(Value::Object(object))
        }
        Ty::Time | Ty::MicroTime => render_time(ty, &parts, depth),
        Ty::IntOrString => {
            let slots = collect(&INT_OR_STRING, &parts, depth)?;
            let kind = int_at(&slots, 0);
            match kind {
                0 => Ok(Value::from(int_at(&slots, 1))),
                1 => Ok(Value::String(go_string(bytes_at(&slots, 2)))),
                other => Err(ProtoError::InvalidIntOrString(other)),
            }
        }
        Ty::Quantity => {
            // Go parses each occurrence on its own, so an empty string is an
            // error even if a later occurrence would have replaced it; an
            // occurrence without the field leaves the earlier value.
            let mut current = None;
            for &part in &parts {
                let slots = collect(&QUANTITY, &[part], depth)?;
                if let Some(Raw::Scalar(Scalar::Bytes(s))) = slots.first() {
                    if s.is_empty() {
                        return Err(ProtoError::EmptyQuantity);
                    }
                    current = Some(*s);
                }
            }
            Ok(Value::String(
                current.map_or_else(|| "0".to_owned(), go_string),
            ))
        }
        Ty::FieldsV1 => {
            let slots = collect(&FIELDS_V1, &parts, depth)?;
            fields_v1_value(bytes_at(&slots, 0))
        }
    }
}

fn int_at(slots: &[Raw<'_>], index: usize) -> i64 {
    match slots.get(index) {
        Some(Raw::Scalar(Scalar::Int(n))) => *n,
        _ => 0,
    }
}

fn bytes_at<'a>(slots: &[Raw<'a>], index: usize) -> &'a [u8] {
    slots.get(index).map_or(&[], raw_bytes)
}

fn render_fields(
    message: &'static Message,
    slots: Vec<Raw<'_>>,
    depth: usize,
    out: &mut Map<String, Value>,
) -> Result<(), ProtoError> {
    for (field, raw) in message.fields.iter().zip(slots) {
        let present = !matches!(raw, Raw::Absent);
        // Also what keeps a recursive pointer type from rendering its own
        // zero value forever.
        if field.emit == Emit::Pointer && field.card == Card::One && !present {
            continue;
        }
        let value = match (field.card, raw) {
            (Card::List, Raw::List(items)) if !items.is_empty() => Value::Array(items),
            (Card::Map, Raw::Map(entries)) if !entries.is_empty() => Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (go_string(key), value))
                    .collect(),
            ),
            // Nil slices and maps: null unless omitempty drops them below.
            (Card::List | Card::Map, _) => Value::Null,
            (Card::One, raw) => render(field.ty, raw, depth + 1)?,
        };
        let keep = match (field.card, field.emit) {
            (_, Emit::Required) => true,
            (Card::One, Emit::Pointer) => present,
            (Card::One, Emit::OmitEmpty) if field.ty.is_struct() => true,
            (Card::One, Emit::OmitZero) => value != render(field.ty, Raw::Absent, depth + 1)?,
            _ => !is_empty_value(&value),
        };
        if keep {
            out.insert(field.json.to_owned(), value);
        }
    }
    Ok(())
}

/// encoding/json's notion of empty for the kinds of values `omitempty` can drop.
fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(entries) => entries.is_empty(),
    }
}

/// `metav1.Time` keeps only the last occurrence (its Unmarshal replaces the
/// value), treats an empty message as the zero time and ignores nanos;
/// `MicroTime` keeps nanos truncated to microseconds.
fn render_time(ty: Ty, parts: &[&[u8]], depth: usize) -> Result<Value, ProtoError> {
    let Some(&last) = parts.last() else {
        return Ok(Value::Null);
    };
    if last.is_empty() {
        return Ok(Value::Null);
    }
    let slots = collect(&TIMESTAMP, &[last], depth)?;
    let seconds = i128::from(int_at(&slots, 0));
    let micro = matches!(ty, Ty::MicroTime);
    let nanos = if micro {
        let nanos = int_at(&slots, 1) as i32;
        i128::from(nanos - nanos % 1000)
    } else {
        0
    };
    let total = seconds * 1_000_000_000 + nanos;
    let seconds = total.div_euclid(1_000_000_000);
    let nanos = total.rem_euclid(1_000_000_000);
    if seconds == i128::from(GO_ZERO_TIME_UNIX) && nanos == 0 {
        return Ok(Value::Null);
    }
    let micros = micro.then_some(nanos / 1000);
    Ok(Value::String(format_rfc3339(seconds, micros)))
}

/// Formats a UTC instant like Go's `time.RFC3339` (or `metav1.RFC3339Micro`
/// when `micros` is given), including Go's sign-and-pad rule for years
/// outside 0..=9999.
fn format_rfc3339(seconds: i128, micros: Option<i128>) -> String {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let year = if year < 0 {
        format!("-{:04}", -year)
    } else {
        format!("{year:04}")
    };
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    );
    match micros {
        Some(micros) => {
            format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
        }
        None => format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// `FieldsV1.MarshalJSON`: empty is `null`, JSON is passed through, and CBOR
/// (which Go would transcode) is refused because no client sends it in a
/// request body.
fn fields_v1_value(raw: &[u8]) -> Result<Value, ProtoError> {
    let Some(&first) = raw.first() else {
        return Ok(Value::Null);
    };
    if first == 0xf6 || (0xa0..=0xbf).contains(&first) || (0xc6..=0xdb).contains(&first) {
        return Err(ProtoError::InvalidFieldsV1(
            "CBOR-encoded managed fields are not supported".into(),
        ));
    }
    serde_json::from_slice(raw).map_err(|e| ProtoError::InvalidFieldsV1(e.to_string()))
}

/// Converts Go string bytes the way encoding/json writes them: each byte
/// that does not start a valid UTF-8 sequence becomes one U+FFFD.
fn go_string(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(error) => {
                let (valid, invalid) = rest.split_at(error.valid_up_to());
                out.push_str(&String::from_utf8_lossy(valid));
                out.push('\u{FFFD}');
                rest = invalid.get(1..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A minimal protobuf writer that lays fields out the way Go's generated
    /// marshalers do, so test bodies look like what kubectl sends.
    mod enc {
        pub fn varint(mut v: u64, out: &mut Vec<u8>) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }

        pub fn tag(field: u32, wire_type: u8, out: &mut Vec<u8>) {
            varint((u64::from(field) << 3) | u64::from(wire_type), out);
        }

        pub fn bytes(field: u32, payload: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            tag(field, 2, &mut out);
            varint(payload.len() as u64, &mut out);
            out.extend_from_slice(payload);
            out
        }

        pub fn string(field: u32, s: &str) -> Vec<u8> {
            bytes(field, s.as_bytes())
        }

        /// Negative int32/int64 values are sign-extended to 10 bytes.
        pub fn int(field: u32, v: i64) -> Vec<u8> {
            let mut out = Vec::new();
            tag(field, 0, &mut out);
            varint(v as u64, &mut out);
            out
        }

        pub fn boolean(field: u32, b: bool) -> Vec<u8> {
            int(field, i64::from(b))
        }

        pub fn message(field: u32, parts: &[Vec<u8>]) -> Vec<u8> {
            bytes(field, &parts.concat())
        }

        /// Go writes map entries sorted by key.
        pub fn string_map(field: u32, entries: &[(&str, &str)]) -> Vec<u8> {
            let mut sorted = entries.to_vec();
            sorted.sort();
            sorted
                .iter()
                .flat_map(|(k, v)| message(field, &[string(1, k), string(2, v)]))
                .collect()
        }

        pub fn time(field: u32, seconds: i64) -> Vec<u8> {
            message(field, &[int(1, seconds)])
        }

        pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
            let mut out = b"k8s\0".to_vec();
            out.extend(message(1, &[string(1, api_version), string(2, kind)]));
            out.extend(bytes(2, raw));
            out.extend(string(3, ""));
            out.extend(string(4, ""));
            out
        }

        /// ObjectMeta as Go marshals it: every value-typed field is written
        /// even when empty, and creationTimestamp is an empty message.
        pub fn object_meta(name: &str, namespace: &str, extra: &[Vec<u8>]) -> Vec<u8> {
            let mut parts = vec![
                string(1, name),
                string(2, ""),
                string(3, namespace),
                string(4, ""),
                string(5, ""),
                string(6, ""),
                int(7, 0),
                message(8, &[]),
            ];
            parts.extend_from_slice(extra);
            message(1, &parts)
        }

        pub fn int_or_string_int(field: u32, v: i32) -> Vec<u8> {
            message(field, &[int(1, 0), int(2, i64::from(v)), string(3, "")])
        }

        pub fn int_or_string_str(field: u32, v: &str) -> Vec<u8> {
            message(field, &[int(1, 1), int(2, 0), string(3, v)])
        }

        pub fn service_port(name: &str, port: i32, target: Vec<u8>, node_port: i32) -> Vec<u8> {
            message(
                1,
                &[
                    string(1, name),
                    string(2, "TCP"),
                    int(3, i64::from(port)),
                    target,
                    int(5, i64::from(node_port)),
                ],
            )
        }

        /// ServiceSpec's always-written value fields after ports/selector.
        pub fn service_spec_scalars(cluster_ip: &str, ty: &str) -> Vec<Vec<u8>> {
            vec![
                string(3, cluster_ip),
                string(4, ty),
                string(7, ""),
                string(8, ""),
                string(10, ""),
                string(11, ""),
                int(12, 0),
                boolean(13, false),
            ]
        }

        pub fn empty_service_status() -> Vec<u8> {
            message(3, &[message(1, &[])])
        }
    }

    fn decode_ok(body: &[u8]) -> Value {
        match decode(body) {
            Ok(v) => v,
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    /// Compares serialized text so key order is checked too.
    fn assert_json(actual: &Value, expected: &Value) {
        assert_eq!(
            serde_json::to_string_pretty(actual).unwrap(),
            serde_json::to_string_pretty(expected).unwrap()
        );
    }

    fn namespace_foo() -> Vec<u8> {
        let raw = [
            enc::object_meta("foo", "", &[]),
            enc::message(2, &[]),
            enc::message(3, &[enc::string(1, "")]),
        ]
        .concat();
        enc::envelope("v1", "Namespace", &raw)
    }

    fn service_web() -> Vec<u8> {
        let mut spec = vec![
            enc::service_port("80-8080", 80, enc::int_or_string_int(4, 8080), 0),
            enc::string_map(2, &[("app", "web")]),
        ];
        spec.extend(enc::service_spec_scalars("", "ClusterIP"));
        let raw = [
            enc::object_meta("web", "", &[enc::string_map(11, &[("app", "web")])]),
            enc::message(2, &spec),
            enc::empty_service_status(),
        ]
        .concat();
        enc::envelope("v1", "Service", &raw)
    }

    #[test]
    fn namespace_like_kubectl() {
        assert_json(
            &decode_ok(&namespace_foo()),
            &json!({
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {"name": "foo"},
                "spec": {},
                "status": {}
            }),
        );
    }

    #[test]
    fn clusterip_service_like_kubectl() {
        assert_json(
            &decode_ok(&service_web()),
            &json!({
                "kind": "Service",
                "apiVersion": "v1",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                    "selector": {"app": "web"},
                    "type": "ClusterIP"
                },
                "status": {"loadBalancer": {}}
            }),
        );
    }

    #[test]
    fn encoder_reproduces_kubectl_bytes() {
        assert_eq!(
            namespace_foo(),
            include_bytes!("../testdata/kubectl-1.37.1-namespace_foo.pb")
        );
        assert_eq!(
            service_web(),
            include_bytes!("../testdata/kubectl-1.37.1-service_web.pb")
        );
    }

    #[test]
    fn real_kubectl_captures_match_kubectl_json() {
        // Each .pb is the body kubectl 1.37.1 POSTed; each .json is what the
        // same command printed with --dry-run=client -o json.
        let fixtures: [(&[u8], &str); 6] = [
            (
                include_bytes!("../testdata/kubectl-1.37.1-namespace_foo.pb"),
                include_str!("../testdata/kubectl-1.37.1-namespace_foo.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-service_web.pb"),
                include_str!("../testdata/kubectl-1.37.1-service_web.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-service_nodeport.pb"),
                include_str!("../testdata/kubectl-1.37.1-service_nodeport.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-service_lb.pb"),
                include_str!("../testdata/kubectl-1.37.1-service_lb.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-service_extname.pb"),
                include_str!("../testdata/kubectl-1.37.1-service_extname.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-service_headless.pb"),
                include_str!("../testdata/kubectl-1.37.1-service_headless.json"),
            ),
        ];
        for (body, expected) in fixtures {
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_json(&decode_ok(body), &expected);
        }
    }

    #[test]
    fn random_objects_match_what_kubectl_decoded_from_them() {
        // Randomized bodies (odd strings, invalid UTF-8, extreme times,
        // unknown fields, merged occurrences) that kubectl 1.37.1 decoded
        // with Kubernetes' generated Go code and printed with -o json.
        let fixtures: [(&[u8], &str); 6] = [
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-namespace-1.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-namespace-1.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-namespace-2.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-namespace-2.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-service-1.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-service-1.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-service-2.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-service-2.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-event-1.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-event-1.json"),
            ),
            (
                include_bytes!("../testdata/kubectl-1.37.1-printed-event-2.pb"),
                include_str!("../testdata/kubectl-1.37.1-printed-event-2.json"),
            ),
        ];
        for (body, expected) in fixtures {
            let expected: Value = serde_json::from_str(expected).unwrap();
            assert_json(&decode_ok(body), &expected);
        }
    }

    #[test]
    fn ipv6_single_stack_service() {
        let mut spec = vec![
            enc::service_port("https", 443, enc::int_or_string_str(4, "https"), 0),
            enc::string_map(2, &[("app", "api"), ("tier", "backend")]),
        ];
        spec.extend(enc::service_spec_scalars("fd00:10:96::a", "ClusterIP"));
        spec.extend([
            enc::string(17, "SingleStack"),
            enc::string(18, "fd00:10:96::a"),
            enc::string(19, "IPv6"),
            enc::string(22, "Cluster"),
        ]);
        let raw = [
            enc::object_meta("api", "prod", &[]),
            enc::message(2, &spec),
            enc::empty_service_status(),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Service", &raw)),
            &json!({
                "kind": "Service",
                "apiVersion": "v1",
                "metadata": {"name": "api", "namespace": "prod"},
                "spec": {
                    "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": "https"}],
                    "selector": {"app": "api", "tier": "backend"},
                    "clusterIP": "fd00:10:96::a",
                    "clusterIPs": ["fd00:10:96::a"],
                    "type": "ClusterIP",
                    "ipFamilies": ["IPv6"],
                    "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster"
                },
                "status": {"loadBalancer": {}}
            }),
        );
    }

    #[test]
    fn service_with_every_spec_and_status_field() {
        let mut spec = vec![
            enc::service_port("http", 80, enc::int_or_string_int(4, 8080), 30080),
            enc::message(
                1,
                &[
                    enc::string(1, "dns"),
                    enc::string(2, "UDP"),
                    enc::int(3, 53),
                    enc::message(4, &[]),
                    enc::int(5, 0),
                    enc::string(6, "dns"),
                ],
            ),
            enc::string_map(2, &[("b", "2"), ("a", "1")]),
            enc::string(3, "10.96.0.10"),
            enc::string(4, "LoadBalancer"),
            enc::string(5, "203.0.113.1"),
            enc::string(5, "203.0.113.2"),
            enc::string(7, "ClientIP"),
            enc::string(8, "198.51.100.7"),
            enc::string(9, "10.0.0.0/8"),
            enc::string(10, ""),
            enc::string(11, "Local"),
            enc::int(12, 32000),
            enc::boolean(13, true),
            enc::message(14, &[enc::message(1, &[enc::int(1, 10800)])]),
            enc::string(17, "PreferDualStack"),
            enc::string(18, "10.96.0.10"),
            enc::string(18, "fd00::10"),
            enc::string(19, "IPv4"),
            enc::string(19, "IPv6"),
            enc::boolean(20, false),
            enc::string(21, ""),
            enc::string(22, "Local"),
            enc::string(23, "PreferClose"),
        ];
        spec.push(enc::int(99, 7)); // unknown field from a newer client
        let status = enc::message(
            3,
            &[
                enc::message(
                    1,
                    &[enc::message(
                        1,
                        &[
                            enc::string(1, "198.51.100.7"),
                            enc::string(2, ""),
                            enc::string(3, "VIP"),
                            enc::message(
                                4,
                                &[
                                    enc::int(1, 80),
                                    enc::string(2, "TCP"),
                                    enc::string(3, "Pending"),
                                ],
                            ),
                        ],
                    )],
                ),
                enc::message(
                    2,
                    &[
                        enc::string(1, "Ready"),
                        enc::string(2, "True"),
                        enc::int(3, 0),
                        enc::time(4, 1_767_323_045),
                        enc::string(5, "Provisioned"),
                        enc::string(6, ""),
                    ],
                ),
            ],
        );
        let raw = [
            enc::object_meta("lb", "default", &[]),
            enc::message(2, &spec),
            status,
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Service", &raw)),
            &json!({
                "kind": "Service",
                "apiVersion": "v1",
                "metadata": {"name": "lb", "namespace": "default"},
                "spec": {
                    "ports": [
                        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080},
                        {"name": "dns", "protocol": "UDP", "appProtocol": "dns", "port": 53, "targetPort": 0}
                    ],
                    "selector": {"a": "1", "b": "2"},
                    "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10", "fd00::10"],
                    "type": "LoadBalancer",
                    "externalIPs": ["203.0.113.1", "203.0.113.2"],
                    "sessionAffinity": "ClientIP",
                    "loadBalancerIP": "198.51.100.7",
                    "loadBalancerSourceRanges": ["10.0.0.0/8"],
                    "externalTrafficPolicy": "Local",
                    "healthCheckNodePort": 32000,
                    "publishNotReadyAddresses": true,
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
                    "ipFamilies": ["IPv4", "IPv6"],
                    "ipFamilyPolicy": "PreferDualStack",
                    "allocateLoadBalancerNodePorts": false,
                    "loadBalancerClass": "",
                    "internalTrafficPolicy": "Local",
                    "trafficDistribution": "PreferClose"
                },
                "status": {
                    "loadBalancer": {
                        "ingress": [{
                            "ip": "198.51.100.7",
                            "ipMode": "VIP",
                            "ports": [{"port": 80, "protocol": "TCP", "error": "Pending"}]
                        }]
                    },
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "lastTransitionTime": "2026-01-02T03:04:05Z",
                        "reason": "Provisioned",
                        "message": ""
                    }]
                }
            }),
        );
    }

    #[test]
    fn object_meta_every_field() {
        let fields_v1 = br#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#;
        let meta = enc::object_meta(
            "web",
            "default",
            &[
                enc::time(9, 1_767_225_599),
                enc::int(10, 0),
                enc::string_map(11, &[("z", "last"), ("app", "web")]),
                enc::string_map(12, &[("note", "")]),
                enc::message(
                    13,
                    &[
                        enc::string(1, "ReplicaSet"),
                        enc::string(3, "web-abc"),
                        enc::string(4, "1234"),
                        enc::string(5, "apps/v1"),
                        enc::boolean(6, true),
                        enc::boolean(7, false),
                    ],
                ),
                enc::string(14, "kubernetes.io/pv-protection"),
                enc::string(14, "example.com/cleanup"),
                enc::message(
                    17,
                    &[
                        enc::string(1, "kubectl-create"),
                        enc::string(2, "Update"),
                        enc::string(3, "v1"),
                        enc::time(4, 1_767_323_045),
                        enc::string(6, "FieldsV1"),
                        enc::message(7, &[enc::bytes(1, fields_v1)]),
                        enc::string(8, ""),
                    ],
                ),
            ],
        );
        // Go fills the leading scalars from the first message occurrence;
        // overwrite a few to mirror a server-populated object.
        let meta_tail = enc::message(
            1,
            &[
                enc::string(2, "web-"),
                enc::string(4, "/api/v1/namespaces/default/services/web"),
                enc::string(5, "7d6f1c52-0000-4000-8000-000000000001"),
                enc::string(6, "42"),
                enc::int(7, 3),
                enc::time(8, 1_767_323_045),
            ],
        );
        let raw = [meta, meta_tail].concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Namespace", &raw)),
            &json!({
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": "web",
                    "generateName": "web-",
                    "namespace": "default",
                    "selfLink": "/api/v1/namespaces/default/services/web",
                    "uid": "7d6f1c52-0000-4000-8000-000000000001",
                    "resourceVersion": "42",
                    "generation": 3,
                    "creationTimestamp": "2026-01-02T03:04:05Z",
                    "deletionTimestamp": "2025-12-31T23:59:59Z",
                    "deletionGracePeriodSeconds": 0,
                    "labels": {"app": "web", "z": "last"},
                    "annotations": {"note": ""},
                    "ownerReferences": [{
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "web-abc",
                        "uid": "1234",
                        "controller": true,
                        "blockOwnerDeletion": false
                    }],
                    "finalizers": ["kubernetes.io/pv-protection", "example.com/cleanup"],
                    "managedFields": [{
                        "manager": "kubectl-create",
                        "operation": "Update",
                        "apiVersion": "v1",
                        "time": "2026-01-02T03:04:05Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
                    }]
                },
                "spec": {},
                "status": {}
            }),
        );
    }

    #[test]
    fn delete_options_pointer_fields_keep_zero_values() {
        let raw = [
            enc::int(1, 0),
            enc::message(2, &[enc::string(1, "uid-1")]),
            enc::boolean(3, false),
            enc::string(4, "Foreground"),
            enc::string(5, "All"),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("meta.k8s.io/v1", "DeleteOptions", &raw)),
            &json!({
                "kind": "DeleteOptions",
                "apiVersion": "meta.k8s.io/v1",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "uid-1"},
                "orphanDependents": false,
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            }),
        );
        assert_json(
            &decode_ok(&enc::envelope("v1", "DeleteOptions", &[])),
            &json!({"kind": "DeleteOptions", "apiVersion": "v1"}),
        );
    }

    #[test]
    fn node_with_status() {
        let spec = enc::message(
            2,
            &[
                enc::string(1, "10.244.1.0/24"),
                enc::string(2, ""),
                enc::string(3, "kind://docker/kind/worker"),
                enc::boolean(4, true),
                enc::message(
                    5,
                    &[
                        enc::string(1, "node.kubernetes.io/unschedulable"),
                        enc::string(2, ""),
                        enc::string(3, "NoSchedule"),
                        enc::time(4, 1_767_323_045),
                    ],
                ),
                enc::string(7, "10.244.1.0/24"),
                enc::string(7, "fd00:10:244:1::/64"),
            ],
        );
        let quantity = |k: &str, v: &str| {
            enc::message(
                1,
                &[enc::string(1, k), enc::message(2, &[enc::string(1, v)])],
            )
        };
        let mut status_parts = vec![
            quantity("memory", "8Gi"),
            quantity("cpu", "4"),
            quantity("pods", "110"),
        ];
        status_parts.push(enc::message(
            2,
            &[
                enc::string(1, "cpu"),
                enc::message(2, &[enc::string(1, "3500m")]),
            ],
        ));
        status_parts.push(enc::message(2, &[enc::string(1, "hugepages-2Mi")]));
        status_parts.extend([
            enc::string(3, ""),
            enc::message(
                4,
                &[
                    enc::string(1, "Ready"),
                    enc::string(2, "True"),
                    enc::time(3, 1_767_323_045),
                    enc::message(4, &[]),
                    enc::string(5, "KubeletReady"),
                    enc::string(6, "kubelet is posting ready status"),
                ],
            ),
            enc::message(
                5,
                &[enc::string(1, "InternalIP"), enc::string(2, "172.18.0.2")],
            ),
            enc::message(5, &[enc::string(1, "Hostname"), enc::string(2, "worker")]),
            enc::message(6, &[enc::message(1, &[enc::int(1, 10250)])]),
            enc::message(
                7,
                &[
                    enc::string(1, "m"),
                    enc::string(2, "s"),
                    enc::string(3, "b"),
                    enc::string(4, "6.8.0"),
                    enc::string(5, "Debian GNU/Linux 12"),
                    enc::string(6, "containerd://2.0.0"),
                    enc::string(7, "v1.37.1"),
                    enc::string(8, ""),
                    enc::string(9, "linux"),
                    enc::string(10, "amd64"),
                    enc::message(11, &[enc::int(1, 0)]),
                ],
            ),
            enc::message(
                8,
                &[
                    enc::string(1, "registry.k8s.io/pause:3.10"),
                    enc::int(2, 320_368),
                ],
            ),
            enc::message(13, &[enc::boolean(1, true)]),
        ]);
        let raw = [
            enc::object_meta("worker", "", &[]),
            spec,
            enc::message(3, &status_parts),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Node", &raw)),
            &json!({
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {"name": "worker"},
                "spec": {
                    "podCIDR": "10.244.1.0/24",
                    "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"],
                    "providerID": "kind://docker/kind/worker",
                    "unschedulable": true,
                    "taints": [{
                        "key": "node.kubernetes.io/unschedulable",
                        "effect": "NoSchedule",
                        "timeAdded": "2026-01-02T03:04:05Z"
                    }]
                },
                "status": {
                    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "allocatable": {"cpu": "3500m", "hugepages-2Mi": "0"},
                    "conditions": [{
                        "type": "Ready",
                        "status": "True",
                        "lastHeartbeatTime": "2026-01-02T03:04:05Z",
                        "lastTransitionTime": null,
                        "reason": "KubeletReady",
                        "message": "kubelet is posting ready status"
                    }],
                    "addresses": [
                        {"type": "InternalIP", "address": "172.18.0.2"},
                        {"type": "Hostname", "address": "worker"}
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {
                        "machineID": "m",
                        "systemUUID": "s",
                        "bootID": "b",
                        "kernelVersion": "6.8.0",
                        "osImage": "Debian GNU/Linux 12",
                        "containerRuntimeVersion": "containerd://2.0.0",
                        "kubeletVersion": "v1.37.1",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "swap": {"capacity": 0}
                    },
                    "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320_368}],
                    "features": {"supplementalGroupsPolicy": true}
                }
            }),
        );
    }

    #[test]
    fn empty_node_has_go_zero_values() {
        assert_json(
            &decode_ok(&enc::envelope("v1", "Node", &[])),
            &json!({
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {},
                "spec": {},
                "status": {
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
                    "nodeInfo": {
                        "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                        "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                        "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""
                    }
                }
            }),
        );
    }

    #[test]
    fn event_with_micro_time() {
        let raw = [
            enc::object_meta("web.1", "default", &[]),
            enc::message(
                2,
                &[
                    enc::string(1, "Service"),
                    enc::string(3, "web"),
                    enc::string(2, "default"),
                ],
            ),
            enc::string(3, "Created"),
            enc::message(5, &[]),
            enc::message(6, &[]),
            enc::time(7, 1_767_323_045),
            enc::int(8, 2),
            enc::message(10, &[enc::int(1, 1_767_323_045), enc::int(2, 123_456_789)]),
            enc::message(11, &[enc::int(1, 2), enc::message(2, &[])]),
            enc::string(14, "kubelet"),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Event", &raw)),
            &json!({
                "kind": "Event",
                "apiVersion": "v1",
                "metadata": {"name": "web.1", "namespace": "default"},
                "involvedObject": {"kind": "Service", "namespace": "default", "name": "web"},
                "reason": "Created",
                "source": {},
                "firstTimestamp": null,
                "lastTimestamp": "2026-01-02T03:04:05Z",
                "count": 2,
                "eventTime": "2026-01-02T03:04:05.123456Z",
                "series": {"count": 2, "lastObservedTime": null},
                "reportingComponent": "kubelet",
                "reportingInstance": ""
            }),
        );
    }

    #[test]
    fn endpoint_slice_and_endpoints() {
        let raw = [
            enc::object_meta("web-abcde", "default", &[]),
            enc::message(
                2,
                &[
                    enc::string(1, "10.244.1.5"),
                    enc::message(2, &[enc::boolean(1, true), enc::boolean(3, false)]),
                    enc::message(4, &[enc::string(1, "Pod"), enc::string(3, "web-0")]),
                    enc::string(6, "worker"),
                    enc::message(8, &[enc::message(1, &[enc::string(1, "zone-a")])]),
                ],
            ),
            enc::string(4, "IPv4"),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("discovery.k8s.io/v1", "EndpointSlice", &raw)),
            &json!({
                "kind": "EndpointSlice",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": {"name": "web-abcde", "namespace": "default"},
                "addressType": "IPv4",
                "endpoints": [{
                    "addresses": ["10.244.1.5"],
                    "conditions": {"ready": true, "terminating": false},
                    "targetRef": {"kind": "Pod", "name": "web-0"},
                    "nodeName": "worker",
                    "hints": {"forZones": [{"name": "zone-a"}]}
                }],
                "ports": null
            }),
        );

        let raw = [
            enc::object_meta("web", "default", &[]),
            enc::message(
                2,
                &[
                    enc::message(1, &[enc::string(1, "10.244.1.5"), enc::string(3, "")]),
                    enc::message(
                        3,
                        &[enc::string(1, ""), enc::int(2, 8080), enc::string(3, "TCP")],
                    ),
                ],
            ),
        ]
        .concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Endpoints", &raw)),
            &json!({
                "kind": "Endpoints",
                "apiVersion": "v1",
                "metadata": {"name": "web", "namespace": "default"},
                "subsets": [{
                    "addresses": [{"ip": "10.244.1.5"}],
                    "ports": [{"port": 8080, "protocol": "TCP"}]
                }]
            }),
        );
    }

    #[test]
    fn repeated_message_occurrences_merge_like_go() {
        // A second `spec` occurrence merges into the first: scalars are
        // replaced, repeated fields and maps accumulate.
        let raw = [
            enc::message(
                2,
                &[
                    enc::string(3, "10.0.0.1"),
                    enc::string_map(2, &[("a", "1")]),
                ],
            ),
            enc::message(
                2,
                &[
                    enc::string(3, "10.0.0.2"),
                    enc::string_map(2, &[("a", "2"), ("b", "3")]),
                    enc::string(5, "1.1.1.1"),
                ],
            ),
            enc::message(2, &[enc::string(5, "2.2.2.2")]),
        ]
        .concat();
        let v = decode_ok(&enc::envelope("v1", "Service", &raw));
        assert_json(
            &v["spec"],
            &json!({
                "selector": {"a": "2", "b": "3"},
                "clusterIP": "10.0.0.2",
                "externalIPs": ["1.1.1.1", "2.2.2.2"]
            }),
        );
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut unknown = Vec::new();
        enc::tag(40, 1, &mut unknown);
        unknown.extend([1, 2, 3, 4, 5, 6, 7, 8]);
        enc::tag(41, 5, &mut unknown);
        unknown.extend([1, 2, 3, 4]);
        enc::tag(42, 3, &mut unknown); // group containing a nested group
        enc::tag(1, 0, &mut unknown);
        unknown.push(5);
        enc::tag(2, 3, &mut unknown);
        enc::tag(2, 4, &mut unknown);
        enc::tag(42, 4, &mut unknown);
        unknown.extend(enc::int(43, -1));
        unknown.extend(enc::string(44, "later"));
        let raw = [unknown.clone(), enc::object_meta("foo", "", &[unknown])].concat();
        assert_json(
            &decode_ok(&enc::envelope("v1", "Namespace", &raw)),
            &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "foo"}, "spec": {}, "status": {}}),
        );
    }

    #[test]
    fn negative_and_truncated_integers_follow_go() {
        // int32 fields keep the low 32 bits of the varint.
        let raw = [enc::message(
            2,
            &[
                enc::message(1, &[enc::int(3, -1), enc::int(5, 0x1_0000_0050)]),
                enc::int(12, -5),
            ],
        )]
        .concat();
        let v = decode_ok(&enc::envelope("v1", "Service", &raw));
        assert_json(
            &v["spec"],
            &json!({"ports": [{"port": -1, "targetPort": 0, "nodePort": 80}], "healthCheckNodePort": -5}),
        );
    }

    #[test]
    fn api_version_is_normalized_like_parse_group_version() {
        let v = decode_ok(&enc::envelope("/v1", "Namespace", &[]));
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(
            decode(&enc::envelope("", "Namespace", &[])),
            Err(ProtoError::MissingApiVersion(String::new()))
        );
        assert_eq!(
            decode(&enc::envelope("a/b/c", "Namespace", &[])),
            Err(ProtoError::MissingApiVersion("a/b/c".into()))
        );
        assert_eq!(
            decode(&enc::envelope("apps/", "Namespace", &[])),
            Err(ProtoError::MissingApiVersion("apps/".into()))
        );
    }

    #[test]
    fn time_formatting() {
        let t = |seconds: i64| {
            let body = enc::time(1, seconds);
            let mut r = Reader::new(&body, "test");
            let _ = r.tag().unwrap();
            let part = r.length_delimited().unwrap();
            render_time(Ty::Time, &[part], 0).unwrap()
        };
        assert_eq!(t(1_767_323_045), json!("2026-01-02T03:04:05Z"));
        assert_eq!(t(0), json!("1970-01-01T00:00:00Z"));
        assert_eq!(t(951_825_600), json!("2000-02-29T12:00:00Z"));
        assert_eq!(t(253_402_300_799), json!("9999-12-31T23:59:59Z"));
        assert_eq!(t(253_402_300_800), json!("10000-01-01T00:00:00Z"));
        assert_eq!(t(-62_167_219_201), json!("-0001-12-31T23:59:59Z"));
        // Go's zero time is null even when spelled out on the wire.
        assert_eq!(t(GO_ZERO_TIME_UNIX), Value::Null);
        assert_eq!(t(GO_ZERO_TIME_UNIX + 1), json!("0001-01-01T00:00:01Z"));
        assert_eq!(t(i64::MIN).as_str().map(|s| s.ends_with('Z')), Some(true));
        assert_eq!(t(i64::MAX).as_str().map(|s| s.ends_with('Z')), Some(true));
        // metav1.Time drops nanos entirely; MicroTime truncates to micros.
        let with_nanos = [enc::int(1, 10), enc::int(2, 999_999_999)].concat();
        assert_eq!(
            render_time(Ty::Time, &[&with_nanos], 0).unwrap(),
            json!("1970-01-01T00:00:10Z")
        );
        assert_eq!(
            render_time(Ty::MicroTime, &[&with_nanos], 0).unwrap(),
            json!("1970-01-01T00:00:10.999999Z")
        );
        let negative_nanos = [enc::int(1, 10), enc::int(2, -1_500)].concat();
        assert_eq!(
            render_time(Ty::MicroTime, &[&negative_nanos], 0).unwrap(),
            json!("1970-01-01T00:00:09.999999Z")
        );
        // Only the last occurrence of a Time counts.
        let first = enc::int(1, 10);
        assert_eq!(
            render_time(Ty::Time, &[&first, &[]], 0).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_per_byte_like_encoding_json() {
        assert_eq!(go_string(b"ok"), "ok");
        assert_eq!(go_string(b"a\xffb"), "a\u{FFFD}b");
        // A truncated 3-byte sequence is two bad bytes, hence two U+FFFD.
        assert_eq!(go_string(b"\xe2\x82x"), "\u{FFFD}\u{FFFD}x");
        assert_eq!(go_string("é".as_bytes()), "é");
    }

    #[test]
    fn fields_v1_forms() {
        assert_eq!(fields_v1_value(b""), Ok(Value::Null));
        assert_eq!(fields_v1_value(b" null"), Ok(Value::Null));
        assert_eq!(fields_v1_value(b"{\"f:a\":{}}"), Ok(json!({"f:a": {}})));
        assert!(matches!(
            fields_v1_value(&[0xa1, 0x61, 0x61, 0xa0]),
            Err(ProtoError::InvalidFieldsV1(_))
        ));
        assert!(matches!(
            fields_v1_value(b"{"),
            Err(ProtoError::InvalidFieldsV1(_))
        ));
    }

    #[test]
    fn int_or_string_and_quantity_errors() {
        let raw = enc::message(
            2,
            &[enc::message(
                1,
                &[enc::int(3, 80), enc::message(4, &[enc::int(1, 2)])],
            )],
        );
        assert_eq!(
            decode(&enc::envelope("v1", "Service", &raw)),
            Err(ProtoError::InvalidIntOrString(2))
        );
        let raw = enc::message(
            3,
            &[enc::message(
                1,
                &[
                    enc::string(1, "cpu"),
                    enc::message(2, &[enc::string(1, "")]),
                ],
            )],
        );
        assert_eq!(
            decode(&enc::envelope("v1", "Node", &raw)),
            Err(ProtoError::EmptyQuantity)
        );
    }

    #[test]
    fn envelope_errors() {
        assert_eq!(decode(b""), Err(ProtoError::EmptyBody));
        assert_eq!(decode(b"k8s\0"), Err(ProtoError::EmptyBody));
        assert_eq!(
            decode(b"{\"kind\":\"Namespace\"}"),
            Err(ProtoError::MissingMagic)
        );
        assert_eq!(decode(b"k8s"), Err(ProtoError::MissingMagic));
        assert_eq!(decode(b"k8s\x01\x0a\x00"), Err(ProtoError::MissingMagic));
        assert_eq!(
            decode(&enc::envelope("v1", "", &[])),
            Err(ProtoError::MissingKind)
        );
        assert_eq!(
            decode(&enc::envelope("v1", "Pod", &[])),
            Err(ProtoError::UnsupportedKind {
                api_version: "v1".into(),
                kind: "Pod".into()
            })
        );
        assert_eq!(
            decode(&enc::envelope("apps/v1", "Service", &[])),
            Err(ProtoError::UnsupportedKind {
                api_version: "apps/v1".into(),
                kind: "Service".into()
            })
        );
        let mut gzip = namespace_foo();
        gzip.extend(enc::string(3, "gzip"));
        assert_eq!(
            decode(&gzip),
            Err(ProtoError::UnsupportedContentEncoding("gzip".into()))
        );
    }

    #[test]
    fn wire_errors() {
        // Truncated varint: a continuation bit with nothing after it.
        assert_eq!(
            decode(b"k8s\0\x0a\x80"),
            Err(ProtoError::Truncated { message: "Unknown" })
        );
        // Truncated tag.
        assert_eq!(
            decode(b"k8s\0\x80"),
            Err(ProtoError::Truncated { message: "Unknown" })
        );
        // Length running past the end.
        assert_eq!(
            decode(b"k8s\0\x12\x05ab"),
            Err(ProtoError::Truncated { message: "Unknown" })
        );
        // A length that is negative as a Go int.
        let mut huge = b"k8s\0\x12".to_vec();
        enc::varint(u64::MAX, &mut huge);
        assert_eq!(
            decode(&huge),
            Err(ProtoError::InvalidLength { message: "Unknown" })
        );
        // Eleven-byte varint.
        let mut overflow = b"k8s\0\x28".to_vec();
        overflow.extend([0xff; 10]);
        overflow.push(0x01);
        assert_eq!(
            decode(&overflow),
            Err(ProtoError::VarintOverflow { message: "Unknown" })
        );
        // Field number 0.
        assert_eq!(
            decode(b"k8s\0\x00\x00"),
            Err(ProtoError::IllegalTag {
                message: "Unknown",
                field: 0,
                wire_type: 0
            })
        );
        // Stray end-group, and the non-existent wire types.
        assert_eq!(
            decode(b"k8s\0\x0c"),
            Err(ProtoError::UnexpectedEndGroup { message: "Unknown" })
        );
        assert_eq!(
            decode(b"k8s\0\x2e"),
            Err(ProtoError::IllegalWireType {
                message: "Unknown",
                wire_type: 6
            })
        );
        // A group that never ends.
        assert_eq!(
            decode(b"k8s\0\x2b\x08\x01"),
            Err(ProtoError::Truncated { message: "Unknown" })
        );
        // Wrong wire type for known fields: a varint where ServicePort.name
        // (a string) belongs, and a string where ServicePort.port belongs.
        let raw = enc::message(2, &[enc::message(1, &[enc::int(1, 5)])]);
        assert_eq!(
            decode(&enc::envelope("v1", "Service", &raw)),
            Err(ProtoError::WrongWireType {
                message: "ServicePort",
                field: "name",
                wire_type: 0
            })
        );
        let raw = enc::message(2, &[enc::message(1, &[enc::string(3, "80")])]);
        assert_eq!(
            decode(&enc::envelope("v1", "Service", &raw)),
            Err(ProtoError::WrongWireType {
                message: "ServicePort",
                field: "port",
                wire_type: 2
            })
        );
        // Truncation inside a nested message is reported against it.
        let mut raw = enc::message(1, &[]);
        raw.extend(b"\x12\x03\x0a\x05a");
        assert_eq!(
            decode(&enc::envelope("v1", "Namespace", &raw)),
            Err(ProtoError::Truncated {
                message: "NamespaceSpec"
            })
        );
    }

    static PACKED_TEST: Message = Message {
        name: "PackedTest",
        fields: &[
            list(1, "ints", I32, OmitEmpty),
            list(2, "flags", Bool, Required),
            list(3, "blobs", Bytes, OmitEmpty),
            map(4, "counts", I64, OmitEmpty),
        ],
    };

    static RECURSIVE_TEST: Message = Message {
        name: "RecursiveTest",
        fields: &[one(1, "child", Msg(&RECURSIVE_TEST), Pointer)],
    };

    fn render_test(message: &'static Message, bytes: &[u8]) -> Result<Value, ProtoError> {
        render(Ty::Msg(message), Raw::Parts(vec![bytes]), 0)
    }

    #[test]
    fn packed_and_unpacked_repeated_scalars() {
        let mut packed = Vec::new();
        for v in [1i64, -2, 300] {
            enc::varint(v as u64, &mut packed);
        }
        let body = [
            enc::int(1, 7),
            enc::bytes(1, &packed),
            enc::bytes(3, b"\x00\xff"),
            enc::message(4, &[enc::string(1, "x"), enc::int(2, -9)]),
            enc::message(4, &[enc::string(1, "a")]),
        ]
        .concat();
        assert_json(
            &render_test(&PACKED_TEST, &body).unwrap(),
            &json!({"ints": [7, 1, -2, 300], "flags": null, "blobs": ["AP8="], "counts": {"a": 0, "x": -9}}),
        );
        // A packed run whose last varint is cut off.
        let body = enc::bytes(1, &[0x80]);
        assert_eq!(
            render_test(&PACKED_TEST, &body),
            Err(ProtoError::Truncated {
                message: "PackedTest"
            })
        );
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let mut body = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            body = enc::message(1, &[body]);
        }
        assert_eq!(
            render_test(&RECURSIVE_TEST, &body),
            Err(ProtoError::TooDeep)
        );

        let mut body = Vec::new();
        for _ in 0..MAX_DEPTH - 1 {
            body = enc::message(1, &[body]);
        }
        assert!(render_test(&RECURSIVE_TEST, &body).is_ok());
    }

    #[test]
    fn deeply_nested_unknown_groups_do_not_recurse() {
        let mut raw = Vec::new();
        for _ in 0..100_000 {
            enc::tag(50, 3, &mut raw);
        }
        for _ in 0..100_000 {
            enc::tag(50, 4, &mut raw);
        }
        assert!(decode(&enc::envelope("v1", "Namespace", &raw)).is_ok());
    }

    #[test]
    fn content_type_detection() {
        assert!(is_protobuf_content_type(
            "application/vnd.kubernetes.protobuf"
        ));
        assert!(is_protobuf_content_type(
            "Application/VND.Kubernetes.Protobuf; charset=utf-8"
        ));
        assert!(!is_protobuf_content_type("application/json"));
        assert!(!is_protobuf_content_type(""));
    }

    /// xorshift64*: deterministic, dependency-free randomness for the
    /// structure-aware generator below.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn text(&mut self) -> String {
            let len = self.below(6) as usize;
            (0..len)
                .map(|_| (b'a' + self.below(26) as u8) as char)
                .collect()
        }
    }

    /// Encodes a random but well-formed instance of `message`: every known
    /// field gets a value of its declared type, mixed with unknown fields.
    fn random_message(message: &'static Message, rng: &mut Rng, depth: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rng.below(8) {
            if rng.below(10) == 0 {
                let number = 1000 + rng.below(100) as u32;
                match rng.below(4) {
                    0 => out.extend(enc::int(number, rng.next() as i64)),
                    1 => {
                        enc::tag(number, 1, &mut out);
                        out.extend(rng.next().to_le_bytes());
                    }
                    2 => out.extend(enc::string(number, &rng.text())),
                    _ => {
                        enc::tag(number, 5, &mut out);
                        out.extend((rng.next() as u32).to_le_bytes());
                    }
                }
                continue;
            }
            let Some(field) = message
                .fields
                .get(rng.below(message.fields.len() as u64) as usize)
            else {
                continue;
            };
            match field.card {
                Card::Map => {
                    let value = random_value(field.ty, 2, rng, depth);
                    out.extend(enc::message(
                        field.number,
                        &[enc::string(1, &rng.text()), value],
                    ));
                }
                _ => out.extend(random_value(field.ty, field.number, rng, depth)),
            }
        }
        out
    }

    fn random_value(ty: Ty, number: u32, rng: &mut Rng, depth: usize) -> Vec<u8> {
        match ty {
            Ty::Str => enc::string(number, &rng.text()),
            Ty::Bytes => enc::bytes(number, &rng.next().to_le_bytes()),
            Ty::I32 | Ty::I64 => enc::int(number, rng.next() as i64),
            Ty::Bool => enc::boolean(number, rng.below(2) == 1),
            Ty::Msg(inner) if depth < 5 => {
                enc::message(number, &[random_message(inner, rng, depth + 1)])
            }
            Ty::Msg(_) => enc::message(number, &[]),
            Ty::Time | Ty::MicroTime => enc::message(
                number,
                &[
                    enc::int(1, rng.next() as i64),
                    enc::int(2, rng.next() as i64),
                ],
            ),
            Ty::IntOrString => {
                if rng.below(2) == 0 {
                    enc::int_or_string_int(number, rng.next() as i32)
                } else {
                    enc::int_or_string_str(number, &rng.text())
                }
            }
            Ty::Quantity => enc::message(number, &[enc::string(1, "250m")]),
            Ty::FieldsV1 => enc::message(number, &[enc::bytes(1, br#"{"f:x":{}}"#)]),
        }
    }

    #[test]
    fn random_well_formed_objects_always_decode() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let entry = &KINDS[round % KINDS.len()];
            let raw = random_message(entry.message, &mut rng, 0);
            let api_version = match entry.gv {
                Gv::Exact("", v) => v.to_owned(),
                Gv::Exact(g, v) => format!("{g}/{v}"),
                Gv::Any => "v1".to_owned(),
            };
            let decoded = decode(&enc::envelope(&api_version, entry.kind, &raw));
            match decoded {
                Ok(Value::Object(object)) => assert_eq!(object["kind"], entry.kind),
                other => panic!("round {round}: {other:?} for {raw:02x?}"),
            }
        }
    }

    fn all_fixtures() -> Vec<Vec<u8>> {
        vec![
            include_bytes!("../testdata/kubectl-1.37.1-namespace_foo.pb").to_vec(),
            include_bytes!("../testdata/kubectl-1.37.1-service_web.pb").to_vec(),
            include_bytes!("../testdata/kubectl-1.37.1-service_lb.pb").to_vec(),
            namespace_foo(),
            service_web(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body);
            let mut prefixed = MAGIC.to_vec();
            prefixed.extend(&body);
            let _ = decode(&prefixed);
        }

        #[test]
        fn arbitrary_raw_for_every_kind_never_panics(
            kind in 0usize..KINDS.len(),
            raw in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let entry = &KINDS[kind];
            let api_version = match entry.gv {
                Gv::Exact("", v) => v.to_owned(),
                Gv::Exact(g, v) => format!("{g}/{v}"),
                Gv::Any => "v1".to_owned(),
            };
            let _ = decode(&enc::envelope(&api_version, entry.kind, &raw));
        }

        #[test]
        fn mutated_real_bodies_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut body = all_fixtures().swap_remove(which);
            for (at, byte) in edits {
                let at = at % body.len();
                body[at] = byte;
            }
            let _ = decode(&body);
            body.truncate(cut % (body.len() + 1));
            let _ = decode(&body);
        }
    }
}
