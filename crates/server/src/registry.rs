//! The generic REST storage of every served kind: Kubernetes' `genericregistry.Store`.
//!
//! Objects are stored as JSON under `ResourceInfo::key`, without `metadata.resourceVersion`,
//! which is the key's `mod_revision` and is filled in on every read. Every write is one store
//! transaction guarded by compare-and-swap, so concurrent writers never lose an update.

use std::sync::Arc;

use base64::Engine;
use duostack_core::decode::{self, BodyFormat};
use duostack_core::error::{ApiError, FieldError, GroupResource, go_quote};
use duostack_core::kinds::{Kind, namespace as ns_kind};
use duostack_core::patch::{self, PatchError};
use duostack_core::resource::{NAMESPACES, ResourceInfo};
use duostack_core::selector::{FieldSelector, LabelSelector};
use duostack_core::ssa;
use duostack_store::{KeyValue, RangeRequest, Revision, Store, StoreError, Txn};
use http::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::hooks::{HookContext, Pending, RestHooks};
use crate::request::{FieldValidation, PatchType, WriteOptions};

/// Attempts at an optimistic write before giving up with a conflict.
const MAX_ATTEMPTS: usize = 16;
/// Namespaces that may not be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The result of a write: the HTTP status, the object (or Status) to return, and warnings.
#[derive(Debug)]
pub struct Outcome {
    pub code: StatusCode,
    pub object: Value,
    pub warnings: Vec<String>,
}

/// The object a request addresses.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub kind: &'static dyn Kind,
    /// The namespace of a namespaced kind; `None` for cluster-scoped kinds.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    /// The `status` subresource.
    pub status: bool,
}

impl Target<'_> {
    fn key(&self) -> String {
        self.kind.info().key(self.namespace, self.name)
    }
    fn gr(&self) -> GroupResource<'static> {
        self.kind.info().group_resource()
    }
}

/// A list read.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub limit: usize,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    kinds: Vec<&'static dyn Kind>,
    /// Registry hooks by resource plural (and group).
    hooks: Vec<(&'static ResourceInfo, Arc<dyn RestHooks>)>,
    /// Woken whenever a namespace starts terminating.
    pub namespace_terminating: Arc<Notify>,
}

pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.retry_after_seconds = Some(1);
            e.with_cause("ResourceVersionTooLarge", "Too large resource version", "")
        }
        other => ApiError::internal(other),
    }
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let m = obj.as_object_mut().expect("object");
    let entry = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("metadata object")
}

/// Reads a stored object and fills in its resourceVersion.
pub fn from_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("decoding stored object {}: {e}", kv.key)))?;
    set_rv(&mut v, kv.mod_revision);
    Ok(v)
}

fn set_rv(obj: &mut Value, rv: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), rv.to_string().into());
}

/// The stored bytes of an object: everything but the resourceVersion.
pub fn to_stored(obj: &Value) -> Vec<u8> {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&o).unwrap_or_default()
}

/// Parses a resourceVersion parameter.
pub fn parse_rv(s: &str) -> Result<Revision, ApiError> {
    s.parse::<u64>()
        .ok()
        .and_then(|v| Revision::try_from(v).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {}: must be a non-negative integer",
                go_quote(s)
            ))
        })
}

fn has_deletion(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|v| !v.is_null()))
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Random suffix alphabet of `generateName` (no vowels, no confusable characters).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_name(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect();
    // Keep the whole name within a DNS label.
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&t).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bad = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad("not base64"))?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad("not a continue token"))?;
    if t.v != "meta.k8s.io/v1" {
        return Err(bad(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    if t.start.contains("..") || t.start.starts_with('/') {
        return Err(bad("path traversal attempt detected"));
    }
    if t.rv <= 0 {
        return Err(bad("incorrect encoded start resourceVersion"));
    }
    Ok(t)
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, kinds: Vec<&'static dyn Kind>) -> Self {
        Self {
            store,
            kinds,
            hooks: Vec::new(),
            namespace_terminating: Arc::new(Notify::new()),
        }
    }

    /// Installs a kind's registry hooks (before the registry is shared).
    pub fn with_hooks(mut self, info: &'static ResourceInfo, hooks: Arc<dyn RestHooks>) -> Self {
        self.hooks.push((info, hooks));
        self
    }

    fn hooks_for(&self, kind: &'static dyn Kind) -> Option<Arc<dyn RestHooks>> {
        self.hooks
            .iter()
            .find(|(i, _)| std::ptr::eq(*i, kind.info()))
            .map(|(_, h)| h.clone())
    }

    /// After a failed transaction, tells the hooks which of their reservations the store
    /// already had (`hook_start` is the index of their first compare).
    fn learn_conflicts(
        &self,
        hooks: &Option<Arc<dyn RestHooks>>,
        resp: &duostack_store::TxnResponse,
        hook_start: usize,
    ) {
        let Some(h) = hooks else { return };
        for kv in resp.kvs.iter().skip(hook_start).flatten() {
            h.learn_taken(&kv.key);
        }
    }

    pub fn kinds(&self) -> &[&'static dyn Kind] {
        &self.kinds
    }

    pub fn kind(&self, group: &str, version: &str, plural: &str) -> Option<&'static dyn Kind> {
        self.kinds.iter().copied().find(|k| {
            let i = k.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    /// The served kind described by `info`.
    pub fn kind_for(&self, info: &'static ResourceInfo) -> Option<&'static dyn Kind> {
        self.kinds
            .iter()
            .copied()
            .find(|k| std::ptr::eq(k.info(), info))
    }

    fn namespace_kind(&self) -> &'static dyn Kind {
        self.kinds
            .iter()
            .copied()
            .find(|k| std::ptr::eq(k.info(), &NAMESPACES))
            .expect("namespaces are always served")
    }

    // -----------------------------------------------------------------------------------------
    // Decoding

    /// Decodes a create/update body into the object to store, applying field validation.
    pub fn decode_body(
        &self,
        kind: &'static dyn Kind,
        body: &[u8],
        format: BodyFormat,
        validation: FieldValidation,
    ) -> Result<Body, ApiError> {
        let info = kind.info();
        let parsed = decode::parse(body, format).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; {} parse error: {e}",
                info.kind,
                if format == BodyFormat::Json { "json" } else { "yaml" }
            ))
        })?;
        self.decode_value(kind, parsed.value, parsed.duplicates, validation, false)
    }

    fn decode_value(
        &self,
        kind: &'static dyn Kind,
        value: Value,
        duplicates: Vec<String>,
        validation: FieldValidation,
        no_defaults: bool,
    ) -> Result<Body, ApiError> {
        let info = kind.info();
        let Value::Object(map) = &value else {
            return Err(ApiError::bad_request(format!(
                "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: expected a JSON object, got {}",
                info.kind,
                json_type(&value)
            )));
        };
        if let Some(av) = map.get("apiVersion").and_then(Value::as_str)
            && !av.is_empty()
            && av != info.api_version()
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                info.api_version()
            )));
        }
        if let Some(k) = map.get("kind").and_then(Value::as_str)
            && !k.is_empty()
            && k != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                info.kind
            )));
        }
        let decoded = if no_defaults {
            kind.normalize(value)
        } else {
            kind.decode(value)
        }
        .map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version {ver} cannot be handled as a {kind}: {msg}",
                kind = info.kind,
                ver = go_quote(info.version),
                msg = e.message
            ))
        })?;
        let mut warnings = decoded.warnings;
        let extra = decoded.extra;
        let mut problems: Vec<String> = decoded
            .unknown
            .iter()
            .map(|p| format!("unknown field {}", go_quote(p)))
            .collect();
        problems.extend(
            duplicates
                .iter()
                .map(|p| format!("duplicate field {}", go_quote(p))),
        );
        match validation {
            FieldValidation::Ignore => {}
            FieldValidation::Warn => warnings.extend(problems),
            FieldValidation::Strict if !problems.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version {ver} cannot be handled as a {kind}: strict decoding error: {}",
                    problems.join(", "),
                    kind = info.kind,
                    ver = go_quote(info.version),
                )));
            }
            FieldValidation::Strict => {}
        }
        Ok(Body {
            value: decoded.value,
            warnings,
            extra,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Reads

    pub async fn get(&self, t: Target<'_>) -> Result<Value, ApiError> {
        let (kv, _) = self.store.get(&t.key()).await.map_err(store_error)?;
        match kv {
            Some(kv) => from_stored(&kv),
            None => Err(ApiError::not_found(t.gr(), t.name)),
        }
    }

    async fn get_kv(&self, t: Target<'_>) -> Result<Option<KeyValue>, ApiError> {
        Ok(self.store.get(&t.key()).await.map_err(store_error)?.0)
    }

    /// Lists objects of `kind` (in `namespace`, or everywhere), one page at a time.
    pub async fn list(
        &self,
        kind: &'static dyn Kind,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let info = kind.info();
        opts.field
            .check_fields(kind.selectable_fields())
            .map_err(|e| ApiError::bad_request(e.0))?;
        let prefix = info.prefix(namespace);
        let (mut revision, mut start_after) = (None, None);
        if let Some(token) = &opts.continue_token {
            let t = decode_continue(token)?;
            revision = Some(t.rv);
            start_after = Some(format!("{prefix}{}", t.start));
        } else {
            match (
                opts.resource_version.as_deref(),
                opts.resource_version_match.as_deref(),
            ) {
                (None | Some(""), None | Some("")) => {}
                (None | Some(""), Some(m)) => {
                    return Err(ApiError::bad_request(format!(
                        "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided (got {m:?})"
                    )));
                }
                (Some(rv), m) => {
                    let n = parse_rv(rv)?;
                    match m {
                        Some("Exact") => {
                            if n == 0 {
                                return Err(ApiError::bad_request(
                                    "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                                ));
                            }
                            revision = Some(n);
                        }
                        None | Some("") | Some("NotOlderThan") => {
                            let current =
                                self.store.current_revision().await.map_err(store_error)?;
                            if n > current {
                                return Err(store_error(StoreError::FutureRevision {
                                    requested: n,
                                    current,
                                }));
                            }
                        }
                        Some(other) => {
                            return Err(ApiError::bad_request(format!(
                                "resourceVersionMatch: Unsupported value: {}: supported values: \"Exact\", \"NotOlderThan\"",
                                go_quote(other)
                            )));
                        }
                    }
                }
            }
        }

        // A field selector on one name reads one key instead of the whole prefix.
        if let Some(name) = opts.field.single_name()
            && opts.continue_token.is_none()
            && (namespace.is_some() || !info.namespaced)
            && revision.is_none()
        {
            let t = Target {
                kind,
                namespace,
                name,
                status: false,
            };
            let (kv, rev) = self.store.get(&t.key()).await.map_err(store_error)?;
            let mut items = Vec::new();
            if let Some(kv) = kv {
                let obj = from_stored(&kv)?;
                if self.matches(kind, &obj, opts) {
                    items.push(obj);
                }
            }
            return Ok(ListResult {
                items,
                revision: rev,
                continue_token: None,
            });
        }

        let limit = opts.limit;
        let batch = if limit == 0 { 0 } else { limit.max(64) };
        let mut items = Vec::new();
        let mut continue_token = None;
        loop {
            let resp = self
                .store
                .range(RangeRequest {
                    prefix: prefix.clone(),
                    start_after: start_after.clone(),
                    limit: batch,
                    revision,
                })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if opts.continue_token.is_some() => {
                        let mut err = ApiError::expired(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                        );
                        err.reason = duostack_core::error::Reason::Expired;
                        err
                    }
                    other => store_error(other),
                })?;
            revision = Some(resp.revision);
            let n = resp.kvs.len();
            let mut last_key = None;
            for kv in &resp.kvs {
                last_key = Some(kv.key.to_string());
                let obj = from_stored(kv)?;
                if self.matches(kind, &obj, opts) {
                    items.push(obj);
                    if limit > 0 && items.len() == limit {
                        break;
                    }
                }
            }
            let exhausted_batch = last_key.as_deref() == resp.kvs.last().map(|k| &*k.key);
            if limit > 0 && items.len() == limit {
                let more = resp.more || !exhausted_batch;
                if more && let Some(k) = last_key {
                    let rel = k.strip_prefix(&prefix).unwrap_or(&k);
                    continue_token = Some(encode_continue(resp.revision, rel));
                }
                break;
            }
            if !resp.more || n == 0 {
                break;
            }
            start_after = last_key;
        }
        Ok(ListResult {
            items,
            revision: revision.unwrap_or(0),
            continue_token,
        })
    }

    pub fn matches(&self, kind: &'static dyn Kind, obj: &Value, opts: &ListOptions) -> bool {
        if !opts.label.is_empty() {
            let labels: std::collections::BTreeMap<String, String> = meta(obj)
                .and_then(|m| m.get("labels"))
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            if !opts.label.matches(&labels) {
                return false;
            }
        }
        opts.field.is_empty() || opts.field.matches(|f| kind.field(obj, f))
    }

    // -----------------------------------------------------------------------------------------
    // Create

    async fn check_namespace(&self, namespace: &str, t: Target<'_>) -> Result<Revision, ApiError> {
        let ns = Target {
            kind: self.namespace_kind(),
            namespace: None,
            name: namespace,
            status: false,
        };
        match self.get_kv(ns).await? {
            None => Err(ApiError::not_found(NAMESPACES.group_resource(), namespace)),
            Some(kv) => {
                let obj = from_stored(&kv)?;
                if has_deletion(&obj) {
                    return Err(ApiError::forbidden(
                        t.gr(),
                        t.name,
                        format!(
                            "unable to create new content in namespace {namespace} because it is being terminated"
                        ),
                    ));
                }
                Ok(kv.mod_revision)
            }
        }
    }

    /// Fills in and checks the namespace of a request object.
    fn bind_namespace(
        &self,
        kind: &'static dyn Kind,
        namespace: Option<&str>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        let m = meta_mut(obj);
        if kind.info().namespaced {
            let url_ns = namespace.unwrap_or("");
            match m.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    m.insert("namespace".into(), url_ns.into());
                }
                Some(ns) if ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {}
            }
        } else {
            m.remove("namespace");
        }
        Ok(())
    }

    pub async fn create(
        &self,
        kind: &'static dyn Kind,
        namespace: Option<&str>,
        body: &[u8],
        format: BodyFormat,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let body = self.decode_body(kind, body, format, opts.field_validation)?;
        if meta_str(&body.value, "resourceVersion").is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        self.create_object(
            kind,
            namespace,
            body.value,
            opts,
            body.warnings,
            false,
            &body.extra,
        )
        .await
    }

    /// The create path shared by POST, create-on-update and server-side apply.
    #[allow(clippy::too_many_arguments)]
    async fn create_object(
        &self,
        kind: &'static dyn Kind,
        namespace: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
        warnings: Vec<String>,
        managed_done: bool,
        extra: &Map<String, Value>,
    ) -> Result<Outcome, ApiError> {
        let info = kind.info();
        self.bind_namespace(kind, namespace, &mut obj)?;
        let now = now_rfc3339();
        let generate = meta_str(&obj, "generateName").map(str::to_owned);
        {
            let m = meta_mut(&mut obj);
            m.remove("resourceVersion");
            m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
            m.insert("creationTimestamp".into(), now.clone().into());
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("selfLink");
            if info.tracks_generation {
                m.insert("generation".into(), 1.into());
            } else {
                m.remove("generation");
            }
        }
        let needs_name = meta_str(&obj, "name").is_none();
        if needs_name && let Some(prefix) = &generate {
            meta_mut(&mut obj).insert("name".into(), generate_name(prefix).into());
        }
        // Ownership is recorded for what the client sent (after defaulting), before the
        // registry fills in allocated values, as Kubernetes' field manager does.
        if !managed_done {
            track_managed(kind, None, &mut obj, &opts.field_manager, None, &now);
        }
        let hooks = self.hooks_for(kind);
        let base = obj;
        let mut name = meta_str(&base, "name").unwrap_or("").to_owned();
        for attempt in 0..MAX_ATTEMPTS {
            let mut obj = base.clone();
            meta_mut(&mut obj).insert("name".into(), name.clone().into());
            let t = Target {
                kind,
                namespace,
                name: &name,
                status: false,
            };
            // A missing or terminating namespace is reported before anything else.
            let ns_rev = match (info.namespaced, namespace) {
                (true, ns) => Some(self.check_namespace(ns.unwrap_or(""), t).await?),
                (false, _) => None,
            };
            let pending = match &hooks {
                Some(h) => Some(h.begin_create(
                    &mut obj,
                    &HookContext {
                        dry_run: opts.dry_run,
                        extra,
                    },
                )?),
                None => None,
            };
            kind.prepare_for_create(&mut obj);
            let errs = kind.validate(&obj);
            if !errs.is_empty() {
                return Err(ApiError::invalid(info.group_kind(), &name, &errs));
            }
            let mut warnings = warnings.clone();
            if let Some(p) = &pending {
                warnings.extend(p.warnings.iter().cloned());
            }
            if opts.dry_run {
                // Report a name collision the way a real create would.
                if self.get_kv(t).await?.is_some() {
                    return Err(ApiError::already_exists(t.gr(), &name));
                }
                return Ok(Outcome {
                    code: StatusCode::CREATED,
                    object: obj,
                    warnings,
                });
            }
            let key = t.key();
            let mut txn = Txn::new().absent(key.clone());
            if let Some(rev) = ns_rev {
                txn = txn.unchanged_since(NAMESPACES.key(None, namespace.unwrap_or("")), rev);
            }
            let hook_start = txn.compares.len();
            if let Some(p) = &pending {
                txn.compares.extend(p.compares.iter().cloned());
                txn.success.extend(p.ops.iter().cloned());
            }
            let resp = self
                .store
                .txn(txn.put(key, to_stored(&obj)))
                .await
                .map_err(store_error)?;
            if resp.succeeded {
                set_rv(&mut obj, resp.revision);
                if let Some(p) = pending {
                    p.commit();
                }
                return Ok(Outcome {
                    code: StatusCode::CREATED,
                    object: obj,
                    warnings,
                });
            }
            if resp.kvs.first().is_some_and(Option::is_some) {
                if generate.is_some() && needs_name && attempt + 1 < MAX_ATTEMPTS {
                    name = generate_name(generate.as_deref().unwrap_or(""));
                    continue;
                }
                return Err(ApiError::already_exists(t.gr(), &name));
            }
            // The namespace changed, or a reservation was taken by someone else: undo this
            // attempt's reservations, then learn what the store holds (in that order, so the
            // undo does not free what was just learned) and try again.
            drop(pending);
            self.learn_conflicts(&hooks, &resp, hook_start);
        }
        Err(ApiError::timeout(
            "the create could not be completed: it kept conflicting with concurrent writes",
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Update and patch

    /// PUT of a whole object.
    pub async fn update(
        &self,
        t: Target<'_>,
        body: &[u8],
        format: BodyFormat,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let body = self.decode_body(t.kind, body, format, opts.field_validation)?;
        let (mut obj, warnings, extra) = (body.value, body.warnings, body.extra);
        match meta_str(&obj, "name") {
            None => {
                meta_mut(&mut obj).insert("name".into(), t.name.into());
            }
            Some(n) if n != t.name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({})",
                    t.name
                )));
            }
            _ => {}
        }
        self.bind_namespace(t.kind, t.namespace, &mut obj)?;
        let precondition = match meta_str(&obj, "resourceVersion") {
            Some(rv) => Some(parse_rv(rv)?),
            None => None,
        };
        self.update_loop(t, opts, warnings, precondition, |_current| {
            Ok(Candidate {
                obj: obj.clone(),
                managed_done: false,
                create_allowed: true,
                extra: extra.clone(),
            })
        })
        .await
    }

    /// PATCH in any of the four formats.
    pub async fn patch(
        &self,
        t: Target<'_>,
        body: &[u8],
        patch_type: PatchType,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let info = t.kind.info();
        let format = if patch_type == PatchType::Apply {
            BodyFormat::Yaml
        } else {
            BodyFormat::Json
        };
        let parsed = decode::parse(body, format)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        let patch = parsed.value;

        let mut warnings = Vec::new();
        let mut apply_config = None;
        let mut apply_extra = Map::new();
        if patch_type == PatchType::Apply {
            if !patch.is_object() {
                return Err(ApiError::bad_request(format!(
                    "error decoding patch: expected an object, got {}",
                    json_type(&patch)
                )));
            }
            ssa::check_apply_kind(&patch, info.api_version(), info.kind)
                .map_err(|e| ssa_error(t, e))?;
            let body = self.decode_value(
                t.kind,
                patch.clone(),
                parsed.duplicates.clone(),
                opts.field_validation,
                true,
            )?;
            warnings = body.warnings;
            apply_extra = body.extra;
            let config = body.value;
            match meta_str(&config, "name") {
                Some(n) if n != t.name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({})",
                        t.name
                    )));
                }
                _ => {}
            }
            if meta(&config).is_some_and(|m| m.get("managedFields").is_some_and(|v| !v.is_null())) {
                return Err(ApiError::bad_request("metadata.managedFields must be nil"));
            }
            apply_config = Some(config);
        }

        let field_validation = opts.field_validation;
        let dup = parsed.duplicates;
        let extra_warnings = std::sync::Mutex::new(Vec::new());
        let mut outcome = self
            .update_loop(t, opts, warnings, None, |current| {
                let now = now_rfc3339();
                if let Some(config) = &apply_config {
                    let entries = current
                        .and_then(|c| meta(c))
                        .and_then(|m| m.get("managedFields"))
                        .map(ssa::decode_managed_fields)
                        .transpose()
                        .map_err(|e| ApiError::internal(format!("reading managedFields: {e}")))?
                        .unwrap_or_default();
                    let (merged, entries) = ssa::apply(
                        current,
                        config,
                        entries,
                        &opts.field_manager,
                        opts.force,
                        info.api_version(),
                        &now,
                        t.kind.schema(),
                    )
                    .map_err(|e| ssa_error(t, e))?;
                    let mut obj = self
                        .decode_value(t.kind, merged, Vec::new(), FieldValidation::Ignore, false)?
                        .value;
                    set_managed(&mut obj, &entries);
                    if let Some(rv) = current.and_then(|c| meta_str(c, "resourceVersion")) {
                        meta_mut(&mut obj).insert("resourceVersion".into(), rv.into());
                    }
                    return Ok(Candidate {
                        obj,
                        managed_done: true,
                        create_allowed: true,
                        extra: apply_extra.clone(),
                    });
                }
                let Some(current) = current else {
                    return Err(ApiError::not_found(t.gr(), t.name));
                };
                let patched = match patch_type {
                    PatchType::Json => patch::json_patch(current, &patch),
                    PatchType::Merge => patch::merge_patch(current, &patch),
                    PatchType::Strategic => {
                        patch::strategic::strategic_merge_patch(current, &patch, t.kind.schema())
                            .map_err(smp_error)
                    }
                    PatchType::Apply => unreachable!("handled above"),
                }
                .map_err(|e| match e {
                    PatchError::Malformed(m) => ApiError::bad_request(m),
                    PatchError::NotApplicable(m) => ApiError::unprocessable(m),
                })?;
                let body =
                    self.decode_value(t.kind, patched, dup.clone(), field_validation, false)?;
                if let Ok(mut ew) = extra_warnings.lock() {
                    *ew = body.warnings;
                }
                Ok(Candidate {
                    obj: body.value,
                    managed_done: false,
                    create_allowed: false,
                    extra: body.extra,
                })
            })
            .await?;
        if let Ok(ew) = extra_warnings.into_inner() {
            outcome.warnings.extend(ew);
        }
        Ok(outcome)
    }

    /// Reads the current object, builds the new one from it, and writes it with
    /// compare-and-swap, retrying when someone else wrote in between (unless the request
    /// carried a resourceVersion precondition).
    async fn update_loop<F>(
        &self,
        t: Target<'_>,
        opts: &WriteOptions,
        warnings: Vec<String>,
        precondition: Option<Revision>,
        build: F,
    ) -> Result<Outcome, ApiError>
    where
        F: Fn(Option<&Value>) -> Result<Candidate, ApiError>,
    {
        let info = t.kind.info();
        let hooks = self.hooks_for(t.kind);
        for _ in 0..MAX_ATTEMPTS {
            let current = self.get_kv(t).await?;
            let old = current.as_ref().map(from_stored).transpose()?;
            let candidate = build(old.as_ref())?;
            let Some(kv) = current else {
                if t.status
                    || !candidate.create_allowed
                    || !info.allow_create_on_update
                    || precondition.is_some()
                {
                    return Err(ApiError::not_found(t.gr(), t.name));
                }
                let mut obj = candidate.obj;
                meta_mut(&mut obj).remove("resourceVersion");
                return self
                    .create_object(
                        t.kind,
                        t.namespace,
                        obj,
                        opts,
                        warnings,
                        candidate.managed_done,
                        &candidate.extra,
                    )
                    .await;
            };
            let old = old.expect("decoded with kv");
            let mut new = candidate.obj;
            // The request's resourceVersion (or the one a patch kept from the current object)
            // must be the current one.
            let requested = match precondition {
                Some(rv) => Some(rv),
                None => match meta_str(&new, "resourceVersion") {
                    Some(rv) => Some(parse_rv(rv)?),
                    None => None,
                },
            };
            if let Some(rv) = requested
                && rv != kv.mod_revision
            {
                return Err(ApiError::stale(t.gr(), t.name));
            }
            let pending = self.prepare_update(
                t,
                &mut new,
                &old,
                opts,
                candidate.managed_done,
                &candidate.extra,
            )?;
            let mut warnings = warnings.clone();
            if let Some(p) = &pending {
                warnings.extend(p.warnings.iter().cloned());
            }

            if to_stored(&new) == to_stored(&old) {
                // Nothing changed: Kubernetes skips the write and returns the object as is.
                return Ok(Outcome {
                    code: StatusCode::OK,
                    object: old,
                    warnings,
                });
            }
            if opts.dry_run {
                return Ok(Outcome {
                    code: StatusCode::OK,
                    object: new,
                    warnings,
                });
            }
            let key = t.key();
            let finished = has_deletion(&new) && finalizers(&new).is_empty();
            // Removing the last finalizer deletes the object, and frees what it held.
            let pending = match (finished, &hooks) {
                (true, Some(h)) => Some(h.begin_delete(&old, false)),
                (true, None) => None,
                (false, _) => pending,
            };
            let mut txn = Txn::new().unchanged_since(key.clone(), kv.mod_revision);
            let hook_start = txn.compares.len();
            if let Some(p) = &pending {
                txn.compares.extend(p.compares.iter().cloned());
                txn.success.extend(p.ops.iter().cloned());
            }
            let txn = if finished {
                txn.delete(key)
            } else {
                txn.put(key, to_stored(&new))
            };
            let resp = self.store.txn(txn).await.map_err(store_error)?;
            if resp.succeeded {
                set_rv(&mut new, resp.revision);
                if let Some(p) = pending {
                    p.commit();
                }
                return Ok(Outcome {
                    code: StatusCode::OK,
                    object: new,
                    warnings,
                });
            }
            drop(pending);
            self.learn_conflicts(&hooks, &resp, hook_start);
            if requested.is_some() && precondition.is_some() {
                return Err(ApiError::stale(t.gr(), t.name));
            }
        }
        Err(ApiError::stale(t.gr(), t.name))
    }

    /// Carries the server-owned fields over from the stored object, records field ownership,
    /// runs the kind's registry hook and update preparation, and validates.
    fn prepare_update(
        &self,
        t: Target<'_>,
        new: &mut Value,
        old: &Value,
        opts: &WriteOptions,
        managed_done: bool,
        extra: &Map<String, Value>,
    ) -> Result<Option<Pending>, ApiError> {
        let info = t.kind.info();
        {
            let old_meta = meta(old).cloned().unwrap_or_default();
            let m = meta_mut(new);
            m.insert("name".into(), t.name.into());
            if info.namespaced {
                m.insert("namespace".into(), t.namespace.unwrap_or("").into());
            }
            if m.get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
                && let Some(uid) = old_meta.get("uid")
            {
                m.insert("uid".into(), uid.clone());
            }
            for field in [
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(field) {
                    Some(v) => m.insert(field.into(), v.clone()),
                    None => m.remove(field),
                };
            }
        }
        if !managed_done {
            let sub = t.status.then_some("status");
            track_managed(
                t.kind,
                Some(old),
                new,
                &opts.field_manager,
                sub,
                &now_rfc3339(),
            );
        }
        let pending = match (t.status, self.hooks_for(t.kind)) {
            (false, Some(h)) => Some(h.begin_update(
                new,
                old,
                &HookContext {
                    dry_run: opts.dry_run,
                    extra,
                },
            )?),
            _ => None,
        };
        if t.status {
            t.kind.prepare_for_status_update(new, old);
        } else {
            t.kind.prepare_for_update(new, old);
            if info.tracks_generation && spec_changed(new, old) {
                let g = meta(old)
                    .and_then(|m| m.get("generation"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(new).insert("generation".into(), (g + 1).into());
            }
        }
        let errs = if t.status {
            t.kind.validate_status_update(new, old)
        } else {
            t.kind.validate_update(new, old)
        };
        if !errs.is_empty() {
            return Err(ApiError::invalid(info.group_kind(), t.name, &errs));
        }
        Ok(pending)
    }

    // -----------------------------------------------------------------------------------------
    // Delete

    pub async fn delete(
        &self,
        t: Target<'_>,
        body: &[u8],
        dry_run_query: bool,
    ) -> Result<Outcome, ApiError> {
        let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            decode::parse(body, BodyFormat::Json)
                .map_err(|e| ApiError::bad_request(format!("decoding DeleteOptions: {e}")))?
                .value
        };
        if !options.is_object() {
            return Err(ApiError::bad_request(
                "decoding DeleteOptions: expected a JSON object",
            ));
        }
        let dry_run = dry_run_query
            || options
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        if let Some(p) = options.get("propagationPolicy").and_then(Value::as_str)
            && !["Orphan", "Background", "Foreground"].contains(&p)
        {
            return Err(ApiError::invalid(
                duostack_core::error::GroupKind {
                    group: "meta.k8s.io",
                    kind: "DeleteOptions",
                },
                "",
                &[FieldError::not_supported(
                    "propagationPolicy",
                    p,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
        let pre_uid = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let pre_rv = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);

        for _ in 0..MAX_ATTEMPTS {
            let Some(kv) = self.get_kv(t).await? else {
                return Err(ApiError::not_found(t.gr(), t.name));
            };
            let mut obj = from_stored(&kv)?;
            let uid = meta_str(&obj, "uid").unwrap_or("").to_owned();
            if let Some(p) = &pre_uid
                && *p != uid
            {
                return Err(ApiError::conflict(
                    t.gr(),
                    t.name,
                    format!(
                        "Precondition failed: UID in precondition: {p}, UID in object meta: {uid}"
                    ),
                ));
            }
            if let Some(p) = &pre_rv
                && *p != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    t.gr(),
                    t.name,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {p}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let is_namespace = std::ptr::eq(t.kind.info(), &NAMESPACES);
            if is_namespace && IMMORTAL_NAMESPACES.contains(&t.name) {
                return Err(ApiError::forbidden(
                    t.gr(),
                    t.name,
                    "this namespace may not be deleted",
                ));
            }
            let spec_finalizers = obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            let pending = !finalizers(&obj).is_empty() || (is_namespace && spec_finalizers);
            if pending {
                if has_deletion(&obj) {
                    if is_namespace {
                        let mut e = ApiError::conflict(t.gr(), t.name, "");
                        e.message = "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.".into();
                        return Err(e);
                    }
                    return Ok(Outcome {
                        code: StatusCode::ACCEPTED,
                        object: obj,
                        warnings: vec![],
                    });
                }
                {
                    let m = meta_mut(&mut obj);
                    m.insert("deletionTimestamp".into(), now_rfc3339().into());
                    m.insert("deletionGracePeriodSeconds".into(), 0.into());
                }
                if is_namespace
                    && let Some(status) = obj
                        .as_object_mut()
                        .map(|o| o.entry("status").or_insert_with(|| json!({})))
                    && let Some(s) = status.as_object_mut()
                {
                    s.insert("phase".into(), ns_kind::PHASE_TERMINATING.into());
                }
                if dry_run {
                    return Ok(Outcome {
                        code: StatusCode::OK,
                        object: obj,
                        warnings: vec![],
                    });
                }
                let resp = self
                    .store
                    .txn(
                        Txn::new()
                            .unchanged_since(t.key(), kv.mod_revision)
                            .put(t.key(), to_stored(&obj)),
                    )
                    .await
                    .map_err(store_error)?;
                if !resp.succeeded {
                    continue;
                }
                set_rv(&mut obj, resp.revision);
                if is_namespace {
                    self.namespace_terminating.notify_one();
                }
                return Ok(Outcome {
                    code: if is_namespace {
                        StatusCode::OK
                    } else {
                        StatusCode::ACCEPTED
                    },
                    object: obj,
                    warnings: vec![],
                });
            }
            if dry_run {
                return Ok(deleted_outcome(t, obj, &uid));
            }
            let pending = self.hooks_for(t.kind).map(|h| h.begin_delete(&obj, false));
            let mut txn = Txn::new().unchanged_since(t.key(), kv.mod_revision);
            if let Some(p) = &pending {
                txn.compares.extend(p.compares.iter().cloned());
                txn.success.extend(p.ops.iter().cloned());
            }
            let resp = self
                .store
                .txn(txn.delete(t.key()))
                .await
                .map_err(store_error)?;
            if resp.succeeded {
                set_rv(&mut obj, resp.revision);
                if let Some(p) = pending {
                    p.commit();
                }
                return Ok(deleted_outcome(t, obj, &uid));
            }
        }
        Err(ApiError::stale(t.gr(), t.name))
    }

    /// Deletes every object matching the selectors (DELETE on a collection).
    pub async fn delete_collection(
        &self,
        kind: &'static dyn Kind,
        namespace: Option<&str>,
        opts: &ListOptions,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let list = self.list(kind, namespace, opts).await?;
        let mut deleted = Vec::new();
        for item in list.items {
            let name = meta_str(&item, "name").unwrap_or("").to_owned();
            let ns = meta_str(&item, "namespace").map(str::to_owned);
            let t = Target {
                kind,
                namespace: ns.as_deref(),
                name: &name,
                status: false,
            };
            match self.delete(t, b"", dry_run).await {
                Ok(o) => deleted.push(strip_type_meta(o.object)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let info = kind.info();
        Ok(Outcome {
            code: StatusCode::OK,
            object: json!({
                "kind": info.list_kind,
                "apiVersion": info.api_version(),
                "metadata": {"resourceVersion": list.revision.to_string()},
                "items": deleted,
            }),
            warnings: vec![],
        })
    }
}

/// What the build step of an update produced.
struct Candidate {
    obj: Value,
    /// Server-side apply already computed managedFields.
    managed_done: bool,
    /// A missing object may be created (PUT and apply, not other patches).
    create_allowed: bool,
    /// Fields outside the type, for the kind's hooks.
    extra: Map<String, Value>,
}

/// A decoded request body.
pub struct Body {
    pub value: Value,
    pub warnings: Vec<String>,
    pub extra: Map<String, Value>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn spec_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        v
    };
    strip(new) != strip(old)
}

/// Items of a typed list carry no apiVersion/kind in Kubernetes' JSON.
pub fn strip_type_meta(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn deleted_outcome(t: Target<'_>, obj: Value, uid: &str) -> Outcome {
    let info = t.kind.info();
    let object = if info.delete_returns_object {
        obj
    } else {
        let mut details = json!({"name": t.name, "kind": info.plural, "uid": uid});
        if !info.group.is_empty() {
            details["group"] = info.group.into();
        }
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
    };
    Outcome {
        code: StatusCode::OK,
        object,
        warnings: vec![],
    }
}

fn set_managed(obj: &mut Value, entries: &[ssa::ManagedEntry]) {
    let m = meta_mut(obj);
    if entries.is_empty() {
        m.remove("managedFields");
    } else {
        m.insert("managedFields".into(), ssa::encode_managed_fields(entries));
    }
}

/// Records which fields `manager` changed (Kubernetes' field manager for non-apply writes).
fn track_managed(
    kind: &'static dyn Kind,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let requested = meta(new).and_then(|m| m.get("managedFields")).cloned();
    let base = match &requested {
        // An explicit empty list resets ownership.
        Some(Value::Array(a)) if a.is_empty() => {
            meta_mut(new).remove("managedFields");
            return;
        }
        Some(v) if !v.is_null() => ssa::decode_managed_fields(v).ok(),
        _ => None,
    };
    let base = base.unwrap_or_else(|| {
        old.and_then(meta)
            .and_then(|m| m.get("managedFields"))
            .and_then(|v| ssa::decode_managed_fields(v).ok())
            .unwrap_or_default()
    });
    let entries = ssa::update_managed_fields(
        old,
        new,
        base,
        manager,
        subresource,
        kind.info().api_version(),
        now,
        kind.schema(),
    );
    set_managed(new, &entries);
}

fn ssa_error(t: Target<'_>, e: ssa::SsaError) -> ApiError {
    match e {
        ssa::SsaError::Conflicts(conflicts) => {
            let mut err = ApiError::conflict(t.gr(), t.name, "");
            err.message = ssa::conflict_message(&conflicts);
            err.causes = conflicts
                .iter()
                .map(|c| duostack_core::error::Cause {
                    reason: "FieldManagerConflict".into(),
                    message: c.cause_message(),
                    field: c.field().to_owned(),
                })
                .collect();
            err
        }
        // Kubernetes answers these with 500; they are the client's doing, so 422 here.
        e @ (ssa::SsaError::InvalidConfig { .. }
        | ssa::SsaError::Merge(_)
        | ssa::SsaError::Compare(_)) => ApiError::unprocessable(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Kubernetes answers malformed strategic patches with 400 and patches that don't fit the
/// object with 422 (where it would answer 500, 422 is used: the client sent something wrong).
fn smp_error(e: patch::strategic::SmpError) -> PatchError {
    use patch::strategic::SmpError as E;
    match e {
        E::PatchNotObject(_)
        | E::UnknownPatchType { .. }
        | E::MergeDirectiveInList
        | E::BadRetainKeys
        | E::BadSetElementOrder
        | E::BadDeleteFromPrimitiveList => PatchError::Malformed(e.to_string()),
        other => PatchError::NotApplicable(other.to_string()),
    }
}
