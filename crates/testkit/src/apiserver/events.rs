//! `core/v1` and `events.k8s.io/v1` Events are one set of objects in two shapes, as in a real
//! cluster: kube's event recorder writes `events.k8s.io/v1`, `kubectl get events` reads
//! `core/v1`, and each must see the other's. Objects are stored in the core shape; these
//! functions rename the fields both ways (the real server's conversion).

use serde_json::{Map, Value};

/// `(events.k8s.io/v1 field, core/v1 field)` pairs that differ only in name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(object: &Value, to_core: bool, api_version: &str) -> Value {
    let Some(map) = object.as_object() else {
        return object.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let renamed = RENAMED.iter().find_map(|(v1, core)| {
            if to_core && key == v1 {
                Some(*core)
            } else if !to_core && key == core {
                Some(*v1)
            } else {
                None
            }
        });
        out.insert(renamed.unwrap_or(key).to_string(), value.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event in the stored (core) shape.
pub(crate) fn to_core(object: &Value) -> Value {
    rename(object, true, "v1")
}

/// A stored Event in the `events.k8s.io/v1` shape.
pub(crate) fn to_events_v1(object: &Value) -> Value {
    rename(object, false, "events.k8s.io/v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_renamed_both_ways() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e"}, "regarding": {"kind": "ImageJob", "name": "j"},
            "note": "done", "reason": "Completed", "reportingController": "imagecleaner",
            "eventTime": "2024-01-01T00:00:00.000000Z", "type": "Normal"});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "j");
        assert_eq!(core["message"], "done");
        assert_eq!(core["reportingComponent"], "imagecleaner");
        assert!(core.get("note").is_none());
        assert_eq!(to_events_v1(&core), v1);
    }
}
