//! Routing and request handling: authenticates, parses the Kubernetes URL layout, and turns
//! each request into a registry call.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use duostack_core::error::ApiError;
use duostack_core::kinds::Kind;
use duostack_core::openapi::OpenApi;
use duostack_core::selector::{FieldSelector, LabelSelector};
use duostack_core::table::{self, IncludeObject};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::discovery;
use crate::registry::{ListOptions, Registry, Target, strip_type_meta};
use crate::reply::{self, Format, Response};
use crate::request::{PatchType, Query, WriteOptions, body_format};
use crate::watch::{self, WatchParams};

/// Kubernetes' limit on request bodies.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub struct State {
    pub registry: Arc<Registry>,
    pub allocations: Arc<crate::allocations::ServiceAllocations>,
    pub node_ipam: Arc<crate::node_ipam::NodeIpam>,
    /// How often idle watches get bookmarks (Kubernetes: about a minute).
    pub bookmark_interval: Duration,
    pub token: String,
    pub openapi: OpenApi,
    pub server_address: String,
}

/// Where a request is going.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Version,
    Health,
    CoreDiscovery,
    GroupsDiscovery,
    Group(String),
    Resources { group: String, version: String },
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String),
    Metrics,
    Resource(ResourcePath),
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

/// Subresources of namespaces, which share the URL shape of namespaced resources.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn route(path: &str) -> Route {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["api"] => Route::CoreDiscovery,
        ["api", "v1"] => Route::Resources {
            group: String::new(),
            version: "v1".into(),
        },
        ["apis"] => Route::GroupsDiscovery,
        ["apis", g] => Route::Group((*g).into()),
        ["apis", g, v] => Route::Resources {
            group: (*g).into(),
            version: (*v).into(),
        },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Route::NotFound,
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Route {
    let mk = |plural: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    };
    match rest {
        ["namespaces", ns, res, tail @ ..]
            if !(group.is_empty() && NAMESPACE_SUBRESOURCES.contains(res)) =>
        {
            match tail {
                [] => mk(res, Some(ns), None, None),
                [name] => mk(res, Some(ns), Some(name), None),
                [name, sub] => mk(res, Some(ns), Some(name), Some(sub)),
                _ => Route::NotFound,
            }
        }
        [res] => mk(res, None, None, None),
        [res, name] => mk(res, None, Some(name), None),
        [res, name, sub] => mk(res, None, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorized(state: &State, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
    else {
        return false;
    };
    // Constant-time comparison: the token is the only credential.
    let (a, b) = (token.trim().as_bytes(), state.token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(value: &Value) -> Response {
    reply::object(StatusCode::OK, value, Format::Json, &[])
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Handles one request; never fails (errors become `Status` responses).
pub async fn handle(state: Arc<State>, req: http::Request<hyper::body::Incoming>) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = match handle_inner(&state, req).await {
        Ok(r) => r,
        Err(e) => reply::error(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    resp
}

/// Past the body limit, this much more is read and dropped so that the client, which is still
/// sending, gets to read the 413 instead of a broken connection.
const MAX_DRAIN_BYTES: usize = 64 * 1024 * 1024;

async fn drain(mut body: impl hyper::body::Body<Data = Bytes> + Unpin) {
    let mut seen = 0usize;
    while seen < MAX_DRAIN_BYTES {
        match body.frame().await {
            Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
            _ => break,
        }
    }
}

async fn read_body(body: hyper::body::Incoming, headers: &HeaderMap) -> Result<Bytes, ApiError> {
    if let Some(len) =
        header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        drain(body).await;
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(buf.freeze()),
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    if buf.len() + d.len() > MAX_BODY_BYTES {
                        drain(body).await;
                        return Err(ApiError::too_large(MAX_BODY_BYTES));
                    }
                    buf.extend_from_slice(d);
                }
            }
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!("reading request body: {e}")));
            }
        }
    }
}

async fn handle_inner(
    state: &Arc<State>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let route = route(parts.uri.path());
    let public = matches!(route, Route::Health | Route::Version);
    if !public && !authorized(state, &parts.headers) {
        return Err(ApiError::unauthorized());
    }
    let accept = header_str(&parts.headers, header::ACCEPT);
    let format = reply::negotiate(accept).ok_or_else(|| {
        ApiError::not_acceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (got {})",
            accept.unwrap_or("")
        ))
    });
    let kinds = state.registry.kinds();
    let get_only = |m: &Method| -> Result<(), ApiError> {
        if *m == Method::GET || *m == Method::HEAD {
            Ok(())
        } else {
            Err(ApiError::method_not_supported(
                duostack_core::error::GroupResource {
                    group: "",
                    resource: "",
                },
                m.as_str(),
            ))
        }
    };
    match route {
        Route::Version => {
            get_only(&parts.method)?;
            Ok(json_response(&discovery::version()))
        }
        Route::Health => {
            let mut r = http::Response::new(reply::full("ok"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Ok(r)
        }
        Route::Metrics => {
            get_only(&parts.method)?;
            let mut r = http::Response::new(reply::full(format!(
                "{}{}",
                state.allocations.render_metrics(),
                state.node_ipam.render_metrics()
            )));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        Route::CoreDiscovery => {
            get_only(&parts.method)?;
            if format == Ok(Format::AggregatedDiscovery) {
                return Ok(aggregated_response(&discovery::aggregated(kinds, true)));
            }
            Ok(json_response(&discovery::core_versions(
                &state.server_address,
            )))
        }
        Route::GroupsDiscovery => {
            get_only(&parts.method)?;
            if format == Ok(Format::AggregatedDiscovery) {
                return Ok(aggregated_response(&discovery::aggregated(kinds, false)));
            }
            Ok(json_response(&discovery::group_list(kinds)))
        }
        Route::Group(g) => {
            get_only(&parts.method)?;
            discovery::group(kinds, &g)
                .map(|v| json_response(&v))
                .ok_or_else(ApiError::no_route)
        }
        Route::Resources { group, version } => {
            get_only(&parts.method)?;
            discovery::resource_list(kinds, &group, &version)
                .map(|v| json_response(&v))
                .ok_or_else(ApiError::no_route)
        }
        Route::OpenApiV3Index => {
            get_only(&parts.method)?;
            Ok(json_response(&state.openapi.index()))
        }
        Route::OpenApiV3(path) => {
            get_only(&parts.method)?;
            let doc = state
                .openapi
                .document(&path)
                .ok_or_else(ApiError::no_route)?;
            let mut r = json_response(&doc.body);
            // The hash in the URL pins the content, so clients may cache it for good.
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", doc.hash)) {
                r.headers_mut().insert(header::ETAG, v);
            }
            Ok(r)
        }
        Route::OpenApiV2 => {
            get_only(&parts.method)?;
            // Only JSON is served; clients asking for protobuf alone get 406 and fall back.
            let wants_json = accept.is_none_or(|a| {
                a.contains("application/json") || a.contains("*/*") || a.trim().is_empty()
            });
            if !wants_json {
                return Err(ApiError::not_acceptable(
                    "only application/json is served for /openapi/v2",
                ));
            }
            Ok(json_response(&state.openapi.v2))
        }
        Route::NotFound => Err(ApiError::no_route()),
        Route::Resource(rp) => {
            let kind = state
                .registry
                .kind(&rp.group, &rp.version, &rp.plural)
                .ok_or_else(ApiError::no_route)?;
            let deprecated = std::ptr::eq(kind.info(), &duostack_core::resource::ENDPOINTS);
            let result = resource(state, kind, rp, parts, body, format?).await;
            if !deprecated {
                return result;
            }
            // kube-apiserver 1.33+ warns on every request for v1 Endpoints, failed ones too.
            let mut resp = result.unwrap_or_else(|e| reply::error(&e));
            reply::add_warnings(&mut resp, &[ENDPOINTS_DEPRECATED.to_owned()]);
            Ok(resp)
        }
    }
}

fn aggregated_response(v: &Value) -> Response {
    let mut r = json_response(v);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

fn list_options(q: &Query) -> Result<ListOptions, ApiError> {
    let label = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.0))?;
    let field = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.0))?;
    let limit = match q.int("limit")? {
        Some(n) if n > 0 => n as usize,
        _ => 0,
    };
    Ok(ListOptions {
        label,
        field,
        limit,
        continue_token: q
            .get("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        resource_version: q.get("resourceVersion").map(str::to_owned),
        resource_version_match: q
            .get("resourceVersionMatch")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    })
}

/// Turns a protobuf body (what kubectl's typed clients send, e.g. `kubectl create namespace`)
/// into the equivalent JSON, so the rest of the pipeline sees one format.
fn protobuf_to_json(body: Bytes, ct: Option<&str>) -> Result<(Bytes, Option<&str>), ApiError> {
    use duostack_core::protobuf::{self, ProtoError};
    if !ct.is_some_and(protobuf::is_protobuf_content_type) {
        return Ok((body, ct));
    }
    let value = protobuf::decode(&body).map_err(|e| match e {
        ProtoError::UnsupportedKind { .. } => {
            ApiError::unsupported_media_type(format!("{e}; send this kind as application/json"))
        }
        other => ApiError::bad_request(format!(
            "the object provided is unrecognized: protobuf decoding error: {other}"
        )),
    })?;
    let json = serde_json::to_vec(&value).unwrap_or_default();
    Ok((Bytes::from(json), Some("application/json")))
}

const ENDPOINTS_DEPRECATED: &str =
    "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice";

async fn resource(
    state: &Arc<State>,
    kind: &'static dyn Kind,
    rp: ResourcePath,
    parts: http::request::Parts,
    body: hyper::body::Incoming,
    format: Format,
) -> Result<Response, ApiError> {
    let info = kind.info();
    let registry = &state.registry;
    let q = Query::parse(parts.uri.query());
    let gr = info.group_resource();
    // Scope checks: a namespaced kind is addressed with or without a namespace (the latter
    // only for collections across namespaces); a cluster-scoped kind never has one.
    if !info.namespaced && rp.namespace.is_some() {
        return Err(ApiError::no_route());
    }
    if info.namespaced && rp.namespace.is_none() && rp.name.is_some() {
        return Err(ApiError::no_route());
    }
    if let Some(ns) = &rp.namespace
        && (ns.is_empty() || !duostack_core::validation::dns1123_label(ns).is_empty())
        && parts.method != Method::GET
    {
        return Err(ApiError::not_found(
            duostack_core::resource::NAMESPACES.group_resource(),
            ns,
        ));
    }
    match rp.subresource.as_deref() {
        None => {}
        Some("status") if info.has_status => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let ua = header_str(&parts.headers, header::USER_AGENT).unwrap_or("");
    let ct = header_str(&parts.headers, header::CONTENT_TYPE);
    let ns = rp.namespace.as_deref();
    let method = parts.method.clone();

    let Some(name) = rp.name.as_deref() else {
        // Collection.
        return match method {
            Method::GET | Method::HEAD => {
                if q.flag("watch")? {
                    let params = watch_params(&q, format, state.bookmark_interval)?;
                    return watch::watch(registry.clone(), kind, rp.namespace.clone(), params)
                        .await;
                }
                let opts = list_options(&q)?;
                let include =
                    IncludeObject::parse(q.get("includeObject")).map_err(ApiError::bad_request)?;
                let list = registry.list(kind, ns, &opts).await?;
                Ok(list_response(kind, list, format, include))
            }
            Method::POST => {
                let body = read_body(body, &parts.headers).await?;
                let (body, ct) = protobuf_to_json(body, ct)?;
                let opts = WriteOptions::from_query(&q, ua, false)?;
                let o = registry
                    .create(kind, ns, &body, body_format(ct)?, &opts)
                    .await?;
                Ok(reply::object(o.code, &o.object, format, &o.warnings))
            }
            Method::DELETE => {
                let opts = list_options(&q)?;
                let dry = WriteOptions::from_query(&q, ua, false)?.dry_run;
                let o = registry.delete_collection(kind, ns, &opts, dry).await?;
                Ok(reply::object(o.code, &o.object, format, &o.warnings))
            }
            m => Err(ApiError::method_not_supported(
                gr,
                &m.as_str().to_lowercase(),
            )),
        };
    };

    let t = Target {
        kind,
        namespace: ns,
        name,
        status: rp.subresource.is_some(),
    };
    match method {
        Method::GET | Method::HEAD => {
            let obj = registry.get(t).await?;
            match format {
                Format::Table(version) => {
                    let include = IncludeObject::parse(q.get("includeObject"))
                        .map_err(ApiError::bad_request)?;
                    let rv = obj
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let cells = kind.cells(&obj, jiff::Timestamp::now());
                    let mut t = table::table(
                        Some(kind.columns()),
                        vec![(cells, &obj)],
                        include,
                        &rv,
                        None,
                    );
                    t["apiVersion"] = format!("meta.k8s.io/{version}").into();
                    Ok(reply::object(StatusCode::OK, &t, Format::Json, &[]))
                }
                Format::PartialMetadata => Ok(reply::object(
                    StatusCode::OK,
                    &json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or_default()}),
                    Format::Json,
                    &[],
                )),
                f => Ok(reply::object(StatusCode::OK, &obj, f, &[])),
            }
        }
        Method::PUT => {
            let body = read_body(body, &parts.headers).await?;
            let (body, ct) = protobuf_to_json(body, ct)?;
            let opts = WriteOptions::from_query(&q, ua, false)?;
            let o = registry.update(t, &body, body_format(ct)?, &opts).await?;
            Ok(reply::object(o.code, &o.object, format, &o.warnings))
        }
        Method::PATCH => {
            let patch_type = PatchType::from_content_type(ct)?;
            let body = read_body(body, &parts.headers).await?;
            let opts = WriteOptions::from_query(&q, ua, patch_type == PatchType::Apply)?;
            let o = registry.patch(t, &body, patch_type, &opts).await?;
            Ok(reply::object(o.code, &o.object, format, &o.warnings))
        }
        Method::DELETE if !t.status => {
            let body = read_body(body, &parts.headers).await?;
            let (body, _) = protobuf_to_json(body, ct)?;
            let dry = WriteOptions::from_query(&q, ua, false)?.dry_run;
            let o = registry.delete(t, &body, dry).await?;
            Ok(reply::object(o.code, &o.object, format, &o.warnings))
        }
        m => Err(ApiError::method_not_supported(
            gr,
            &m.as_str().to_lowercase(),
        )),
    }
}

fn watch_params(
    q: &Query,
    format: Format,
    bookmark_interval: Duration,
) -> Result<WatchParams, ApiError> {
    let opts = list_options(q)?;
    let send_initial_events = match q.get("sendInitialEvents") {
        None | Some("") => None,
        Some(_) => Some(q.flag("sendInitialEvents")?),
    };
    let timeout = match q.int("timeoutSeconds")? {
        Some(n) if n > 0 => Duration::from_secs(n as u64),
        // Kubernetes spreads long-running requests over 30-60 minutes so that clients do
        // not all reconnect at once.
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    Ok(WatchParams {
        resource_version: opts.resource_version,
        resource_version_match: opts.resource_version_match,
        send_initial_events,
        allow_bookmarks: q.flag("allowWatchBookmarks")?,
        timeout,
        label: opts.label,
        field: opts.field,
        format,
        include: IncludeObject::parse(q.get("includeObject")).map_err(ApiError::bad_request)?,
        bookmark_interval,
    })
}

fn list_response(
    kind: &'static dyn Kind,
    list: crate::registry::ListResult,
    format: Format,
    include: IncludeObject,
) -> Response {
    let info = kind.info();
    let rv = list.revision.to_string();
    match format {
        Format::Table(version) => {
            let now = jiff::Timestamp::now();
            let rows: Vec<(Vec<Value>, &Value)> =
                list.items.iter().map(|o| (kind.cells(o, now), o)).collect();
            let mut t = table::table(
                Some(kind.columns()),
                rows,
                include,
                &rv,
                list.continue_token.as_deref(),
            );
            t["apiVersion"] = format!("meta.k8s.io/{version}").into();
            reply::object(StatusCode::OK, &t, Format::Json, &[])
        }
        Format::PartialMetadata => {
            let items: Vec<Value> = list
                .items
                .iter()
                .map(|o| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()}))
                .collect();
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = &list.continue_token {
                meta["continue"] = c.clone().into();
            }
            reply::object(
                StatusCode::OK,
                &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}),
                Format::Json,
                &[],
            )
        }
        f => {
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = &list.continue_token {
                meta["continue"] = c.clone().into();
            }
            let items: Vec<Value> = list.items.into_iter().map(strip_type_meta).collect();
            reply::object(
                StatusCode::OK,
                &json!({"kind": info.list_kind, "apiVersion": info.api_version(), "metadata": meta, "items": items}),
                f,
                &[],
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(g: &str, p: &str, ns: Option<&str>, n: Option<&str>, s: Option<&str>) -> Route {
        Route::Resource(ResourcePath {
            group: g.into(),
            version: "v1".into(),
            plural: p.into(),
            namespace: ns.map(Into::into),
            name: n.map(Into::into),
            subresource: s.map(Into::into),
        })
    }

    #[test]
    fn routes() {
        assert_eq!(route("/version"), Route::Version);
        assert_eq!(route("/api"), Route::CoreDiscovery);
        assert_eq!(
            route("/api/v1/namespaces"),
            res("", "namespaces", None, None, None)
        );
        assert_eq!(
            route("/api/v1/namespaces/default"),
            res("", "namespaces", None, Some("default"), None)
        );
        assert_eq!(
            route("/api/v1/namespaces/default/status"),
            res("", "namespaces", None, Some("default"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/namespaces/default/services"),
            res("", "services", Some("default"), None, None)
        );
        assert_eq!(
            route("/api/v1/namespaces/default/services/web/status"),
            res("", "services", Some("default"), Some("web"), Some("status"))
        );
        assert_eq!(
            route("/api/v1/services"),
            res("", "services", None, None, None)
        );
        assert_eq!(
            route("/apis/discovery.k8s.io/v1/namespaces/a/endpointslices/x"),
            res(
                "discovery.k8s.io",
                "endpointslices",
                Some("a"),
                Some("x"),
                None
            )
        );
        assert_eq!(
            route("/openapi/v3/api/v1"),
            Route::OpenApiV3("api/v1".into())
        );
        assert_eq!(route("/nope"), Route::NotFound);
        assert_eq!(
            route("/api/v1/namespaces/a/services/b/c/d"),
            Route::NotFound
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("abc%"), "abc%");
    }
}
