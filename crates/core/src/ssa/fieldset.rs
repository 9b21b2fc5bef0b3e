//! Sets of field paths, as server-side apply records them in `metadata.managedFields`, and their
//! FieldsV1 wire form.
//!
//! The model follows sigs.k8s.io/structured-merge-diff (SMD): a set is a tree whose nodes are
//! path elements; a node can be a member of the set (it is owned), a parent of members, or both.
//! Ordering, key formatting and number formatting mirror SMD byte for byte, because
//! `kubectl get --show-managed-fields` and clients that diff managed fields compare the text.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Number, Value};

use crate::schema::{ListType, TypeSchema};

/// Why a FieldsV1 document could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldsV1Error {
    /// A node of the document is neither a JSON object nor null.
    #[error("FieldsV1 node at {at:?} must be an object, found {found}")]
    NotAnObject {
        /// The keys leading to the node.
        at: String,
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A key is shorter than its two-character type prefix (`f:`, `k:`, `v:`, `i:`).
    #[error("key must be 2 characters long: {0:?}")]
    KeyTooShort(String),
    /// A key's second character is not the `:` separator.
    #[error("missing colon: {0}")]
    MissingColon(String),
    /// The JSON after `k:` or `v:` does not parse.
    #[error("invalid JSON in path element {key:?}: {reason}")]
    InvalidJson {
        /// The offending key.
        key: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The JSON after `k:` is not an object of key fields.
    #[error("path element {0:?} must hold a JSON object of key fields")]
    KeyNotObject(String),
    /// The text after `i:` is not a decimal integer.
    #[error("path element {0:?} has an invalid index")]
    InvalidIndex(String),
}

// ---------------------------------------------------------------------------------------------
// Values inside path elements
// ---------------------------------------------------------------------------------------------

/// A JSON value inside a path element (an associative-list key field or a set member).
///
/// Equality and order follow SMD's `value.Compare`, which compares ints and floats numerically;
/// that matters because SMD decodes every number in FieldsV1 as a float while objects carry ints,
/// and both must land on the same set node.
#[derive(Clone, Debug)]
pub struct FieldValue(Value);

impl FieldValue {
    pub fn new(v: Value) -> Self {
        FieldValue(v)
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        compare_values(&self.0, &other.0) == Ordering::Equal
    }
}

impl Eq for FieldValue {}

impl PartialOrd for FieldValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FieldValue {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

enum Num {
    Int(i64),
    Float(f64),
}

/// Go's unstructured decoding keeps only int64 as an integer; anything else numeric is a float.
fn number_of(v: &Value) -> Option<Num> {
    let Value::Number(n) = v else { return None };
    match n.as_i64() {
        Some(i) => Some(Num::Int(i)),
        None => Some(Num::Float(n.as_f64().unwrap_or(0.0))),
    }
}

fn float_cmp(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// SMD's total order over values: floats, ints, strings, bools, lists, maps, null, with ints and
/// floats compared numerically against each other.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Ordering {
    let (na, nb) = (number_of(a), number_of(b));
    match (&na, &nb) {
        (Some(Num::Float(x)), Some(Num::Float(y))) => return float_cmp(*x, *y),
        (Some(Num::Float(x)), Some(Num::Int(y))) => return float_cmp(*x, *y as f64),
        (Some(Num::Int(x)), Some(Num::Float(y))) => return float_cmp(*x as f64, *y),
        (Some(Num::Float(_)), None) => return Ordering::Less,
        (None, Some(Num::Float(_))) => return Ordering::Greater,
        (Some(Num::Int(x)), Some(Num::Int(y))) => return x.cmp(y),
        (Some(Num::Int(_)), None) => return Ordering::Less,
        (None, Some(Num::Int(_))) => return Ordering::Greater,
        (None, None) => {}
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::String(_), _) => Ordering::Less,
        (_, Value::String(_)) => Ordering::Greater,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Bool(_), _) => Ordering::Less,
        (_, Value::Bool(_)) => Ordering::Greater,
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Array(_), _) => Ordering::Less,
        (_, Value::Array(_)) => Ordering::Greater,
        (Value::Object(x), Value::Object(y)) => compare_maps(x, y),
        (Value::Object(_), _) => Ordering::Less,
        (_, Value::Object(_)) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// SMD walks the sorted union of keys and decides at the first difference, with a side that ran
/// out of keys counting as smaller.
fn compare_maps(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    if x.is_empty() && y.is_empty() {
        return Ordering::Equal;
    }
    let keys: BTreeSet<&str> = x.keys().chain(y.keys()).map(String::as_str).collect();
    for (i, k) in keys.into_iter().enumerate() {
        let c = if i == x.len() {
            Ordering::Less
        } else if i == y.len() {
            Ordering::Greater
        } else {
            match (x.get(k), y.get(k)) {
                (None, _) => Ordering::Greater,
                (_, None) => Ordering::Less,
                (Some(p), Some(q)) => compare_values(p, q),
            }
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

// ---------------------------------------------------------------------------------------------
// Go-compatible text formatting
// ---------------------------------------------------------------------------------------------

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A JSON string as Go writes it: `html` selects encoding/json's escaping of `<`, `>`, `&`,
/// U+2028 and U+2029 (SMD's jsoniter stream escapes values that way but not object field names).
pub(crate) fn write_json_string(s: &str, html: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if html => push_u00(c as u8, out),
            '\u{2028}' if html => out.push_str("\\u2028"),
            '\u{2029}' if html => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => push_u00(c as u8, out),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u00(b: u8, out: &mut String) {
    out.push_str("\\u00");
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 0xf) as usize] as char);
}

/// Splits Rust's shortest round-trip exponent form ("1.5e-7") into mantissa and exponent.
fn shortest_exp(f: f64) -> (String, i32) {
    let s = format!("{f:e}");
    match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse().unwrap_or(0)),
        None => (s, 0),
    }
}

/// A float as Go's encoding/json (and jsoniter in compatible mode) writes it.
pub(crate) fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (m, e) = shortest_exp(f);
        // Go pads the exponent to two digits and then strips the pad of small negative ones.
        if e < 0 {
            format!("{m}e-{}", -e)
        } else {
            format!("{m}e+{e:02}")
        }
    } else {
        format!("{f}")
    }
}

/// A float as Go's `%v` prints it (shortest digits, exponent form outside [1e-4, 1e6)).
pub(crate) fn go_fmt_float(f: f64) -> String {
    let (m, e) = shortest_exp(f);
    if f != 0.0 && !(-4..6).contains(&e) {
        let sign = if e < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", e.abs())
    } else {
        format!("{f}")
    }
}

/// Characters Go's `strconv.IsPrint` rejects beyond the control characters: other spaces,
/// format characters and private use. Unassigned code points cannot be told apart without
/// Unicode tables, so they count as printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

/// A string as Go's `%q` / `strconv.Quote` prints it.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Compact JSON as Go writes an unstructured value: sorted object keys, HTML-safe strings, Go
/// float formatting.
pub(crate) fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(_) => match number_of(v) {
            Some(Num::Int(i)) => out.push_str(&i.to_string()),
            Some(Num::Float(f)) => out.push_str(&go_json_float(f)),
            None => {}
        },
        Value::String(s) => write_json_string(s, true, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(k, true, out);
                out.push(':');
                write_go_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

/// A value as SMD's `value.ToString` prints it in conflict paths.
fn go_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Number(_) => match number_of(v) {
            Some(Num::Int(i)) => i.to_string(),
            Some(Num::Float(f)) => go_fmt_float(f),
            None => String::new(),
        },
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(go_to_string).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.into_iter()
                .map(|k| format!("{k}={}", go_to_string(&m[k])))
                .collect()
        }
    }
}

/// SMD decodes FieldsV1 JSON with every number as a float64.
fn numbers_to_floats(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_to_floats).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, numbers_to_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

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

// ---------------------------------------------------------------------------------------------
// Path elements and paths
// ---------------------------------------------------------------------------------------------

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A field of a struct or a key of a map (`f:name`).
    Field(String),
    /// An associative-list item identified by its key fields, sorted by name (`k:{...}`).
    Key(Vec<(String, FieldValue)>),
    /// A set item identified by its value (`v:...`).
    Value(FieldValue),
    /// An item of an atomic list by position (`i:3`).
    Index(i64),
}

impl PathElement {
    /// The FieldsV1 object key for this element.
    pub fn to_fields_v1_key(&self) -> String {
        let mut out = String::new();
        match self {
            PathElement::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            PathElement::Key(fields) => {
                out.push_str("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(name, false, &mut out);
                    out.push(':');
                    write_go_json(value.as_value(), &mut out);
                }
                out.push('}');
            }
            PathElement::Value(v) => {
                out.push_str("v:");
                write_go_json(v.as_value(), &mut out);
            }
            PathElement::Index(i) => {
                out.push_str("i:");
                out.push_str(&i.to_string());
            }
        }
        out
    }

    /// Parses a FieldsV1 object key. `Ok(None)` is a well-formed key of a type this version does
    /// not know, which SMD drops silently so that newer servers' data does not break older ones.
    pub fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
        let bytes = key.as_bytes();
        if bytes.len() < 2 {
            return Err(FieldsV1Error::KeyTooShort(key.to_string()));
        }
        if bytes[1] != b':' {
            return Err(FieldsV1Error::MissingColon(key.to_string()));
        }
        let rest = &key[2..];
        let parse_json = |text: &str| {
            serde_json::from_str::<Value>(text)
                .map(numbers_to_floats)
                .map_err(|e| FieldsV1Error::InvalidJson {
                    key: key.to_string(),
                    reason: e.to_string(),
                })
        };
        Ok(Some(match bytes[0] {
            b'f' => PathElement::Field(rest.to_string()),
            b'v' => PathElement::Value(FieldValue(parse_json(rest)?)),
            b'k' => {
                let fields = match parse_json(rest)? {
                    Value::Object(m) => m.into_iter().map(|(k, v)| (k, FieldValue(v))).collect(),
                    Value::Null => Vec::new(),
                    _ => return Err(FieldsV1Error::KeyNotObject(key.to_string())),
                };
                PathElement::key(fields)
            }
            b'i' => PathElement::Index(
                rest.parse()
                    .map_err(|_| FieldsV1Error::InvalidIndex(key.to_string()))?,
            ),
            _ => return Ok(None),
        }))
    }

    /// An associative-list key element; SMD keeps key fields sorted by name.
    pub fn key(mut fields: Vec<(String, FieldValue)>) -> PathElement {
        fields.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        PathElement::Key(fields)
    }
}

/// SMD's human-readable form, used in conflict messages: `.spec`, `[port=80,protocol="TCP"]`,
/// `[="a"]`, `[3]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", go_to_string(v.as_value())))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", go_to_string(v.as_value())),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Field sets
// ---------------------------------------------------------------------------------------------

/// A set of field paths. Children never hold empty sets, so structural equality is set equality.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; its parents do not become members. The empty path is ignored because nobody
    /// owns the object as a whole.
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((last, parents)) = path.split_last() else {
            return;
        };
        let mut node = self;
        for pe in parents {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.members.insert(last.clone());
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        let Some((last, parents)) = path.split_last() else {
            return false;
        };
        let mut node = self;
        for pe in parents {
            match node.children.get(pe) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.members.contains(last)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let both = child.intersection(other.children.get(pe)?);
                (!both.is_empty()).then(|| (pe.clone(), both))
            })
            .collect();
        FieldSet { members, children }
    }

    /// SMD's difference: members are removed one by one, so removing a parent path leaves its
    /// children in place.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Like `difference`, but a member of `other` also removes everything below it.
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(pe, _)| !other.members.contains(pe))
            .filter_map(|(pe, child)| {
                let rest = match other.children.get(pe) {
                    Some(theirs) => child.recursive_difference(theirs),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (pe.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    /// The paths below `pe`, relative to it.
    pub fn with_prefix(&self, pe: &PathElement) -> FieldSet {
        self.children.get(pe).cloned().unwrap_or_default()
    }

    /// Every member path, in SMD's iteration order (a node's members, then its children's paths).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        for pe in &self.members {
            let mut p = prefix.clone();
            p.push(pe.clone());
            out.push(FieldPath(p));
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 document, keys in SMD's order with `.` first where a node is both a member
    /// and a parent.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let order = match (members.peek(), children.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(m), Some((c, _))) => (*m).cmp(*c),
            };
            let (key, value) = match order {
                Ordering::Less => {
                    let m = members.next().expect("peeked");
                    (m.to_fields_v1_key(), Map::new())
                }
                Ordering::Greater => {
                    let (c, child) = children.next().expect("peeked");
                    (c.to_fields_v1_key(), child.emit(false))
                }
                Ordering::Equal => {
                    members.next();
                    let (c, child) = children.next().expect("peeked");
                    (c.to_fields_v1_key(), child.emit(true))
                }
            };
            out.insert(key, Value::Object(value));
        }
        out
    }

    /// Decodes a FieldsV1 document. Keys of unknown element types are skipped as SMD does; a
    /// node without `.` and without children is a member.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        match v {
            Value::Null => Ok(FieldSet::new()),
            Value::Object(m) => Ok(read_node(m, "")?.0.unwrap_or_default()),
            other => Err(FieldsV1Error::NotAnObject {
                at: String::new(),
                found: json_type(other),
            }),
        }
    }

    /// The fields an object sets, as SMD's `ToFieldSet` computes them for a typed value: leaves,
    /// map keys, list items and set values are members; structs are members only when empty or
    /// null; maps and lists themselves only when null or (maps) empty.
    pub fn from_value(obj: &Value, schema: &TypeSchema) -> FieldSet {
        let mut walk = ToSet {
            schema,
            set: FieldSet::new(),
            path: Vec::new(),
            spath: Vec::new(),
        };
        walk.node(obj, Shape::Struct);
        walk.set
    }

    /// Adds, as members, the struct fields that are parents in this set (SMD's
    /// `EnsureNamedFieldsAreMembers`), which pruning needs so that removing a field's last owned
    /// child can remove the field.
    pub fn ensure_named_fields_are_members(&self, schema: &TypeSchema) -> FieldSet {
        self.ensure_named(Shape::Struct, schema, &mut Vec::new())
    }

    fn ensure_named(&self, shape: Shape, schema: &TypeSchema, spath: &mut Vec<String>) -> FieldSet {
        let mut members = self.members.clone();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let out = match (shape, pe) {
                (Shape::Struct | Shape::Map, PathElement::Field(name)) => {
                    if shape == Shape::Struct {
                        members.insert(pe.clone());
                    }
                    spath.push(name.clone());
                    let child_shape = declared_shape(schema, spath).unwrap_or(Shape::Struct);
                    let out = child.ensure_named(child_shape, schema, spath);
                    spath.pop();
                    out
                }
                (Shape::List(ListType::Map(_)), PathElement::Key(_)) => {
                    child.ensure_named(Shape::Struct, schema, spath)
                }
                _ => child.ensure_named(Shape::Leaf, schema, spath),
            };
            children.insert(pe.clone(), out);
        }
        FieldSet { members, children }
    }
}

fn read_node(m: &Map<String, Value>, at: &str) -> Result<(Option<FieldSet>, bool), FieldsV1Error> {
    let mut children: Option<FieldSet> = None;
    let mut is_member = false;
    for (key, val) in m {
        if key == "." {
            is_member = true;
            continue;
        }
        let Some(pe) = PathElement::from_fields_v1_key(key)? else {
            continue;
        };
        let (grandchildren, child_is_member) = match val {
            Value::Object(cm) => read_node(cm, &format!("{at}/{key}"))?,
            Value::Null => (None, true),
            other => {
                return Err(FieldsV1Error::NotAnObject {
                    at: format!("{at}/{key}"),
                    found: json_type(other),
                });
            }
        };
        if child_is_member {
            children.get_or_insert_default().members.insert(pe.clone());
        }
        if let Some(g) = grandchildren {
            children.get_or_insert_default().children.insert(pe, g);
        }
    }
    if children.is_none() {
        is_member = true;
    }
    Ok((children, is_member))
}

// ---------------------------------------------------------------------------------------------
// Schema-driven shapes
// ---------------------------------------------------------------------------------------------

/// How SMD treats a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Scalars, atomic lists and atomic maps: owned and replaced as one value.
    Leaf,
    /// An object with fixed fields.
    Struct,
    /// A string-keyed dictionary whose keys are owned one by one.
    Map,
    /// An associative list (`Set` or `Map`).
    List(ListType),
}

/// Schema paths are field names from the root; list items add no segment.
pub(crate) fn declared_shape(schema: &TypeSchema, spath: &[String]) -> Option<Shape> {
    let p: Vec<&str> = spath.iter().map(String::as_str).collect();
    let lt = schema.list(&p).list_type;
    if lt != ListType::Atomic {
        return Some(Shape::List(lt));
    }
    if schema.is_atomic_map(&p) {
        return Some(Shape::Leaf);
    }
    if schema.is_map(&p) {
        return Some(Shape::Map);
    }
    None
}

/// Undeclared objects are structs and undeclared lists are atomic (the schema has no rule).
pub(crate) fn field_shape(
    schema: &TypeSchema,
    spath: &[String],
    sides: &[Option<&Value>],
) -> Shape {
    declared_shape(schema, spath).unwrap_or_else(|| item_shape(sides))
}

pub(crate) fn item_shape(sides: &[Option<&Value>]) -> Shape {
    if sides.iter().flatten().any(|v| v.is_object()) {
        Shape::Struct
    } else {
        Shape::Leaf
    }
}

/// List-map key fields with a schema default: SMD fills a missing key field with its default so
/// that `{port: 80}` in an apply configuration names the same item as the defaulted
/// `{port: 80, protocol: TCP}` stored in the object. The schema table cannot express defaults,
/// so the Kubernetes ones (`+default="TCP"` on ServicePort and ContainerPort) live here.
const KEY_DEFAULTS: &[(&[&str], &str, &str)] = &[
    (&["spec", "ports"], "protocol", "TCP"),
    (&["spec", "containers", "ports"], "protocol", "TCP"),
    (&["spec", "initContainers", "ports"], "protocol", "TCP"),
    (&["spec", "ephemeralContainers", "ports"], "protocol", "TCP"),
    (
        &["spec", "template", "spec", "containers", "ports"],
        "protocol",
        "TCP",
    ),
    (
        &["spec", "template", "spec", "initContainers", "ports"],
        "protocol",
        "TCP",
    ),
];

fn key_default(spath: &[String], field: &str) -> Option<Value> {
    KEY_DEFAULTS
        .iter()
        .find(|(p, f, _)| *f == field && p.iter().copied().eq(spath.iter().map(String::as_str)))
        .map(|(_, _, d)| Value::String((*d).to_string()))
}

/// The path element naming a list item; the error texts are SMD's.
pub(crate) fn item_path_element(
    spath: &[String],
    list_type: ListType,
    item: &Value,
) -> Result<PathElement, String> {
    match list_type {
        ListType::Map(keys) => {
            let m = match item {
                Value::Null => {
                    return Err("associative list with keys may not have a null element".into());
                }
                Value::Object(m) => m,
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let mut fields = Vec::new();
            for key in keys {
                if let Some(v) = m.get(*key) {
                    fields.push((key.to_string(), FieldValue(v.clone())));
                } else if let Some(d) = key_default(spath, key) {
                    fields.push((key.to_string(), FieldValue(d)));
                }
            }
            if !keys.is_empty() && fields.is_empty() {
                let quoted: Vec<String> = keys.iter().map(|k| go_quote(k)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    quoted.join(" ")
                ));
            }
            Ok(PathElement::key(fields))
        }
        _ => match item {
            Value::Object(_) => {
                Err("associative list without keys has an element that's a map type".into())
            }
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => {
                Err("associative list without keys has an element that's an explicit null".into())
            }
            v => Ok(PathElement::Value(FieldValue(v.clone()))),
        },
    }
}

struct ToSet<'a> {
    schema: &'a TypeSchema,
    set: FieldSet,
    path: Vec<PathElement>,
    spath: Vec<String>,
}

impl ToSet<'_> {
    fn node(&mut self, v: &Value, shape: Shape) {
        match shape {
            Shape::Leaf => self.set.insert(&self.path),
            Shape::List(lt) => {
                if let Some(items) = v.as_array() {
                    self.items(items, lt);
                }
            }
            Shape::Struct | Shape::Map => {
                let Some(m) = v.as_object() else { return };
                for (k, child) in m {
                    self.path.push(PathElement::Field(k.clone()));
                    self.spath.push(k.clone());
                    let child_shape = field_shape(self.schema, &self.spath, &[Some(child)]);
                    self.node(child, child_shape);
                    let empty_or_null =
                        child.is_null() || child.as_object().is_some_and(Map::is_empty);
                    if shape == Shape::Map || empty_or_null {
                        self.set.insert(&self.path);
                    }
                    self.spath.pop();
                    self.path.pop();
                }
            }
        }
    }

    /// Duplicated items are owned as a whole: SMD records the item path and does not descend.
    /// Items whose key cannot be computed are skipped (SMD's result for them is unusable).
    fn items(&mut self, items: &[Value], lt: ListType) {
        let pes: Vec<Option<PathElement>> = items
            .iter()
            .map(|item| item_path_element(&self.spath, lt, item).ok())
            .collect();
        let mut seen = BTreeSet::new();
        let mut duplicates = BTreeSet::new();
        for pe in pes.iter().flatten() {
            if !seen.insert(pe) && duplicates.insert(pe) {
                self.path.push(pe.clone());
                self.set.insert(&self.path);
                self.path.pop();
            }
        }
        for (item, pe) in items.iter().zip(&pes) {
            let Some(pe) = pe else { continue };
            if duplicates.contains(pe) {
                continue;
            }
            self.path.push(pe.clone());
            self.node(item, item_shape(&[Some(item)]));
            self.set.insert(&self.path);
            self.path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SERVICE;
    use serde_json::json;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    fn port_key(port: i64, protocol: &str) -> PathElement {
        PathElement::key(vec![
            ("protocol".to_string(), FieldValue::new(json!(protocol))),
            ("port".to_string(), FieldValue::new(json!(port))),
        ])
    }

    fn service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"note": "x"}
            },
            "spec": {
                "selector": {"app": "web"},
                "clusterIPs": ["10.0.0.1"],
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"name": "dns", "port": 53, "protocol": "UDP"}
                ],
                "type": "ClusterIP"
            }
        })
    }

    #[test]
    fn fields_v1_round_trip_of_a_service_entry() {
        let text = r#"{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:internalTrafficPolicy":{},"f:ports":{".":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:name":{},"f:port":{},"f:protocol":{},"f:targetPort":{}},"k:{\"port\":443,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}},"f:selector":{},"f:sessionAffinity":{},"f:type":{}}}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let set = FieldSet::from_fields_v1(&v).unwrap();
        assert_eq!(serde_json::to_string(&set.to_fields_v1()).unwrap(), text);
        assert!(set.contains(&[f("spec"), f("ports"), port_key(80, "TCP"), f("targetPort")]));
        assert!(set.contains(&[f("spec"), f("ports")]));
        assert!(!set.contains(&[f("spec")]));
    }

    #[test]
    fn encoding_orders_keys_like_smd() {
        let mut set = FieldSet::new();
        set.insert(&[f("spec"), f("ports"), port_key(443, "TCP"), f("port")]);
        set.insert(&[f("spec"), f("ports"), port_key(80, "UDP")]);
        set.insert(&[f("spec"), f("ports"), port_key(80, "TCP")]);
        set.insert(&[f("spec"), f("ports"), port_key(80, "TCP"), f("port")]);
        set.insert(&[f("spec"), f("ports"), f("zzz")]);
        set.insert(&[
            f("metadata"),
            f("finalizers"),
            PathElement::Value(FieldValue::new(json!("b"))),
        ]);
        set.insert(&[
            f("metadata"),
            f("finalizers"),
            PathElement::Value(FieldValue::new(json!("a"))),
        ]);
        set.insert(&[f("spec"), f("clusterIPs"), PathElement::Index(10)]);
        set.insert(&[f("spec"), f("clusterIPs"), PathElement::Index(9)]);
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            concat!(
                r#"{"f:metadata":{"f:finalizers":{"v:\"a\"":{},"v:\"b\"":{}}},"#,
                r#""f:spec":{"f:clusterIPs":{"i:9":{},"i:10":{}},"f:ports":{"f:zzz":{},"#,
                r#""k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}},"#,
                r#""k:{\"port\":80,\"protocol\":\"UDP\"}":{},"#,
                r#""k:{\"port\":443,\"protocol\":\"TCP\"}":{"f:port":{}}}}}"#
            )
        );
    }

    #[test]
    fn key_and_value_formatting_matches_go() {
        let cases: &[(Value, &str)] = &[
            (json!(80), "80"),
            (json!(-3), "-3"),
            (json!(80.0), "80"),
            (json!(1.5), "1.5"),
            (json!(1e21), "1e+21"),
            (json!(1e-7), "1e-7"),
            (json!(1.5e-10), "1.5e-10"),
            (json!(0.000001), "0.000001"),
            (json!(123456789.0), "123456789"),
            (
                json!("a<b>&\"\\\n\u{1}\u{2028}é"),
                r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#,
            ),
            (json!(true), "true"),
            (json!(null), "null"),
            (json!({"b": 1, "a": [1, "x"]}), r#"{"a":[1,"x"],"b":1}"#),
        ];
        for (v, want) in cases {
            let pe = PathElement::Value(FieldValue::new(v.clone()));
            assert_eq!(pe.to_fields_v1_key(), format!("v:{want}"), "{v}");
        }
        let key = PathElement::key(vec![
            ("name".to_string(), FieldValue::new(json!("<x>"))),
            ("a<".to_string(), FieldValue::new(json!(2))),
        ]);
        assert_eq!(
            key.to_fields_v1_key(),
            r#"k:{"a<":2,"name":"\u003cx\u003e"}"#
        );
    }

    #[test]
    fn path_strings_match_smd() {
        let cases: Vec<(Vec<PathElement>, &str)> = vec![
            (
                vec![f("spec"), f("ports"), port_key(80, "TCP"), f("targetPort")],
                r#".spec.ports[port=80,protocol="TCP"].targetPort"#,
            ),
            (
                vec![
                    f("metadata"),
                    f("finalizers"),
                    PathElement::Value(FieldValue::new(json!("a\tb"))),
                ],
                r#".metadata.finalizers[="a\tb"]"#,
            ),
            (vec![f("x"), PathElement::Index(3)], ".x[3]"),
            (
                vec![PathElement::Value(FieldValue::new(json!(1e6)))],
                "[=1e+06]",
            ),
            (
                vec![PathElement::Value(FieldValue::new(json!(65535.0)))],
                "[=65535]",
            ),
            (
                vec![PathElement::Value(FieldValue::new(json!(0.00001)))],
                "[=1e-05]",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(FieldPath(path).to_string(), want);
        }
    }

    #[test]
    fn from_value_of_a_service() {
        let set = FieldSet::from_value(&service(), &SERVICE);
        let mut paths: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
        paths.sort();
        let mut want = vec![
            ".apiVersion",
            ".kind",
            ".metadata.name",
            ".metadata.namespace",
            ".metadata.labels.app",
            ".metadata.labels.tier",
            ".metadata.annotations.note",
            ".spec.selector",
            ".spec.clusterIPs",
            ".spec.type",
            r#".spec.ports[port=80,protocol="TCP"]"#,
            r#".spec.ports[port=80,protocol="TCP"].port"#,
            r#".spec.ports[port=80,protocol="TCP"].protocol"#,
            r#".spec.ports[port=80,protocol="TCP"].targetPort"#,
            r#".spec.ports[port=53,protocol="UDP"]"#,
            r#".spec.ports[port=53,protocol="UDP"].name"#,
            r#".spec.ports[port=53,protocol="UDP"].port"#,
            r#".spec.ports[port=53,protocol="UDP"].protocol"#,
        ];
        want.sort();
        assert_eq!(paths, want);
        // Neither structs nor granular maps/lists are members when they have content.
        assert!(!set.contains(&[f("spec")]));
        assert!(!set.contains(&[f("metadata"), f("labels")]));
        assert!(!set.contains(&[f("spec"), f("ports")]));
    }

    #[test]
    fn from_value_special_cases() {
        let cases: Vec<(Value, Vec<&str>)> = vec![
            // Empty or null structs and maps are owned themselves; an empty list is not.
            (json!({"spec": {}}), vec![".spec"]),
            (json!({"spec": null}), vec![".spec"]),
            (
                json!({"metadata": {"labels": {}}}),
                vec![".metadata.labels"],
            ),
            (json!({"spec": {"ports": []}}), vec![]),
            (json!({"spec": {"ports": null}}), vec![".spec.ports"]),
            (json!({"spec": {"selector": {}}}), vec![".spec.selector"]),
            // The protocol default names the item like the stored object does.
            (
                json!({"spec": {"ports": [{"port": 80}]}}),
                vec![
                    r#".spec.ports[port=80,protocol="TCP"]"#,
                    r#".spec.ports[port=80,protocol="TCP"].port"#,
                ],
            ),
            // Duplicates are owned as whole items.
            (
                json!({"spec": {"ports": [{"port": 1, "name": "a"}, {"port": 1, "name": "b"}]}}),
                vec![r#".spec.ports[port=1,protocol="TCP"]"#],
            ),
            (
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                vec![
                    r#".metadata.finalizers[="a"]"#,
                    r#".metadata.finalizers[="b"]"#,
                ],
            ),
        ];
        for (obj, want) in cases {
            let set = FieldSet::from_value(&obj, &SERVICE);
            let mut got: Vec<String> = set.paths().iter().map(ToString::to_string).collect();
            got.sort();
            let mut want: Vec<String> = want.into_iter().map(String::from).collect();
            want.sort();
            assert_eq!(got, want, "{obj}");
        }
    }

    #[test]
    fn set_operations() {
        let a = |paths: &[&[&str]]| {
            let mut s = FieldSet::new();
            for p in paths {
                s.insert(&p.iter().map(|n| f(n)).collect::<Vec<_>>());
            }
            s
        };
        let x = a(&[&["a"], &["b", "c"], &["b", "d"]]);
        let y = a(&[&["b"], &["b", "c"], &["e"]]);
        assert_eq!(
            x.union(&y),
            a(&[&["a"], &["b"], &["b", "c"], &["b", "d"], &["e"]])
        );
        assert_eq!(x.intersection(&y), a(&[&["b", "c"]]));
        assert_eq!(x.difference(&y), a(&[&["a"], &["b", "d"]]));
        assert_eq!(x.recursive_difference(&y), a(&[&["a"]]));
        assert!(x.difference(&x).is_empty());
        assert!(x.intersection(&FieldSet::new()).is_empty());
    }

    #[test]
    fn numbers_from_fields_v1_and_objects_name_the_same_item() {
        let decoded = FieldSet::from_fields_v1(
            &json!({"f:spec": {"f:ports": {"k:{\"port\":80.0,\"protocol\":\"TCP\"}": {}}}}),
        )
        .unwrap();
        assert!(decoded.contains(&[f("spec"), f("ports"), port_key(80, "TCP")]));
        assert_eq!(
            decoded.paths()[0].to_string(),
            r#".spec.ports[port=80,protocol="TCP"]"#
        );
    }

    #[test]
    fn malformed_fields_v1() {
        let cases: Vec<(Value, FieldsV1Error)> = vec![
            (
                json!([]),
                FieldsV1Error::NotAnObject {
                    at: String::new(),
                    found: "array",
                },
            ),
            (
                json!({"f:a": "x"}),
                FieldsV1Error::NotAnObject {
                    at: "/f:a".into(),
                    found: "string",
                },
            ),
            (
                json!({"f:a": {"f:b": 1}}),
                FieldsV1Error::NotAnObject {
                    at: "/f:a/f:b".into(),
                    found: "number",
                },
            ),
            (json!({"f": {}}), FieldsV1Error::KeyTooShort("f".into())),
            (json!({"fx": {}}), FieldsV1Error::MissingColon("fx".into())),
            (
                json!({"k:[1]": {}}),
                FieldsV1Error::KeyNotObject("k:[1]".into()),
            ),
            (
                json!({"i:1.5": {}}),
                FieldsV1Error::InvalidIndex("i:1.5".into()),
            ),
            (json!({"i:": {}}), FieldsV1Error::InvalidIndex("i:".into())),
        ];
        for (v, want) in cases {
            assert_eq!(FieldSet::from_fields_v1(&v), Err(want), "{v}");
        }
        for bad in [r#"k:{"a":1"#, r#"v:{"a":1} x"#, "v:"] {
            let err = FieldSet::from_fields_v1(&json!({ bad: {} })).unwrap_err();
            assert!(
                matches!(err, FieldsV1Error::InvalidJson { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn lenient_fields_v1_forms() {
        // Unknown element types are dropped, null nodes and childless nodes are members.
        let set = FieldSet::from_fields_v1(&json!({
            "f:a": null,
            "f:b": {"x:future": {}},
            "f:c": {".": {}, "f:d": {}},
            "z:other": {"f:e": {}}
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&set.to_fields_v1()).unwrap(),
            r#"{"f:a":{},"f:b":{},"f:c":{".":{},"f:d":{}}}"#
        );
        assert!(FieldSet::from_fields_v1(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn named_fields_become_members() {
        let mut set = FieldSet::new();
        set.insert(&[f("metadata"), f("labels"), f("app")]);
        set.insert(&[f("spec"), f("ports"), port_key(80, "TCP"), f("port")]);
        let got: BTreeSet<String> = set
            .ensure_named_fields_are_members(&SERVICE)
            .paths()
            .iter()
            .map(ToString::to_string)
            .collect();
        let want: BTreeSet<String> = [
            ".metadata",
            ".metadata.labels",
            ".metadata.labels.app",
            ".spec",
            ".spec.ports",
            r#".spec.ports[port=80,protocol="TCP"].port"#,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
    }

    mod random {
        use super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|i| json!(i)),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| json!(f)),
                "[a-z.:{}\"\\\\0-9 ]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::vec(
                        ("(f:|k:|v:|i:|\\.|x:)?[a-z0-9{}\":,\\[\\]]{0,6}", inner),
                        0..5
                    )
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn decoding_never_panics_and_round_trips(v in arb_json()) {
                if let Ok(set) = FieldSet::from_fields_v1(&v) {
                    let again = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
                    prop_assert_eq!(again, set);
                }
            }

            #[test]
            fn from_value_never_panics_and_round_trips(v in arb_json()) {
                let set = FieldSet::from_value(&v, &SERVICE);
                let again = FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap();
                prop_assert_eq!(&again, &set);
                let _ = set.ensure_named_fields_are_members(&SERVICE);
                for p in set.paths() {
                    let _ = p.to_string();
                }
            }
        }
    }
}
