//! The bodies of `PATCH` requests: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! The strategic merge patch is a JSON merge patch with Kubernetes' list semantics for the lists whose merge key
//! it knows by field name ([`merge_key`]): `containers`, `initContainers`, `ephemeralContainers`, `volumes`, `env`,
//! `imagePullSecrets` by `name`, `volumeMounts` by `mountPath`, `conditions` by `type`, `ownerReferences` by `uid`,
//! a container's `ports` by `containerPort` and a Service's (`spec.ports`) by `port`. Every other list is
//! replaced, as Kubernetes' atomic lists are (an EndpointSlice's `ports`, a NetworkPolicy's rules). The directives kubectl sends are understood: `$patch: delete` and `$patch: replace` (in maps and
//! list items), `$deleteFromPrimitiveList/{field}`; `$setElementOrder/{field}` and `$retainKeys` are ignored.

use serde_json::{Map, Value};

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatchError {
    /// The patch document is malformed (HTTP 400).
    Malformed(String),
    /// The patch is well formed but does not apply to the object, such as a failed `test` (HTTP 422).
    Unprocessable(String),
}

/// Applies a JSON merge patch (RFC 7386): objects merge, `null` removes a field, anything else replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (field, value) in patch {
            if value.is_null() {
                map.remove(field);
            } else {
                merge_patch(map.entry(field.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies a JSON patch (RFC 6902): `add`, `remove`, `replace`, `move`, `copy` and `test`, all or nothing.
pub(crate) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError::Malformed("a JSON patch is a JSON array of operations".to_owned()))?;
    let mut doc = target.clone();
    for (i, op) in ops.iter().enumerate() {
        let text = |field: &str| {
            op.get(field)
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError::Malformed(format!("operation {i} has no string `{field}`: {op}")))
        };
        let value = || {
            op.get("value").cloned().ok_or_else(|| PatchError::Malformed(format!("operation {i} has no `value`: {op}")))
        };
        let path = text("path")?;
        match text("op")? {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let value = value()?;
                if path.is_empty() {
                    doc = value;
                } else {
                    remove(&mut doc, path)?;
                    add(&mut doc, path, value)?;
                }
            }
            "move" => {
                let moved = remove(&mut doc, text("from")?)?;
                add(&mut doc, path, moved)?;
            }
            "copy" => {
                let from = text("from")?;
                let copied = doc.pointer(from).cloned().ok_or_else(|| missing(from))?;
                add(&mut doc, path, copied)?;
            }
            "test" => {
                let want = value()?;
                if doc.pointer(path) != Some(&want) {
                    return Err(PatchError::Unprocessable(format!("testing value {path} failed: want {want}")));
                }
            }
            other => return Err(PatchError::Malformed(format!("unexpected kind of JSON patch operation `{other}`"))),
        }
    }
    *target = doc;
    Ok(())
}

fn missing(path: &str) -> PatchError {
    PatchError::Unprocessable(format!("the path {path:?} does not exist in the object"))
}

/// Splits a JSON pointer into its parent's pointer and its last token, unescaped (`~1` is `/`, `~0` is `~`).
fn split_pointer(path: &str) -> Result<(&str, String), PatchError> {
    let (parent, last) =
        path.rsplit_once('/').ok_or_else(|| PatchError::Malformed(format!("{path:?} is not a JSON pointer")))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if last == "-" { items.len() } else { last.parse().map_err(|_| missing(path))? };
            if index > items.len() {
                return Err(missing(path));
            }
            items.insert(index, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(|| missing(path)),
        Some(Value::Array(items)) => match last.parse::<usize>() {
            Ok(index) if index < items.len() => Ok(items.remove(index)),
            _ => Err(missing(path)),
        },
        _ => Err(missing(path)),
    }
}

/// Applies a strategic merge patch with the list semantics of the module documentation.
pub(crate) fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed("a strategic merge patch is a JSON object".to_owned()));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        merge_map("", map, patch)?;
    }
    Ok(())
}

fn directive(patch: &Map<String, Value>) -> Option<&str> {
    patch.get("$patch").and_then(Value::as_str)
}

/// Merges `patch` into the map `target`, which is the value of the field `name` (or an item of the list `name`;
/// `""` for the root).
fn merge_map(name: &str, target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), PatchError> {
    match directive(patch) {
        None | Some("merge") => {}
        Some("replace") => {
            target.clear();
        }
        Some(other) => return Err(PatchError::Malformed(format!("unknown patch type `{other}` in a map"))),
    }
    for (field, value) in patch {
        if field == "$patch" || field == "$retainKeys" || field.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(list) = field.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = target.get_mut(list) {
                items.retain(|item| !gone.contains(item));
            }
            continue;
        }
        match value {
            Value::Null => {
                target.remove(field);
            }
            Value::Object(inner) if directive(inner) == Some("delete") => {
                target.remove(field);
            }
            Value::Object(inner) => {
                let slot = target.entry(field.clone()).or_insert(Value::Null);
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                if let Value::Object(slot) = slot {
                    merge_map(field, slot, inner)?;
                }
            }
            Value::Array(items) => {
                let slot = target.entry(field.clone()).or_insert(Value::Null);
                if !slot.is_array() {
                    *slot = Value::Array(Vec::new());
                }
                if let Value::Array(slot) = slot {
                    merge_list(name, field, slot, items)?;
                }
            }
            other => {
                target.insert(field.clone(), other.clone());
            }
        }
    }
    Ok(())
}

/// The merge key of the list in field `field` of a map that is the value (or an item) of the field `parent`;
/// `None` for a list that is replaced.
fn merge_key(parent: &str, field: &str) -> Option<&'static str> {
    match (parent, field) {
        (_, "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets") => {
            Some("name")
        }
        (_, "volumeMounts") => Some("mountPath"),
        (_, "conditions") => Some("type"),
        (_, "ownerReferences") => Some("uid"),
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => Some("containerPort"),
        // A Service's; no other kind netpol reads has `spec.ports`.
        ("spec", "ports") => Some("port"),
        _ => None,
    }
}

fn merge_list(parent: &str, field: &str, target: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
    let replace = patch.iter().any(|item| item.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some(key) = merge_key(parent, field).filter(|_| !replace) else {
        target.clear();
        for item in patch.iter().filter(|item| item.get("$patch").is_none()) {
            let new = match item {
                Value::Object(item) => {
                    let mut map = Map::new();
                    merge_map(field, &mut map, item)?;
                    Value::Object(map)
                }
                other => other.clone(),
            };
            target.push(new);
        }
        return Ok(());
    };
    for item in patch {
        let Value::Object(map) = item else {
            return Err(PatchError::Malformed(format!("the items of `{field}` must be objects with `{key}`")));
        };
        let id = map
            .get(key)
            .ok_or_else(|| PatchError::Malformed(format!("an item of `{field}` has no merge key `{key}`: {item}")))?;
        let found = target.iter().position(|t| t.get(key) == Some(id));
        match (directive(map), found) {
            (Some("delete"), Some(index)) => {
                target.remove(index);
            }
            (Some("delete"), None) => {}
            (_, Some(index)) => {
                if let Some(Value::Object(existing)) = target.get_mut(index) {
                    merge_map(field, existing, map)?;
                }
            }
            (_, None) => {
                let mut new = Map::new();
                merge_map(field, &mut new, map)?;
                target.push(Value::Object(new));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The examples of RFC 7386's appendix A, a few of them.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!(["a", "b"]), json!({"a": "b"}), json!({"a": "b"})),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!({}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want, "{patch}");
        }
    }

    #[test]
    fn json_patch_follows_rfc_6902() {
        let mut doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        let patch = json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
            {"op": "replace", "path": "/metadata/labels/a", "value": "2"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "add", "path": "/list/0", "value": 0},
            {"op": "remove", "path": "/list/1"},
            {"op": "copy", "from": "/list", "path": "/copied"},
            {"op": "move", "from": "/copied", "path": "/moved"},
        ]);
        json_patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"a": "2", "app.kubernetes.io/name": "web"}}, "list": [0, 2, 3],
                "moved": [0, 2, 3]})
        );
        // All or nothing: a failed test leaves the object as it was.
        let before = doc.clone();
        let failing = json!([{"op": "remove", "path": "/list"}, {"op": "test", "path": "/moved/0", "value": 9}]);
        assert!(matches!(json_patch(&mut doc, &failing), Err(PatchError::Unprocessable(_))));
        assert_eq!(doc, before);
        for bad in [json!({"op": "add"}), json!([{"op": "frobnicate", "path": "/a"}]), json!([{"path": "/a"}])] {
            assert!(matches!(json_patch(&mut doc, &bad), Err(PatchError::Malformed(_))), "{bad}");
        }
        for absent in [
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            json!([{"op": "remove", "path": "/list/7"}]),
            json!([{"op": "add", "path": "/nope/deeper", "value": 1}]),
        ] {
            assert!(matches!(json_patch(&mut doc, &absent), Err(PatchError::Unprocessable(_))), "{absent}");
        }
    }

    #[test]
    fn strategic_merge_patch_merges_keyed_lists_and_replaces_others() {
        let mut pod = json!({
            "metadata": {"labels": {"app": "web", "tier": "a"}, "finalizers": ["x", "y"]},
            "spec": {
                "containers": [
                    {"name": "main", "image": "web:1", "ports": [{"containerPort": 80}, {"containerPort": 81}]},
                    {"name": "side", "image": "side:1"},
                ],
                "tolerations": [{"key": "a"}],
            },
        });
        let patch = json!({
            "metadata": {"labels": {"tier": null, "new": "1"}, "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "main"}, {"name": "side"}],
                "containers": [
                    {"name": "main", "image": "web:2", "ports": [{"containerPort": 80, "name": "http"}]},
                    {"name": "side", "$patch": "delete"},
                    {"name": "extra", "image": "extra:1"},
                ],
                "tolerations": [{"key": "b"}],
            },
        });
        strategic_merge_patch(&mut pod, &patch).unwrap();
        assert_eq!(
            pod,
            json!({
                "metadata": {"labels": {"app": "web", "new": "1"}, "finalizers": ["y"]},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "web:2",
                            "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81}]},
                        {"name": "extra", "image": "extra:1"},
                    ],
                    "tolerations": [{"key": "b"}],
                },
            })
        );
        let replace = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "only"}],
            "tolerations": {"$patch": "delete"}}});
        strategic_merge_patch(&mut pod, &replace).unwrap();
        assert_eq!(pod["spec"], json!({"containers": [{"name": "only"}]}));
        let mut service = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        strategic_merge_patch(&mut service, &json!({"spec": {"ports": [{"port": 80, "name": "web"}]}})).unwrap();
        assert_eq!(service["spec"]["ports"], json!([{"port": 80, "name": "web"}, {"port": 443, "name": "https"}]));
        let mut slice = json!({"ports": [{"port": 80}, {"port": 443}]});
        strategic_merge_patch(&mut slice, &json!({"ports": [{"port": 80, "name": "web"}]})).unwrap();
        assert_eq!(slice["ports"], json!([{"port": 80, "name": "web"}]));
        let unkeyed = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(matches!(strategic_merge_patch(&mut pod, &unkeyed), Err(PatchError::Malformed(_))));
        assert!(matches!(strategic_merge_patch(&mut pod, &json!([1])), Err(PatchError::Malformed(_))));
    }
}
