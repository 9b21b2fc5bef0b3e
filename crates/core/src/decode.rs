//! Turning request bodies into objects the way kube-apiserver does: parse JSON or YAML, decode
//! into the typed object (which drops unknown fields and rejects wrong types), and report the
//! unknown and duplicate fields for `fieldValidation`.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

/// The formats a body can arrive in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
}

/// A body that is not valid JSON or YAML.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// A parsed body and the paths of keys that appeared more than once in one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub value: Value,
    pub duplicates: Vec<String>,
}

/// Parses a body. JSON keeps the last of duplicate keys (as Go's decoder does) and reports
/// them; YAML with duplicate keys is a syntax error.
pub fn parse(bytes: &[u8], format: BodyFormat) -> Result<Parsed, SyntaxError> {
    match format {
        BodyFormat::Json => parse_json(bytes),
        BodyFormat::Yaml => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| SyntaxError(format!("yaml: invalid UTF-8: {e}")))?;
            // JSON is YAML, but the JSON parser reports duplicates and is much faster.
            if text.trim_start().starts_with('{')
                && let Ok(p) = parse_json(bytes)
            {
                return Ok(p);
            }
            let value: Value =
                serde_saphyr::from_str(text).map_err(|e| SyntaxError(format!("yaml: {e}")))?;
            Ok(Parsed {
                value,
                duplicates: Vec::new(),
            })
        }
    }
}

fn parse_json(bytes: &[u8]) -> Result<Parsed, SyntaxError> {
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = TrackedValue {
        path: String::new(),
        duplicates: &mut duplicates,
    }
    .deserialize(&mut de)
    .map_err(|e| SyntaxError(e.to_string()))?;
    de.end().map_err(|e| SyntaxError(e.to_string()))?;
    Ok(Parsed { value, duplicates })
}

/// Builds a `Value` while noting duplicate keys with their paths.
struct TrackedValue<'a> {
    path: String,
    duplicates: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for TrackedValue<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TrackedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, out.len());
            let next = seq.next_element_seed(TrackedValue {
                path,
                duplicates: &mut *self.duplicates,
            })?;
            match next {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{}", self.path, key)
            };
            if out.contains_key(&key) {
                self.duplicates.push(path.clone());
            }
            let v = map.next_value_seed(TrackedValue {
                path,
                duplicates: &mut *self.duplicates,
            })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The body had a value of the wrong type for its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TypeError {
    /// Where, e.g. `spec.ports[0].port`.
    pub path: String,
    pub message: String,
}

/// Decodes `value` into `K` and back: the result is the object as Kubernetes would store it
/// (unknown fields dropped, fields in the type's order), plus the paths of the dropped fields.
pub fn canonicalize<K: Serialize + DeserializeOwned>(
    value: Value,
) -> Result<(K, Value, Vec<String>), TypeError> {
    let typed: K = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path = e.path().to_string();
        TypeError {
            message: if path == "." {
                e.inner().to_string()
            } else {
                format!("{path}: {}", e.inner())
            },
            path,
        }
    })?;
    let canonical = serde_json::to_value(&typed).map_err(|e| TypeError {
        path: String::new(),
        message: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    collect_unknown(&value, &canonical, "", &mut unknown);
    Ok((typed, canonical, unknown))
}

/// Fields present (and non-null) in `input` but absent from `decoded` were dropped by the typed
/// decode, i.e. are unknown to the type.
fn collect_unknown(input: &Value, decoded: &Value, path: &str, out: &mut Vec<String>) {
    match (input, decoded) {
        (Value::Object(i), Value::Object(d)) => {
            for (k, v) in i {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match d.get(k) {
                    Some(dv) => collect_unknown(v, dv, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(i), Value::Array(d)) => {
            for (n, (iv, dv)) in i.iter().zip(d).enumerate() {
                collect_unknown(iv, dv, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    #[test]
    fn json_duplicates_are_reported_with_paths() {
        let p = parse(
            br#"{"metadata":{"name":"a","name":"b"},"spec":{"ports":[{"port":1,"port":2}]}}"#,
            BodyFormat::Json,
        )
        .unwrap();
        assert_eq!(p.duplicates, ["metadata.name", "spec.ports[0].port"]);
        assert_eq!(p.value["metadata"]["name"], "b");
    }

    #[test]
    fn yaml_and_json_parse() {
        let y = parse(
            b"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
            BodyFormat::Yaml,
        )
        .unwrap();
        assert_eq!(y.value["spec"]["ports"][0]["port"], 80);
        assert!(parse(b"{\"a\":", BodyFormat::Json).is_err());
        assert!(parse(b"a: [1, 2", BodyFormat::Yaml).is_err());
        assert!(parse(b"{} {}", BodyFormat::Json).is_err());
    }

    #[test]
    fn canonicalize_drops_and_reports_unknown_fields() {
        let v: Value = serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "bogusField": 1, "labels": {"a": "b"}},
            "spec": {"ports": [{"port": 80, "extra": true}], "typo": null, "other": "x"}
        });
        let (_svc, canonical, unknown) = canonicalize::<Service>(v).unwrap();
        assert_eq!(
            unknown,
            ["metadata.bogusField", "spec.ports[0].extra", "spec.other"]
        );
        assert!(canonical["metadata"].get("bogusField").is_none());
        assert_eq!(canonical["metadata"]["labels"]["a"], "b");
    }

    #[test]
    fn canonicalize_reports_type_errors_with_path() {
        let v = serde_json::json!({"spec": {"ports": [{"port": "eighty"}]}});
        let e = canonicalize::<Service>(v).unwrap_err();
        assert_eq!(e.path, "spec.ports[0].port");
        assert!(
            e.message
                .starts_with("spec.ports[0].port: invalid type: string")
        );
    }
}
