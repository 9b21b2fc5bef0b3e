//! The behaviour of each served kind (Kubernetes' "strategy"): decoding with defaults,
//! create/update preparation, validation, Table columns and selectable fields.
//!
//! Kinds are written against the typed `k8s-openapi` objects ([`TypedKind`]); the server talks
//! to them through the object-safe [`Kind`], which works on JSON values.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::decode::{TypeError, canonicalize};
use crate::error::FieldErrors;
use crate::resource::ResourceInfo;
use crate::schema::TypeSchema;
use crate::table::Column;

pub mod endpoints;
pub mod event;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;
pub mod service_ips;

/// A decoded request object.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The object as it will be stored: known fields only, defaults applied.
    pub value: Value,
    /// Paths of fields the type does not have (dropped).
    pub unknown: Vec<String>,
    /// Warnings to return to the client (`Warning` headers).
    pub warnings: Vec<String>,
    /// Fields outside the type that the kind accepts anyway and hands to the server's REST
    /// hooks (the legacy `spec.ipFamily` of Services).
    pub extra: serde_json::Map<String, Value>,
}

/// The object-safe face of a kind, used by the server.
pub trait Kind: Send + Sync + 'static {
    fn info(&self) -> &'static ResourceInfo;
    fn schema(&self) -> &'static TypeSchema;
    /// Decodes a request body into the stored form, applying v1 defaults.
    fn decode(&self, value: Value) -> Result<Decoded, TypeError>;
    /// Decodes without defaults: a server-side apply configuration is owned exactly as sent.
    fn normalize(&self, value: Value) -> Result<Decoded, TypeError>;
    /// Clears what users may not set on create and fills what the server owns.
    fn prepare_for_create(&self, obj: &mut Value);
    fn validate(&self, obj: &Value) -> FieldErrors;
    /// Keeps what an update of the main resource may not change (usually `status`).
    fn prepare_for_update(&self, new: &mut Value, old: &Value);
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors;
    /// Keeps what an update of the `status` subresource may not change.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value);
    fn validate_status_update(&self, new: &Value, old: &Value) -> FieldErrors;
    fn columns(&self) -> &'static [Column];
    /// The cells of the object's Table row, minus nothing: Age is computed against `now`.
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value>;
    /// Field selector names this kind supports.
    fn selectable_fields(&self) -> &'static [&'static str];
    fn field(&self, obj: &Value, name: &str) -> Option<String>;
    /// Registers the kind's OpenAPI schema and returns its definition name.
    fn openapi(&self, generator: &mut schemars::SchemaGenerator) -> String;
}

/// A kind written against its typed object.
pub trait TypedKind: Send + Sync + 'static {
    type Object: Serialize + DeserializeOwned + schemars::JsonSchema + Clone + Default;

    fn info(&self) -> &'static ResourceInfo;
    fn schema(&self) -> &'static TypeSchema;
    /// v1 defaulting (`SetDefaults_<Kind>`), applied on every decode.
    fn default(&self, _obj: &mut Self::Object) {}
    /// Takes fields outside the type out of the body before the typed decode, into `extra`.
    fn pre_decode(&self, _value: &mut Value, _extra: &mut serde_json::Map<String, Value>) {}
    fn prepare_for_create(&self, _obj: &mut Self::Object) {}
    fn validate(&self, obj: &Self::Object) -> FieldErrors;
    fn prepare_for_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}
    fn validate_update(&self, new: &Self::Object, old: &Self::Object) -> FieldErrors;
    fn prepare_for_status_update(&self, _new: &mut Self::Object, _old: &Self::Object) {}
    fn validate_status_update(&self, _new: &Self::Object, _old: &Self::Object) -> FieldErrors {
        Vec::new()
    }
    fn columns(&self) -> &'static [Column];
    fn cells(&self, obj: &Self::Object, raw: &Value, now: jiff::Timestamp) -> Vec<Value>;
    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "metadata.namespace"]
    }
    fn field(&self, obj: &Self::Object, raw: &Value, name: &str) -> Option<String> {
        let _ = obj;
        generic_field(raw, name)
    }
}

/// `metadata.name` and `metadata.namespace`, which every kind offers.
pub fn generic_field(raw: &Value, name: &str) -> Option<String> {
    match name {
        "metadata.name" => raw
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        "metadata.namespace" => Some(
            raw.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => None,
    }
}

fn typed<T: DeserializeOwned + Default>(v: &Value) -> T {
    // Values reaching the hooks have been decoded into `T` already (or were stored by us), so
    // this cannot fail for well-formed data; a stored object that no longer decodes is treated
    // as empty rather than crashing the request.
    serde_json::from_value(v.clone()).unwrap_or_default()
}

fn untyped<T: Serialize>(obj: &T, into: &mut Value) {
    if let Ok(v) = serde_json::to_value(obj) {
        *into = v;
    }
}

/// Re-attaches `apiVersion`/`kind`, which the typed round trip writes from the type itself.
fn keep_type_meta(value: &mut Value, info: &ResourceInfo) {
    if let Some(m) = value.as_object_mut() {
        m.insert("apiVersion".into(), info.api_version().into());
        m.insert("kind".into(), info.kind.into());
    }
}

impl<T: TypedKind> Kind for T {
    fn info(&self) -> &'static ResourceInfo {
        TypedKind::info(self)
    }
    fn schema(&self) -> &'static TypeSchema {
        TypedKind::schema(self)
    }
    fn decode(&self, mut value: Value) -> Result<Decoded, TypeError> {
        let mut extra = serde_json::Map::new();
        self.pre_decode(&mut value, &mut extra);
        let (mut obj, _, unknown) = canonicalize::<T::Object>(value)?;
        TypedKind::default(self, &mut obj);
        let mut value = serde_json::to_value(&obj).map_err(|e| TypeError {
            path: String::new(),
            message: e.to_string(),
        })?;
        keep_type_meta(&mut value, TypedKind::info(self));
        Ok(Decoded {
            value,
            unknown,
            warnings: Vec::new(),
            extra,
        })
    }
    fn normalize(&self, mut value: Value) -> Result<Decoded, TypeError> {
        let mut extra = serde_json::Map::new();
        self.pre_decode(&mut value, &mut extra);
        let (_, mut value, unknown) = canonicalize::<T::Object>(value)?;
        keep_type_meta(&mut value, TypedKind::info(self));
        Ok(Decoded {
            value,
            unknown,
            warnings: Vec::new(),
            extra,
        })
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        let mut o: T::Object = typed(obj);
        TypedKind::prepare_for_create(self, &mut o);
        untyped(&o, obj);
        keep_type_meta(obj, TypedKind::info(self));
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        TypedKind::validate(self, &typed(obj))
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        let mut n: T::Object = typed(new);
        TypedKind::prepare_for_update(self, &mut n, &typed(old));
        untyped(&n, new);
        keep_type_meta(new, TypedKind::info(self));
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        TypedKind::validate_update(self, &typed(new), &typed(old))
    }
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let mut n: T::Object = typed(new);
        TypedKind::prepare_for_status_update(self, &mut n, &typed(old));
        untyped(&n, new);
        keep_type_meta(new, TypedKind::info(self));
    }
    fn validate_status_update(&self, new: &Value, old: &Value) -> FieldErrors {
        TypedKind::validate_status_update(self, &typed(new), &typed(old))
    }
    fn columns(&self) -> &'static [Column] {
        TypedKind::columns(self)
    }
    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        TypedKind::cells(self, &typed(obj), obj, now)
    }
    fn selectable_fields(&self) -> &'static [&'static str] {
        TypedKind::selectable_fields(self)
    }
    fn field(&self, obj: &Value, name: &str) -> Option<String> {
        TypedKind::field(self, &typed(obj), obj, name)
    }
    fn openapi(&self, generator: &mut schemars::SchemaGenerator) -> String {
        generator.subschema_for::<T::Object>();
        <T::Object as schemars::JsonSchema>::schema_name().into_owned()
    }
}

/// Every kind served by duostack, in discovery order.
pub fn all() -> Vec<&'static dyn Kind> {
    vec![
        &namespace::NamespaceKind,
        &service::ServiceKind,
        &node::NodeKind,
        &pod::PodKind,
        &endpoints::EndpointsKind,
        &event::EventKind,
        &endpoints::EndpointSliceKind,
    ]
}
