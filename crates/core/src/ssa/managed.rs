//! Managed-fields entries and the two ways they change: tracking of ordinary writes (create,
//! update, patch) and server-side apply.
//!
//! The pipeline mirrors kube-apiserver's field manager, outermost first: the last-applied
//! annotation sync and conflict allowance for `kubectl`, the "before-first-apply" entry for
//! objects that have no managed fields yet, the cap on update entries, manager identifiers, entry
//! timestamps, stripping of identity metadata, and SMD's merge/compare/prune underneath.
//!
//! Resources here are served in one version, so SMD's conversion of other managers' sets to
//! their own versions is not needed: every entry is read as if it were in the request's version.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::fieldset::{
    FieldPath, FieldSet, FieldsV1Error, PathElement, Shape, compare_values, declared_shape,
    field_shape, go_quote, item_path_element, item_shape, write_go_json, write_json_string,
};
use crate::schema::{ListType, TypeSchema};

/// Kubernetes merges the oldest update entries once there are more than this many.
pub const DEFAULT_MAX_UPDATE_MANAGERS: usize = 10;

/// The client-side apply annotation that `kubectl` server-side apply keeps in sync.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

const BEFORE_FIRST_APPLY: &str = "before-first-apply";
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Stands in for the updating manager while an update is computed, so that its own earlier entry
/// is treated like anybody else's and then merged back; real identifiers are JSON objects, so this
/// cannot collide with one.
const CURRENT_OPERATION: &str = "current-operation";
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Everything that can go wrong in this module.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SsaError {
    /// The apply body is valid JSON/YAML but not an object; the text is the apiserver's.
    #[error(
        "error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {0} into Go value of type map[string]interface {{}}"
    )]
    ConfigNotObject(&'static str),
    /// The apply configuration's group/version differs from the resource's.
    #[error(
        "Incorrect version specified in apply patch. Specified patch version: {specified}, expected: {expected}"
    )]
    VersionMismatch {
        /// The group/version the configuration names.
        specified: String,
        /// The group/version being served.
        expected: String,
    },
    /// The apply configuration's group/version/kind is not the resource's.
    #[error("invalid object type: {0}")]
    InvalidObjectType(String),
    /// The apply configuration sets `metadata.managedFields`.
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// The apply configuration does not fit the schema (bad list items, duplicate keys, wrong
    /// container types). Kubernetes answers this with a 500.
    #[error("failed to create typed patch object ({object}): {errors}")]
    InvalidConfig {
        /// `namespace/name; group/version, Kind=kind` of the configuration.
        object: String,
        /// SMD's validation errors.
        errors: String,
    },
    /// The live object and the configuration could not be merged (invalid live list items).
    #[error("failed to merge config: {0}")]
    Merge(String),
    /// The live object could not be compared with the result (invalid live list items).
    #[error("failed to compare objects: {0}")]
    Compare(String),
    /// Other managers own fields this apply would change.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// `metadata.managedFields` is present but not a list.
    #[error("managedFields must be a list, found {0}")]
    ManagedFieldsNotList(&'static str),
    /// A managed-fields entry is not an object.
    #[error("managed fields entry {0} is not an object")]
    EntryNotObject(usize),
    /// A managed-fields entry has a field of the wrong JSON type.
    #[error("managed fields entry {index}: {field} must be a string")]
    EntryFieldType {
        /// Position of the entry.
        index: usize,
        /// The offending field.
        field: &'static str,
    },
    /// A managed-fields entry's operation is neither `Apply` nor `Update`.
    #[error("operation must be `Apply` or `Update`")]
    InvalidOperation,
    /// A managed-fields entry has no apiVersion.
    #[error("apiVersion must not be empty")]
    EmptyApiVersion,
    /// A managed-fields entry has no fieldsType.
    #[error("missing fieldsType in managed fields entry {0}")]
    MissingFieldsType(usize),
    /// A managed-fields entry's fieldsType is not `FieldsV1`.
    #[error("invalid fieldsType {} in managed fields entry {index}", go_quote(.fields_type))]
    InvalidFieldsType {
        /// The fieldsType given.
        fields_type: String,
        /// Position of the entry.
        index: usize,
    },
    /// A managed-fields entry's time is not RFC 3339.
    #[error("managed fields entry {index}: invalid time {time:?}")]
    InvalidTime {
        /// Position of the entry.
        index: usize,
        /// The text given.
        time: String,
    },
    /// A managed-fields entry's fieldsV1 does not decode.
    #[error("error decoding set in managed fields entry {index}: {source}")]
    Fields {
        /// Position of the entry.
        index: usize,
        /// What was wrong with it.
        source: FieldsV1Error,
    },
}

// ---------------------------------------------------------------------------------------------
// Entries
// ---------------------------------------------------------------------------------------------

/// How a manager came to own its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One element of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339 in UTC with whole seconds, as Kubernetes writes it.
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    /// Kubernetes' manager identifier: the entry as JSON without time and fields, and without the
    /// apiVersion for appliers, so that an applier keeps one entry across versions while updaters
    /// get one per version.
    pub fn identifier(&self) -> String {
        let mut out = String::from("{");
        let mut sep = "";
        let mut field = |name: &str, value: &str| {
            if !value.is_empty() {
                out.push_str(sep);
                write_json_string(name, true, &mut out);
                out.push(':');
                write_json_string(value, true, &mut out);
                sep = ",";
            }
        };
        field("manager", &self.manager);
        field("operation", self.operation.as_str());
        if self.operation == Operation::Update {
            field("apiVersion", &self.api_version);
        }
        field("subresource", self.subresource.as_deref().unwrap_or(""));
        out.push('}');
        out
    }

    /// Kubernetes' rendering of the manager in conflict messages; identifiers never carry a
    /// time, so the "at <time>" form never appears.
    fn describe(&self) -> String {
        let mut s = go_quote(&self.manager);
        if let Some(sub) = self.subresource.as_deref().filter(|s| !s.is_empty()) {
            s.push_str(&format!(" with subresource {}", go_quote(sub)));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.manager.is_empty() {
            m.insert("manager".into(), Value::String(self.manager.clone()));
        }
        m.insert(
            "operation".into(),
            Value::String(self.operation.as_str().into()),
        );
        if !self.api_version.is_empty() {
            m.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        }
        if let Some(t) = &self.time {
            m.insert("time".into(), Value::String(t.clone()));
        }
        m.insert("fieldsType".into(), Value::String("FieldsV1".into()));
        m.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(sub) = self.subresource.as_deref().filter(|s| !s.is_empty()) {
            m.insert("subresource".into(), Value::String(sub.into()));
        }
        Value::Object(m)
    }
}

/// Decodes `metadata.managedFields` (null or absent decodes to no entries). The checks and their
/// texts follow Kubernetes' `DecodeManagedFields`; times are normalised to whole UTC seconds.
pub fn decode_managed_fields(v: &Value) -> Result<Vec<ManagedEntry>, SsaError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(SsaError::ManagedFieldsNotList(json_type(other))),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| decode_entry(i, item))
        .collect()
}

fn decode_entry(index: usize, item: &Value) -> Result<ManagedEntry, SsaError> {
    let m = item.as_object().ok_or(SsaError::EntryNotObject(index))?;
    let text = |field: &'static str| -> Result<String, SsaError> {
        match m.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(SsaError::EntryFieldType { index, field }),
        }
    };
    let operation = match text("operation")?.as_str() {
        "Apply" => Operation::Apply,
        "Update" => Operation::Update,
        _ => return Err(SsaError::InvalidOperation),
    };
    let api_version = text("apiVersion")?;
    if api_version.is_empty() {
        return Err(SsaError::EmptyApiVersion);
    }
    match text("fieldsType")?.as_str() {
        "FieldsV1" => {}
        "" => return Err(SsaError::MissingFieldsType(index)),
        other => {
            return Err(SsaError::InvalidFieldsType {
                fields_type: other.to_string(),
                index,
            });
        }
    }
    let time = match m.get("time") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(normalize_time(t).ok_or_else(|| SsaError::InvalidTime {
            index,
            time: t.clone(),
        })?),
        Some(_) => {
            return Err(SsaError::EntryFieldType {
                index,
                field: "time",
            });
        }
    };
    let fields = FieldSet::from_fields_v1(m.get("fieldsV1").unwrap_or(&Value::Null))
        .map_err(|source| SsaError::Fields { index, source })?;
    let subresource = Some(text("subresource")?).filter(|s| !s.is_empty());
    Ok(ManagedEntry {
        manager: text("manager")?,
        operation,
        api_version,
        time,
        subresource,
        fields,
    })
}

/// The `metadata.managedFields` value, sorted as Kubernetes sorts it: operation, time, manager,
/// apiVersion, subresource.
pub fn encode_managed_fields(entries: &[ManagedEntry]) -> Value {
    let mut sorted: Vec<&ManagedEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| entry_order(a, b));
    Value::Array(sorted.into_iter().map(ManagedEntry::to_json).collect())
}

fn entry_order(p: &ManagedEntry, q: &ManagedEntry) -> Ordering {
    p.operation
        .as_str()
        .cmp(q.operation.as_str())
        .then_with(|| time_seconds(&p.time).cmp(&time_seconds(&q.time)))
        .then_with(|| p.manager.cmp(&q.manager))
        .then_with(|| p.api_version.cmp(&q.api_version))
        .then_with(|| {
            p.subresource
                .as_deref()
                .unwrap_or("")
                .cmp(q.subresource.as_deref().unwrap_or(""))
        })
}

/// Writes the entries into `metadata.managedFields`, or removes the field when there are none
/// (Kubernetes omits an empty list).
pub fn set_managed_fields(obj: &mut Value, entries: &[ManagedEntry]) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    if entries.is_empty() {
        if let Some(meta) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        return;
    }
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("managedFields".into(), encode_managed_fields(entries));
    }
}

/// The entries an update (create/update/patch) starts from, as Kubernetes picks them: a
/// subresource write always uses the stored object's; otherwise the request's own managedFields
/// win when they decode and are non-empty (clients may rewrite them), `[]` or `[{}]` resets them,
/// and anything else falls back to the stored object's.
pub fn managed_entries_for_update(
    live: Option<&Value>,
    new: &Value,
    subresource: Option<&str>,
) -> Vec<ManagedEntry> {
    let from_live = || {
        live.and_then(managed_fields_of)
            .and_then(|mf| decode_managed_fields(mf).ok())
            .unwrap_or_default()
    };
    if subresource.is_some_and(|s| !s.is_empty()) {
        return from_live();
    }
    let requested = managed_fields_of(new);
    if requested.is_some_and(is_reset_managed_fields) {
        return Vec::new();
    }
    match requested.map(decode_managed_fields) {
        Some(Ok(entries)) if !entries.is_empty() => entries,
        _ => from_live(),
    }
}

fn managed_fields_of(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn is_reset_managed_fields(v: &Value) -> bool {
    match v.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([Value::Object(entry)]) => entry
            .values()
            .all(|v| v.is_null() || v.as_str() == Some("")),
        _ => false,
    }
}

/// Managers keyed by identifier; a later entry with the same identifier replaces an earlier one,
/// as Kubernetes' decoding into a map does.
type Managers = BTreeMap<String, ManagedEntry>;

fn managers_from(entries: Vec<ManagedEntry>) -> Managers {
    entries.into_iter().map(|e| (e.identifier(), e)).collect()
}

fn into_sorted(managers: Managers) -> Vec<ManagedEntry> {
    let mut v: Vec<ManagedEntry> = managers.into_values().collect();
    v.sort_by(entry_order);
    v
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch of an RFC 3339 time (`time.RFC3339` as Go parses it: optional
/// fractional seconds, `Z` or a numeric offset).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = b.get(r)?;
        t.iter()
            .all(u8::is_ascii_digit)
            .then(|| t.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > month_days[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Kubernetes stores `metav1.Time` as whole seconds in UTC.
fn normalize_time(s: &str) -> Option<String> {
    let secs = parse_rfc3339(s)?;
    // Go's RFC 3339 layout has four-digit years.
    (-62_167_219_200..=253_402_300_799)
        .contains(&secs)
        .then(|| format_rfc3339(secs))
}

fn time_seconds(t: &Option<String>) -> i64 {
    t.as_deref().and_then(parse_rfc3339).unwrap_or(0)
}

fn now_string(now: &str) -> String {
    normalize_time(now).unwrap_or_else(|| now.to_string())
}

// ---------------------------------------------------------------------------------------------
// Field sets Kubernetes never tracks
// ---------------------------------------------------------------------------------------------

fn path_of(names: &[&str]) -> Vec<PathElement> {
    names
        .iter()
        .map(|n| PathElement::Field(n.to_string()))
        .collect()
}

/// Identity and bookkeeping fields the field manager strips from the writer's set (`metadata`
/// itself is listed because unstructured objects would otherwise own it).
fn strip_set() -> FieldSet {
    let mut s = FieldSet::new();
    for p in [
        &["apiVersion"][..],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ] {
        s.insert(&path_of(p));
    }
    s
}

/// Fields a write through this endpoint cannot change because the strategy resets them
/// (`GetResetFields`): status on the main resource, spec on `/status`. They are neither owned
/// nor a source of conflicts there.
pub fn reset_fields(subresource: Option<&str>) -> FieldSet {
    let mut s = FieldSet::new();
    match subresource.filter(|s| !s.is_empty()) {
        None => s.insert(&path_of(&["status"])),
        Some("status") => s.insert(&path_of(&["spec"])),
        Some(_) => {}
    }
    s
}

fn strip_manager(managers: &mut Managers, id: &str) {
    if let Some(e) = managers.get_mut(id) {
        e.fields = e.fields.difference(&strip_set());
        if e.fields.is_empty() {
            managers.remove(id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Walks over typed values: compare, merge, remove, validate
// ---------------------------------------------------------------------------------------------

static NULL: Value = Value::Null;

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn empty_map(m: Option<&Map<String, Value>>) -> bool {
    m.is_none_or(Map::is_empty)
}

fn empty_list(l: Option<&Vec<Value>>) -> bool {
    l.is_none_or(Vec::is_empty)
}

/// Keys of both sides, the left's order first, so merged objects keep the stored layout.
fn union_keys<'a>(
    l: Option<&'a Map<String, Value>>,
    r: Option<&'a Map<String, Value>>,
) -> Vec<&'a String> {
    let mut keys: Vec<&String> = l.into_iter().flat_map(|m| m.keys()).collect();
    let seen: BTreeSet<&String> = keys.iter().copied().collect();
    keys.extend(
        r.into_iter()
            .flat_map(|m| m.keys())
            .filter(|k| !seen.contains(k)),
    );
    keys
}

/// SMD's error list formatting.
fn join_errors(errors: &[String]) -> String {
    if errors.len() == 1 {
        return errors[0].clone();
    }
    let mut lines = vec!["errors:".to_string()];
    lines.extend(errors.iter().map(|e| format!("  {e}")));
    lines.join("\n")
}

struct Walker<'a> {
    schema: &'a TypeSchema,
    path: Vec<PathElement>,
    spath: Vec<String>,
    errors: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(schema: &'a TypeSchema) -> Self {
        Walker {
            schema,
            path: Vec::new(),
            spath: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn error(&mut self, msg: String) {
        let at = FieldPath(self.path.clone()).to_string();
        self.errors.push(if at.is_empty() {
            msg
        } else {
            format!("{at}: {msg}")
        });
    }

    fn result(&self) -> Result<(), String> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(join_errors(&self.errors))
        }
    }

    fn enter_field(&mut self, k: &str) {
        self.path.push(PathElement::Field(k.to_string()));
        self.spath.push(k.to_string());
    }

    fn leave_field(&mut self) {
        self.path.pop();
        self.spath.pop();
    }

    /// Indexes list items by path element, reporting SMD's errors for items without one.
    fn index_items<'v>(
        &mut self,
        items: &'v [Value],
        lt: ListType,
    ) -> Option<Vec<(PathElement, &'v Value)>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item_path_element(&self.spath, lt, item) {
                Ok(pe) => out.push((pe, item)),
                Err(e) => {
                    self.error(format!("element {i}: {e}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

/// Fields removed, changed and added between two objects.
#[derive(Debug, Default)]
struct Comparison {
    removed: FieldSet,
    modified: FieldSet,
    added: FieldSet,
}

impl Comparison {
    fn exclude(self, fields: &FieldSet) -> Comparison {
        Comparison {
            removed: self.removed.recursive_difference(fields),
            modified: self.modified.recursive_difference(fields),
            added: self.added.recursive_difference(fields),
        }
    }
}

/// SMD's `Compare`. Kubernetes compares typed (Go struct) values, where struct fields are always
/// present; so a struct reached through a field is never added or removed itself, only its
/// contents, which is why `f:spec` never carries `.` in an update entry while `f:labels` and
/// `f:ports` do.
fn compare(lhs: &Value, rhs: &Value, schema: &TypeSchema) -> Result<Comparison, String> {
    let mut w = Walker::new(schema);
    let mut c = Comparison::default();
    compare_node(&mut w, &mut c, Some(lhs), Some(rhs), Shape::Struct, false);
    w.result().map(|()| c)
}

fn compare_node(
    w: &mut Walker,
    c: &mut Comparison,
    l: Option<&Value>,
    r: Option<&Value>,
    shape: Shape,
    struct_field: bool,
) {
    let empty = Value::Object(Map::new());
    let (l, r) = if struct_field && shape == Shape::Struct {
        (Some(present_or(l, &empty)), Some(present_or(r, &empty)))
    } else {
        (l, r)
    };
    if l.is_none() && r.is_none() {
        return;
    }
    match shape {
        Shape::Leaf => compare_leaf(w, c, l, r),
        Shape::Struct | Shape::Map => {
            let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
            if empty_map(lm) && empty_map(rm) {
                compare_leaf(w, c, l, r);
                return;
            }
            for k in union_keys(lm, rm) {
                let (lv, rv) = (lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)));
                w.enter_field(k);
                let child = field_shape(w.schema, &w.spath, &[lv, rv]);
                compare_node(w, c, lv, rv, child, shape == Shape::Struct);
                w.leave_field();
            }
            compare_presence(w, c, l, r);
        }
        Shape::List(lt) => {
            let (la, ra) = (l.and_then(Value::as_array), r.and_then(Value::as_array));
            if empty_list(la) && empty_list(ra) {
                compare_leaf(w, c, l, r);
                return;
            }
            compare_items(
                w,
                c,
                la.map_or(&[], Vec::as_slice),
                ra.map_or(&[], Vec::as_slice),
                lt,
            );
            compare_presence(w, c, l, r);
        }
    }
}

fn present_or<'a>(v: Option<&'a Value>, empty: &'a Value) -> &'a Value {
    v.filter(|v| !v.is_null()).unwrap_or(empty)
}

fn compare_leaf(w: &Walker, c: &mut Comparison, l: Option<&Value>, r: Option<&Value>) {
    match (l, r) {
        (None, Some(_)) => c.added.insert(&w.path),
        (Some(_), None) => c.removed.insert(&w.path),
        (Some(a), Some(b)) if compare_values(a, b) != Ordering::Equal => c.modified.insert(&w.path),
        _ => {}
    }
}

fn compare_presence(w: &Walker, c: &mut Comparison, l: Option<&Value>, r: Option<&Value>) {
    if l.is_none() {
        c.added.insert(&w.path);
    } else if r.is_none() {
        c.removed.insert(&w.path);
    }
}

/// Items are matched by key; duplicated keys are compared as whole groups, as SMD does.
fn compare_items(w: &mut Walker, c: &mut Comparison, l: &[Value], r: &[Value], lt: ListType) {
    let (Some(li), Some(ri)) = (w.index_items(l, lt), w.index_items(r, lt)) else {
        return;
    };
    let mut order: Vec<PathElement> = Vec::new();
    let mut groups: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for (pe, item) in li {
        let g = groups.entry(pe.clone()).or_default();
        if g.0.is_empty() {
            order.push(pe);
        }
        g.0.push(item);
    }
    for (pe, item) in ri {
        let g = groups.entry(pe.clone()).or_default();
        if g.0.is_empty() && g.1.is_empty() {
            order.push(pe);
        }
        g.1.push(item);
    }
    for pe in order {
        let (ls, rs) = &groups[&pe];
        w.path.push(pe);
        match (ls.len(), rs.len()) {
            (0..=1, 0..=1) => {
                let (lv, rv) = (ls.first().copied(), rs.first().copied());
                compare_node(w, c, lv, rv, item_shape(&[lv, rv]), false);
            }
            (2.., 2..) => {
                let same = ls.len() == rs.len()
                    && ls
                        .iter()
                        .zip(rs)
                        .all(|(a, b)| compare_values(a, b) == Ordering::Equal);
                if !same {
                    c.modified.insert(&w.path);
                }
            }
            (2.., _) => {
                if let Some(rv) = rs.first().copied() {
                    compare_node(w, c, None, Some(rv), item_shape(&[Some(rv)]), false);
                }
                c.removed.insert(&w.path);
            }
            (_, _) => {
                if let Some(lv) = ls.first().copied() {
                    compare_node(w, c, Some(lv), None, item_shape(&[Some(lv)]), false);
                }
                c.added.insert(&w.path);
            }
        }
        w.path.pop();
    }
}

/// SMD's `Merge` with the keep-the-right-side rule: objects merge key by key, associative lists
/// item by item, everything else (and empty containers) is replaced by the configuration's value,
/// including explicit nulls.
fn merge(live: &Value, config: &Value, schema: &TypeSchema) -> Result<Value, String> {
    let mut w = Walker::new(schema);
    let out = merge_node(&mut w, Some(live), Some(config), Shape::Struct);
    w.result()?;
    Ok(out.unwrap_or_else(|| Value::Object(Map::new())))
}

fn merge_node(w: &mut Walker, l: Option<&Value>, r: Option<&Value>, shape: Shape) -> Option<Value> {
    let keep_rhs = || r.or(l).cloned();
    match shape {
        Shape::Leaf => keep_rhs(),
        Shape::Struct | Shape::Map => {
            let (lm, rm) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
            if empty_map(lm) && empty_map(rm) {
                return keep_rhs();
            }
            let mut out = Map::new();
            for k in union_keys(lm, rm) {
                let (lv, rv) = (lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)));
                w.enter_field(k);
                let child = field_shape(w.schema, &w.spath, &[lv, rv]);
                if let Some(v) = merge_node(w, lv, rv, child) {
                    out.insert(k.clone(), v);
                }
                w.leave_field();
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Shape::List(lt) => {
            let (la, ra) = (l.and_then(Value::as_array), r.and_then(Value::as_array));
            if empty_list(la) && empty_list(ra) {
                return keep_rhs();
            }
            let out = merge_items(
                w,
                la.map_or(&[], Vec::as_slice),
                ra.map_or(&[], Vec::as_slice),
                lt,
            )?;
            (!out.is_empty()).then_some(Value::Array(out))
        }
    }
}

/// SMD's list merge order: live items keep their places, configuration items follow the
/// configuration's order, and items only in the configuration are placed after the shared item
/// they follow there.
fn merge_items(w: &mut Walker, l: &[Value], r: &[Value], lt: ListType) -> Option<Vec<Value>> {
    let errors_before = w.errors.len();
    let mut r_pes = Vec::new();
    let mut r_obs: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for (i, item) in r.iter().enumerate() {
        match item_path_element(&w.spath, lt, item) {
            Err(e) => w.error(format!("element {i}: {e}")),
            Ok(pe) if r_obs.contains_key(&pe) => w.error(format!("duplicate entries for key {pe}")),
            Ok(pe) => {
                r_obs.insert(pe.clone(), item);
                r_pes.push(pe);
            }
        }
    }
    let mut l_pes = Vec::new();
    let mut l_items = Vec::new();
    let mut l_obs: BTreeMap<PathElement, &Value> = BTreeMap::new();
    for (i, item) in l.iter().enumerate() {
        match item_path_element(&w.spath, lt, item) {
            Err(e) => w.error(format!("element {i}: {e}")),
            Ok(pe) => {
                // Duplicated live items are not merged with the configuration's item.
                let seen = l_obs.contains_key(&pe);
                l_obs.insert(pe.clone(), if seen { &NULL } else { item });
                l_pes.push(pe);
                l_items.push(item);
            }
        }
    }
    if w.errors.len() > errors_before {
        return None;
    }

    let mut shared = r_pes.iter().filter(|pe| l_obs.contains_key(*pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    while li < l_pes.len() || ri < r_pes.len() {
        if li < l_pes.len() && ri < r_pes.len() {
            let pe = &l_pes[li];
            if *pe == r_pes[ri] {
                merged_rhs.insert(pe);
                merge_item(
                    w,
                    pe,
                    l_obs.get(pe).copied(),
                    r_obs.get(pe).copied(),
                    &mut out,
                );
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if r_obs.contains_key(pe) && next_shared.is_some_and(|s| s != pe) {
                li += 1;
                continue;
            }
        }
        if li < l_pes.len() {
            let pe = &l_pes[li];
            if !r_obs.contains_key(pe) {
                merge_item(w, pe, Some(l_items[li]), None, &mut out);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_pes.len() {
            let pe = &r_pes[ri];
            merged_rhs.insert(pe);
            merge_item(
                w,
                pe,
                l_obs.get(pe).copied(),
                r_obs.get(pe).copied(),
                &mut out,
            );
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Some(out)
}

fn merge_item(
    w: &mut Walker,
    pe: &PathElement,
    lv: Option<&Value>,
    rv: Option<&Value>,
    out: &mut Vec<Value>,
) {
    w.path.push(pe.clone());
    if let Some(v) = merge_node(w, lv, rv, item_shape(&[lv, rv])) {
        out.push(v);
    }
    w.path.pop();
}

/// SMD's `RemoveItems`. `None` is SMD's nil: a container emptied by removal becomes null in its
/// parent, which the intermediate steps of pruning rely on. With `omit`, used for the final
/// result, such children are left out instead: Kubernetes turns the result into a typed object,
/// where those nulls disappear, and storing them would show `labels: null`.
fn remove_items(v: &Value, to_remove: &FieldSet, omit: bool, schema: &TypeSchema) -> Value {
    let mut spath = Vec::new();
    remove_node(v, to_remove, Shape::Struct, omit, schema, &mut spath)
        .unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove_node(
    v: &Value,
    to_remove: &FieldSet,
    shape: Shape,
    omit: bool,
    schema: &TypeSchema,
    spath: &mut Vec<String>,
) -> Option<Value> {
    match shape {
        Shape::Leaf => (!v.is_array() && !v.is_object()).then(|| v.clone()),
        Shape::List(lt) => {
            let items = v.as_array().filter(|a| !a.is_empty())?;
            let mut out = Vec::with_capacity(items.len());
            let mut kept = 0;
            for item in items {
                let Ok(pe) = item_path_element(spath, lt, item) else {
                    out.push(item.clone());
                    kept += 1;
                    continue;
                };
                if to_remove.contains(std::slice::from_ref(&pe)) {
                    continue;
                }
                kept += 1;
                let sub = to_remove.with_prefix(&pe);
                let r = if sub.is_empty() {
                    Some(item.clone())
                } else {
                    let shape = item_shape(&[Some(item)]);
                    remove_node(item, &sub, shape, omit, schema, spath)
                };
                match r {
                    Some(v) => out.push(v),
                    None if !omit => out.push(Value::Null),
                    None => {}
                }
            }
            (kept > 0).then_some(Value::Array(out))
        }
        Shape::Struct | Shape::Map => {
            let m = v.as_object().filter(|m| !m.is_empty())?;
            let mut out = Map::new();
            let mut kept = 0;
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if to_remove.contains(std::slice::from_ref(&pe)) {
                    continue;
                }
                kept += 1;
                let sub = to_remove.with_prefix(&pe);
                let r = if sub.is_empty() {
                    Some(child.clone())
                } else {
                    spath.push(k.clone());
                    let shape = field_shape(schema, spath, &[Some(child)]);
                    let r = remove_node(child, &sub, shape, omit, schema, spath);
                    spath.pop();
                    r
                };
                match r {
                    Some(v) => {
                        out.insert(k.clone(), v);
                    }
                    None if !omit => {
                        out.insert(k.clone(), Value::Null);
                    }
                    None => {}
                }
            }
            // Emptiness is decided before omitting, as SMD decides it with the nulls in place.
            (kept > 0).then_some(Value::Object(out))
        }
    }
}

/// SMD's typed validation of an apply configuration, limited to what the schema table knows:
/// container types, list item keys and duplicate keys.
fn validate(config: &Value, schema: &TypeSchema) -> Result<(), String> {
    let mut w = Walker::new(schema);
    if let Some(m) = config.as_object() {
        validate_fields(&mut w, m);
    }
    w.result()
}

fn validate_fields(w: &mut Walker, m: &Map<String, Value>) {
    for (k, v) in m {
        w.enter_field(k);
        validate_field(w, v);
        w.leave_field();
    }
}

fn validate_field(w: &mut Walker, v: &Value) {
    match (declared_shape(w.schema, &w.spath), v) {
        (_, Value::Null) => {}
        (Some(Shape::List(lt)), Value::Array(items)) => validate_items(w, items, lt),
        (Some(Shape::List(_)), v) => w.error(format!("expected list, got {v}")),
        (Some(Shape::Map), Value::Object(m)) => validate_fields(w, m),
        (Some(Shape::Leaf), Value::Object(_)) => {}
        (Some(Shape::Map | Shape::Leaf), v) => w.error(format!("expected map, got {v}")),
        (_, Value::Object(m)) => validate_fields(w, m),
        _ => {}
    }
}

fn validate_items(w: &mut Walker, items: &[Value], lt: ListType) {
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let pe = match item_path_element(&w.spath, lt, item) {
            Ok(pe) => pe,
            Err(e) => {
                w.error(format!("element {i}: {e}"));
                return;
            }
        };
        if !seen.insert(pe.clone()) {
            w.error(format!("duplicate entries for key {pe}"));
        }
        if let Value::Object(m) = item {
            w.path.push(pe);
            validate_fields(w, m);
            w.path.pop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conflicts
// ---------------------------------------------------------------------------------------------

/// A field this apply would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub subresource: Option<String>,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    /// SMD's path string, e.g. `.spec.ports[port=80,protocol="TCP"].targetPort`.
    pub path: String,
}

impl Conflict {
    fn entry(&self) -> ManagedEntry {
        ManagedEntry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            time: None,
            subresource: self.subresource.clone(),
            fields: FieldSet::new(),
        }
    }

    /// The `message` of this conflict's `FieldManagerConflict` status cause.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.entry().describe())
    }

    /// The `field` of this conflict's status cause.
    pub fn field(&self) -> &str {
        &self.path
    }
}

/// Kubernetes' message for an apply that failed on conflicts.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.entry().describe(),
            c.path
        );
    }
    let mut by_manager: BTreeMap<String, (String, Vec<&str>)> = BTreeMap::new();
    for c in conflicts {
        let e = c.entry();
        by_manager
            .entry(e.identifier())
            .or_insert_with(|| (e.describe(), Vec::new()))
            .1
            .push(&c.path);
    }
    let mut lines = Vec::new();
    for (described, paths) in by_manager.values() {
        lines.push(format!("conflicts with {described}:"));
        lines.extend(paths.iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// The 409 `Status` body Kubernetes returns for apply conflicts.
pub fn conflict_status(conflicts: &[Conflict]) -> Value {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert(
                "reason".into(),
                Value::String("FieldManagerConflict".into()),
            );
            m.insert("message".into(), Value::String(c.cause_message()));
            m.insert("field".into(), Value::String(c.path.clone()));
            Value::Object(m)
        })
        .collect();
    let mut details = Map::new();
    details.insert("causes".into(), Value::Array(causes));
    let mut m = Map::new();
    m.insert("kind".into(), Value::String("Status".into()));
    m.insert("apiVersion".into(), Value::String("v1".into()));
    m.insert("metadata".into(), Value::Object(Map::new()));
    m.insert("status".into(), Value::String("Failure".into()));
    m.insert("message".into(), Value::String(conflict_message(conflicts)));
    m.insert("reason".into(), Value::String("Conflict".into()));
    m.insert("details".into(), Value::Object(details));
    m.insert("code".into(), Value::from(409));
    Value::Object(m)
}

/// A conflict together with its path in structured form, so the kubectl allowance can test
/// membership.
type RawConflict = (Conflict, FieldPath);

enum Failure {
    Conflicts(Vec<RawConflict>),
    Error(SsaError),
}

impl From<SsaError> for Failure {
    fn from(e: SsaError) -> Self {
        Failure::Error(e)
    }
}

fn raw_conflicts(managers: &Managers, sets: &BTreeMap<String, FieldSet>) -> Vec<RawConflict> {
    let mut out = Vec::new();
    for (id, set) in sets {
        let e = &managers[id];
        for path in set.paths() {
            out.push((
                Conflict {
                    manager: e.manager.clone(),
                    subresource: e.subresource.clone(),
                    operation: e.operation,
                    api_version: e.api_version.clone(),
                    time: e.time.clone(),
                    path: path.to_string(),
                },
                path,
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// SMD's updater
// ---------------------------------------------------------------------------------------------

/// The part of SMD's updater shared by updates and applies: fields the write changes leave their
/// other owners (a conflict unless forced), fields it removes leave everyone, empty managers go.
fn smd_update(
    live: &Value,
    new: &Value,
    mut managers: Managers,
    workflow: &str,
    force: bool,
    reset: &FieldSet,
    schema: &TypeSchema,
) -> Result<(Managers, Comparison), Failure> {
    let cmp = compare(live, new, schema)
        .map_err(SsaError::Compare)?
        .exclude(reset);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts: BTreeMap<String, FieldSet> = BTreeMap::new();
    for (id, e) in &managers {
        if id == workflow {
            continue;
        }
        let taken = e.fields.intersection(&changed);
        if !taken.is_empty() {
            conflicts.insert(id.clone(), taken);
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(Failure::Conflicts(raw_conflicts(&managers, &conflicts)));
    }
    for (id, e) in managers.iter_mut() {
        if id == workflow {
            continue;
        }
        if let Some(taken) = conflicts.get(id) {
            e.fields = e.fields.difference(taken);
        }
        if !cmp.removed.is_empty() {
            e.fields = e.fields.difference(&cmp.removed);
        }
    }
    managers.retain(|_, e| !e.fields.is_empty());
    Ok((managers, cmp))
}

/// The update half of the field manager (structured update, stripping, timestamps, identifiers,
/// cap), used for writes and for the "before-first-apply" entry.
#[allow(clippy::too_many_arguments)] // one argument per field-manager layer, as in Kubernetes
fn update_entries(
    old: &Value,
    new: &Value,
    managers: Managers,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
    schema: &TypeSchema,
) -> Result<Managers, Failure> {
    let reset = reset_fields(subresource);
    let (mut managers, cmp) =
        smd_update(old, new, managers, CURRENT_OPERATION, true, &reset, schema)?;
    let set = cmp.modified.union(&cmp.added).recursive_difference(&reset);
    let gained = set.difference(&strip_set());
    if !gained.is_empty() {
        let mut entry = ManagedEntry {
            manager: if manager.is_empty() {
                "unknown".into()
            } else {
                manager.into()
            },
            operation: Operation::Update,
            api_version: api_version.into(),
            time: Some(now_string(now)),
            subresource: subresource.filter(|s| !s.is_empty()).map(String::from),
            fields: FieldSet::new(),
        };
        let id = entry.identifier();
        let previous = managers.remove(&id).map(|e| e.fields).unwrap_or_default();
        entry.fields = gained.union(&previous);
        managers.insert(id, entry);
    }
    cap_update_managers(&mut managers, DEFAULT_MAX_UPDATE_MANAGERS);
    Ok(managers)
}

/// Merges the oldest update entries into one "ancient-changes" entry per apiVersion until at most
/// `max` update entries remain (Kubernetes' capmanagers).
fn cap_update_managers(managers: &mut Managers, max: usize) {
    let mut updaters: Vec<String> = managers
        .iter()
        .filter(|(_, e)| e.operation == Operation::Update)
        .map(|(id, _)| id.clone())
        .collect();
    if updaters.len() <= max {
        return;
    }
    updaters.sort_by(|a, b| {
        time_seconds(&managers[a].time)
            .cmp(&time_seconds(&managers[b].time))
            .then_with(|| a.cmp(b))
    });
    let mut first_of_version: HashMap<String, String> = HashMap::new();
    let mut length = updaters.len();
    for id in updaters {
        if length <= max {
            break;
        }
        let Some(e) = managers.get(&id).cloned() else {
            continue;
        };
        let bucket = ManagedEntry {
            manager: ANCIENT_CHANGES.into(),
            operation: Operation::Update,
            api_version: e.api_version.clone(),
            time: None,
            subresource: None,
            fields: FieldSet::new(),
        };
        let bucket_id = bucket.identifier();
        let Some(first) = first_of_version.get(&e.api_version).cloned() else {
            first_of_version.insert(e.api_version.clone(), id);
            continue;
        };
        if !managers.contains_key(&bucket_id)
            && let Some(f) = managers.remove(&first)
        {
            managers.insert(
                bucket_id.clone(),
                ManagedEntry {
                    fields: f.fields,
                    ..bucket.clone()
                },
            );
        }
        let fields = managers
            .get(&bucket_id)
            .map(|b| b.fields.union(&e.fields))
            .unwrap_or_default();
        managers.insert(
            bucket_id,
            ManagedEntry {
                fields,
                time: e.time.clone(),
                ..bucket
            },
        );
        // Kubernetes deletes the merged entry even when it is the bucket itself.
        managers.remove(&id);
        length -= 1;
    }
}

/// SMD's prune: fields the applier owned last time, does not own now and nobody else owns are
/// removed, as whole subtrees; fields it never owned stay.
fn prune(
    merged: Value,
    managers: &Managers,
    last: Option<&FieldSet>,
    schema: &TypeSchema,
) -> Value {
    let Some(last) = last.filter(|s| !s.is_empty()) else {
        return merged;
    };
    let named = |s: &FieldSet| s.ensure_named_fields_are_members(schema);
    let of = |v: &Value| named(&FieldSet::from_value(v, schema));
    let last = named(last);
    let pruned = remove_items(&merged, &last, false, schema);

    let owned = managers
        .values()
        .fold(FieldSet::new(), |acc, e| acc.union(&e.fields));
    let merged_set = of(&merged);
    let unowned_removed = merged_set.difference(&of(&pruned).union(&named(&owned)));
    let pruned = remove_items(&merged, &unowned_removed, false, schema);

    let dangling = merged_set.difference(&of(&pruned)).intersection(&last);
    remove_items(&merged, &dangling, true, schema)
}

// ---------------------------------------------------------------------------------------------
// Public operations
// ---------------------------------------------------------------------------------------------

fn without_managed_fields(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    v
}

fn has_uid(v: &Value) -> bool {
    v.get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty())
}

/// Tracks a create, update or patch (operation `Update`): `manager` gains every field added or
/// changed between `old` (None for a create) and `new`, those fields leave their other owners,
/// removed fields leave everyone, and update entries beyond ten are merged. `entries` are the
/// ones the write starts from (see `managed_entries_for_update`). Call it with the object as it
/// will be stored after defaulting, before server-assigned values, as Kubernetes does.
///
/// As in Kubernetes, an existing object without managed fields stays untracked, and a failure to
/// compare leaves the entries unchanged.
#[allow(clippy::too_many_arguments)] // the server's call sites pass each piece separately
pub fn update_managed_fields(
    old: Option<&Value>,
    new: &Value,
    entries: Vec<ManagedEntry>,
    manager: &str,
    subresource: Option<&str>,
    api_version: &str,
    now: &str,
    schema: &TypeSchema,
) -> Vec<ManagedEntry> {
    if entries.is_empty() && old.is_some_and(has_uid) {
        return Vec::new();
    }
    let old = old.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let new = without_managed_fields(new);
    let managers = managers_from(entries.clone());
    match update_entries(
        &old,
        &new,
        managers,
        manager,
        subresource,
        api_version,
        now,
        schema,
    ) {
        Ok(managers) => into_sorted(managers),
        Err(_) => {
            let mut entries = entries;
            entries.sort_by(entry_order);
            entries
        }
    }
}

/// The parameters of an apply request besides the objects.
#[derive(Clone, Debug)]
pub struct ApplyOptions<'a> {
    pub manager: &'a str,
    pub force: bool,
    /// The served group/version, e.g. `v1` or `apps/v1`.
    pub api_version: &'a str,
    /// The request time, RFC 3339.
    pub now: &'a str,
    /// `Some("status")` for an apply to the status subresource.
    pub subresource: Option<&'a str>,
}

/// Server-side apply on the main resource; see `apply_with`.
#[allow(clippy::too_many_arguments)] // the server's call sites pass each piece separately
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    entries: Vec<ManagedEntry>,
    manager: &str,
    force: bool,
    api_version: &str,
    now: &str,
    schema: &TypeSchema,
) -> Result<(Value, Vec<ManagedEntry>), SsaError> {
    let opts = ApplyOptions {
        manager,
        force,
        api_version,
        now,
        subresource: None,
    };
    apply_with(live, config, entries, &opts, schema)
}

/// Server-side apply: merges `config` into `live` (None creates the object), makes the applier's
/// Apply entry exactly the configuration's fields, prunes what it applied before and no longer
/// does (unless someone else owns it), and fails with `SsaError::Conflicts` when the apply would
/// change fields other managers own, unless `force` moves them to the applier.
///
/// The returned object carries the new `metadata.managedFields`. Fields Kubernetes' strategies
/// reset (status on the main resource, spec on `/status`) are merged as given but neither owned
/// nor checked for conflicts; the caller's strategy resets them. Defaulting is the caller's.
///
/// For `kubectl` as manager, conflicts on fields whose values the client-side
/// `last-applied-configuration` annotation still matches are taken over silently, and that
/// annotation is rewritten to the configuration when the object has it, as Kubernetes does to
/// migrate from client-side apply.
pub fn apply_with(
    live: Option<&Value>,
    config: &Value,
    entries: Vec<ManagedEntry>,
    opts: &ApplyOptions,
    schema: &TypeSchema,
) -> Result<(Value, Vec<ManagedEntry>), SsaError> {
    let config = match config {
        Value::Object(_) => config.clone(),
        Value::Null => Value::Object(Map::new()),
        other => return Err(SsaError::ConfigNotObject(json_type(other))),
    };
    let live_clean = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let managers = managers_from(entries);

    let mut result = apply_pipeline(
        &live_clean,
        &config,
        managers.clone(),
        opts,
        opts.force,
        schema,
    );
    if opts.manager == "kubectl"
        && let Err(Failure::Conflicts(conflicts)) = &result
        && let Some(allowed) =
            live.and_then(|l| allowed_by_last_applied(l, opts.api_version, schema))
    {
        let remaining: Vec<RawConflict> = conflicts
            .iter()
            .filter(|(_, p)| !allowed.contains(&p.0))
            .cloned()
            .collect();
        result = if remaining.is_empty() {
            apply_pipeline(&live_clean, &config, managers, opts, true, schema)
        } else {
            Err(Failure::Conflicts(remaining))
        };
    }
    let (mut obj, managers) = match result {
        Ok(r) => r,
        Err(Failure::Conflicts(c)) => {
            return Err(SsaError::Conflicts(c.into_iter().map(|(c, _)| c).collect()));
        }
        Err(Failure::Error(e)) => return Err(e),
    };
    if opts.manager == "kubectl" {
        sync_last_applied(&mut obj, &config);
    }
    let entries = into_sorted(managers);
    set_managed_fields(&mut obj, &entries);
    Ok((obj, entries))
}

/// Group and version of an `apiVersion` string, empty when it does not parse (as
/// `schema.ParseGroupVersion` failing yields an empty GroupVersionKind).
fn group_version(api_version: &str) -> Option<(&str, &str)> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [""] => Some(("", "")),
        [v] => Some(("", v)),
        [g, v] => Some((g, v)),
        _ => None,
    }
}

fn gv_string(api_version: &str) -> String {
    match group_version(api_version) {
        Some(("", v)) => v.to_string(),
        Some((g, v)) => format!("{g}/{v}"),
        None => String::new(),
    }
}

fn gvk_string(obj: &Value) -> String {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match group_version(api_version) {
        Some((g, v)) => {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
            format!("{g}/{v}, Kind={kind}")
        }
        None => "/, Kind=".to_string(),
    }
}

/// Kubernetes' first check on an apply body: its apiVersion and kind must be the resource's.
pub fn check_apply_kind(config: &Value, api_version: &str, kind: &str) -> Result<(), SsaError> {
    let got_av = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let got_kind = config.get("kind").and_then(Value::as_str).unwrap_or("");
    let same = group_version(got_av).is_some()
        && group_version(got_av) == group_version(api_version)
        && got_kind == kind;
    if same {
        Ok(())
    } else {
        Err(SsaError::InvalidObjectType(gvk_string(config)))
    }
}

fn object_description(obj: &Value) -> String {
    let meta = |f: &str| {
        obj.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    format!(
        "{}/{}; {}",
        meta("namespace"),
        meta("name"),
        gvk_string(obj)
    )
}

/// Everything below the kubectl allowance: before-first-apply, identifiers, timestamps,
/// stripping, and SMD's apply.
fn apply_pipeline(
    live: &Value,
    config: &Value,
    mut managers: Managers,
    opts: &ApplyOptions,
    force: bool,
    schema: &TypeSchema,
) -> Result<(Value, Managers), Failure> {
    let subresource = opts.subresource.filter(|s| !s.is_empty());
    if managers.is_empty() {
        // Whatever the object holds before its first apply is owned by a stand-in updater, so
        // that the first applier cannot silently take it over.
        let empty = Value::Object(Map::new());
        managers = update_entries(
            &empty,
            live,
            managers,
            BEFORE_FIRST_APPLY,
            subresource,
            opts.api_version,
            opts.now,
            schema,
        )?;
    }

    let specified = gv_string(
        config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let expected = gv_string(opts.api_version);
    if specified != expected {
        return Err(SsaError::VersionMismatch {
            specified,
            expected,
        }
        .into());
    }
    if config
        .get("metadata")
        .and_then(|m| m.get("managedFields"))
        .is_some_and(|v| !v.is_null())
    {
        return Err(SsaError::ManagedFieldsInConfig.into());
    }
    validate(config, schema).map_err(|errors| SsaError::InvalidConfig {
        object: object_description(config),
        errors,
    })?;

    let mut entry = ManagedEntry {
        manager: if opts.manager.is_empty() {
            "unknown".into()
        } else {
            opts.manager.into()
        },
        operation: Operation::Apply,
        api_version: opts.api_version.into(),
        time: None,
        subresource: subresource.map(String::from),
        fields: FieldSet::new(),
    };
    let id = entry.identifier();
    let reset = reset_fields(subresource);

    let merged = merge(live, config, schema).map_err(SsaError::Merge)?;
    let last = managers.get(&id).map(|e| e.fields.clone());
    entry.time = managers.get(&id).and_then(|e| e.time.clone());
    entry.fields = FieldSet::from_value(config, schema).recursive_difference(&reset);
    managers.insert(id.clone(), entry);
    let merged = prune(merged, &managers, last.as_ref(), schema);
    let (mut managers, _) = smd_update(live, &merged, managers, &id, force, &reset, schema)?;
    let changed = compare_values(live, &merged) != Ordering::Equal;
    strip_manager(&mut managers, &id);
    if changed && let Some(e) = managers.get_mut(&id) {
        e.time = Some(now_string(opts.now));
    }
    Ok((merged, managers))
}

fn last_applied_of(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields the client-side apply annotation recorded and the live object still holds with the
/// same values; Kubernetes lets `kubectl` take those over from their current owners.
fn allowed_by_last_applied(
    live: &Value,
    api_version: &str,
    schema: &TypeSchema,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(last_applied_of(live)?).ok()?;
    let kind = last.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() || last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    validate(&last, schema).ok()?;
    let set = FieldSet::from_value(&last, schema);
    let cmp = compare(&last, live, schema).ok()?;
    Some(
        set.difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Rewrites the client-side apply annotation to the configuration, if the object has one,
/// dropping it when the annotations would exceed Kubernetes' total size limit.
fn sync_last_applied(obj: &mut Value, config: &Value) {
    if last_applied_of(obj).is_none() {
        return;
    }
    let mut recorded = config.clone();
    if let Some(meta) = recorded.get_mut("metadata").and_then(Value::as_object_mut) {
        match meta.get_mut("annotations") {
            Some(Value::Object(a)) if a.values().all(Value::is_string) => {
                a.remove(LAST_APPLIED_ANNOTATION);
            }
            // Go reads non-string annotations as none and writes none back.
            Some(Value::Object(_)) => {
                meta.remove("annotations");
            }
            _ => {}
        }
    }
    let mut text = String::new();
    write_go_json(&recorded, &mut text);
    text.push('\n');
    let Some(annotations) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    let total: usize = annotations
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SERVICE;
    use serde_json::json;

    const T0: &str = "2024-05-01T10:00:00Z";
    const T1: &str = "2024-05-01T11:00:00Z";
    const T2: &str = "2024-05-01T12:00:00Z";

    fn fields_json(e: &ManagedEntry) -> String {
        serde_json::to_string(&e.fields.to_fields_v1()).unwrap()
    }

    fn entry<'a>(entries: &'a [ManagedEntry], manager: &str, op: Operation) -> &'a ManagedEntry {
        entries
            .iter()
            .find(|e| e.manager == manager && e.operation == op)
            .unwrap_or_else(|| panic!("no {op:?} entry for {manager}: {entries:#?}"))
    }

    fn owns(entries: &[ManagedEntry], manager: &str, path: &str) -> bool {
        entries
            .iter()
            .filter(|e| e.manager == manager)
            .any(|e| e.fields.paths().iter().any(|p| p.to_string() == path))
    }

    /// A Service as stored after defaulting, before the registry assigns a cluster IP.
    fn stored_service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
            "spec": {
                "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                "type": "ClusterIP",
                "sessionAffinity": "None"
            },
            "status": {"loadBalancer": {}}
        })
    }

    fn with_uid(mut obj: Value) -> Value {
        obj["metadata"]["uid"] = json!("1b3c");
        obj["metadata"]["resourceVersion"] = json!("7");
        obj["metadata"]["creationTimestamp"] = json!(T0);
        obj
    }

    fn apply_config() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        })
    }

    #[test]
    fn managed_fields_round_trip_and_order() {
        let wire = json!([
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": "2024-05-01T12:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:selector": {}}}},
            {"manager": "kube-controller", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T09:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:loadBalancer": {"f:ingress": {}}}},
             "subresource": "status"},
            {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T08:00:00+01:00",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}
        ]);
        let entries = decode_managed_fields(&wire).unwrap();
        assert_eq!(entries[2].time.as_deref(), Some("2024-05-01T07:00:00Z"));
        assert_eq!(
            serde_json::to_string(&encode_managed_fields(&entries)).unwrap(),
            concat!(
                r#"[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2024-05-01T12:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:selector":{}}}},"#,
                r#"{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2024-05-01T07:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}},"#,
                r#"{"manager":"kube-controller","operation":"Update","apiVersion":"v1","time":"2024-05-01T09:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:loadBalancer":{"f:ingress":{}}}},"subresource":"status"}]"#
            )
        );
        assert_eq!(
            entries[1].identifier(),
            r#"{"manager":"kube-controller","operation":"Update","apiVersion":"v1","subresource":"status"}"#
        );
        assert_eq!(
            entries[0].identifier(),
            r#"{"manager":"kubectl","operation":"Apply"}"#
        );
        assert!(decode_managed_fields(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn malformed_managed_fields() {
        let ok = json!({"manager": "m", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}});
        let with = |k: &str, v: Value| {
            let mut e = ok.clone();
            e[k] = v;
            json!([e])
        };
        let cases: Vec<(Value, &str)> = vec![
            (json!({}), "managedFields must be a list, found object"),
            (json!([1]), "managed fields entry 0 is not an object"),
            (
                with("operation", json!("Patch")),
                "operation must be `Apply` or `Update`",
            ),
            (
                with("apiVersion", json!("")),
                "apiVersion must not be empty",
            ),
            (
                with("fieldsType", json!(null)),
                "missing fieldsType in managed fields entry 0",
            ),
            (
                with("fieldsType", json!("FieldsV2")),
                r#"invalid fieldsType "FieldsV2" in managed fields entry 0"#,
            ),
            (
                with("time", json!("yesterday")),
                r#"managed fields entry 0: invalid time "yesterday""#,
            ),
            (
                with("time", json!("2024-02-30T00:00:00Z")),
                r#"managed fields entry 0: invalid time "2024-02-30T00:00:00Z""#,
            ),
            (
                with("manager", json!(3)),
                "managed fields entry 0: manager must be a string",
            ),
            (
                with("fieldsV1", json!({"f:a": []})),
                r#"error decoding set in managed fields entry 0: FieldsV1 node at "/f:a" must be an object, found array"#,
            ),
            (
                with("fieldsV1", json!({"k:{": {}})),
                "error decoding set in managed fields entry 0: invalid JSON in path element \"k:{\": EOF while parsing an object at line 1 column 1",
            ),
            (
                with("fieldsV1", json!({"q": {}})),
                r#"error decoding set in managed fields entry 0: key must be 2 characters long: "q""#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(
                decode_managed_fields(&v).unwrap_err().to_string(),
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn update_tracking_create_then_label_change() {
        let created = stored_service();
        let entries = update_managed_fields(
            None,
            &created,
            vec![],
            "kubectl-create",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            (e.operation, e.api_version.as_str(), e.time.as_deref()),
            (Operation::Update, "v1", Some(T0))
        );
        // Identity metadata and the reset status are not tracked; maps and lists gained "." on
        // creation, structs did not.
        assert_eq!(
            fields_json(e),
            concat!(
                r#"{"f:metadata":{"f:labels":{".":{},"f:app":{},"f:tier":{}}},"f:spec":{"f:ports":{".":{},"#,
                r#""k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:protocol":{},"f:targetPort":{}}},"#,
                r#""f:selector":{},"f:sessionAffinity":{},"f:type":{}}}"#
            )
        );

        let live = with_uid(created);
        let mut relabeled = live.clone();
        relabeled["metadata"]["labels"] = json!({"app": "web2", "tier": "front", "team": "a"});
        let entries = update_managed_fields(
            Some(&live),
            &relabeled,
            entries,
            "kubectl-label",
            None,
            "v1",
            T1,
            &SERVICE,
        );
        assert_eq!(entries.len(), 2);
        assert_eq!(
            fields_json(entry(&entries, "kubectl-label", Operation::Update)),
            r#"{"f:metadata":{"f:labels":{"f:app":{},"f:team":{}}}}"#
        );
        assert!(!owns(&entries, "kubectl-create", ".metadata.labels.app"));
        assert!(owns(&entries, "kubectl-create", ".metadata.labels.tier"));
        assert_eq!(
            entry(&entries, "kubectl-create", Operation::Update)
                .time
                .as_deref(),
            Some(T0)
        );

        // Removing a label takes it from everyone; an entry left empty disappears.
        let mut unlabeled = relabeled.clone();
        unlabeled["metadata"]["labels"] = json!({"tier": "front"});
        let entries = update_managed_fields(
            Some(&relabeled),
            &unlabeled,
            entries,
            "kubectl-label",
            None,
            "v1",
            T2,
            &SERVICE,
        );
        assert_eq!(entries.len(), 1, "{entries:#?}");
        assert_eq!(entries[0].manager, "kubectl-create");
    }

    #[test]
    fn update_tracking_special_cases() {
        let live = with_uid(stored_service());
        let base = update_managed_fields(
            None,
            &stored_service(),
            vec![],
            "creator",
            None,
            "v1",
            T0,
            &SERVICE,
        );

        // An existing object without managed fields stays untracked.
        let mut changed = live.clone();
        changed["spec"]["type"] = json!("NodePort");
        assert!(
            update_managed_fields(Some(&live), &changed, vec![], "m", None, "v1", T1, &SERVICE)
                .is_empty()
        );

        // A write that changes nothing keeps entries and times as they are.
        let same = update_managed_fields(
            Some(&live),
            &live,
            base.clone(),
            "m",
            None,
            "v1",
            T1,
            &SERVICE,
        );
        assert_eq!(same, base);

        // Status writes own status; spec changes through /status are not tracked.
        let mut status = live.clone();
        status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
        status["spec"]["type"] = json!("NodePort");
        let entries = update_managed_fields(
            Some(&live),
            &status,
            base.clone(),
            "lb",
            Some("status"),
            "v1",
            T1,
            &SERVICE,
        );
        let lb = entry(&entries, "lb", Operation::Update);
        assert_eq!(lb.subresource.as_deref(), Some("status"));
        assert_eq!(
            fields_json(lb),
            r#"{"f:status":{"f:loadBalancer":{"f:ingress":{}}}}"#
        );
        assert!(owns(&entries, "creator", ".spec.type"));

        // Status changes through the main resource are not tracked either.
        let entries = update_managed_fields(
            Some(&live),
            &status,
            base.clone(),
            "m",
            None,
            "v1",
            T1,
            &SERVICE,
        );
        assert_eq!(
            fields_json(entry(&entries, "m", Operation::Update)),
            r#"{"f:spec":{"f:type":{}}}"#
        );
        assert!(!owns(&entries, "creator", ".spec.type"));

        // An empty manager name is recorded as "unknown".
        let entries =
            update_managed_fields(Some(&live), &changed, base, "", None, "v1", T1, &SERVICE);
        entry(&entries, "unknown", Operation::Update);
    }

    #[test]
    fn entries_for_update_follow_the_request() {
        let live_entries = update_managed_fields(
            None,
            &stored_service(),
            vec![],
            "creator",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        let mut live = with_uid(stored_service());
        set_managed_fields(&mut live, &live_entries);
        let mut new = live.clone();
        assert_eq!(
            managed_entries_for_update(Some(&live), &new, None),
            live_entries
        );
        new["metadata"]["managedFields"] = json!([]);
        assert!(managed_entries_for_update(Some(&live), &new, None).is_empty());
        new["metadata"]["managedFields"] = json!([{}]);
        assert!(managed_entries_for_update(Some(&live), &new, None).is_empty());
        new["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Bogus"}]);
        assert_eq!(
            managed_entries_for_update(Some(&live), &new, None),
            live_entries
        );
        new["metadata"]["managedFields"] = json!([]);
        assert_eq!(
            managed_entries_for_update(Some(&live), &new, Some("status")),
            live_entries
        );
    }

    #[test]
    fn apply_creates() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "kubectl",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        let e = &entries[0];
        assert_eq!(
            (e.manager.as_str(), e.operation, e.time.as_deref()),
            ("kubectl", Operation::Apply, Some(T0))
        );
        assert_eq!(
            fields_json(e),
            concat!(
                r#"{"f:metadata":{"f:labels":{"f:app":{},"f:tier":{}}},"f:spec":{"f:ports":{"#,
                r#""k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}},"f:selector":{}}}"#
            )
        );
        let mut want = apply_config();
        want["metadata"]["managedFields"] = encode_managed_fields(&entries);
        assert_eq!(obj, want);
        assert_eq!(
            serde_json::to_string(&obj["metadata"]["managedFields"]).unwrap(),
            concat!(
                r#"[{"manager":"kubectl","operation":"Apply","apiVersion":"v1","time":"2024-05-01T10:00:00Z","fieldsType":"FieldsV1","#,
                r#""fieldsV1":{"f:metadata":{"f:labels":{"f:app":{},"f:tier":{}}},"f:spec":{"f:ports":{"#,
                r#""k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}},"f:selector":{}}}}]"#
            )
        );
    }

    /// Stores an apply result as the server would: defaulted, with identity metadata.
    fn store(obj: &Value) -> Value {
        let mut obj = with_uid(obj.clone());
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for p in ports {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
            }
        }
        obj["spec"]["type"] = json!("ClusterIP");
        obj
    }

    #[test]
    fn reapply_changes_a_port_and_prunes_a_label() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "kubectl",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        let mut config = apply_config();
        config["metadata"]["labels"] = json!({"app": "web"});
        config["spec"]["ports"] = json!([{"port": 81, "targetPort": 8081}]);
        let (obj, entries) = apply(
            Some(&live),
            &config,
            entries,
            "kubectl",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
        // The old item was the applier's alone, so it goes with its defaulted protocol.
        assert_eq!(
            obj["spec"]["ports"],
            json!([{"port": 81, "targetPort": 8081}])
        );
        // Fields nobody applied stay.
        assert_eq!(obj["spec"]["type"], json!("ClusterIP"));
        assert_eq!(obj["metadata"]["uid"], json!("1b3c"));
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].time.as_deref(), Some(T1));
        assert_eq!(
            fields_json(&entries[0]),
            concat!(
                r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:ports":{"#,
                r#""k:{\"port\":81,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:targetPort":{}}},"f:selector":{}}}"#
            )
        );

        // Applying the same configuration again changes nothing, including the entry's time.
        let live = store(&obj);
        let (again, entries2) = apply(
            Some(&live),
            &config,
            entries.clone(),
            "kubectl",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(entries2, entries);
        let mut want = live.clone();
        want["metadata"]["managedFields"] = encode_managed_fields(&entries);
        assert_eq!(again, want);
    }

    #[test]
    fn apply_conflicts_with_an_updater_and_force_takes_over() {
        let created = stored_service();
        let entries = update_managed_fields(
            None,
            &created,
            vec![],
            "kubectl-client-side-apply",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        let live = with_uid(created);
        let mut config = apply_config();
        config["spec"]["ports"] = json!([{"port": 80, "targetPort": 9090}]);

        let err = apply(
            Some(&live),
            &config,
            entries.clone(),
            "deployer",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap_err();
        let want = r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.ports[port=80,protocol="TCP"].targetPort"#;
        assert_eq!(err.to_string(), want);
        let SsaError::Conflicts(conflicts) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(
            conflicts[0].cause_message(),
            r#"conflict with "kubectl-client-side-apply" using v1"#
        );
        assert_eq!(
            conflicts[0].field(),
            r#".spec.ports[port=80,protocol="TCP"].targetPort"#
        );
        assert_eq!(
            conflict_status(conflicts),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": want, "reason": "Conflict",
                "details": {"causes": [{
                    "reason": "FieldManagerConflict",
                    "message": "conflict with \"kubectl-client-side-apply\" using v1",
                    "field": ".spec.ports[port=80,protocol=\"TCP\"].targetPort"
                }]},
                "code": 409
            })
        );

        let (obj, entries) = apply(
            Some(&live),
            &config,
            entries,
            "deployer",
            true,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], json!(9090));
        let target = r#".spec.ports[port=80,protocol="TCP"].targetPort"#;
        assert!(owns(&entries, "deployer", target));
        assert!(!owns(&entries, "kubectl-client-side-apply", target));
        // Unchanged values are shared, not taken.
        assert!(owns(&entries, "deployer", ".metadata.labels.app"));
        assert!(owns(
            &entries,
            "kubectl-client-side-apply",
            ".metadata.labels.app"
        ));
    }

    #[test]
    fn multiple_conflicts_message() {
        let created = stored_service();
        let mut entries =
            update_managed_fields(None, &created, vec![], "b-writer", None, "v1", T0, &SERVICE);
        let live = with_uid(created);
        let mut status_writer = live.clone();
        status_writer["metadata"]["labels"]["tier"] = json!("back");
        entries = update_managed_fields(
            Some(&live),
            &status_writer,
            entries,
            "a-writer",
            Some("status"),
            "v1",
            T1,
            &SERVICE,
        );
        let live = status_writer;
        let mut config = apply_config();
        config["metadata"]["labels"] = json!({"app": "other", "tier": "front"});
        config["spec"]["type"] = json!("NodePort");
        let err = apply(
            Some(&live),
            &config,
            entries,
            "me",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            concat!(
                "Apply failed with 3 conflicts: conflicts with \"a-writer\" with subresource \"status\" using v1:\n",
                "- .metadata.labels.tier\n",
                "conflicts with \"b-writer\" using v1:\n",
                "- .metadata.labels.app\n",
                "- .spec.type"
            )
        );
    }

    #[test]
    fn conflicts_with_appliers_and_shared_ownership() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "alpha",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        let mut config = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"tier": "back"}}});
        let err = apply(
            Some(&live),
            &config,
            entries.clone(),
            "beta",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "alpha": .metadata.labels.tier"#
        );
        config["metadata"]["labels"]["tier"] = json!("front");
        let (_, entries) = apply(
            Some(&live),
            &config,
            entries,
            "beta",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap();
        assert!(owns(&entries, "alpha", ".metadata.labels.tier"));
        assert!(owns(&entries, "beta", ".metadata.labels.tier"));
    }

    #[test]
    fn co_owned_fields_are_not_pruned() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "alpha",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        let beta = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"tier": "front"}}});
        let (obj, entries) = apply(
            Some(&live),
            &beta,
            entries,
            "beta",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        let mut alpha = apply_config();
        alpha["metadata"]["labels"] = json!({"app": "web"});
        alpha["spec"]["ports"] = json!([]);
        let (obj, entries) = apply(
            Some(&live),
            &alpha,
            entries,
            "alpha",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap();
        // beta still applies the label, so it stays; the port was alpha's alone, so it goes.
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"app": "web", "tier": "front"})
        );
        assert!(obj["spec"].get("ports").is_none(), "{obj}");
        assert!(!owns(&entries, "alpha", ".metadata.labels.tier"));
        assert!(owns(&entries, "beta", ".metadata.labels.tier"));

        // A field an updater also owns survives the applier dropping it.
        let live = store(&obj);
        let mut edited = live.clone();
        edited["metadata"]["labels"]["app"] = json!("web");
        edited["spec"]["selector"] = json!({"app": "web", "extra": "1"});
        let entries = update_managed_fields(
            Some(&live),
            &edited,
            entries,
            "editor",
            None,
            "v1",
            T2,
            &SERVICE,
        );
        let mut alpha = alpha.clone();
        alpha["spec"] = json!({});
        let (obj, _) = apply(
            Some(&edited),
            &alpha,
            entries,
            "alpha",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(obj["spec"]["selector"], json!({"app": "web", "extra": "1"}));
    }

    #[test]
    fn first_apply_to_an_untracked_object() {
        let live = with_uid(stored_service());
        let mut config = apply_config();
        config["spec"]["type"] = json!("NodePort");
        let err = apply(
            Some(&live),
            &config,
            vec![],
            "me",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .spec.type"#
        );
        let (_, entries) =
            apply(Some(&live), &config, vec![], "me", true, "v1", T1, &SERVICE).unwrap();
        let stand_in = entry(&entries, "before-first-apply", Operation::Update);
        assert_eq!(stand_in.time.as_deref(), Some(T1));
        assert!(owns(
            &entries,
            "before-first-apply",
            ".spec.sessionAffinity"
        ));
        assert!(owns(&entries, "me", ".spec.type"));
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply() {
        let last_applied = r#"{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{},"name":"web"},"spec":{"ports":[{"port":80,"targetPort":8080}],"selector":{"app":"web"}}}"#;
        let mut created = stored_service();
        created["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: last_applied });
        let entries = update_managed_fields(
            None,
            &created,
            vec![],
            "kubectl-client-side-apply",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        let live = with_uid(created);
        let config = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"app": "web"}}
        });

        // Another manager name gets no allowance.
        assert!(matches!(
            apply(
                Some(&live),
                &config,
                entries.clone(),
                "other",
                false,
                "v1",
                T1,
                &SERVICE
            ),
            Err(SsaError::Conflicts(_))
        ));

        let (obj, entries) = apply(
            Some(&live),
            &config,
            entries,
            "kubectl",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], json!(9090));
        assert!(owns(
            &entries,
            "kubectl",
            r#".spec.ports[port=80,protocol="TCP"].targetPort"#
        ));
        assert_eq!(
            obj["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
            json!(
                "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"labels\":{\"app\":\"web\"},\"name\":\"web\"},\"spec\":{\"ports\":[{\"port\":80,\"targetPort\":9090}],\"selector\":{\"app\":\"web\"}}}\n"
            )
        );

        // A conflict on a field the annotation does not vouch for still fails.
        let mut config = config;
        config["spec"]["type"] = json!("NodePort");
        let err = apply(
            Some(&live),
            &config,
            update_managed_fields(
                None,
                &stored_service(),
                vec![],
                "kubectl-client-side-apply",
                None,
                "v1",
                T0,
                &SERVICE,
            ),
            "kubectl",
            false,
            "v1",
            T1,
            &SERVICE,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: .spec.type"#
        );
    }

    #[test]
    fn apply_rejects_bad_configurations() {
        let live = with_uid(stored_service());
        let with = |f: &dyn Fn(&mut Value)| {
            let mut c = apply_config();
            f(&mut c);
            c
        };
        let cases: Vec<(Value, &str)> = vec![
            (
                json!([1]),
                "error decoding patch: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
            (
                with(&|c| c["apiVersion"] = json!("v2")),
                "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1",
            ),
            (
                with(&|c| c["metadata"]["managedFields"] = json!([])),
                "metadata.managedFields must be nil",
            ),
            (
                with(&|c| {
                    c["spec"]["ports"] = json!([{"port": 80}, {"port": 80, "protocol": "TCP"}])
                }),
                r#"failed to create typed patch object (/web; /v1, Kind=Service): .spec.ports: duplicate entries for key [port=80,protocol="TCP"]"#,
            ),
            (
                with(&|c| c["status"] = json!({"conditions": [{"status": "True"}]})),
                r#"failed to create typed patch object (/web; /v1, Kind=Service): .status.conditions: element 0: associative list with keys has an element that omits all key fields ["type"] (and doesn't have default values for any key fields)"#,
            ),
            (
                with(&|c| {
                    c["spec"]["ports"] = json!("80");
                    c["metadata"]["finalizers"] = json!([null]);
                }),
                "failed to create typed patch object (/web; /v1, Kind=Service): errors:\n  .metadata.finalizers: element 0: associative list without keys has an element that's an explicit null\n  .spec.ports: expected list, got \"80\"",
            ),
        ];
        for (config, want) in cases {
            let err = apply(Some(&live), &config, vec![], "m", false, "v1", T1, &SERVICE)
                .expect_err(&config.to_string());
            assert_eq!(err.to_string(), want, "{config}");
        }
        assert_eq!(check_apply_kind(&apply_config(), "v1", "Service"), Ok(()));
        assert_eq!(
            check_apply_kind(&apply_config(), "v1", "Pod")
                .unwrap_err()
                .to_string(),
            "invalid object type: /v1, Kind=Service"
        );
    }

    #[test]
    fn explicit_nulls_follow_smd() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "a",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        // A null leaf replaces the value and is owned.
        let mut config = apply_config();
        config["spec"]["type"] = json!(null);
        let (obj, entries) =
            apply(Some(&live), &config, entries, "a", true, "v1", T1, &SERVICE).unwrap();
        assert_eq!(obj["spec"].get("type"), Some(&Value::Null));
        assert!(owns(&entries, "a", ".spec.type"));

        // A null list keeps the live items in the merge, but the applier now owns the list rather
        // than its items, so the items it applied before are pruned...
        let live = store(&obj);
        config["spec"]["ports"] = json!(null);
        let (obj, entries) = apply(
            Some(&live),
            &config,
            entries,
            "a",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap();
        assert!(obj["spec"].get("ports").is_none(), "{obj}");
        assert!(owns(&entries, "a", ".spec.ports"));

        // ...while items somebody else owns stay.
        let mut live = store(&obj);
        live["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
        let mut other = live.clone();
        other["spec"]["ports"][0]["targetPort"] = json!(1);
        let entries = update_managed_fields(
            Some(&live),
            &other,
            entries,
            "editor",
            None,
            "v1",
            T2,
            &SERVICE,
        );
        let (obj, _) = apply(
            Some(&other),
            &config,
            entries,
            "a",
            false,
            "v1",
            T2,
            &SERVICE,
        )
        .unwrap();
        assert_eq!(obj["spec"]["ports"], other["spec"]["ports"]);
    }

    #[test]
    fn list_merge_order_follows_smd() {
        let schema = &SERVICE;
        let item = |p: i64| json!({"port": p, "protocol": "TCP"});
        let cases: Vec<(Vec<i64>, Vec<i64>, Vec<i64>)> = vec![
            (vec![1, 2, 3], vec![3, 4], vec![1, 2, 3, 4]),
            (vec![1, 2], vec![2, 1], vec![2, 1]),
            (vec![1, 9], vec![5, 1], vec![5, 1, 9]),
            (vec![], vec![7, 6], vec![7, 6]),
            (vec![4, 5], vec![], vec![4, 5]),
        ];
        for (live, config, want) in cases {
            let l = json!({"spec": {"ports": live.iter().map(|p| item(*p)).collect::<Vec<_>>()}});
            let c = json!({"spec": {"ports": config.iter().map(|p| item(*p)).collect::<Vec<_>>()}});
            let merged = merge(&l, &c, schema).unwrap();
            let got: Vec<i64> = merged["spec"]["ports"]
                .as_array()
                .map(|a| a.iter().map(|i| i["port"].as_i64().unwrap()).collect())
                .unwrap_or_default();
            assert_eq!(got, want, "{live:?} + {config:?}");
        }
        let sets = merge(
            &json!({"metadata": {"finalizers": ["a", "b"]}}),
            &json!({"metadata": {"finalizers": ["c", "a"]}}),
            schema,
        )
        .unwrap();
        assert_eq!(sets["metadata"]["finalizers"], json!(["c", "a", "b"]));
    }

    #[test]
    fn update_entries_are_capped() {
        let mut live = with_uid(stored_service());
        let mut entries = update_managed_fields(
            None,
            &stored_service(),
            vec![],
            "creator",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        for i in 0..11 {
            let mut next = live.clone();
            next["metadata"]["labels"][format!("l{i}")] = json!("x");
            let now = format!("2024-05-02T00:00:{i:02}Z");
            entries = update_managed_fields(
                Some(&live),
                &next,
                entries,
                &format!("m{i:02}"),
                None,
                "v1",
                &now,
                &SERVICE,
            );
            live = next;
        }
        let updaters: Vec<&str> = entries.iter().map(|e| e.manager.as_str()).collect();
        assert_eq!(updaters.len(), DEFAULT_MAX_UPDATE_MANAGERS, "{updaters:?}");
        let bucket = entry(&entries, ANCIENT_CHANGES, Operation::Update);
        assert_eq!(bucket.time.as_deref(), Some("2024-05-02T00:00:01Z"));
        assert!(owns(&entries, ANCIENT_CHANGES, ".metadata.labels.l0"));
        assert!(owns(&entries, ANCIENT_CHANGES, ".metadata.labels.l1"));
        assert!(owns(&entries, ANCIENT_CHANGES, ".spec.type"));
        assert!(
            !updaters.contains(&"creator")
                && !updaters.contains(&"m00")
                && !updaters.contains(&"m01")
        );
    }

    #[test]
    fn apply_to_the_status_subresource() {
        let (obj, entries) = apply(
            None,
            &apply_config(),
            vec![],
            "kubectl",
            false,
            "v1",
            T0,
            &SERVICE,
        )
        .unwrap();
        let live = store(&obj);
        let config = json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "LoadBalancer"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        let opts = ApplyOptions {
            manager: "ctrl",
            force: false,
            api_version: "v1",
            now: T1,
            subresource: Some("status"),
        };
        let (obj, entries) = apply_with(Some(&live), &config, entries, &opts, &SERVICE).unwrap();
        let ctrl = entry(&entries, "ctrl", Operation::Apply);
        assert_eq!(ctrl.subresource.as_deref(), Some("status"));
        assert_eq!(
            fields_json(ctrl),
            r#"{"f:status":{"f:conditions":{"k:{\"type\":\"Ready\"}":{".":{},"f:status":{},"f:type":{}}}}}"#
        );
        // The spec in the body is merged for the strategy to reset, but neither owned nor a
        // conflict with the main resource's applier.
        assert_eq!(obj["spec"]["type"], json!("LoadBalancer"));
        assert!(owns(&entries, "kubectl", ".spec.selector"));
    }

    #[test]
    fn writing_entries_into_an_object() {
        let entries = update_managed_fields(
            None,
            &stored_service(),
            vec![],
            "creator",
            None,
            "v1",
            T0,
            &SERVICE,
        );
        let mut obj = json!({"metadata": {"name": "web", "managedFields": [{"manager": "stale"}]}});
        set_managed_fields(&mut obj, &entries);
        assert_eq!(
            decode_managed_fields(&obj["metadata"]["managedFields"]).unwrap(),
            entries
        );
        set_managed_fields(&mut obj, &[]);
        assert_eq!(obj, json!({"metadata": {"name": "web"}}));
        let mut bare = json!({});
        set_managed_fields(&mut bare, &entries);
        assert!(bare["metadata"]["managedFields"].is_array());
    }

    #[test]
    fn time_parsing() {
        let cases = [
            ("2024-05-01T10:00:00Z", Some("2024-05-01T10:00:00Z")),
            ("2024-05-01T10:00:00.999Z", Some("2024-05-01T10:00:00Z")),
            ("2024-05-01T00:30:00+01:00", Some("2024-04-30T23:30:00Z")),
            ("2024-02-29T00:00:00-00:30", Some("2024-02-29T00:30:00Z")),
            ("1969-12-31T23:59:59Z", Some("1969-12-31T23:59:59Z")),
            ("2023-02-29T00:00:00Z", None),
            ("2024-05-01 10:00:00Z", None),
            ("2024-05-01T10:00:00", None),
            ("2024-05-01T10:00:00.Z", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_time(input).as_deref(), want, "{input}");
        }
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        fn arb_service() -> impl Strategy<Value = Value> {
            let port = (
                0i64..4,
                prop_oneof![Just("TCP"), Just("UDP")],
                prop::option::of(0i64..3),
            )
                .prop_map(|(p, proto, t)| {
                    let mut v = json!({"port": p, "protocol": proto});
                    if let Some(t) = t {
                        v["targetPort"] = json!(t);
                    }
                    v
                });
            let labels = prop::collection::btree_map("[a-c]", "[x-z]", 0..3);
            let scalar = prop_oneof![
                Just(Value::Null),
                Just(json!(1)),
                Just(json!("s")),
                Just(json!({})),
                Just(json!([]))
            ];
            (
                prop::collection::vec(port, 0..4),
                labels,
                prop::collection::vec("[a-c]", 0..3),
                scalar.clone(),
                scalar,
            )
                .prop_map(|(ports, labels, finalizers, odd1, odd2)| {
                    json!({
                        "apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": "web", "labels": labels, "finalizers": finalizers},
                        "spec": {"ports": ports, "type": odd1, "selector": odd2},
                    })
                })
        }

        proptest! {
            #[test]
            fn apply_and_update_never_panic(a in arb_service(), b in arb_service(), c in arb_service(), force: bool) {
                let entries = update_managed_fields(None, &a, vec![], "creator", None, "v1", T0, &SERVICE);
                let live = with_uid(a.clone());
                let entries = update_managed_fields(Some(&live), &b, entries, "editor", None, "v1", T1, &SERVICE);
                let live = with_uid(b.clone());
                let first = apply(Some(&live), &c, entries.clone(), "x", force, "v1", T2, &SERVICE);
                if let Ok((obj, entries)) = first {
                    let encoded = encode_managed_fields(&entries);
                    prop_assert_eq!(decode_managed_fields(&encoded).unwrap(), entries.clone());
                    let again = apply(Some(&obj), &c, entries, "x", false, "v1", T2, &SERVICE);
                    prop_assert!(again.is_ok(), "{:?}", again);
                }
                let _ = apply(None, &b, vec![], "kubectl", force, "v1", T0, &SERVICE);
            }
        }
    }
}
