//! Responses: bodies, content negotiation and `Status` errors.

use std::convert::Infallible;

use bytes::Bytes;
use duostack_core::error::ApiError;
use futures_util::Stream;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use serde_json::Value;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Response = http::Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn streaming<S>(stream: S) -> Body
where
    S: Stream<Item = Bytes> + Send + Sync + 'static,
{
    use futures_util::StreamExt;
    BodyExt::boxed(StreamBody::new(
        stream.map(|b| Ok::<_, Infallible>(Frame::data(b))),
    ))
}

/// The representation a client asked for (the `Accept` header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `meta.k8s.io` Table, in the given version (`v1` or `v1beta1`).
    Table(&'static str),
    /// `meta.k8s.io/v1` PartialObjectMetadata (or its List for collections).
    PartialMetadata,
    /// `apidiscovery.k8s.io/v2` aggregated discovery.
    AggregatedDiscovery,
}

fn params(mt: &str) -> (String, Vec<(String, String)>) {
    let mut parts = mt.split(';').map(str::trim);
    let base = parts.next().unwrap_or("").to_ascii_lowercase();
    let ps = parts
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    (base, ps)
}

/// Picks the first acceptable representation from an `Accept` header, as Kubernetes' content
/// negotiation does. `None` means nothing offered is served (406).
pub fn negotiate(accept: Option<&str>) -> Option<Format> {
    let accept = match accept {
        None => return Some(Format::Json),
        Some(a) if a.trim().is_empty() => return Some(Format::Json),
        Some(a) => a,
    };
    for mt in accept.split(',') {
        let (base, ps) = params(mt);
        let get = |k: &str| ps.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let json_like = matches!(base.as_str(), "application/json" | "application/*" | "*/*");
        if json_like {
            match (get("as"), get("g"), get("v")) {
                (None, _, _) => return Some(Format::Json),
                (Some("Table"), Some("meta.k8s.io"), Some("v1")) => {
                    return Some(Format::Table("v1"));
                }
                (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                    return Some(Format::Table("v1beta1"));
                }
                (
                    Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                    Some("meta.k8s.io"),
                    Some("v1"),
                ) => return Some(Format::PartialMetadata),
                (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                    return Some(Format::AggregatedDiscovery);
                }
                _ => continue,
            }
        }
        if matches!(base.as_str(), "application/yaml" | "text/yaml") && get("as").is_none() {
            return Some(Format::Yaml);
        }
    }
    None
}

/// A JSON (or YAML) response with optional `Warning` headers.
pub fn object(status: StatusCode, value: &Value, format: Format, warnings: &[String]) -> Response {
    let (bytes, ct) = match format {
        Format::Yaml => match serde_saphyr::to_string(value) {
            Ok(s) => (Bytes::from(s), "application/yaml"),
            Err(_) => (
                Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
                "application/json",
            ),
        },
        _ => (
            Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            "application/json",
        ),
    };
    let mut resp = http::Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    add_warnings(&mut resp, warnings);
    resp
}

pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        // RFC 7234 warning with code 299 and an escaped quoted text, as kube-apiserver sends.
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        let text: String = text.chars().filter(|c| !c.is_control()).collect();
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

/// A `Status` error response.
pub fn error(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = object(status, &err.to_status(), Format::Json, &[]);
    if let Some(secs) = err.retry_after_seconds {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), Some(Format::Json));
        assert_eq!(
            negotiate(Some(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            )),
            Some(Format::Table("v1"))
        );
        assert_eq!(
            negotiate(Some(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            )),
            Some(Format::AggregatedDiscovery)
        );
        assert_eq!(negotiate(Some("application/json, */*")), Some(Format::Json));
        assert_eq!(negotiate(Some("application/yaml")), Some(Format::Yaml));
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(
            negotiate(Some(
                "application/vnd.kubernetes.protobuf, application/json"
            )),
            Some(Format::Json)
        );
        assert_eq!(
            negotiate(Some("application/json;as=Table;v=v9;g=meta.k8s.io")),
            None
        );
    }
}
