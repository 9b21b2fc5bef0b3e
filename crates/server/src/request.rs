//! Request parameters: the query string and the options Kubernetes reads from it.

use duostack_core::decode::BodyFormat;
use duostack_core::error::ApiError;

/// A decoded query string. Repeated keys keep their first value, except where a caller
/// asks for all of them (`dryRun`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter with Go's `strconv.ParseBool` spellings.
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "invalid boolean value for {key}: {other:?}"
            ))),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: {v:?}: must be an integer"
                ))
            }),
        }
    }
}

/// `fieldValidation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// Options every write carries.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: String,
    pub field_validation: FieldValidation,
    pub force: bool,
}

/// The field manager kube-apiserver derives from the User-Agent when none is given: the text
/// before the first `/`.
fn manager_from_user_agent(ua: &str) -> String {
    let prefix = ua.split('/').next().unwrap_or("").trim();
    if prefix.is_empty() {
        "unknown".to_owned()
    } else {
        prefix.chars().take(128).collect()
    }
}

impl WriteOptions {
    pub fn from_query(q: &Query, user_agent: &str, is_apply: bool) -> Result<Self, ApiError> {
        let mut dry_run = false;
        for v in q.all("dryRun") {
            match v {
                "All" => dry_run = true,
                "" => {}
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: dryRun: Unsupported value: {}: supported values: \"All\"",
                        duostack_core::error::go_quote(other)
                    )));
                }
            }
        }
        let field_manager = match q.get("fieldManager") {
            Some(m) if !m.is_empty() => {
                if m.len() > 128 {
                    return Err(ApiError::bad_request(format!(
                        "fieldManager: Too long: must have at most 128 bytes ({} given)",
                        m.len()
                    )));
                }
                if m.chars().any(|c| c.is_control()) {
                    return Err(ApiError::bad_request(format!(
                        "fieldManager: Invalid value: {}: must consist of printable characters",
                        duostack_core::error::go_quote(m)
                    )));
                }
                m.to_owned()
            }
            _ if is_apply => {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            _ => manager_from_user_agent(user_agent),
        };
        let field_validation = match q.get("fieldValidation") {
            None | Some("") => FieldValidation::Warn,
            Some("Ignore") => FieldValidation::Ignore,
            Some("Warn") => FieldValidation::Warn,
            Some("Strict") => FieldValidation::Strict,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "fieldValidation: Unsupported value: {}: supported values: \"Ignore\", \"Strict\", \"Warn\"",
                    duostack_core::error::go_quote(other)
                )));
            }
        };
        let force = q.flag("force")?;
        if force && !is_apply {
            return Err(ApiError::bad_request(
                "force: Forbidden: may not be specified for non-apply patch",
            ));
        }
        Ok(Self {
            dry_run,
            field_manager,
            field_validation,
            force,
        })
    }
}

/// What a PATCH body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: Option<&str>) -> Result<Self, ApiError> {
        let base = ct
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        match base.as_deref() {
            Some("application/json-patch+json") => Ok(Self::Json),
            Some("application/merge-patch+json") => Ok(Self::Merge),
            Some("application/strategic-merge-patch+json") => Ok(Self::Strategic),
            Some("application/apply-patch+yaml") | Some("application/apply-patch+cbor") => {
                Ok(Self::Apply)
            }
            _ => Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json{}",
                ct.map(|c| format!(" (got {c:?})")).unwrap_or_default()
            ))),
        }
    }
}

/// The format of a create/update body from its Content-Type.
pub fn body_format(ct: Option<&str>) -> Result<BodyFormat, ApiError> {
    let base = ct
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match base.as_deref() {
        None | Some("") | Some("application/json") | Some("*/*") => Ok(BodyFormat::Json),
        Some("application/yaml") | Some("text/yaml") | Some("application/x-yaml") => {
            Ok(BodyFormat::Yaml)
        }
        Some(other) => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&dryRun=All",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch").unwrap());
        assert!(q.flag("missing").is_ok_and(|b| !b));
        assert!(Query::parse(Some("watch=maybe")).flag("watch").is_err());
    }

    #[test]
    fn write_options() {
        let q = Query::parse(Some(
            "dryRun=All&fieldManager=kubectl-create&fieldValidation=Strict",
        ));
        let o = WriteOptions::from_query(&q, "kubectl/v1.37.1", false).unwrap();
        assert!(o.dry_run);
        assert_eq!(o.field_manager, "kubectl-create");
        assert_eq!(o.field_validation, FieldValidation::Strict);
        let o =
            WriteOptions::from_query(&Query::default(), "kubectl/v1.37.1 (linux)", false).unwrap();
        assert_eq!(o.field_manager, "kubectl");
        assert_eq!(o.field_validation, FieldValidation::Warn);
        assert!(WriteOptions::from_query(&Query::default(), "x", true).is_err());
        assert_eq!(
            WriteOptions::from_query(&Query::parse(Some("dryRun=Some")), "x", false)
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn patch_types() {
        assert_eq!(
            PatchType::from_content_type(Some("application/strategic-merge-patch+json")).unwrap(),
            PatchType::Strategic
        );
        assert_eq!(
            PatchType::from_content_type(Some("application/json"))
                .unwrap_err()
                .code,
            415
        );
    }
}
