//! The non-apply patch types: JSON patch (RFC 6902, `test` included), JSON merge patch
//! (RFC 7386) and strategic merge patch.
//!
//! Strategic merge patch is modelled by field name rather than Go struct tags: lists known to
//! be merged by a key in the built-in types (`containers`/`initContainers`/`env`/`volumes` by
//! `name`, `volumeMounts` by `mountPath`, `ports` by `containerPort` (or `port`),
//! `conditions`/`addresses` by `type`, `ownerReferences` by `uid`, `taints` by `key`) are
//! merged element by element; `finalizers` is merged as a set; every other list is replaced,
//! as in a JSON merge patch. The directives kubectl sends (`$patch: replace|delete`,
//! `$setElementOrder/…`, `$deleteFromPrimitiveList/…`, `$retainKeys`) are honoured and never
//! stored. Custom resources refuse strategic merge patch with 415, as the real server does
//! (kubectl then uses a merge patch).

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// Applies an RFC 6902 JSON patch. A failed operation (including `test`) is a 422.
pub(crate) fn json_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &patch).map_err(|e| {
        let mut error = ApiError::internal(e.to_string());
        error.code = 422;
        error.reason = "Invalid";
        error
    })
}

/// Applies an RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON merge patch: {e}")))?;
    if !patch.is_object() {
        return Err(ApiError::bad_request("a merge patch must be a JSON object"));
    }
    json_patch::merge(target, &patch);
    Ok(())
}

/// Applies a strategic merge patch (see the module docs for what is modelled).
pub(crate) fn strategic_merge_patch(target: &mut Value, body: &[u8]) -> ApiResult<()> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid strategic merge patch: {e}")))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "a strategic merge patch must be a JSON object",
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        merge_map(map, &patch);
    }
    Ok(())
}

/// The key elements of list `field` are merged by, for lists of maps in the built-in types.
/// `sample` is a patch element, to tell container ports from service ports.
pub(crate) fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "taints" => "key",
        "hostAliases" => "ip",
        "readinessGates" => "conditionType",
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Whether list `field` is merged as a set of scalars.
pub(crate) fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

fn is_directive(key: &str) -> bool {
    key.starts_with('$')
}

/// `value` without any strategic-merge directives, recursively.
pub(crate) fn strip_directives(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_directive(k))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(list) => Value::Array(
            list.iter()
                .filter(|v| v.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        if let Value::Object(replaced) = strip_directives(&Value::Object(patch.clone())) {
            *target = replaced;
        }
        return;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(remove)) = (target.get_mut(field), value)
            {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if is_directive(key) {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(child) => {
                if child.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(key);
                    continue;
                }
                match target.get_mut(key) {
                    Some(Value::Object(existing)) => merge_map(existing, child),
                    _ => {
                        target.insert(key.clone(), strip_directives(value));
                    }
                }
            }
            Value::Array(items) => {
                let merged = match target.get(key) {
                    Some(Value::Array(existing)) => merge_list(key, existing, items),
                    _ => strip_directives(value)
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
    }
    for (key, order) in patch {
        if let (Some(field), Value::Array(order)) = (key.strip_prefix("$setElementOrder/"), order)
            && let Some(Value::Array(list)) = target.get_mut(field)
        {
            reorder(field, list, order);
        }
    }
    if let Some(Value::Array(retain)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(field: &str, existing: &[Value], patch: &[Value]) -> Vec<Value> {
    if patch
        .iter()
        .any(|v| v.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return patch
            .iter()
            .filter(|v| v.get("$patch").is_none())
            .map(strip_directives)
            .collect();
    }
    if is_set_list(field) {
        let mut merged = existing.to_vec();
        for item in patch {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        return merged;
    }
    let Some(key) = merge_key(field, patch.first()) else {
        return patch.iter().map(strip_directives).collect();
    };
    let mut merged = existing.to_vec();
    for item in patch {
        let Some(Value::Object(item_map)) = Some(item) else {
            merged.push(strip_directives(item));
            continue;
        };
        let id = item_map.get(key);
        let position = id.and_then(|id| merged.iter().position(|e| e.get(key) == Some(id)));
        let delete = item_map.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(at), true) => {
                merged.remove(at);
            }
            (None, true) => {}
            (Some(at), false) => {
                if let Value::Object(existing) = &mut merged[at] {
                    merge_map(existing, item_map);
                }
            }
            (None, false) => merged.push(strip_directives(item)),
        }
    }
    merged
}

fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let key = merge_key(field, order.first());
    let rank = |v: &Value| -> usize {
        order
            .iter()
            .position(|o| match key {
                Some(key) => o.get(key).is_some() && o.get(key) == v.get(key),
                None => o == v,
            })
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(|v| rank(v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(target: Value, patch: Value) -> Value {
        let mut target = target;
        strategic_merge_patch(&mut target, patch.to_string().as_bytes()).unwrap();
        target
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "command": ["x"]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patched = smp(
            pod,
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "a", "image": "a:2"}]
            }}),
        );
        assert_eq!(
            patched,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "command": ["x"]},
                {"name": "b", "image": "b:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let target = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
                            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "args": ["1", "2"]}});
        let patched = smp(
            target,
            json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "finalizers": ["c"], "labels": {"x": null}},
                "spec": {"containers": [{"name": "b", "$patch": "delete"}], "args": ["3"]}
            }),
        );
        assert_eq!(patched["metadata"]["finalizers"], json!(["b", "c"]));
        assert_eq!(patched["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(patched["spec"]["containers"], json!([{"name": "a"}]));
        assert_eq!(patched["spec"]["args"], json!(["3"]));
    }

    #[test]
    fn json_patch_test_failures_are_422() {
        let mut target = json!({"metadata": {"labels": {"a": "1"}}});
        let ok = json!([{"op": "test", "path": "/metadata/labels/a", "value": "1"},
                        {"op": "replace", "path": "/metadata/labels/a", "value": "2"}]);
        json_patch(&mut target, ok.to_string().as_bytes()).unwrap();
        assert_eq!(target["metadata"]["labels"]["a"], "2");
        let failing = json!([{"op": "test", "path": "/metadata/labels/a", "value": "1"}]);
        let error = json_patch(&mut target, failing.to_string().as_bytes()).unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(json_patch(&mut target, b"{not json").unwrap_err().code, 400);
    }

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let mut target = json!({"spec": {"images": ["a", "b"], "x": 1}});
        merge_patch(&mut target, br#"{"spec": {"images": ["c"], "x": null}}"#).unwrap();
        assert_eq!(target, json!({"spec": {"images": ["c"]}}));
    }
}
