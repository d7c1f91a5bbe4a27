//! Custom resources checked against their CRD's structural schema, as the real server does on
//! every write: unknown fields are pruned (unless `x-kubernetes-preserve-unknown-fields` or
//! `additionalProperties`), `null` in a non-nullable field is dropped, `default`s are filled
//! in, and types, `required`, `enum`, string lengths, numeric bounds and list sizes are
//! validated (422 with one cause per field). This matters for a controller: a status field
//! missing from the CRD silently disappears on a real cluster, and must here too.
//!
//! Not checked: `pattern`, `format`, CEL rules (`x-kubernetes-validations`).

use serde_json::{Map, Value};

use super::error::Cause;

/// Prunes, defaults and validates `object` (a whole custom resource) against `schema`
/// (`openAPIV3Schema`). Returns the validation failures.
pub(crate) fn apply(object: &mut Value, schema: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    walk(object, schema, "", true, &mut causes);
    causes
}

fn type_of(schema: &Value) -> Option<&str> {
    schema.get("type").and_then(Value::as_str)
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(value: &mut Value, schema: &Value, path: &str, root: bool, causes: &mut Vec<Cause>) {
    if value.is_null() {
        return;
    }
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    if int_or_string {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            causes.push(Cause::wrong_type(path, value, "integer or string"));
        }
        return;
    }
    match type_of(schema) {
        Some("object") => {
            let Value::Object(map) = value else {
                causes.push(Cause::wrong_type(path, value, "object"));
                return;
            };
            walk_object(map, schema, path, root, causes);
        }
        Some("array") => {
            let Value::Array(items) = value else {
                causes.push(Cause::wrong_type(path, value, "array"));
                return;
            };
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.to_string(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                });
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                causes.push(Cause::invalid(
                    path,
                    &Value::Array(items.clone()),
                    format!("should have at least {min} items"),
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    drop_null(item, item_schema);
                    walk(item, item_schema, &format!("{path}[{i}]"), false, causes);
                }
            }
        }
        Some("string") => {
            let Some(s) = value.as_str() else {
                causes.push(Cause::wrong_type(path, value, "string"));
                return;
            };
            let len = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: path.to_string(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                causes.push(Cause::invalid(
                    path,
                    value,
                    format!("should be at least {min} chars long"),
                ));
            }
        }
        Some("integer") => {
            if !(value.is_i64() || value.is_u64()) {
                causes.push(Cause::wrong_type(path, value, "integer"));
                return;
            }
            bounds(value, schema, path, causes);
        }
        Some("number") => {
            if !value.is_number() {
                causes.push(Cause::wrong_type(path, value, "number"));
                return;
            }
            bounds(value, schema, path, causes);
        }
        Some("boolean") => {
            if !value.is_boolean() {
                causes.push(Cause::wrong_type(path, value, "boolean"));
            }
        }
        _ => {
            if let Value::Object(map) = value
                && schema.get("properties").is_some()
            {
                walk_object(map, schema, path, root, causes);
            }
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum")
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        causes.push(Cause::not_supported(path, value, &shown));
    }
}

fn bounds(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        causes.push(Cause::invalid(
            path,
            value,
            format!("should be greater than or equal to {min}"),
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        causes.push(Cause::invalid(
            path,
            value,
            format!("should be less than or equal to {max}"),
        ));
    }
}

/// Drops `null` where the schema does not allow it (the caller removes the key).
fn drop_null(value: &mut Value, schema: &Value) -> bool {
    value.is_null() && !flag(schema, "nullable")
}

fn walk_object(
    map: &mut Map<String, Value>,
    schema: &Value,
    path: &str,
    root: bool,
    causes: &mut Vec<Cause>,
) {
    let empty = Map::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let additional = schema.get("additionalProperties");
    let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(schema, "x-kubernetes-embedded-resource");
    // Nulls first (a default then replaces them), then defaults, then the fields.
    map.retain(|key, value| match properties.get(key) {
        Some(prop) => !drop_null(value, prop),
        None => true,
    });
    for (key, prop) in properties {
        if !map.contains_key(key)
            && let Some(default) = prop.get("default")
        {
            map.insert(key.clone(), default.clone());
        }
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if (root || embedded) && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let field = child_path(path, &key);
        if let Some(prop) = properties.get(&key) {
            if let Some(v) = map.get_mut(&key) {
                walk(v, prop, &field, false, causes);
            }
        } else if let Some(additional) = additional.filter(|a| a.is_object()) {
            if let Some(v) = map.get_mut(&key) {
                walk(v, additional, &field, false, causes);
            }
        } else if !(preserve || additional.and_then(Value::as_bool) == Some(true)) {
            map.remove(&key);
        }
    }
    if let Some(Value::Array(required)) = schema.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(key) {
                causes.push(Cause::required(child_path(path, key)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["images"],
                    "properties": {
                        "images": {"type": "array", "items": {"type": "string"}},
                        "action": {"type": "string", "enum": ["Remove", "Exclude"]},
                        "retries": {"type": "integer", "default": 3, "minimum": 0},
                        "note": {"type": "string", "nullable": true}
                    }
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        })
    }

    #[test]
    fn unknown_fields_are_pruned_and_defaults_filled() {
        let mut object = json!({
            "apiVersion": "eraser.sh/v1", "kind": "ImageList", "metadata": {"name": "x"},
            "spec": {"images": ["a"], "extra": 1, "note": null},
            "status": {"anything": {"goes": true}},
            "unknownTop": 1
        });
        assert!(apply(&mut object, &schema()).is_empty());
        assert_eq!(
            object["spec"],
            json!({"images": ["a"], "retries": 3, "note": null})
        );
        assert_eq!(object["status"]["anything"]["goes"], true);
        assert!(object.get("unknownTop").is_none());
        assert_eq!(object["metadata"]["name"], "x");
    }

    #[test]
    fn wrong_values_are_422_causes() {
        let mut object = json!({"spec": {"images": "a", "action": "Nuke", "retries": -1}});
        let causes = apply(&mut object, &schema());
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.action", "spec.images", "spec.retries"]);
        let mut missing = json!({"spec": {}});
        let causes = apply(&mut missing, &schema());
        assert_eq!(causes[0].reason, "FieldValueRequired");
        assert_eq!(causes[0].field, "spec.images");
    }
}
