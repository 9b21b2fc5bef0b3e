//! core/v1 Namespace.

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use serde_json::Value;

use crate::error::{FieldError, FieldErrors, FieldPath};
use crate::resource::{NAMESPACES, ResourceInfo};
use crate::schema::{NAMESPACE, TypeSchema};
use crate::table::{Column, age};
use crate::validation::{validate_object_meta, validate_object_meta_update};

use super::TypedKind;

/// The finalizer the namespace controller removes once the namespace is empty.
pub const FINALIZER_KUBERNETES: &str = "kubernetes";
/// The label every namespace carries with its own name (`kubernetes.io/metadata.name`).
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";
pub const PHASE_ACTIVE: &str = "Active";
pub const PHASE_TERMINATING: &str = "Terminating";

pub struct NamespaceKind;

static COLUMNS: [Column; 3] = [
    Column::name_column(),
    Column::new("Status", "The status of the namespace"),
    Column::age_column(),
];

impl TypedKind for NamespaceKind {
    type Object = Namespace;

    fn info(&self) -> &'static ResourceInfo {
        &NAMESPACES
    }
    fn schema(&self) -> &'static TypeSchema {
        &NAMESPACE
    }

    fn default(&self, ns: &mut Namespace) {
        // Kubernetes labels every namespace with its name so label selectors can pick
        // namespaces by name; the label always follows the name.
        if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
            ns.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(NAME_LABEL.to_owned(), name);
        }
    }

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.status = Some(NamespaceStatus {
            phase: Some(PHASE_ACTIVE.to_owned()),
            ..Default::default()
        });
        let spec = ns.spec.get_or_insert_with(NamespaceSpec::default);
        let finalizers = spec.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == FINALIZER_KUBERNETES) {
            finalizers.push(FINALIZER_KUBERNETES.to_owned());
        }
    }

    fn validate(&self, ns: &Namespace) -> FieldErrors {
        let mut errs = validate_object_meta(&ns.metadata, false, NAMESPACES.name_rule);
        errs.extend(validate_finalizers(ns));
        errs
    }

    fn prepare_for_update(&self, new: &mut Namespace, old: &Namespace) {
        // Finalizers change only through the finalize subresource (the namespace controller).
        new.spec = old.spec.clone();
        new.status = old.status.clone();
    }

    fn validate_update(&self, new: &Namespace, old: &Namespace) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(validate_finalizers(new));
        errs
    }

    fn prepare_for_status_update(&self, new: &mut Namespace, old: &Namespace) {
        new.spec = old.spec.clone();
        keep_meta_for_status(&mut new.metadata, &old.metadata);
    }

    fn validate_status_update(&self, new: &Namespace, old: &Namespace) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        let phase = new
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        let terminating = old.metadata.deletion_timestamp.is_some();
        if terminating && phase != PHASE_TERMINATING {
            errs.push(FieldError::invalid(
                "status.Phase",
                phase,
                "A namespace may only be in terminating status if it has a deletion timestamp.",
            ));
        }
        if !terminating && phase == PHASE_TERMINATING {
            errs.push(FieldError::invalid(
                "status.Phase",
                phase,
                "A namespace may only be in terminating status if it has a deletion timestamp.",
            ));
        }
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn cells(&self, ns: &Namespace, raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        vec![
            ns.metadata.name.clone().unwrap_or_default().into(),
            ns.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default()
                .into(),
            age(raw, now).into(),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["metadata.name", "status.phase"]
    }

    fn field(&self, ns: &Namespace, raw: &Value, name: &str) -> Option<String> {
        match name {
            "status.phase" => Some(
                ns.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default(),
            ),
            _ => super::generic_field(raw, name),
        }
    }
}

fn validate_finalizers(ns: &Namespace) -> FieldErrors {
    let path = FieldPath::root("spec").child("finalizers");
    let mut errs = Vec::new();
    for (i, f) in ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        // Standard finalizers need no domain; others must be fully qualified.
        let problems = crate::validation::qualified_name(f);
        for m in problems {
            errs.push(FieldError::invalid(path.index(i), f, m));
        }
        if f != FINALIZER_KUBERNETES && !f.contains('/') {
            errs.push(FieldError::invalid(
                path.index(i),
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// What a status update may not change in metadata (`ResetObjectMetaForStatus`).
pub(crate) fn keep_meta_for_status(
    new: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    old: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    new.deletion_timestamp = old.deletion_timestamp.clone();
    new.generation = old.generation;
    new.self_link = old.self_link.clone();
    new.labels = old.labels.clone();
    new.annotations = old.annotations.clone();
    new.finalizers = old.finalizers.clone();
    new.owner_references = old.owner_references.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Kind;
    use serde_json::json;

    #[test]
    fn create_sets_phase_finalizer_and_name_label() {
        let k: &dyn Kind = &NamespaceKind;
        let mut d = k
            .decode(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
            )
            .unwrap();
        k.prepare_for_create(&mut d.value);
        assert_eq!(d.value["metadata"]["labels"][NAME_LABEL], "team-a");
        assert_eq!(d.value["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(d.value["status"]["phase"], "Active");
        assert_eq!(d.value["kind"], "Namespace");
        assert!(k.validate(&d.value).is_empty());
    }

    #[test]
    fn invalid_names_and_finalizers() {
        let k: &dyn Kind = &NamespaceKind;
        let d = k
            .decode(json!({"metadata": {"name": "Team_A"}, "spec": {"finalizers": ["custom"]}}))
            .unwrap();
        let errs = k.validate(&d.value);
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.finalizers[0]"]);
    }

    #[test]
    fn table_cells_and_fields() {
        let k: &dyn Kind = &NamespaceKind;
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Active"}});
        let now = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(
            k.cells(&obj, now),
            vec![json!("a"), json!("Active"), json!("30s")]
        );
        assert_eq!(k.field(&obj, "status.phase").as_deref(), Some("Active"));
    }
}
