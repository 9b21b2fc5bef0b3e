//! Kubernetes' generic validation: names, labels, annotations and ObjectMeta, with
//! apimachinery's messages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::error::{FieldError, FieldErrors, FieldPath};
use crate::resource::NameRule;

pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
pub const LABEL_VALUE_MAX: usize = 63;
pub const QUALIFIED_NAME_MAX: usize = 63;
/// Total size of all annotations (`TotalAnnotationSizeLimitB`).
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_EXAMPLES: &str =
    "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_EXAMPLES: &str = "(e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_EXAMPLES: &str =
    "(e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: &str = "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_EXAMPLES: &str = "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

fn max_len_msg(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns1123_label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// `IsDNS1123Label`: the list of problems (empty when valid).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    if !dns1123_label_ok(s) {
        errs.push(format!("{DNS1123_LABEL_ERR} {DNS1123_LABEL_EXAMPLES}"));
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_msg(DNS1123_SUBDOMAIN_MAX));
    }
    if s.is_empty() || !s.split('.').all(dns1123_label_ok) {
        errs.push(format!(
            "{DNS1123_SUBDOMAIN_ERR} {DNS1123_SUBDOMAIN_EXAMPLES}"
        ));
    }
    errs
}

/// `IsDNS1035Label`.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_msg(DNS1123_LABEL_MAX));
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-');
    if !ok {
        errs.push(format!("{DNS1035_LABEL_ERR} {DNS1035_LABEL_EXAMPLES}"));
    }
    errs
}

fn qualified_name_part_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// `IsQualifiedName`: `[prefix/]name` as used by label and annotation keys.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for m in dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            name
        }
        _ => {
            errs.push(format!(
                "a qualified name {QUALIFIED_NAME_ERR} {QUALIFIED_NAME_EXAMPLES} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_msg(QUALIFIED_NAME_MAX)));
    }
    if !name.is_empty() && !qualified_name_part_ok(name) {
        errs.push(format!(
            "name part {QUALIFIED_NAME_ERR} {QUALIFIED_NAME_EXAMPLES}"
        ));
    }
    errs
}

/// `IsValidLabelValue`.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_msg(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !qualified_name_part_ok(s) {
        errs.push(format!("{LABEL_VALUE_ERR} {LABEL_VALUE_EXAMPLES}"));
    }
    errs
}

/// `IsValidPathSegmentName`: names become URL path segments.
pub fn path_segment_name(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Checks a name (or, with `prefix`, a `generateName`) against a rule. A generateName may end
/// in `-`, which the rule would reject, so that dash is masked as Kubernetes does.
pub fn name_problems(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let checked = if prefix && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Dns1123Subdomain => dns1123_subdomain(checked),
        NameRule::Dns1123Label => dns1123_label(checked),
        NameRule::Dns1035Label => dns1035_label(checked),
    }
}

pub fn validate_labels(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    path: &FieldPath,
) -> FieldErrors {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        for m in qualified_name(k) {
            errs.push(FieldError::invalid(path, k, m));
        }
        for m in label_value(v) {
            errs.push(FieldError::invalid(path, v, m));
        }
    }
    errs
}

pub fn validate_annotations(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    path: &FieldPath,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for m in qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, m));
        }
        total += k.len() + v.len();
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errs.push(FieldError::new(
            crate::error::FieldErrorType::TooLong,
            path,
            crate::error::BadValue::Omit,
            format!("must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
        ));
    }
    errs
}

/// `ValidateObjectMeta` for a new object of a resource with the given scope and name rule.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, rule: NameRule) -> FieldErrors {
    let path = FieldPath::root("metadata");
    let mut errs = Vec::new();
    let name = meta.name.as_deref().unwrap_or("");
    let generate = meta.generate_name.as_deref().unwrap_or("");
    if !generate.is_empty() {
        for m in name_problems(rule, generate, true) {
            errs.push(FieldError::invalid(path.child("generateName"), generate, m));
        }
    }
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for m in name_problems(rule, name, false) {
            errs.push(FieldError::invalid(path.child("name"), name, m));
        }
        for m in path_segment_name(name) {
            errs.push(FieldError::invalid(path.child("name"), name, m));
        }
    }
    let ns = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            errs.push(FieldError::required(path.child("namespace"), ""));
        } else {
            for m in dns1123_label(ns) {
                errs.push(FieldError::invalid(path.child("namespace"), ns, m));
            }
        }
    } else if !ns.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        for m in qualified_name(f) {
            errs.push(FieldError::invalid(path.child("finalizers").index(i), f, m));
        }
    }
    errs
}

/// `ValidateObjectMetaUpdate`: the immutable parts of metadata.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> FieldErrors {
    let path = FieldPath::root("metadata");
    let mut errs = Vec::new();
    let immutable = |field: &str, a: Option<&str>, b: Option<&str>, errs: &mut FieldErrors| {
        if a.unwrap_or("") != b.unwrap_or("") {
            errs.push(FieldError::invalid(
                path.child(field),
                a.unwrap_or(""),
                "field is immutable",
            ));
        }
    };
    immutable("name", new.name.as_deref(), old.name.as_deref(), &mut errs);
    immutable(
        "namespace",
        new.namespace.as_deref(),
        old.namespace.as_deref(),
        &mut errs,
    );
    immutable("uid", new.uid.as_deref(), old.uid.as_deref(), &mut errs);
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            path.child("creationTimestamp"),
            crate::error::BadValue::Omit,
            "field is immutable",
        ));
    }
    errs.extend(validate_labels(new.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        new.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_rules() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(dns1123_label("123-abc").is_empty());
        assert_eq!(dns1123_label("My_Name").len(), 1);
        assert_eq!(dns1123_label(&"a".repeat(64)).len(), 1);
        assert!(dns1123_subdomain("example.com").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(dns1035_label("abc-123").is_empty());
        assert_eq!(
            dns1035_label("1abc"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
        );
    }

    #[test]
    fn qualified_names_and_label_values() {
        assert!(qualified_name("app.kubernetes.io/name").is_empty());
        assert!(qualified_name("MyName").is_empty());
        assert_eq!(qualified_name("/a"), vec!["prefix part must be non-empty"]);
        assert_eq!(qualified_name("a/b/c").len(), 1);
        assert!(!qualified_name("-a").is_empty());
        assert!(label_value("").is_empty());
        assert!(label_value("my_value").is_empty());
        assert!(!label_value("bad value").is_empty());
    }

    #[test]
    fn object_meta_errors() {
        let meta = ObjectMeta {
            name: Some("Bad_Name".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&meta, true, NameRule::Dns1035Label);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.name");
        assert!(errs[0].to_string().starts_with(
            "metadata.name: Invalid value: \"Bad_Name\": a DNS-1035 label must consist of"
        ));

        let meta = ObjectMeta {
            namespace: Some("default".into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&meta, true, NameRule::Dns1035Label);
        assert_eq!(
            errs[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );

        let meta = ObjectMeta {
            generate_name: Some("web-".into()),
            name: Some("web-abcde".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        assert!(validate_object_meta(&meta, true, NameRule::Dns1035Label).is_empty());

        let meta = ObjectMeta {
            name: Some("ns1".into()),
            namespace: Some("x".into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&meta, false, NameRule::Dns1123Label);
        assert_eq!(
            errs[0].to_string(),
            "metadata.namespace: Forbidden: not allowed on this type"
        );
    }
}
