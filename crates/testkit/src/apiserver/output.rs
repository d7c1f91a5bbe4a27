//! How stored objects leave the server: converted to the requested version (CRD versions differ
//! only in `apiVersion`; Events are reshaped, see [`super::events`]) and rendered in the form
//! the `Accept` header asks for: the object itself, `PartialObjectMetadata` (kube's metadata
//! API and `metadata_watcher`), or a `meta.k8s.io/v1 Table` (what `kubectl get` prints: built-in
//! columns for pods, nodes and a few others, a CRD's `additionalPrinterColumns`, else
//! Name and Age).

use serde_json::{Map, Value, json};

use super::events;
use super::resources::{Builtin, ResourceType};

/// The rendering the client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Object,
    PartialMetadata,
    Table { include_object: bool },
}

impl Format {
    /// From the `Accept` header (first acceptable form wins) and `includeObject`.
    pub fn from_accept(accept: &str, include_object: &str) -> Format {
        for part in accept.split(',') {
            let part = part.trim();
            if part.contains("as=Table") && part.contains("g=meta.k8s.io") {
                return Format::Table {
                    include_object: include_object == "Object",
                };
            }
            if part.contains("as=PartialObjectMetadata") && part.contains("g=meta.k8s.io") {
                return Format::PartialMetadata;
            }
            if part.starts_with("application/json") || part.starts_with("*/*") || part.is_empty() {
                return Format::Object;
            }
        }
        Format::Object
    }
}

/// A stored object as `version` of `rt` shows it.
pub(crate) fn to_version(rt: &ResourceType, version: &str, stored: &Value) -> Value {
    if rt.builtin == Some(Builtin::EventV1) {
        return events::to_events_v1(stored);
    }
    let mut object = stored.clone();
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(rt.api_version(version)));
        map.insert("kind".into(), json!(rt.kind));
    }
    object
}

/// An object sent in `version` of `rt`, in its stored shape.
pub(crate) fn to_storage(rt: &ResourceType, object: &Value) -> Value {
    if rt.builtin == Some(Builtin::EventV1) {
        return events::to_core(object);
    }
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            json!(rt.api_version(&rt.storage_version)),
        );
    }
    object
}

fn partial(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One object in `format`.
pub(crate) fn render_one(rt: &ResourceType, format: &Format, object: Value) -> Value {
    match format {
        Format::Object => object,
        Format::PartialMetadata => partial(&object),
        Format::Table { include_object } => table(
            rt,
            std::slice::from_ref(&object),
            *include_object,
            Map::new(),
        ),
    }
}

/// A list in `format`; `list_meta` holds `resourceVersion`, `continue`, `remainingItemCount`.
pub(crate) fn render_list(
    rt: &ResourceType,
    version: &str,
    format: &Format,
    items: Vec<Value>,
    list_meta: Map<String, Value>,
) -> Value {
    match format {
        Format::Object => json!({
            "kind": rt.list_kind,
            "apiVersion": rt.api_version(version),
            "metadata": list_meta,
            "items": items,
        }),
        Format::PartialMetadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        Format::Table { include_object } => table(rt, &items, *include_object, list_meta),
    }
}

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    cell: fn(&Value) -> Value,
}

fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn name_cell(o: &Value) -> Value {
    json!(text(o, "/metadata/name"))
}

fn age_cell(o: &Value) -> Value {
    json!(human_age(&text(o, "/metadata/creationTimestamp")))
}

fn pod_ready(o: &Value) -> Value {
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for s in &statuses {
        if let Some(reason) = s.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return json!(reason);
        }
        if let Some(reason) = s
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
            && o.pointer("/status/phase").and_then(Value::as_str) != Some("Running")
        {
            return json!(reason);
        }
    }
    json!(text(o, "/status/phase"))
}

fn pod_restarts(o: &Value) -> Value {
    let n: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.get("restartCount").and_then(Value::as_i64))
                .sum()
        })
        .unwrap_or(0);
    json!(n)
}

fn node_status(o: &Value) -> Value {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("status").and_then(Value::as_str))
        == Some("True");
    let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn builtin_columns(rt: &ResourceType) -> Vec<Column> {
    let name = Column {
        name: "Name",
        kind: "string",
        priority: 0,
        cell: name_cell,
    };
    let age = Column {
        name: "Age",
        kind: "string",
        priority: 0,
        cell: age_cell,
    };
    match rt.builtin {
        Some(Builtin::Pod) => vec![
            name,
            Column {
                name: "Ready",
                kind: "string",
                priority: 0,
                cell: pod_ready,
            },
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                cell: pod_status,
            },
            Column {
                name: "Restarts",
                kind: "integer",
                priority: 0,
                cell: pod_restarts,
            },
            age,
            Column {
                name: "IP",
                kind: "string",
                priority: 1,
                cell: |o| json!(text(o, "/status/podIP")),
            },
            Column {
                name: "Node",
                kind: "string",
                priority: 1,
                cell: |o| json!(text(o, "/spec/nodeName")),
            },
        ],
        Some(Builtin::Node) => vec![
            name,
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                cell: node_status,
            },
            Column {
                name: "Roles",
                kind: "string",
                priority: 0,
                cell: |_| json!("<none>"),
            },
            age,
            Column {
                name: "Version",
                kind: "string",
                priority: 0,
                cell: |o| json!(text(o, "/status/nodeInfo/kubeletVersion")),
            },
        ],
        Some(Builtin::Namespace) => vec![
            name,
            Column {
                name: "Status",
                kind: "string",
                priority: 0,
                cell: |o| json!(text(o, "/status/phase")),
            },
            age,
        ],
        Some(Builtin::Event | Builtin::EventV1) => vec![
            Column {
                name: "Last Seen",
                kind: "string",
                priority: 0,
                cell: |o| {
                    let last = text(o, "/lastTimestamp");
                    let seen = if last.is_empty() {
                        text(o, "/eventTime")
                    } else {
                        last
                    };
                    json!(human_age(&seen))
                },
            },
            Column {
                name: "Type",
                kind: "string",
                priority: 0,
                cell: |o| json!(text(o, "/type")),
            },
            Column {
                name: "Reason",
                kind: "string",
                priority: 0,
                cell: |o| json!(text(o, "/reason")),
            },
            Column {
                name: "Object",
                kind: "string",
                priority: 0,
                cell: |o| {
                    let regarding = if o.get("involvedObject").is_some() {
                        "/involvedObject"
                    } else {
                        "/regarding"
                    };
                    json!(format!(
                        "{}/{}",
                        text(o, &format!("{regarding}/kind")).to_lowercase(),
                        text(o, &format!("{regarding}/name"))
                    ))
                },
            },
            Column {
                name: "Message",
                kind: "string",
                priority: 0,
                cell: |o| {
                    let message = text(o, "/message");
                    json!(if message.is_empty() {
                        text(o, "/note")
                    } else {
                        message
                    })
                },
            },
        ],
        Some(Builtin::Plain) if rt.kind == "ConfigMap" => vec![
            name,
            Column {
                name: "Data",
                kind: "integer",
                priority: 0,
                cell: |o| json!(o.get("data").and_then(Value::as_object).map_or(0, Map::len)),
            },
            age,
        ],
        _ => vec![name, age],
    }
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']`.
pub(crate) fn json_path(object: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![object.clone()];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    rest = rest.strip_prefix('$').unwrap_or(rest);
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            let index = &r[..end];
            current = if index == "*" {
                current
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect()
            } else if let Ok(i) = index.parse::<usize>() {
                current.iter().filter_map(|v| v.get(i).cloned()).collect()
            } else {
                let key = index.trim_matches(|c| c == '\'' || c == '"');
                current.iter().filter_map(|v| v.get(key).cloned()).collect()
            };
            rest = &r[end + 1..];
        } else {
            break;
        }
    }
    current
}

fn crd_cell(object: &Value, column: &Value) -> Value {
    let path = column.get("jsonPath").and_then(Value::as_str).unwrap_or("");
    let kind = column
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    let values = json_path(object, path);
    match (values.as_slice(), kind) {
        ([], _) => Value::Null,
        ([Value::String(s)], "date") => json!(human_age(s)),
        ([single], "integer" | "number" | "boolean") => single.clone(),
        _ => json!(
            values
                .iter()
                .map(|v| v
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn table(
    rt: &ResourceType,
    items: &[Value],
    include_object: bool,
    list_meta: Map<String, Value>,
) -> Value {
    let row_object = |o: &Value| {
        if include_object {
            o.clone()
        } else {
            partial(o)
        }
    };
    let version = items
        .first()
        .and_then(|o| o.get("apiVersion"))
        .and_then(Value::as_str)
        .and_then(|av| av.rsplit('/').next())
        .unwrap_or(&rt.storage_version)
        .to_string();
    let crd_columns = rt
        .version(&version)
        .map(|v| v.printer_columns.clone())
        .unwrap_or_default();
    let (definitions, rows): (Vec<Value>, Vec<Value>) = if rt.is_custom() && !crd_columns.is_empty()
    {
        let mut definitions = vec![
            json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
        ];
        definitions.extend(crd_columns.iter().map(|c| {
            json!({
                "name": c.get("name").cloned().unwrap_or(Value::Null),
                "type": c.get("type").cloned().unwrap_or(json!("string")),
                "format": c.get("format").cloned().unwrap_or(json!("")),
                "description": c.get("description").cloned().unwrap_or(json!("")),
                "priority": c.get("priority").cloned().unwrap_or(json!(0)),
            })
        }));
        let rows = items
            .iter()
            .map(|o| {
                let mut cells = vec![name_cell(o)];
                cells.extend(crd_columns.iter().map(|c| crd_cell(o, c)));
                json!({"cells": cells, "object": row_object(o)})
            })
            .collect();
        (definitions, rows)
    } else {
        let columns = builtin_columns(rt);
        let definitions = columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.kind,
                       "format": if c.name == "Name" { "name" } else { "" },
                       "description": "", "priority": c.priority})
            })
            .collect();
        let rows = items
            .iter()
            .map(|o| {
                let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(o)).collect();
                json!({"cells": cells, "object": row_object(o)})
            })
            .collect();
        (definitions, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// How long ago `timestamp` was, as kubectl shows ages (`45s`, `3m20s`, `5h`, `2d`).
pub(crate) fn human_age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let seconds = jiff::Timestamp::now().as_second() - then.as_second();
    if seconds < 0 {
        return "<invalid>".into();
    }
    let (minutes, hours, days) = (seconds / 60, seconds / 3600, seconds / 86400);
    if seconds < 120 {
        format!("{seconds}s")
    } else if minutes < 10 {
        format!("{minutes}m{}s", seconds % 60)
    } else if minutes < 180 {
        format!("{minutes}m")
    } else if hours < 8 {
        format!("{hours}h{}m", minutes % 60)
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        format!("{days}d{}h", hours % 24)
    } else if days < 365 * 2 {
        format!("{days}d")
    } else {
        format!("{}y{}d", days / 365, days % 365)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_format() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            Format::from_accept(kubectl, ""),
            Format::Table {
                include_object: false
            }
        );
        let kube = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(Format::from_accept(kube, ""), Format::PartialMetadata);
        assert_eq!(Format::from_accept("application/json", ""), Format::Object);
        assert_eq!(Format::from_accept("", ""), Format::Object);
    }

    #[test]
    fn printer_column_paths() {
        let o = json!({"spec": {"images": ["a", "b"]}, "status": {"phase": "Completed",
                       "nodes": [{"name": "n1"}, {"name": "n2"}]}});
        assert_eq!(json_path(&o, ".status.phase"), vec![json!("Completed")]);
        assert_eq!(
            json_path(&o, ".spec.images[*]"),
            vec![json!("a"), json!("b")]
        );
        assert_eq!(json_path(&o, ".status.nodes[1].name"), vec![json!("n2")]);
        assert!(json_path(&o, ".status.missing").is_empty());
        let column = json!({"name": "Images", "type": "string", "jsonPath": ".spec.images[*]"});
        assert_eq!(crd_cell(&o, &column), json!("a,b"));
    }
}
