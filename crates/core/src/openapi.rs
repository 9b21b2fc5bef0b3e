//! OpenAPI v3 (and a JSON v2) description of the served API, which `kubectl` needs for
//! `explain`, for validation (`fieldValidation`), and for computing client-side apply patches.
//!
//! Schemas come from `k8s-openapi`'s schemars support; the Kubernetes extensions that the Go
//! struct tags carry upstream (`x-kubernetes-group-version-kind`, list and map types, patch
//! strategies) are added from [`crate::schema`].

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::kinds::Kind;
use crate::resource::ResourceInfo;
use crate::schema::{ListType, PatchStrategy, TypeSchema};

const REF_PREFIX: &str = "#/components/schemas/";

/// One group-version's document and the hash clients use to cache it.
#[derive(Clone, Debug)]
pub struct Document {
    /// `api/v1` or `apis/<group>/<version>`.
    pub path: String,
    pub hash: String,
    pub body: Value,
}

/// All OpenAPI documents of a set of kinds.
#[derive(Clone, Debug)]
pub struct OpenApi {
    pub v3: Vec<Document>,
    pub v2: Value,
}

impl OpenApi {
    pub fn build(kinds: &[&dyn Kind], server_version: &str) -> Self {
        let mut by_gv: BTreeMap<String, Vec<&dyn Kind>> = BTreeMap::new();
        for k in kinds {
            by_gv.entry(gv_path(k.info())).or_default().push(*k);
        }
        let mut v3 = Vec::new();
        let mut all_paths = Map::new();
        let mut all_defs = Map::new();
        for (path, kinds) in by_gv {
            let (paths, schemas) = build_gv(&kinds);
            for (k, v) in &paths {
                all_paths.insert(k.clone(), v.clone());
            }
            for (k, v) in &schemas {
                all_defs.insert(k.clone(), v.clone());
            }
            let body = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": server_version},
                "paths": paths,
                "components": {"schemas": schemas},
            });
            let hash = hash_json(&body);
            v3.push(Document { path, hash, body });
        }
        let mut v2 = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": server_version},
            "paths": v2_paths(&all_paths),
            "definitions": all_defs,
        });
        rewrite_refs(&mut v2, REF_PREFIX, "#/definitions/");
        Self { v3, v2 }
    }

    /// The `/openapi/v3` index.
    pub fn index(&self) -> Value {
        let mut paths = Map::new();
        for d in &self.v3 {
            paths.insert(
                d.path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{}?hash={}", d.path, d.hash)}),
            );
        }
        json!({ "paths": paths })
    }

    pub fn document(&self, path: &str) -> Option<&Document> {
        self.v3.iter().find(|d| d.path == path)
    }
}

fn gv_path(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        format!("api/{}", info.version)
    } else {
        format!("apis/{}/{}", info.group, info.version)
    }
}

fn hash_json(v: &Value) -> String {
    // FNV-1a: the hash only has to change when the document does.
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

fn rewrite_refs(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if k == "$ref"
                    && let Value::String(s) = val
                    && let Some(rest) = s.strip_prefix(from)
                {
                    *s = format!("{to}{rest}");
                    continue;
                }
                rewrite_refs(val, from, to);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, from, to)),
        _ => {}
    }
}

/// Capitalised group for operation IDs: `""` → `Core`, `discovery.k8s.io` → `Discovery`.
fn op_group(info: &ResourceInfo) -> String {
    let g = if info.group.is_empty() {
        "core"
    } else {
        info.group.split('.').next().unwrap_or(info.group)
    };
    let mut c = g.chars();
    let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or_default();
    let version = {
        let mut vc = info.version.chars();
        let vf = vc
            .next()
            .map(|f| f.to_ascii_uppercase())
            .unwrap_or_default();
        format!("{vf}{}", vc.as_str())
    };
    format!("{first}{}{version}", c.as_str())
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn bool_query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "boolean", "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

const DRY_RUN: &str = "When present, indicates that modifications should not be persisted. The only valid value is All.";
const FIELD_MANAGER: &str =
    "A name associated with the actor or entity that is making these changes.";
const FIELD_VALIDATION: &str = "How the server treats unknown or duplicate fields in the request object: Ignore drops them silently, Warn drops them and returns a Warning header per field, Strict fails the request with a BadRequest error.";
const FORCE: &str = "Force is for apply requests: ownership of conflicting fields is taken over from other managers.";

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query("dryRun", DRY_RUN),
        query("fieldManager", FIELD_MANAGER),
        query("fieldValidation", FIELD_VALIDATION),
    ];
    if patch {
        p.push(bool_query("force", FORCE));
    }
    p
}

fn list_params() -> Vec<Value> {
    vec![
        bool_query(
            "allowWatchBookmarks",
            "Requests watch events of type BOOKMARK.",
        ),
        query(
            "continue",
            "The continue token of a previous list response.",
        ),
        query("fieldSelector", "Restricts the list by object fields."),
        query("labelSelector", "Restricts the list by labels."),
        json!({"name": "limit", "in": "query", "description": "Maximum number of objects to return.", "schema": {"type": "integer", "uniqueItems": true}}),
        query("resourceVersion", "Where a list or watch starts."),
        query(
            "resourceVersionMatch",
            "How resourceVersion applies to a list.",
        ),
        bool_query(
            "sendInitialEvents",
            "With watch: start with synthetic ADDED events of the current state.",
        ),
        json!({"name": "timeoutSeconds", "in": "query", "description": "Timeout of the list/watch call.", "schema": {"type": "integer", "uniqueItems": true}}),
        bool_query("watch", "Watch for changes instead of listing."),
    ]
}

fn response(def: &str) -> Value {
    json!({
        "description": "OK",
        "content": {
            "application/json": {"schema": {"$ref": format!("{REF_PREFIX}{def}")}},
            "application/yaml": {"schema": {"$ref": format!("{REF_PREFIX}{def}")}},
        }
    })
}

fn op(
    info: &ResourceInfo,
    id: String,
    action: &str,
    params: Vec<Value>,
    ok_def: &str,
    created: bool,
) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), response(ok_def));
    if created {
        responses.insert("201".into(), response(ok_def));
    }
    responses.insert("401".into(), json!({"description": "Unauthorized"}));
    json!({
        "tags": [format!("{}_{}", if info.group.is_empty() { "core" } else { info.group.split('.').next().unwrap_or("") }, info.version)],
        "operationId": id,
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    })
}

fn body(def: &str) -> Value {
    json!({"content": {"*/*": {"schema": {"$ref": format!("{REF_PREFIX}{def}")}}}, "required": true})
}

fn patch_body() -> Value {
    let schema = json!({"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.Patch")});
    json!({
        "content": {
            "application/apply-patch+yaml": {"schema": schema},
            "application/json-patch+json": {"schema": schema},
            "application/merge-patch+json": {"schema": schema},
            "application/strategic-merge-patch+json": {"schema": schema},
        },
        "required": true
    })
}

fn build_gv(kinds: &[&dyn Kind]) -> (Map<String, Value>, Map<String, Value>) {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let mut kind_defs = Vec::new();
    for k in kinds {
        let info = k.info();
        let def = k.openapi(&mut generator);
        kind_defs.push((def.clone(), info, k.schema()));
        let list_def = format!("{def}List");
        let base = if info.group.is_empty() {
            format!("/api/{}", info.version)
        } else {
            format!("/apis/{}/{}", info.group, info.version)
        };
        let g = op_group(info);
        let (coll, item, scope) = if info.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", info.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", info.plural),
                "Namespaced",
            )
        } else {
            (
                format!("{base}/{}", info.plural),
                format!("{base}/{}/{{name}}", info.plural),
                "",
            )
        };
        let kind = info.kind;
        let mut common = vec![];
        if info.namespaced {
            common.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        let mut coll_ops = Map::new();
        coll_ops.insert(
            "get".into(),
            op(
                info,
                format!("list{g}{scope}{kind}"),
                "list",
                list_params(),
                &list_def,
                false,
            ),
        );
        let mut create = op(
            info,
            format!("create{g}{scope}{kind}"),
            "post",
            write_params(false),
            &def,
            true,
        );
        create["requestBody"] = body(&def);
        coll_ops.insert("post".into(), create);
        coll_ops.insert(
            "delete".into(),
            op(
                info,
                format!("delete{g}Collection{scope}{kind}"),
                "deletecollection",
                list_params(),
                "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
                false,
            ),
        );
        coll_ops.insert("parameters".into(), Value::Array(common.clone()));
        paths.insert(coll, Value::Object(coll_ops));

        let mut item_params = vec![path_param("name", &format!("name of the {kind}"))];
        item_params.extend(common.clone());
        let mut item_ops = Map::new();
        item_ops.insert(
            "get".into(),
            op(
                info,
                format!("read{g}{scope}{kind}"),
                "get",
                vec![],
                &def,
                false,
            ),
        );
        let mut replace = op(
            info,
            format!("replace{g}{scope}{kind}"),
            "put",
            write_params(false),
            &def,
            true,
        );
        replace["requestBody"] = body(&def);
        item_ops.insert("put".into(), replace);
        let mut patch = op(
            info,
            format!("patch{g}{scope}{kind}"),
            "patch",
            write_params(true),
            &def,
            true,
        );
        patch["requestBody"] = patch_body();
        item_ops.insert("patch".into(), patch);
        let mut delete = op(
            info,
            format!("delete{g}{scope}{kind}"),
            "delete",
            vec![query("dryRun", DRY_RUN)],
            &def,
            false,
        );
        delete["requestBody"] = body("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
        item_ops.insert("delete".into(), delete);
        item_ops.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(item.clone(), Value::Object(item_ops));

        if info.has_status {
            let mut st = Map::new();
            st.insert(
                "get".into(),
                op(
                    info,
                    format!("read{g}{scope}{kind}Status"),
                    "get",
                    vec![],
                    &def,
                    false,
                ),
            );
            let mut put = op(
                info,
                format!("replace{g}{scope}{kind}Status"),
                "put",
                write_params(false),
                &def,
                true,
            );
            put["requestBody"] = body(&def);
            st.insert("put".into(), put);
            let mut patch = op(
                info,
                format!("patch{g}{scope}{kind}Status"),
                "patch",
                write_params(true),
                &def,
                true,
            );
            patch["requestBody"] = patch_body();
            st.insert("patch".into(), patch);
            st.insert("parameters".into(), Value::Array(item_params));
            paths.insert(format!("{item}/status"), Value::Object(st));
        }
        if info.namespaced {
            let mut all = Map::new();
            all.insert(
                "get".into(),
                op(
                    info,
                    format!("list{g}{kind}ForAllNamespaces"),
                    "list",
                    list_params(),
                    &list_def,
                    false,
                ),
            );
            paths.insert(format!("{base}/{}", info.plural), Value::Object(all));
        }
    }
    let mut defs = generator.take_definitions(true);
    common_defs(&mut defs);
    for (def, info, schema) in kind_defs {
        let list_def = format!("{def}List");
        if let Some(Value::Object(m)) = defs.get_mut(&def) {
            m.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": info.group, "kind": info.kind, "version": info.version}]),
            );
        }
        defs.insert(list_def, list_schema(info, &def));
        annotate(&mut defs, &def, schema);
    }
    (paths, defs)
}

fn list_schema(info: &ResourceInfo, def: &str) -> Value {
    json!({
        "description": format!("{} is a list of {} objects.", info.list_kind, info.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "The versioned schema of this representation of an object."},
            "items": {"type": "array", "description": format!("The {} objects.", info.kind), "items": {"$ref": format!("{REF_PREFIX}{def}")}},
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}], "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": info.group, "kind": info.list_kind, "version": info.version}],
    })
}

/// Schemas referenced by every document that no served kind pulls in by itself.
fn common_defs(defs: &mut Map<String, Value>) {
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch".into(),
        json!({"type": "object", "description": "The body of a PATCH request; its format is given by the request's Content-Type."}),
    );
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta".into(),
        json!({"type": "object", "description": "Metadata of a list.", "properties": {
            "continue": {"type": "string", "description": "Set when more results are available."},
            "remainingItemCount": {"type": "integer", "format": "int64", "description": "The number of items left after this page, when known."},
            "resourceVersion": {"type": "string", "description": "The revision the list was read at."},
            "selfLink": {"type": "string", "description": "Deprecated."}
        }}),
    );
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status".into(),
        json!({"type": "object", "description": "The result of an operation that returns no object, and the body of every error.", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "code": {"type": "integer", "format": "int32", "description": "The HTTP status code."},
            "details": {"type": "object", "description": "Extended data about the error."},
            "message": {"type": "string", "description": "A human-readable description."},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")}]},
            "reason": {"type": "string", "description": "A machine-readable reason."},
            "status": {"type": "string", "description": "Success or Failure."}
        }, "x-kubernetes-group-version-kind": [{"group": "", "kind": "Status", "version": "v1"}]}),
    );
    defs.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions".into(),
        json!({"type": "object", "description": "Options of a delete request.", "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "dryRun": {"type": "array", "items": {"type": "string"}, "description": "All means: do not persist."},
            "gracePeriodSeconds": {"type": "integer", "format": "int64"},
            "preconditions": {"type": "object", "properties": {"resourceVersion": {"type": "string"}, "uid": {"type": "string"}}},
            "propagationPolicy": {"type": "string", "description": "Orphan, Background or Foreground."}
        }}),
    );
}

/// Follows `$ref` (directly, in `allOf`, or in array `items`) to a definition name.
fn ref_target(schema: &Value) -> Option<String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(REF_PREFIX).map(str::to_owned);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all.iter().find_map(ref_target);
    }
    if let Some(items) = schema.get("items") {
        return ref_target(items);
    }
    None
}

/// Adds list/map/patch extensions at the schema paths named by the type's rules.
fn annotate(defs: &mut Map<String, Value>, root: &str, schema: &TypeSchema) {
    let mut targets: Vec<(&[&str], Map<String, Value>)> = Vec::new();
    for rule in schema.rules() {
        let mut ext = Map::new();
        match rule.list_type {
            ListType::Atomic => {
                ext.insert("x-kubernetes-list-type".into(), "atomic".into());
            }
            ListType::Set => {
                ext.insert("x-kubernetes-list-type".into(), "set".into());
            }
            ListType::Map(keys) => {
                ext.insert("x-kubernetes-list-type".into(), "map".into());
                ext.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
        }
        if let PatchStrategy::Merge { merge_key } = rule.patch {
            ext.insert("x-kubernetes-patch-strategy".into(), "merge".into());
            if let Some(k) = merge_key {
                ext.insert("x-kubernetes-patch-merge-key".into(), k.into());
            }
        }
        targets.push((rule.path, ext));
    }
    for path in schema.atomic_maps {
        let mut ext = Map::new();
        ext.insert("x-kubernetes-map-type".into(), "atomic".into());
        targets.push((path, ext));
    }
    for (path, ext) in targets {
        let Some((last, parents)) = path.split_last() else {
            continue;
        };
        let mut def = root.to_owned();
        let mut ok = true;
        for seg in parents {
            match defs
                .get(&def)
                .and_then(|d| d.get("properties"))
                .and_then(|p| p.get(*seg))
                .and_then(ref_target)
            {
                Some(next) => def = next,
                None => {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            continue;
        }
        if let Some(Value::Object(prop)) = defs
            .get_mut(&def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*last))
        {
            for (k, v) in ext {
                prop.insert(k, v);
            }
        }
    }
}

/// A JSON swagger-2.0 rendering of the v3 paths (parameters flattened to v2's form).
fn v2_paths(paths: &Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (p, ops) in paths {
        let mut o = Map::new();
        for (method, op) in ops.as_object().into_iter().flatten() {
            if method == "parameters" {
                o.insert(method.clone(), v2_params(op));
                continue;
            }
            let mut op = op.clone();
            if let Some(params) = op.get("parameters").cloned() {
                let mut params = v2_params(&params);
                if op.get("requestBody").is_some()
                    && let Some(a) = params.as_array_mut()
                {
                    let schema = op
                        .pointer("/requestBody/content")
                        .and_then(|c| c.as_object())
                        .and_then(|c| c.values().next())
                        .and_then(|c| c.get("schema"))
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    a.push(
                        json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                    );
                }
                op["parameters"] = params;
            }
            if let Some(m) = op.as_object_mut() {
                if let Some(Value::Object(rb)) = m.remove("requestBody")
                    && let Some(Value::Object(c)) = rb.get("content")
                {
                    m.insert("consumes".into(), json!(c.keys().collect::<Vec<_>>()));
                }
                if let Some(Value::Object(responses)) = m.get_mut("responses") {
                    for r in responses.values_mut() {
                        if let Some(schema) =
                            r.pointer("/content/application~1json/schema").cloned()
                        {
                            *r = json!({"description": r.get("description").cloned().unwrap_or_default(), "schema": schema});
                        }
                    }
                }
                m.insert(
                    "produces".into(),
                    json!(["application/json", "application/yaml"]),
                );
            }
            o.insert(method.clone(), op);
        }
        out.insert(p.clone(), Value::Object(o));
    }
    Value::Object(out)
}

fn v2_params(params: &Value) -> Value {
    Value::Array(
        params
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let mut p = p.clone();
                if let Some(Value::Object(s)) = p.as_object_mut().and_then(|m| m.remove("schema")) {
                    for (k, v) in s {
                        p[k] = v;
                    }
                }
                p
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> OpenApi {
        OpenApi::build(&crate::kinds::all(), "v1.37.0")
    }

    #[test]
    fn v3_has_service_with_gvk_and_patch_metadata() {
        let api = built();
        let doc = api.document("api/v1").expect("api/v1 document");
        let schemas = &doc.body["components"]["schemas"];
        let svc = &schemas["io.k8s.api.core.v1.Service"];
        assert_eq!(
            svc["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Service", "version": "v1"}])
        );
        let ports = &schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "port");
        assert_eq!(ports["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["port", "protocol"])
        );
        assert_eq!(
            schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["selector"]["x-kubernetes-map-type"],
            "atomic"
        );
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"]
                ["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert!(
            schemas["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ipFamilyPolicy"]["description"]
                .as_str()
                .is_some()
        );
        let patch = &doc.body["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Service");
        let names: Vec<_> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"fieldValidation"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
        // Every $ref resolves.
        let text = serde_json::to_string(&doc.body).unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(schemas.get(name).is_some(), "dangling ref {name}");
        }
    }

    #[test]
    fn index_and_v2() {
        let api = built();
        let idx = api.index();
        let url = idx["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        assert!(api.v2["definitions"]["io.k8s.api.core.v1.Service"].is_object());
        let text = serde_json::to_string(&api.v2).unwrap();
        assert!(!text.contains("#/components/schemas/"));
    }
}
