//! core/v1 Event: what controllers (the allocator repair, the node CIDR allocator) report.

use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use crate::error::{FieldError, FieldErrors};
use crate::resource::{EVENTS, ResourceInfo};
use crate::schema::{META_ONLY, TypeSchema};
use crate::table::{Column, human_duration};
use crate::validation::{validate_object_meta, validate_object_meta_update};

use super::TypedKind;

pub struct EventKind;

static COLUMNS: [Column; 5] = [
    Column::new("Last Seen", "When the event was last seen."),
    Column::new("Type", "Normal or Warning."),
    Column::new("Reason", "Why the event was reported, in CamelCase."),
    Column::new("Object", "The object the event is about, as kind/name."),
    Column::new("Message", "What happened."),
];

/// The newest of an event's timestamps.
fn last_seen(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

impl TypedKind for EventKind {
    type Object = Event;

    fn info(&self) -> &'static ResourceInfo {
        &EVENTS
    }
    fn schema(&self) -> &'static TypeSchema {
        &META_ONLY
    }

    fn validate(&self, e: &Event) -> FieldErrors {
        let mut errs = validate_object_meta(&e.metadata, true, EVENTS.name_rule);
        let ns = e.metadata.namespace.as_deref().unwrap_or("");
        let involved_ns = e.involved_object.namespace.as_deref().unwrap_or("");
        if !involved_ns.is_empty() && involved_ns != ns {
            errs.push(FieldError::invalid(
                "involvedObject.namespace",
                involved_ns,
                "does not match event.namespace",
            ));
        }
        if e.reason.as_deref().is_some_and(|r| r.len() > 128) {
            errs.push(FieldError::too_long("reason", 128));
        }
        match e.type_.as_deref() {
            None | Some("") | Some("Normal") | Some("Warning") => {}
            Some(t) => errs.push(FieldError::not_supported("type", t, &["Normal", "Warning"])),
        }
        errs
    }

    fn validate_update(&self, new: &Event, old: &Event) -> FieldErrors {
        let mut errs = validate_object_meta_update(&new.metadata, &old.metadata);
        errs.extend(self.validate(new));
        errs
    }

    fn columns(&self) -> &'static [Column] {
        &COLUMNS
    }

    fn cells(&self, e: &Event, _raw: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let seen = last_seen(e)
            .map(|t| human_duration(now.as_second() - t.as_second()))
            .unwrap_or_else(|| "<unknown>".into());
        let obj = format!(
            "{}/{}",
            e.involved_object
                .kind
                .as_deref()
                .unwrap_or("")
                .to_lowercase(),
            e.involved_object.name.as_deref().unwrap_or("")
        );
        vec![
            seen.into(),
            e.type_.clone().unwrap_or_default().into(),
            e.reason.clone().unwrap_or_default().into(),
            obj.into(),
            e.message.clone().unwrap_or_default().into(),
        ]
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }

    fn field(&self, e: &Event, raw: &Value, name: &str) -> Option<String> {
        let io = &e.involved_object;
        let s = |v: &Option<String>| Some(v.clone().unwrap_or_default());
        match name {
            "involvedObject.kind" => s(&io.kind),
            "involvedObject.namespace" => s(&io.namespace),
            "involvedObject.name" => s(&io.name),
            "involvedObject.uid" => s(&io.uid),
            "involvedObject.apiVersion" => s(&io.api_version),
            "involvedObject.resourceVersion" => s(&io.resource_version),
            "involvedObject.fieldPath" => s(&io.field_path),
            "reason" => s(&e.reason),
            "reportingComponent" => s(&e.reporting_component),
            "source" => Some(
                e.source
                    .as_ref()
                    .and_then(|src| src.component.clone())
                    .unwrap_or_default(),
            ),
            "type" => s(&e.type_),
            _ => super::generic_field(raw, name),
        }
    }
}
