//! Server-side strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! `kubectl apply` (client-side), `kubectl edit` and `kubectl patch` compute their patches
//! against kube-apiserver's implementation, so this module reproduces that implementation's
//! observable results rather than an idealised reading of the design docs. Where Kubernetes
//! has a quirk that changes a stored object (for example `$patch: delete` on a map leaving an
//! empty map, or the order that `$setElementOrder` produces next to server-only list items),
//! the quirk is kept on purpose and pointed out where it happens.
//!
//! Two deliberate departures, both invisible after kube-apiserver decodes the result into a
//! typed object: directive keys (`$patch`, `$retainKeys`, `$setElementOrder/…`,
//! `$deleteFromPrimitiveList/…`) never reach the output, and where Kubernetes would panic
//! (and answer 500) this returns an error instead.
//!
//! Kubernetes iterates Go maps, so the order in which it visits patch keys is random; here
//! patch keys are visited in document order (deletion lists last), and new keys are appended
//! after existing ones.

use serde_json::{Map, Value};

use crate::schema::{ListRule, PatchStrategy, TypeSchema};

type Object = Map<String, Value>;

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

// Go type names as `reflect.TypeOf(...).String()` prints them, so that error texts match the
// ones kubectl users see from a real cluster.
const GO_MAP: &str = "map[string]interface {}";
const GO_SLICE: &str = "[]interface {}";

/// Why a strategic merge patch could not be applied. The messages follow the texts of
/// Kubernetes' `strategicpatch` and `mergepatch` packages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// The patch document is not a JSON object (the kind of JSON value it is instead).
    #[error("json: cannot unmarshal {0} into Go value of type map[string]interface {{}}")]
    PatchNotObject(&'static str),

    /// The object being patched is not a JSON object.
    #[error("invalid JSON document")]
    OriginalNotObject,

    /// A `$patch` directive has a value that is not allowed where it appears (a map accepts
    /// `replace` and `delete`; a list element also `merge`, which has its own error).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },

    /// A list element carries `$patch: merge`, which Kubernetes has never implemented.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,

    /// An element of a merge-by-key list (in the object, the patch or a `$setElementOrder`
    /// list) lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },

    /// A value is not of the JSON type its position requires (Go type names).
    #[error("expected a {expected}, but received a {actual}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
    },

    /// A list with the merge strategy but no merge key holds objects (Kubernetes names the
    /// element kind, always `struct` for objects; the path is kept for callers).
    #[error("cannot merge lists without merge key for struct")]
    MergeKeyNotDeclared { path: String },

    /// A list to merge holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,

    /// The elements of the lists being merged are not all of one JSON type.
    #[error("list element types are not identical: {lists}")]
    MixedListElementTypes { lists: String },

    /// The first element of the lists being merged is `null`, which has no element type
    /// (Kubernetes panics here).
    #[error("list element types are not identical: {lists} (null element)")]
    NullListElement { lists: String },

    /// `$setElementOrder` names a list that is empty in both the object and the patch.
    #[error("no elements in any of the given slices")]
    EmptyLists,

    /// A list searched by merge key holds something other than objects (its position).
    #[error("value for key {0} is not a map")]
    ListElementNotMap(usize),

    /// `$retainKeys` is not a list, or the patch sets a field the list does not name.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeys,

    /// A `$setElementOrder` key is not of the form `$setElementOrder/<field>`.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrder,

    /// A `$deleteFromPrimitiveList` key is not of the form `$deleteFromPrimitiveList/<field>`.
    #[error("invalid patch format of primitive list")]
    BadDeleteFromPrimitiveList,

    /// The patch list is not a subsequence of its `$setElementOrder` list.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
}

/// Applies a strategic merge patch to `original` as kube-apiserver does for a PATCH request
/// with content type `application/strategic-merge-patch+json`. `schema` supplies each list's
/// patch strategy and merge key; maps always merge (`mapType=atomic` matters only to
/// server-side apply, not to this patch type).
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: &TypeSchema,
) -> Result<Value, SmpError> {
    let Value::Object(patch) = patch else {
        return Err(SmpError::PatchNotObject(json_kind(patch)));
    };
    let Value::Object(original) = original else {
        return Err(SmpError::OriginalNotObject);
    };
    let cx = Ctx { schema };
    let merged = cx.merge_map(&mut Vec::new(), original.clone(), patch.clone())?;
    Ok(Value::Object(merged))
}

struct Ctx<'s> {
    schema: &'s TypeSchema,
}

/// What Go's `reflect.TypeOf` would say of a value decoded by kube-apiserver: integers and
/// floats are different types there, and that difference decides between merging and
/// replacing, and whether a list is homogeneous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GoType {
    Nil,
    Bool,
    Int64,
    Float64,
    String,
    Slice,
    Map,
}

impl GoType {
    fn of(v: &Value) -> GoType {
        match v {
            Value::Null => GoType::Nil,
            Value::Bool(_) => GoType::Bool,
            // Integers beyond i64 become float64 when Kubernetes decodes them.
            Value::Number(n) if n.is_i64() => GoType::Int64,
            Value::Number(_) => GoType::Float64,
            Value::String(_) => GoType::String,
            Value::Array(_) => GoType::Slice,
            Value::Object(_) => GoType::Map,
        }
    }

    fn name(self) -> &'static str {
        match self {
            // `reflect.TypeOf(nil)` is a nil Type, which `%s` prints like this.
            GoType::Nil => "%!s(<nil>)",
            GoType::Bool => "bool",
            GoType::Int64 => "int64",
            GoType::Float64 => "float64",
            GoType::String => "string",
            GoType::Slice => GO_SLICE,
            GoType::Map => GO_MAP,
        }
    }
}

fn bad_arg(expected: &'static str, actual: &Value) -> SmpError {
    SmpError::BadArgType {
        expected,
        actual: GoType::of(actual).name(),
    }
}

fn no_merge_key(map: &Object, key: &str) -> SmpError {
    SmpError::NoMergeKey {
        map: go_fmt_map(map),
        key: key.to_owned(),
    }
}

/// The merge key of a list: Kubernetes treats "no key" and a list with the replace strategy
/// alike (an empty `patchMergeKey`).
fn merge_key_of(rule: &ListRule) -> Option<&'static str> {
    match rule.patch {
        PatchStrategy::Merge { merge_key } => merge_key,
        PatchStrategy::Replace => None,
    }
}

/// Splits `$prefix/field` into `field`; anything else sharing the prefix is malformed.
fn strip_directive_prefix<'k>(
    key: &'k str,
    prefix: &str,
    malformed: SmpError,
) -> Result<&'k str, SmpError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ => Err(malformed),
    }
}

impl Ctx<'_> {
    fn rule(&self, path: &[String]) -> ListRule {
        let segments: Vec<&str> = path.iter().map(String::as_str).collect();
        self.schema.list(&segments)
    }

    fn merge_map(
        &self,
        path: &mut Vec<String>,
        mut original: Object,
        mut patch: Object,
    ) -> Result<Object, SmpError> {
        if let Some(directive) = patch.get(PATCH_DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(PATCH_DIRECTIVE);
                    Ok(strip_directive_keys_map(patch))
                }
                // Kubernetes keeps the key and empties the map rather than removing it.
                Some("delete") => Ok(Object::new()),
                // `merge` is only meaningful on list elements; on a map Kubernetes rejects it.
                _ => Err(SmpError::UnknownPatchType {
                    directive: go_fmt_s(directive),
                    map: go_fmt_map(&patch),
                }),
            };
        }

        apply_retain_keys(&mut original, &mut patch)?;
        self.merge_set_element_orders(path, &mut original, &mut patch)?;

        // Go visits these keys in random order, so a list and its deletion list can be
        // applied either way round. Deleting last matches what Go always does when the list
        // also has a `$setElementOrder` (which kubectl sends), and does not depend on the
        // client's key order.
        let (deletion_lists, fields): (Vec<_>, Vec<_>) = patch
            .into_iter()
            .partition(|(key, _)| key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX));
        for (raw_key, patch_value) in fields.into_iter().chain(deletion_lists) {
            let (key, is_delete_list) = if raw_key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
                let field = strip_directive_prefix(
                    &raw_key,
                    DELETE_FROM_PRIMITIVE_LIST_PREFIX,
                    SmpError::BadDeleteFromPrimitiveList,
                )?;
                // An empty field name leaves the directive key itself as the target, which
                // the object cannot have, so the deletion list is ignored as in Kubernetes.
                let key = if field.is_empty() {
                    raw_key.clone()
                } else {
                    field.to_owned()
                };
                (key, true)
            } else {
                (raw_key, false)
            };

            // Even a deletion list set to null removes its target: Kubernetes checks for null
            // before it looks at what kind of key this is.
            if patch_value.is_null() {
                original.shift_remove(&key);
                continue;
            }

            let Some(current) = original.get_mut(&key) else {
                if !is_delete_list && let Some(value) = adopt_new_value(patch_value) {
                    original.insert(key, value);
                }
                continue;
            };

            if GoType::of(current) != GoType::of(&patch_value) {
                if !is_delete_list {
                    match adopt_new_value(patch_value) {
                        Some(value) => *current = value,
                        None => {
                            original.shift_remove(&key);
                        }
                    }
                }
                continue;
            }

            match (std::mem::take(current), patch_value) {
                (Value::Object(current), Value::Object(patch_value)) => {
                    path.push(key.clone());
                    let merged = self.merge_map(path, current, patch_value);
                    path.pop();
                    original.insert(key, Value::Object(merged?));
                }
                (Value::Array(current), Value::Array(patch_value)) => {
                    path.push(key.clone());
                    let rule = self.rule(path);
                    let merged =
                        self.merge_list_field(path, current, patch_value, &rule, is_delete_list);
                    path.pop();
                    original.insert(key, Value::Array(merged?.merged));
                }
                // Scalars of one type: the patch wins (Kubernetes does this even for a
                // deletion list whose target happens to be a scalar).
                (_, patch_value) => match adopt_new_value(patch_value) {
                    Some(value) => {
                        original.insert(key, value);
                    }
                    None => {
                        original.shift_remove(&key);
                    }
                },
            }
        }
        Ok(original)
    }

    /// Handles every `$setElementOrder/<field>` of one map: merges `<field>` (taking it out of
    /// the patch so the main loop does not merge it again) and then orders the result.
    fn merge_set_element_orders(
        &self,
        path: &mut Vec<String>,
        original: &mut Object,
        patch: &mut Object,
    ) -> Result<(), SmpError> {
        let directive_keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX))
            .cloned()
            .collect();
        for directive_key in directive_keys {
            // A previous directive may have consumed this key as its list field (a field
            // literally named `$setElementOrder/...`); Go then never visits it either.
            let Some(order) = patch.shift_remove(&directive_key) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(bad_arg(GO_SLICE, &order));
            };
            let field = strip_directive_prefix(
                &directive_key,
                SET_ELEMENT_ORDER_PREFIX,
                SmpError::BadSetElementOrder,
            )?
            .to_owned();

            let original_list = match original.get(&field) {
                None => None,
                Some(Value::Array(list)) => Some(list.clone()),
                Some(other) => return Err(bad_arg(GO_SLICE, other)),
            };
            let patch_list = match patch.get(&field) {
                None => None,
                Some(Value::Array(list)) => Some(list.clone()),
                Some(other) => return Err(bad_arg(GO_SLICE, other)),
            };

            path.push(field.clone());
            let result = self.order_list_field(path, original_list, patch_list, &order);
            path.pop();
            if let Some(ordered) = result? {
                original.insert(field.clone(), Value::Array(ordered));
            }
            patch.shift_remove(&field);
        }
        Ok(())
    }

    /// Merges one list field that has a `$setElementOrder` and returns it in its final order
    /// (`None`: the field is in neither document, and the directive is ignored).
    fn order_list_field(
        &self,
        path: &[String],
        original_list: Option<Vec<Value>>,
        patch_list: Option<Vec<Value>>,
        order: &[Value],
    ) -> Result<Option<Vec<Value>>, SmpError> {
        let rule = self.rule(path);
        let merge_key = merge_key_of(&rule);
        check_patch_follows_order(patch_list.as_deref().unwrap_or_default(), order, merge_key)?;

        let (merged, server_order) = match (&original_list, &patch_list) {
            (None, None) => return Ok(None),
            (Some(original), None) => (original.clone(), original.clone()),
            (None, Some(patch)) => {
                let added = patch
                    .iter()
                    .cloned()
                    .filter_map(remove_directives)
                    .collect();
                (added, Vec::new())
            }
            (Some(original), Some(patch)) => {
                let merged =
                    self.merge_list_field(path, original.clone(), patch.clone(), &rule, false)?;
                (merged.merged, merged.original_after)
            }
        };

        let (in_order, server_only) = match merge_key {
            None => partition_scalars(merged, order),
            Some(key) => partition_maps(merged, order, key)?,
        };
        let kind = list_element_type(&[
            server_order.as_slice(),
            patch_list.as_deref().unwrap_or_default(),
        ])?;
        normalize_element_order(in_order, server_only, order, &server_order, merge_key, kind)
            .map(Some)
    }

    fn merge_list_field(
        &self,
        path: &[String],
        original: Vec<Value>,
        patch: Vec<Value>,
        rule: &ListRule,
        is_delete_list: bool,
    ) -> Result<ListMerge, SmpError> {
        // Deletion lists apply whatever the field's strategy is.
        if is_delete_list || matches!(rule.patch, PatchStrategy::Merge { .. }) {
            return self.merge_list(path, original, patch, merge_key_of(rule), is_delete_list);
        }
        Ok(ListMerge {
            merged: patch.into_iter().map(strip_directive_keys).collect(),
            original_after: original,
        })
    }

    fn merge_list(
        &self,
        path: &[String],
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: Option<&str>,
        is_delete_list: bool,
    ) -> Result<ListMerge, SmpError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(ListMerge {
                merged: original.clone(),
                original_after: original,
            });
        }
        let kind = list_element_type(&[original.as_slice(), patch.as_slice()])?;

        if kind != GoType::Map {
            if is_delete_list {
                let kept = original
                    .iter()
                    .filter(|v| !patch.contains(v))
                    .cloned()
                    .collect();
                return Ok(ListMerge {
                    merged: kept,
                    original_after: original,
                });
            }
            let mut both = original.clone();
            both.extend(patch.iter().cloned());
            let len = go_deduplicate(&mut both);
            let union = both[..len].to_vec();
            // With nothing to append, Go's `append` returns the original slice itself, so the
            // in-place deduplication also rewrites the original that later decides the order
            // of server-only items; reproduce that, since it can change the result. (With
            // items to append, this assumes the live list has no spare capacity, as after
            // a deep copy.)
            let original_after = if patch.is_empty() { both } else { original };
            let (in_patch, server_only) = match merge_key {
                None => partition_scalars(union, &patch),
                Some(key) => partition_maps(union, &patch, key)?,
            };
            let merged = normalize_element_order(
                in_patch,
                server_only,
                &patch,
                &original_after,
                merge_key,
                kind,
            )?;
            return Ok(ListMerge {
                merged,
                original_after,
            });
        }

        let Some(key) = merge_key else {
            return Err(SmpError::MergeKeyNotDeclared {
                path: path.join("."),
            });
        };

        // `visible` is what the caller's copy of the original list looks like afterwards: Go
        // deletes and appends in the caller's backing array, and `$setElementOrder` then
        // orders server-only items by that rewritten array. See `AliasedList`.
        let mut visible = AliasedList::new(original);
        let mut plain = Vec::new();
        let mut replace = false;
        for element in &patch {
            let Value::Object(element) = element else {
                return Err(bad_arg(GO_MAP, element));
            };
            let Some(directive) = element.get(PATCH_DIRECTIVE) else {
                plain.push(Value::Object(element.clone()));
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let Some(value) = element.get(key) else {
                        return Err(no_merge_key(element, key));
                    };
                    while let Some(index) = find_by_merge_key(visible.live(), key, value)? {
                        visible.remove(index);
                    }
                }
                // Keep scanning: later delete elements still apply to the original and
                // every other directive element must still be checked.
                Some("replace") => replace = true,
                Some("merge") => return Err(SmpError::MergeDirectiveInList),
                _ => {
                    return Err(SmpError::UnknownPatchType {
                        directive: go_fmt_s(directive),
                        map: go_fmt_map(element),
                    });
                }
            }
        }

        let (server_order, patch_items) = if replace {
            let replacement: Vec<Value> = plain.into_iter().map(strip_directive_keys).collect();
            // The replacement list is a fresh array: appends to it are not seen by the caller.
            visible.detach();
            (replacement, Vec::new())
        } else {
            (visible.live().to_vec(), plain)
        };

        let mut merged = server_order.clone();
        for element in &patch_items {
            let Value::Object(element) = element else {
                return Err(bad_arg(GO_MAP, element));
            };
            let Some(value) = element.get(key) else {
                return Err(no_merge_key(element, key));
            };
            match find_by_merge_key(&merged, key, value)? {
                Some(index) => {
                    let current = match std::mem::take(&mut merged[index]) {
                        Value::Object(current) => current,
                        other => return Err(bad_arg(GO_MAP, &other)),
                    };
                    let mut nested = path.to_vec();
                    merged[index] =
                        Value::Object(self.merge_map(&mut nested, current, element.clone())?);
                }
                None => {
                    let added = strip_directive_keys(Value::Object(element.clone()));
                    visible.write_appended(merged.len(), &added);
                    merged.push(added);
                }
            }
        }

        let (in_patch, server_only) = partition_maps(merged, &patch_items, key)?;
        let merged = normalize_element_order(
            in_patch,
            server_only,
            &patch_items,
            &server_order,
            Some(key),
            kind,
        )?;
        Ok(ListMerge {
            merged,
            original_after: visible.into_caller_view(),
        })
    }
}

/// A merged list, and the original list as the caller's Go slice would see it afterwards.
struct ListMerge {
    merged: Vec<Value>,
    original_after: Vec<Value>,
}

/// Reproduces Go slice aliasing in Kubernetes' merge of object lists. Deleting an element
/// (`append(s[:i], s[i+1:]...)`) shifts the rest left inside the original backing array, and
/// later appends land in the freed tail slots, still inside the caller's view of the original.
/// `$setElementOrder` then looks server-only items up in that rewritten view, which changes
/// where they end up next to new items. Only slots below the original length are visible to
/// the caller, so whatever spare capacity the Go slice had does not change the outcome.
struct AliasedList {
    /// The caller's view: the original backing array, as long as the original.
    backing: Vec<Value>,
    /// Length of the local slice still sharing `backing`.
    live_len: usize,
    /// Whether the local list has moved to a different array.
    detached: bool,
}

impl AliasedList {
    fn new(original: Vec<Value>) -> Self {
        AliasedList {
            live_len: original.len(),
            backing: original,
            detached: false,
        }
    }

    fn live(&self) -> &[Value] {
        &self.backing[..self.live_len]
    }

    fn remove(&mut self, index: usize) {
        if index >= self.live_len {
            return;
        }
        // Go copies the tail one slot left and leaves the old last slot as it was.
        for i in index + 1..self.live_len {
            self.backing[i - 1] = self.backing[i].clone();
        }
        self.live_len -= 1;
    }

    fn detach(&mut self) {
        self.detached = true;
    }

    fn write_appended(&mut self, position: usize, value: &Value) {
        if self.detached {
            return;
        }
        if let Some(slot) = self.backing.get_mut(position) {
            *slot = value.clone();
        }
    }

    fn into_caller_view(self) -> Vec<Value> {
        self.backing
    }
}

/// The patch items of a list (ignoring `$patch: delete` elements and other directive
/// elements) must appear in `$setElementOrder` in the same relative order.
fn check_patch_follows_order(
    patch: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), SmpError> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = match merge_key {
        Some(_) => split_delete_elements(patch.iter())?.0,
        None => patch.iter().collect(),
    };
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if has_patch_directive(kept[p]) {
            p += 1;
            continue;
        }
        if same_merge_identity(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(SmpError::SetElementOrderMismatch {
            patch: go_fmt_list(patch),
            order: go_fmt_list(order),
        });
    }
    Ok(())
}

fn has_patch_directive(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.contains_key(PATCH_DIRECTIVE))
}

fn is_delete_element(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("delete"))
}

/// Separates `$patch: delete` elements from the rest; every element must be an object.
fn split_delete_elements<T>(items: impl Iterator<Item = T>) -> Result<(Vec<T>, Vec<T>), SmpError>
where
    T: std::borrow::Borrow<Value>,
{
    let (mut kept, mut deletes) = (Vec::new(), Vec::new());
    for item in items {
        let value = item.borrow();
        if !value.is_object() {
            return Err(bad_arg(GO_MAP, value));
        }
        if is_delete_element(value) {
            deletes.push(item);
        } else {
            kept.push(item);
        }
    }
    Ok((kept, deletes))
}

fn same_merge_identity(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, SmpError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    let Value::Object(l) = left else {
        return Err(bad_arg(GO_MAP, left));
    };
    let Value::Object(r) = right else {
        return Err(bad_arg(GO_MAP, right));
    };
    let Some(lv) = l.get(key) else {
        return Err(no_merge_key(l, key));
    };
    let Some(rv) = r.get(key) else {
        return Err(no_merge_key(r, key));
    };
    Ok(lv == rv)
}

/// The first object in `list` whose merge key equals `value`.
fn find_by_merge_key(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>, SmpError> {
    for (index, item) in list.iter().enumerate() {
        let Value::Object(item) = item else {
            return Err(SmpError::ListElementNotMap(index));
        };
        if item.get(key) == Some(value) {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Splits `merged` into the scalars present in `by` and the rest, keeping relative order.
fn partition_scalars(merged: Vec<Value>, by: &[Value]) -> (Vec<Value>, Vec<Value>) {
    merged.into_iter().partition(|v| by.contains(v))
}

/// Splits `merged` into the objects whose merge key occurs in `by` and the rest.
fn partition_maps(
    merged: Vec<Value>,
    by: &[Value],
    key: &str,
) -> Result<(Vec<Value>, Vec<Value>), SmpError> {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for item in merged {
        let Value::Object(object) = &item else {
            return Err(bad_arg(GO_MAP, &item));
        };
        let Some(value) = object.get(key) else {
            return Err(no_merge_key(object, key));
        };
        if find_by_merge_key(by, key, value)?.is_some() {
            inside.push(item);
        } else {
            outside.push(item);
        }
    }
    Ok((inside, outside))
}

/// The common element type of the lists being merged, which must be a single non-list type.
fn list_element_type(lists: &[&[Value]]) -> Result<GoType, SmpError> {
    let mut found: Option<GoType> = None;
    for value in lists.iter().flat_map(|l| l.iter()) {
        let t = GoType::of(value);
        match found {
            None if t == GoType::Nil => {
                return Err(SmpError::NullListElement {
                    lists: go_fmt_lists(lists),
                });
            }
            None if t == GoType::Slice => return Err(SmpError::ListOfLists),
            None => found = Some(t),
            Some(previous) if previous != t => {
                return Err(SmpError::MixedListElementTypes {
                    lists: go_fmt_lists(lists),
                });
            }
            Some(_) => {}
        }
    }
    found.ok_or(SmpError::EmptyLists)
}

/// Kubernetes' in-place deduplication, which moves the last element into each duplicate's
/// slot; returns the new length, leaving the stale tail in place (see its caller for why the
/// tail matters).
fn go_deduplicate(items: &mut [Value]) -> usize {
    if items.is_empty() {
        return 0;
    }
    let mut last = items.len() - 1;
    let mut i = 0;
    while i < last {
        let mut j = i + 1;
        while j <= last {
            if items[i] == items[j] {
                items[j] = items[last].clone();
                last -= 1;
                // Re-examine slot j, which now holds what was the last element.
                continue;
            }
            j += 1;
        }
        i += 1;
    }
    last + 1
}

/// Puts the patch items in `patch_order` and the server-only items in `server_order`, then
/// interleaves them (Kubernetes' `normalizeElementOrder` + `mergeSortedSlice`).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: GoType,
) -> Result<Vec<Value>, SmpError> {
    let patch_items = sort_by_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = sort_by_order(server_only, server_order, merge_key, kind)?;

    // Take a server-only item first only when both it and the next patch item exist in the
    // live list and it came first there; a patch item the live list does not know (a new
    // one) therefore goes before the remaining server-only items.
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (
                    position_in(server_order, l, merge_key, kind),
                    position_in(server_order, r, merge_key, kind),
                ),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: GoType,
) -> Result<Vec<Value>, SmpError> {
    let (items, deletes) = if kind == GoType::Map {
        let key = merge_key.unwrap_or_default();
        for value in items.iter().chain(order) {
            let Value::Object(object) = value else {
                return Err(bad_arg(GO_MAP, value));
            };
            if !object.contains_key(key) {
                return Err(no_merge_key(object, key));
            }
        }
        split_delete_elements(items.into_iter())?
    } else {
        (items, Vec::new())
    };

    let mut keyed: Vec<(Option<usize>, Value)> = items
        .into_iter()
        .map(|v| (position_in(order, &v, merge_key, kind), v))
        .collect();
    // Kubernetes' comparator says "less" whenever either item is missing from `order`, which
    // is not a strict ordering, so the outcome depends on the exact algorithm: use Go's.
    go_stable_sort(&mut keyed, |a, b| match (a.0, b.0) {
        (Some(x), Some(y)) => x < y,
        _ => true,
    });
    let mut sorted: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    sorted.extend(deletes);
    Ok(sorted)
}

/// Position of `item` in `list`, comparing merge-key values for objects (a missing key
/// compares like null, as Go's nil does) and whole values otherwise.
fn position_in(
    list: &[Value],
    item: &Value,
    merge_key: Option<&str>,
    kind: GoType,
) -> Option<usize> {
    let identity = |v: &'_ Value| -> Value {
        if kind == GoType::Map {
            match v {
                Value::Object(m) => m
                    .get(merge_key.unwrap_or_default())
                    .cloned()
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            }
        } else {
            v.clone()
        }
    };
    let wanted = identity(item);
    list.iter().position(|v| identity(v) == wanted)
}

/// Go's `sort.SliceStable`: insertion sort on blocks of 20, then SymMerge passes. Needed
/// because Kubernetes' comparator is inconsistent for items missing from the order list,
/// and only this exact sequence of comparisons gives its results.
fn go_stable_sort<T>(data: &mut [T], less: impl Fn(&T, &T) -> bool) {
    const BLOCK: usize = 20;
    let n = data.len();
    let mut start = 0;
    while start + BLOCK <= n {
        insertion_sort(data, start, start + BLOCK, &less);
        start += BLOCK;
    }
    insertion_sort(data, start, n, &less);

    let mut block = BLOCK;
    while block < n {
        let mut a = 0;
        while a + 2 * block <= n {
            sym_merge(data, a, a + block, a + 2 * block, &less);
            a += 2 * block;
        }
        if a + block < n {
            sym_merge(data, a, a + block, n, &less);
        }
        block *= 2;
    }
}

fn insertion_sort<T>(data: &mut [T], a: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    for i in a + 1..b {
        let mut j = i;
        while j > a && less(&data[j], &data[j - 1]) {
            data.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Merges the sorted runs `data[a..m]` and `data[m..b]` in place (Kim and Kutzner's SymMerge,
/// as Go implements it).
fn sym_merge<T>(data: &mut [T], a: usize, m: usize, b: usize, less: &impl Fn(&T, &T) -> bool) {
    if m - a == 1 {
        // Binary-search the insertion point of the single left item in the right run.
        let (mut lo, mut hi) = (m, b);
        while lo < hi {
            let h = (lo + hi) / 2;
            if less(&data[h], &data[a]) {
                lo = h + 1;
            } else {
                hi = h;
            }
        }
        for k in a..lo.saturating_sub(1) {
            data.swap(k, k + 1);
        }
        return;
    }
    if b - m == 1 {
        let (mut lo, mut hi) = (a, m);
        while lo < hi {
            let h = (lo + hi) / 2;
            if !less(&data[m], &data[h]) {
                lo = h + 1;
            } else {
                hi = h;
            }
        }
        let mut k = m;
        while k > lo {
            data.swap(k, k - 1);
            k -= 1;
        }
        return;
    }

    let mid = (a + b) / 2;
    let n = mid + m;
    let (mut start, mut r) = if m > mid { (n - b, mid) } else { (a, m) };
    let p = n - 1;
    while start < r {
        let c = (start + r) / 2;
        if !less(&data[p - c], &data[c]) {
            start = c + 1;
        } else {
            r = c;
        }
    }
    let end = n - start;
    if start < m && m < end {
        rotate(data, start, m, end);
    }
    if a < start && start < mid {
        sym_merge(data, a, start, mid, less);
    }
    if mid < end && end < b {
        sym_merge(data, mid, end, b, less);
    }
}

/// Swaps the blocks `data[a..m]` and `data[m..b]` with the same sequence of swaps as Go, so
/// that equal-looking items end in the same places.
fn rotate<T>(data: &mut [T], a: usize, m: usize, b: usize) {
    let mut i = m - a;
    let mut j = b - m;
    while i != j {
        if i > j {
            swap_range(data, m - i, m, j);
            i -= j;
        } else {
            swap_range(data, m - i, m + j - i, i);
            j -= i;
        }
    }
    swap_range(data, m - i, m, i);
}

fn swap_range<T>(data: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        data.swap(a + i, b + i);
    }
}

/// `$retainKeys`: every field the patch sets must be listed, and fields of the original that
/// are not listed are cleared before the merge.
fn apply_retain_keys(original: &mut Object, patch: &mut Object) -> Result<(), SmpError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(SmpError::BadRetainKeys);
    };
    let listed = |key: &str| retain.iter().any(|v| v.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(key) {
            return Err(SmpError::BadRetainKeys);
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// For patch content Kubernetes copies verbatim (a `$patch: replace` map, a replaced list, a
/// new element of a merged list): Go leaves any directive keys in it, which kube-apiserver's
/// decoding then ignores as unknown fields, so only the keys go; their maps stay.
fn strip_directive_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directive_keys_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_directive_keys).collect()),
        other => other,
    }
}

fn strip_directive_keys_map(map: Object) -> Object {
    map.into_iter()
        .filter(|(k, _)| !is_directive_key(k))
        .map(|(k, v)| (k, strip_directive_keys(v)))
        .collect()
}

/// For a patch value with nothing to merge into (a new field, or one whose type changed):
/// Kubernetes drops null fields, then drops every map that carries `$patch` (and with it the
/// field or list element holding it). `None`: the value itself is dropped.
fn adopt_new_value(mut value: Value) -> Option<Value> {
    discard_null_fields(&mut value);
    remove_directives(value)
}

fn discard_null_fields(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_null_fields);
        }
        Value::Array(items) => items.iter_mut().for_each(discard_null_fields),
        _ => {}
    }
}

fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(PATCH_DIRECTIVE) {
                return None;
            }
            let cleaned = map
                .into_iter()
                .filter(|(k, _)| !is_directive_key(k))
                .filter_map(|(k, v)| remove_directives(v).map(|v| (k, v)))
                .collect();
            Some(Value::Object(cleaned))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// Go `fmt` renderings (`%v` and `%s`) of decoded JSON, used only in error messages so that
// they read as Kubernetes' do: `map[name:dns port:53]`, `[a b]`, `<nil>`.

fn go_fmt_map(map: &Object) -> String {
    let mut out = String::new();
    write_go_map(map, false, &mut out);
    out
}

fn go_fmt_list(items: &[Value]) -> String {
    let mut out = String::new();
    write_go_list(items, false, &mut out);
    out
}

fn go_fmt_lists(lists: &[&[Value]]) -> String {
    let mut out = String::from("[");
    for (i, list) in lists.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_go_list(list, false, &mut out);
    }
    out.push(']');
    out
}

/// `%s` of a value, as Kubernetes formats an unknown `$patch` value.
fn go_fmt_s(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Null => out.push_str("%!s(<nil>)"),
        other => write_go_value(other, true, &mut out),
    }
    out
}

fn write_go_value(value: &Value, verb_s: bool, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) if verb_s => out.push_str(&format!("%!s(bool={b})")),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let (text, type_name) = match n.as_i64() {
                Some(i) => (i.to_string(), "int64"),
                None => (go_float(n.as_f64().unwrap_or_default()), "float64"),
            };
            if verb_s {
                out.push_str(&format!("%!s({type_name}={text})"));
            } else {
                out.push_str(&text);
            }
        }
        Value::String(s) => out.push_str(s),
        Value::Array(items) => write_go_list(items, verb_s, out),
        Value::Object(map) => write_go_map(map, verb_s, out),
    }
}

fn write_go_list(items: &[Value], verb_s: bool, out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_go_value(item, verb_s, out);
    }
    out.push(']');
}

fn write_go_map(map: &Object, verb_s: bool, out: &mut String) {
    // Go prints map keys sorted.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push_str("map[");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        if let Some(value) = map.get(key) {
            write_go_value(value, verb_s, out);
        }
    }
    out.push(']');
}

/// Go's `%v` of a float64: shortest digits, exponent form below 1e-4 and from 1e+06 up.
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let Some((mantissa, exponent)) = sci.split_once('e') else {
        return sci;
    };
    let exponent: i64 = exponent.parse().unwrap_or_default();
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1;
    let len = digits.len() as i64;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else if point >= len {
        format!("{digits}{}", "0".repeat((point - len) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SERVICE;
    use serde_json::json;

    enum Want {
        Ok(Value),
        Err(&'static str),
    }

    struct Case {
        name: &'static str,
        original: Value,
        patch: Value,
        want: Want,
    }

    fn ok(name: &'static str, original: Value, patch: Value, want: Value) -> Case {
        Case {
            name,
            original,
            patch,
            want: Want::Ok(want),
        }
    }

    fn err(name: &'static str, original: Value, patch: Value, message: &'static str) -> Case {
        Case {
            name,
            original,
            patch,
            want: Want::Err(message),
        }
    }

    fn has_directive(value: &Value) -> bool {
        match value {
            Value::Object(map) => map
                .iter()
                .any(|(k, v)| is_directive_key(k) || has_directive(v)),
            Value::Array(items) => items.iter().any(has_directive),
            _ => false,
        }
    }

    fn run(cases: Vec<Case>) {
        for case in cases {
            let got = strategic_merge_patch(&case.original, &case.patch, &SERVICE);
            match (&case.want, got) {
                (Want::Ok(want), Ok(got)) => {
                    assert_eq!(&got, want, "case {}", case.name);
                    assert!(
                        !has_directive(&got),
                        "case {}: directive left in {got}",
                        case.name
                    );
                }
                (Want::Err(want), Err(got)) => {
                    assert_eq!(got.to_string(), *want, "case {}", case.name);
                }
                (want, got) => {
                    let want = match want {
                        Want::Ok(v) => format!("Ok({v})"),
                        Want::Err(e) => format!("Err({e})"),
                    };
                    panic!("case {}: want {want}, got {got:?}", case.name);
                }
            }
        }
    }

    fn ports_service(ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": ports}})
    }

    #[test]
    fn kubectl_apply_changing_service_ports() {
        // The body kubectl apply sent when the ports went from [80/TCP, 443/TCP] to
        // [53/UDP named dns, 443/TCP].
        let original = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "web",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{old}"}
            },
            "spec": {
                "ports": [
                    {"port": 80, "protocol": "TCP", "targetPort": 80},
                    {"port": 443, "protocol": "TCP", "targetPort": 443}
                ],
                "selector": {"app": "web"},
                "type": "ClusterIP"
            }
        });
        let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"..."}},"spec":{"$setElementOrder/ports":[{"port":53},{"port":443}],"ports":[{"name":"dns","port":53,"protocol":"UDP"},{"$patch":"delete","port":80}]}});
        let got = strategic_merge_patch(&original, &patch, &SERVICE).expect("patch applies");
        assert_eq!(
            got["spec"]["ports"],
            json!([
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"port": 443, "protocol": "TCP", "targetPort": 443}
            ])
        );
        assert_eq!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            json!("...")
        );
        assert_eq!(got["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(got["spec"]["type"], json!("ClusterIP"));
        assert!(!has_directive(&got));
    }

    #[test]
    fn output_keeps_the_original_key_order_and_appends_new_keys() {
        let original = json!({"kind": "Service", "metadata": {"name": "web", "labels": {"b": "1", "a": "2"}}, "spec": {}});
        let patch = json!({"metadata": {"labels": {"c": "3", "b": "9"}}, "apiVersion": "v1"});
        let got = strategic_merge_patch(&original, &patch, &SERVICE).expect("patch applies");
        assert_eq!(
            got.to_string(),
            r#"{"kind":"Service","metadata":{"name":"web","labels":{"b":"9","a":"2","c":"3"}},"spec":{},"apiVersion":"v1"}"#
        );
    }

    #[test]
    fn maps() {
        run(vec![
            ok(
                "kubectl edit two-way patch of the selector",
                json!({"spec": {"selector": {"app": "web"}}}),
                json!({"spec": {"selector": {"app": "web3"}}}),
                json!({"spec": {"selector": {"app": "web3"}}}),
            ),
            // mapType=atomic is a server-side apply notion; this patch type merges the map.
            ok(
                "selector keys the patch does not name survive",
                json!({"spec": {"selector": {"app": "web", "tier": "fe"}}}),
                json!({"spec": {"selector": {"app": "web3"}}}),
                json!({"spec": {"selector": {"app": "web3", "tier": "fe"}}}),
            ),
            ok(
                "null deletes a label",
                json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}}),
                json!({"metadata": {"labels": {"tier": null}}}),
                json!({"metadata": {"labels": {"app": "web"}}}),
            ),
            ok(
                "null for an absent key adds nothing",
                json!({"metadata": {"labels": {"app": "web"}}}),
                json!({"metadata": {"labels": {"gone": null}, "annotations": null}}),
                json!({"metadata": {"labels": {"app": "web"}}}),
            ),
            ok(
                "new value loses nulls and maps carrying $patch",
                json!({"spec": {"type": "ClusterIP"}}),
                json!({"spec": {"extra": {"a": null, "b": {"$patch": "delete", "c": 1}, "c": [{"$patch": "replace"}, {"d": null, "e": 1}], "d": 1}}}),
                json!({"spec": {"type": "ClusterIP", "extra": {"c": [{"e": 1}], "d": 1}}}),
            ),
            ok(
                "$patch: replace on a map keeps only the patch",
                json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}}),
                json!({"metadata": {"labels": {"$patch": "replace", "team": "core"}}}),
                json!({"metadata": {"labels": {"team": "core"}}}),
            ),
            ok(
                "$patch: replace at the root",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"$patch": "replace", "kind": "Service"}),
                json!({"kind": "Service"}),
            ),
            ok(
                "$patch: delete on a map leaves it empty",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"$patch": "delete"}}}),
                json!({"metadata": {"labels": {}}}),
            ),
            ok(
                "$retainKeys clears unlisted fields",
                json!({"spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"port": 80}]}}),
                json!({"spec": {"$retainKeys": ["type", "ports"], "type": "ClusterIP"}}),
                json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}),
            ),
            ok(
                "an object replaces a list",
                json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
                json!({"spec": {"ports": {"port": 80}}}),
                json!({"spec": {"ports": {"port": 80}}}),
            ),
            ok(
                "a directive-only map replacing a scalar removes the field",
                json!({"spec": {"clusterIP": "10.0.0.1"}}),
                json!({"spec": {"clusterIP": {"$patch": "delete"}}}),
                json!({"spec": {}}),
            ),
        ]);
    }

    #[test]
    fn lists() {
        run(vec![
            ok(
                "ports merge by port: update in place, null removes a field",
                ports_service(json!([{"port": 80, "targetPort": 8080}, {"port": 443}])),
                json!({"spec": {"ports": [{"port": 80, "targetPort": null, "name": "http"}]}}),
                ports_service(json!([{"port": 80, "name": "http"}, {"port": 443}])),
            ),
            ok(
                "ownerReferences merge by uid; new ones are appended",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "2", "controller": true}, {"uid": "3", "name": "c"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b", "controller": true}, {"uid": "3", "name": "c"}]}}),
            ),
            ok(
                "$patch: delete removes every element with that key",
                ports_service(
                    json!([{"port": 80, "name": "a"}, {"port": 80, "name": "b"}, {"port": 443}]),
                ),
                json!({"spec": {"ports": [{"$patch": "delete", "port": 80}]}}),
                ports_service(json!([{"port": 443}])),
            ),
            ok(
                "$patch: replace element replaces the whole list",
                ports_service(json!([{"port": 80, "name": "http"}, {"port": 443}])),
                json!({"spec": {"ports": [{"$patch": "replace"}, {"port": 8443, "name": "https"}]}}),
                ports_service(json!([{"port": 8443, "name": "https"}])),
            ),
            ok(
                "a list without a rule is replaced",
                json!({"spec": {"clusterIPs": ["10.0.0.1", "fd00::1"]}}),
                json!({"spec": {"clusterIPs": ["10.0.0.2"]}}),
                json!({"spec": {"clusterIPs": ["10.0.0.2"]}}),
            ),
            ok(
                "finalizers: union, patch order first for the items it names",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"finalizers": ["c", "a"]}}),
                json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
            ),
            ok(
                "finalizers: a new item goes before server-only items",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"finalizers": ["d", "b"]}}),
                json!({"metadata": {"finalizers": ["d", "a", "b", "c"]}}),
            ),
            ok(
                "$deleteFromPrimitiveList removes listed scalars",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"]}}),
                json!({"metadata": {"finalizers": ["a", "c"]}}),
            ),
            ok(
                "$setElementOrder alone reorders",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["c", "b", "a"]}}),
                json!({"metadata": {"finalizers": ["c", "b", "a"]}}),
            ),
            // Kubernetes deletes and appends inside the live list's storage, and then orders
            // the server-only dns port by that rewritten list, which puts it first.
            ok(
                "$setElementOrder next to a server-only port",
                ports_service(
                    json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP", "name": "dns"}, {"port": 443, "protocol": "TCP"}]),
                ),
                json!({"spec": {"$setElementOrder/ports": [{"port": 8080}, {"port": 443}], "ports": [{"port": 8080, "protocol": "TCP"}, {"$patch": "delete", "port": 80}]}}),
                ports_service(
                    json!([{"port": 53, "protocol": "UDP", "name": "dns"}, {"port": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]),
                ),
            ),
            // Kubernetes sorts with a comparator that is inconsistent for items missing from
            // the order list; Go's stable sort then reverses the two new items.
            ok(
                "empty $setElementOrder with new items",
                json!({"metadata": {"finalizers": ["a", "b", "c", "d"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": [], "finalizers": ["x", "y"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c", "d", "y", "x"]}}),
            ),
            // Deduplicating in place rewrites the live list that then orders the result.
            ok(
                "empty patch list over duplicated finalizers",
                json!({"metadata": {"finalizers": ["a", "a", "x", "y"]}}),
                json!({"metadata": {"finalizers": []}}),
                json!({"metadata": {"finalizers": ["a", "y", "x"]}}),
            ),
        ]);
    }

    #[test]
    fn errors() {
        run(vec![
            err(
                "port element without its merge key",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"ports": [{"name": "dns", "protocol": "UDP"}]}}),
                "map: map[name:dns protocol:UDP] does not contain declared merge key: port",
            ),
            err(
                "delete element without its merge key",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"ports": [{"$patch": "delete", "name": "x"}]}}),
                "map: map[$patch:delete name:x] does not contain declared merge key: port",
            ),
            err(
                "$patch: merge in a list",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"ports": [{"$patch": "merge"}]}}),
                "merging lists cannot yet be specified in the patch",
            ),
            err(
                "$patch: merge on a map",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}}),
                "unknown patch type: merge in map: map[$patch:merge b:2]",
            ),
            err(
                "unknown $patch value",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": "remove"}}}),
                "unknown patch type: remove in map: map[$patch:remove]",
            ),
            err(
                "non-string $patch value",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {"$patch": 5}}}),
                "unknown patch type: %!s(int64=5) in map: map[$patch:5]",
            ),
            err(
                "patch list out of $setElementOrder's order",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}], "ports": [{"port": 80, "name": "h"}, {"port": 443}]}}),
                "The order in patch list:\n[map[name:h port:80] map[port:443]]\n doesn't match $setElementOrder list:\n[map[port:443] map[port:80]]\n",
            ),
            err(
                "patch item missing from $setElementOrder",
                ports_service(json!([{"port": 80}, {"port": 443}])),
                json!({"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"port": 443, "name": "x"}]}}),
                "The order in patch list:\n[map[name:x port:443]]\n doesn't match $setElementOrder list:\n[map[port:80]]\n",
            ),
            err(
                "$setElementOrder that is not a list",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"$setElementOrder/ports": {"port": 80}}}),
                "expected a []interface {}, but received a map[string]interface {}",
            ),
            err(
                "$setElementOrder over empty lists",
                json!({"metadata": {"finalizers": []}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["a"]}}),
                "no elements in any of the given slices",
            ),
            err(
                "malformed $setElementOrder key",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"$setElementOrderX/labels": []}}),
                "invalid patch format of setElementOrder list",
            ),
            err(
                "malformed $deleteFromPrimitiveList key",
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}}),
                "invalid patch format of primitive list",
            ),
            err(
                "$retainKeys not listing a patched field",
                json!({"spec": {"type": "NodePort"}}),
                json!({"spec": {"$retainKeys": ["ports"], "type": "ClusterIP"}}),
                "invalid patch format of retainKeys",
            ),
            err(
                "$retainKeys that is not a list",
                ports_service(json!([{"port": 80}])),
                json!({"spec": {"$retainKeys": "ports"}}),
                "invalid patch format of retainKeys",
            ),
            err(
                "mixed element types in the live list",
                ports_service(json!([{"port": 80}, "x"])),
                json!({"spec": {"ports": [{"port": 81}]}}),
                "list element types are not identical: [[map[port:80] x] [map[port:81]]]",
            ),
            err(
                "string and number finalizers",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b", 1]}}),
                "list element types are not identical: [[a] [b 1]]",
            ),
            err(
                "list of lists",
                json!({"metadata": {"finalizers": [["a"]]}}),
                json!({"metadata": {"finalizers": ["b"]}}),
                "lists of lists are not supported",
            ),
            err(
                "patch is not an object",
                json!({}),
                json!([{"op": "add"}]),
                "json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
            err(
                "original is not an object",
                json!("text"),
                json!({}),
                "invalid JSON document",
            ),
        ]);
    }

    #[test]
    fn null_list_elements_are_errors_not_panics() {
        // Kubernetes panics on a null first element; an error is the useful equivalent.
        let got = strategic_merge_patch(
            &json!({"metadata": {"finalizers": [null]}}),
            &json!({"metadata": {"finalizers": ["a"]}}),
            &SERVICE,
        );
        assert!(
            matches!(got, Err(SmpError::NullListElement { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn go_float_formatting_matches_fmt_v() {
        for (value, want) in [
            (1_000_000.0, "1e+06"),
            (123_456.0, "123456"),
            (1_234_567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(value), want, "{value}");
        }
    }

    #[test]
    fn go_stable_sort_is_stable_past_one_block() {
        // 45 items cross the 20-item insertion blocks, so the SymMerge passes run.
        let mut items: Vec<(u8, usize)> = (0..45).map(|i| ((i * 7 % 5) as u8, i)).collect();
        go_stable_sort(&mut items, |a, b| a.0 < b.0);
        let mut want = items.clone();
        want.sort_by_key(|item| item.0);
        assert_eq!(items, want);
    }

    mod no_panic {
        use super::*;
        use proptest::prelude::*;

        fn key() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "metadata",
                "spec",
                "labels",
                "finalizers",
                "ownerReferences",
                "ports",
                "port",
                "uid",
                "name",
                "selector",
                "$patch",
                "$retainKeys",
                "$setElementOrder/ports",
                "$setElementOrder/finalizers",
                "$setElementOrder/",
                "$setElementOrderX",
                "$deleteFromPrimitiveList/finalizers",
                "$deleteFromPrimitiveList/ports",
                "$deleteFromPrimitiveList/",
            ])
            .prop_map(str::to_owned)
        }

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                (0i64..4).prop_map(|n| json!(n)),
                Just(json!(1.5)),
                Just(json!(u64::MAX)),
                prop::sample::select(vec!["replace", "delete", "merge", "a", "ports"])
                    .prop_map(|s| json!(s)),
            ];
            leaf.prop_recursive(6, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                    prop::collection::vec((key(), inner), 0..6)
                        .prop_map(|entries| Value::Object(entries.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_documents_never_panic(original in json_value(), patch in json_value()) {
                let result = strategic_merge_patch(&original, &patch, &SERVICE);
                if let Ok(merged) = &result {
                    prop_assert!(merged.is_object());
                }
                if !patch.is_object() {
                    prop_assert!(matches!(result, Err(SmpError::PatchNotObject(_))));
                }
            }
        }
    }
}
