//! Kubernetes' error vocabulary: field errors (`field.Error`) and API errors (`metav1.Status`).
//!
//! Messages are built the way apimachinery builds them, because clients and users match on
//! them: `Service "web" is invalid: spec.ports: Required value`, `services "web" not found`.

use std::fmt;

use serde_json::{Value, json};

/// Kubernetes' field error types (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl FieldErrorType {
    /// The `reason` of a `StatusCause`.
    pub fn cause_reason(self) -> &'static str {
        match self {
            Self::NotFound => "FieldValueNotFound",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Invalid => "FieldValueInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Forbidden => "FieldValueForbidden",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Internal => "InternalError",
            Self::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human text (`ErrorType.String()`).
    pub fn text(self) -> &'static str {
        match self {
            Self::NotFound => "Not found",
            Self::Required => "Required value",
            Self::Duplicate => "Duplicate value",
            Self::Invalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::Forbidden => "Forbidden",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Internal => "Internal error",
            Self::TypeInvalid => "Invalid value",
        }
    }
}

/// The offending value of a field error, printed the way Go's `%q`/`%v` would.
#[derive(Clone, Debug, PartialEq)]
pub enum BadValue {
    /// No value is printed (Kubernetes' `omitValue`).
    Omit,
    Null,
    Str(String),
    Int(i64),
    Bool(bool),
    /// Printed verbatim (lists and other composite values).
    Raw(String),
}

impl BadValue {
    fn render(&self) -> Option<String> {
        match self {
            BadValue::Omit => None,
            BadValue::Null => Some("null".into()),
            BadValue::Str(s) => Some(go_quote(s)),
            BadValue::Int(i) => Some(i.to_string()),
            BadValue::Bool(b) => Some(b.to_string()),
            BadValue::Raw(s) => Some(s.clone()),
        }
    }
}

impl BadValue {
    /// A list as Go's `%#v` prints it: `[]string{"a", "b"}`, `[]string(nil)` when absent.
    pub fn go_list(go_type: &str, items: Option<&[String]>) -> Self {
        match items {
            None => BadValue::Raw(format!("[]{go_type}(nil)")),
            Some(items) => BadValue::Raw(format!(
                "[]{go_type}{{{}}}",
                items
                    .iter()
                    .map(|s| go_quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// An optional string (a Go pointer): its value, or `null`.
    pub fn opt_str(v: Option<&str>) -> Self {
        v.map_or(BadValue::Null, |s| BadValue::Str(s.to_owned()))
    }
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_owned())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<i64> for BadValue {
    fn from(i: i64) -> Self {
        BadValue::Int(i)
    }
}
impl From<i32> for BadValue {
    fn from(i: i32) -> Self {
        BadValue::Int(i.into())
    }
}
impl From<bool> for BadValue {
    fn from(b: bool) -> Self {
        BadValue::Bool(b)
    }
}

/// Quotes a string as Go's `%q` does (double quotes, backslash escapes).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One validation failure on one field (`field.Error`).
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// The field path, e.g. `spec.ports[0].port`.
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(FieldErrorType::Invalid, field, value.into(), detail)
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, BadValue::Omit, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, BadValue::Omit, detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(FieldErrorType::Duplicate, field, value.into(), "")
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorType::TooLong,
            field,
            BadValue::Omit,
            format!("may not be more than {max} bytes"),
        )
    }
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Internal, field, BadValue::Omit, detail)
    }
    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        let detail = if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        };
        Self::new(FieldErrorType::NotSupported, field, value.into(), detail)
    }

    /// The text after the field path (`ErrorBody()`).
    pub fn body(&self) -> String {
        use FieldErrorType::*;
        let mut s = match self.kind {
            Required | Forbidden | TooLong | Internal => self.kind.text().to_owned(),
            _ => match self.value.render() {
                None => self.kind.text().to_owned(),
                Some(v) => format!("{}: {}", self.kind.text(), v),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            // Kubernetes prints "<nil>" for a nil path; an empty path prints nothing useful.
            write!(f, "{}", self.body())
        } else {
            write!(f, "{}: {}", self.field, self.body())
        }
    }
}

/// Builds field paths (`field.Path`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root(name: &str) -> Self {
        Self(name.to_owned())
    }
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{}", self.0, name))
        }
    }
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{}]", self.0, i))
    }
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{}]", self.0, k))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<FieldPath> for String {
    fn from(p: FieldPath) -> String {
        p.0
    }
}
impl From<&FieldPath> for String {
    fn from(p: &FieldPath) -> String {
        p.0.clone()
    }
}

pub type FieldErrors = Vec<FieldError>;

/// Formats a list of errors as apimachinery's aggregate does: one error plain, several in
/// brackets, duplicates collapsed.
pub fn aggregate(errs: &[FieldError]) -> String {
    let mut msgs: Vec<String> = Vec::new();
    for e in errs {
        let m = e.to_string();
        if !msgs.contains(&m) {
            msgs.push(m);
        }
    }
    match msgs.len() {
        0 => String::new(),
        1 => msgs.remove(0),
        _ => format!("[{}]", msgs.join(", ")),
    }
}

/// `Status.reason` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Expired,
    Invalid,
    MethodNotAllowed,
    NotAcceptable,
    UnsupportedMediaType,
    RequestEntityTooLarge,
    TooManyRequests,
    InternalError,
    Timeout,
    ServiceUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Gone => "Gone",
            Reason::Expired => "Expired",
            Reason::Invalid => "Invalid",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::Timeout => "Timeout",
            Reason::ServiceUnavailable => "ServiceUnavailable",
        }
    }
}

/// One `StatusCause`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An API error: everything a `metav1.Status` failure carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: Reason,
    pub message: String,
    /// Boxed: errors travel through every `Result` of the request path, and most are small.
    pub details: Box<ErrorDetails>,
}

/// The `details` (and `metadata.continue`) of a `Status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetails {
    pub name: Option<String>,
    pub group: Option<String>,
    /// The kind (for Invalid) or the resource (for NotFound and friends), as Kubernetes does.
    pub kind: Option<String>,
    pub uid: Option<String>,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
    /// For Expired lists: the continue token the client may use to read on, inconsistently.
    pub continue_token: Option<String>,
}

impl std::error::Error for ApiError {}

impl std::ops::Deref for ApiError {
    type Target = ErrorDetails;
    fn deref(&self) -> &ErrorDetails {
        &self.details
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorDetails {
        &mut self.details
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.reason.as_str(),
            self.message
        )
    }
}

/// A group and resource, for messages like `services "web" not found` or
/// `endpointslices.discovery.k8s.io "x" not found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupResource<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl fmt::Display for GroupResource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// A group and kind, for `Service "web" is invalid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKind<'a> {
    pub group: &'a str,
    pub kind: &'a str,
}

impl fmt::Display for GroupKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.kind)
        } else {
            write!(f, "{}.{}", self.kind, self.group)
        }
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

impl ApiError {
    fn base(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::base(400, Reason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::base(401, Reason::Unauthorized, "Unauthorized")
    }

    pub fn forbidden(gr: GroupResource<'_>, name: &str, why: impl fmt::Display) -> Self {
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} {} is forbidden: {why}", go_quote(name))
        };
        let mut e = Self::base(403, Reason::Forbidden, message);
        e.name = opt(name);
        e.group = opt(gr.group);
        e.kind = opt(gr.resource);
        e
    }

    pub fn not_found(gr: GroupResource<'_>, name: &str) -> Self {
        let mut e = Self::base(
            404,
            Reason::NotFound,
            format!("{gr} {} not found", go_quote(name)),
        );
        e.name = opt(name);
        e.group = opt(gr.group);
        e.kind = opt(gr.resource);
        e
    }

    /// A 404 for a path the server does not serve at all.
    pub fn no_route() -> Self {
        Self::base(
            404,
            Reason::NotFound,
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(gr: GroupResource<'_>, name: &str) -> Self {
        let mut e = Self::base(
            409,
            Reason::AlreadyExists,
            format!("{gr} {} already exists", go_quote(name)),
        );
        e.name = opt(name);
        e.group = opt(gr.group);
        e.kind = opt(gr.resource);
        e
    }

    pub fn conflict(gr: GroupResource<'_>, name: &str, why: impl fmt::Display) -> Self {
        let mut e = Self::base(
            409,
            Reason::Conflict,
            format!(
                "Operation cannot be fulfilled on {gr} {}: {why}",
                go_quote(name)
            ),
        );
        e.name = opt(name);
        e.group = opt(gr.group);
        e.kind = opt(gr.resource);
        e
    }

    /// The optimistic-concurrency conflict.
    pub fn stale(gr: GroupResource<'_>, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(gk: GroupKind<'_>, name: &str, errs: &[FieldError]) -> Self {
        let agg = aggregate(errs);
        let message = if agg.is_empty() {
            format!("{gk} {} is invalid", go_quote(name))
        } else {
            format!("{gk} {} is invalid: {agg}", go_quote(name))
        };
        let mut e = Self::base(422, Reason::Invalid, message);
        e.name = opt(name);
        e.group = opt(gk.group);
        e.kind = opt(gk.kind);
        e.causes = errs
            .iter()
            .map(|fe| Cause {
                reason: fe.kind.cause_reason().to_owned(),
                message: fe.body(),
                field: fe.field.clone(),
            })
            .collect();
        e
    }

    /// A 422 without field causes (a patch that does not apply to the object).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::base(422, Reason::Invalid, message)
    }

    pub fn method_not_supported(gr: GroupResource<'_>, action: &str) -> Self {
        let mut e = Self::base(
            405,
            Reason::MethodNotAllowed,
            format!(
                "{action} is not supported on resources of kind {}",
                go_quote(&gr.to_string())
            ),
        );
        e.group = opt(gr.group);
        e.kind = opt(gr.resource);
        e
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::base(406, Reason::NotAcceptable, message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::base(410, Reason::Gone, message)
    }

    /// A watch or list from a compacted resource version.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::base(410, Reason::Expired, message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::base(415, Reason::UnsupportedMediaType, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::base(
            413,
            Reason::RequestEntityTooLarge,
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn internal(err: impl fmt::Display) -> Self {
        let msg = err.to_string();
        let mut e = Self::base(
            500,
            Reason::InternalError,
            format!("Internal error occurred: {msg}"),
        );
        e.causes.push(Cause {
            reason: String::new(),
            message: msg,
            field: String::new(),
        });
        e
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::base(504, Reason::Timeout, message)
    }

    pub fn with_cause(mut self, reason: &str, message: impl Into<String>, field: &str) -> Self {
        self.causes.push(Cause {
            reason: reason.to_owned(),
            message: message.into(),
            field: field.to_owned(),
        });
        self
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
        });
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), n.clone().into());
        }
        if let Some(g) = &self.group {
            details.insert("group".into(), g.clone().into());
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), k.clone().into());
        }
        if let Some(u) = &self.uid {
            details.insert("uid".into(), u.clone().into());
        }
        if !self.causes.is_empty() {
            let causes: Vec<Value> = self
                .causes
                .iter()
                .map(|c| {
                    let mut m = serde_json::Map::new();
                    if !c.reason.is_empty() {
                        m.insert("reason".into(), c.reason.clone().into());
                    }
                    if !c.message.is_empty() {
                        m.insert("message".into(), c.message.clone().into());
                    }
                    if !c.field.is_empty() {
                        m.insert("field".into(), c.field.clone().into());
                    }
                    Value::Object(m)
                })
                .collect();
            details.insert("causes".into(), causes.into());
        }
        if let Some(r) = self.retry_after_seconds {
            details.insert("retryAfterSeconds".into(), r.into());
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        if let Some(c) = &self.continue_token {
            status["metadata"] = json!({ "continue": c });
        }
        status["code"] = self.code.into();
        status
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_error_bodies_match_apimachinery() {
        let cases = [
            (
                FieldError::invalid(
                    "spec.ipFamilyPolicy",
                    "SingleStack",
                    "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
                ),
                "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ),
            (
                FieldError::required("spec.ports", ""),
                "spec.ports: Required value",
            ),
            (
                FieldError::forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ),
                "spec.clusterIPs: Forbidden: may not be set for ExternalName services",
            ),
            (
                FieldError::duplicate(
                    "spec.ports[1]",
                    BadValue::Raw("core.ServicePort{...}".into()),
                ),
                "spec.ports[1]: Duplicate value: core.ServicePort{...}",
            ),
            (
                FieldError::not_supported("spec.ipFamilies[0]", "IPv5", &["IPv4", "IPv6"]),
                "spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
            ),
            (
                FieldError::invalid(
                    "spec.ports[0].port",
                    0i64,
                    "must be between 1 and 65535, inclusive",
                ),
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn invalid_status_shape() {
        let errs = vec![
            FieldError::required("spec.ports", ""),
            FieldError::invalid("metadata.name", "A", "bad"),
        ];
        let e = ApiError::invalid(
            GroupKind {
                group: "",
                kind: "Service",
            },
            "web",
            &errs,
        );
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Service \"web\" is invalid: [spec.ports: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        let s = e.to_status();
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["kind"], "Service");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.ports");
        assert_eq!(
            s["details"]["causes"][1]["message"],
            "Invalid value: \"A\": bad"
        );
        assert!(s["details"].get("group").is_none());
    }

    #[test]
    fn not_found_and_conflict_messages() {
        let gr = GroupResource {
            group: "",
            resource: "services",
        };
        assert_eq!(
            ApiError::not_found(gr, "web").message,
            "services \"web\" not found"
        );
        assert_eq!(
            ApiError::already_exists(gr, "web").message,
            "services \"web\" already exists"
        );
        assert_eq!(
            ApiError::stale(gr, "foo").message,
            "Operation cannot be fulfilled on services \"foo\": the object has been modified; please apply your changes to the latest version and try again"
        );
        let gr = GroupResource {
            group: "discovery.k8s.io",
            resource: "endpointslices",
        };
        assert_eq!(
            ApiError::not_found(gr, "x").message,
            "endpointslices.discovery.k8s.io \"x\" not found"
        );
        assert_eq!(
            ApiError::not_found(gr, "x").to_status()["details"]["group"],
            "discovery.k8s.io"
        );
    }

    #[test]
    fn go_quote_escapes() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
