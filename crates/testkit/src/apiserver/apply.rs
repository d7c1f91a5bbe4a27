//! Field ownership (`metadata.managedFields`) and server-side apply, approximated closely
//! enough for controllers and kubectl to behave as against a real server:
//!
//! - An object's fields are its leaf paths: scalars, lists without a merge key (atomic),
//!   empty maps; list elements with a known merge key ([`super::patch::merge_key`]) are
//!   addressed by it (`k:{"name":"c"}`) and set-like lists by value (`v:"x"`). Paths are kept
//!   in the real `FieldsV1` notation.
//! - Every write records which manager set which fields: an ordinary write (operation
//!   `Update`) takes over the fields it changed; an apply (operation `Apply`) owns exactly
//!   the fields of its configuration.
//! - An apply that sets a field owned by another manager to a different value is a conflict
//!   (409, listing manager and field) unless `force=true`, which takes the field over. Fields
//!   the applier owned before but leaves out now are removed, unless another manager owns
//!   them too.
//! - Tracked: `metadata.labels`, `annotations`, `finalizers`, `ownerReferences` and every
//!   top-level field but `apiVersion`/`kind`; `status` only through `/status` when the type
//!   has a status subresource.
//!
//! Not modelled: per-version schemas of list types in CRDs (`x-kubernetes-list-type`), and
//! `managedFields` sent by clients (the server's record always wins).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::patch::{is_set_list, merge_key};

/// One path element in `FieldsV1` notation: `f:name`, `k:{"name":"x"}`, `v:"x"`.
type Path = Vec<String>;
/// A set of leaf paths.
pub(crate) type FieldSet = BTreeSet<Path>;

/// Which part of an object a write may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource of a type without a status subresource: everything.
    All,
    /// The main resource of a type with a status subresource: everything but `status`.
    Main,
    /// The `/status` subresource: `status` only.
    Status,
}

impl Scope {
    fn admits(self, top: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Main => top != "status",
            Scope::Status => top == "status",
        }
    }

    fn subresource(self) -> Option<&'static str> {
        (self == Scope::Status).then_some("status")
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

const TRACKED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// The tracked leaf paths of `object` within `scope`.
pub(crate) fn fields_of(object: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if scope == Scope::Status {
                    continue;
                }
                if let Some(meta) = value.as_object() {
                    for field in TRACKED_METADATA {
                        if let Some(v) = meta.get(*field) {
                            collect(
                                v,
                                vec!["f:metadata".into(), format!("f:{field}")],
                                field,
                                &mut out,
                            );
                        }
                    }
                }
            }
            top if scope.admits(top) => collect(value, vec![format!("f:{key}")], key, &mut out),
            _ => {}
        }
    }
    out
}

fn element_key(key: &str, element: &Value) -> Option<String> {
    let id = element.get(key)?;
    Some(format!("k:{}", json!({ key: id })))
}

fn collect(value: &Value, prefix: Path, field: &str, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut path = prefix.clone();
                path.push(format!("f:{k}"));
                collect(v, path, k, out);
            }
        }
        Value::Array(list) if is_set_list(field) && !list.is_empty() => {
            for item in list {
                let mut path = prefix.clone();
                path.push(format!("v:{item}"));
                out.insert(path);
            }
        }
        Value::Array(list) if !list.is_empty() => {
            let key = merge_key(field, list.first());
            let keyed: Option<Vec<String>> = key.and_then(|key| {
                list.iter()
                    .map(|e| element_key(key, e))
                    .collect::<Option<Vec<_>>>()
            });
            match keyed {
                Some(ids) => {
                    for (id, item) in ids.into_iter().zip(list) {
                        let mut path = prefix.clone();
                        path.push(id);
                        collect(item, path, "", out);
                    }
                }
                None => {
                    out.insert(prefix);
                }
            }
        }
        _ => {
            out.insert(prefix);
        }
    }
}

/// The value at `path` in `object`, if present.
pub(crate) fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = object;
    for element in path {
        at = step(at, element)?;
    }
    Some(at)
}

fn step<'a>(at: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return at.get(field);
    }
    let list = at.as_array()?;
    if let Some(key) = element.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
        return list
            .iter()
            .find(|e| wanted.iter().all(|(k, v)| e.get(k) == Some(v)));
    }
    if let Some(item) = element.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(item).ok()?;
        return list.iter().find(|e| **e == wanted);
    }
    None
}

/// Removes the field at `path` from `object` (an element of a keyed or set list is removed
/// from its list).
fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for element in parents {
        let next = if let Some(field) = element.strip_prefix("f:") {
            at.get_mut(field)
        } else {
            let index = position(at, element);
            match (index, at.as_array_mut()) {
                (Some(i), Some(list)) => list.get_mut(i),
                _ => None,
            }
        };
        match next {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = at.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(i) = position(at, last)
        && let Some(list) = at.as_array_mut()
    {
        list.remove(i);
    }
}

fn position(list: &Value, element: &str) -> Option<usize> {
    let items = list.as_array()?;
    let target = step(list, element)?;
    items.iter().position(|e| std::ptr::eq(e, target))
}

/// Deep-merges an applied configuration into `target`: maps field by field, keyed lists
/// element by element, set lists by union, anything else replaced.
fn merge_applied(target: &mut Value, config: &Value, field: &str) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing) if !v.is_null() => merge_applied(existing, v, k),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(t), Value::Array(c)) if is_set_list(field) => {
            for item in c {
                if !t.contains(item) {
                    t.push(item.clone());
                }
            }
        }
        (Value::Array(t), Value::Array(c)) => match merge_key(field, c.first()) {
            Some(key) if c.iter().all(|e| e.get(key).is_some()) => {
                for item in c {
                    match t.iter_mut().find(|e| e.get(key) == item.get(key)) {
                        Some(existing) => merge_applied(existing, item, ""),
                        None => t.push(item.clone()),
                    }
                }
            }
            _ => *t = c.clone(),
        },
        (t, c) => *t = c.clone(),
    }
}

/// `managedFields` of `object`, parsed.
pub(crate) fn entries_of(object: &Value) -> Vec<Entry> {
    let Some(list) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = FieldSet::new();
            if let Some(v1) = e.get("fieldsV1") {
                parse_fields_v1(v1, Vec::new(), &mut fields);
            }
            Entry {
                manager: text("manager"),
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(String::from),
                fields,
            }
        })
        .collect()
}

fn parse_fields_v1(value: &Value, prefix: Path, out: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    let children: Vec<_> = map.iter().filter(|(k, _)| *k != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    for (k, v) in children {
        let mut path = prefix.clone();
        path.push(k.clone());
        parse_fields_v1(v, path, out);
    }
}

fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut at = &mut root;
        for element in path {
            let next = at
                .entry(element.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !next.is_object() {
                *next = Value::Object(Map::new());
            }
            at = next.as_object_mut().expect("made an object above");
        }
    }
    Value::Object(root)
}

/// The `managedFields` list for `entries`.
pub(crate) fn to_value(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields_v1(&e.fields),
                });
                if let Some(sub) = &e.subresource {
                    v["subresource"] = json!(sub);
                }
                v
            })
            .collect(),
    )
}

/// A field path as conflict messages show it: `.spec.containers[name="c"].image`.
pub(crate) fn display(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let shown = serde_json::from_str::<Map<String, Value>>(key)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|_| key.to_string());
            out.push_str(&format!("[{shown}]"));
        } else if let Some(item) = element.strip_prefix("v:") {
            out.push_str(&format!("[={item}]"));
        }
    }
    out
}

/// Who writes and how.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub scope: Scope,
    pub now: &'a str,
}

fn same_slot(e: &Entry, manager: &str, operation: &str, scope: Scope) -> bool {
    e.manager == manager
        && e.operation == operation
        && e.subresource.as_deref() == scope.subresource()
}

/// Records an ordinary write from `old` to `new` in `entries`: the writer takes over the
/// fields it changed, fields that are gone lose their owners.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &Value,
    entries: &mut Vec<Entry>,
    w: &Writer<'_>,
) {
    let all_new = fields_of(new, Scope::All);
    let old_fields = old.map(|o| fields_of(o, w.scope)).unwrap_or_default();
    let new_fields = fields_of(new, w.scope);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| {
            !old_fields.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p)
        })
        .cloned()
        .collect();
    for e in entries.iter_mut() {
        e.fields
            .retain(|p| all_new.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| same_slot(e, w.manager, "Update", w.scope))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = w.now.to_string();
                e.api_version = w.api_version.to_string();
            }
            None => entries.push(Entry {
                manager: w.manager.to_string(),
                operation: "Update".into(),
                api_version: w.api_version.to_string(),
                time: w.now.to_string(),
                subresource: w.scope.subresource().map(String::from),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// A field owned by another manager: `(manager, field)`.
pub(crate) type Conflict = (String, String);

/// Server-side apply of `config` onto `live` (none: the object is created). Returns the
/// merged object and its new entries, or the conflicts `(manager, field)`.
pub(crate) fn apply(
    live: Option<&Value>,
    config: &Value,
    mut entries: Vec<Entry>,
    force: bool,
    w: &Writer<'_>,
) -> Result<(Value, Vec<Entry>), Vec<Conflict>> {
    let applied = fields_of(config, w.scope);
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for path in &applied {
            let differs = value_at(live, path).is_some_and(|v| Some(v) != value_at(config, path));
            if !differs {
                continue;
            }
            for e in &entries {
                if e.manager != w.manager && e.fields.contains(path) {
                    conflicts.push((e.manager.clone(), display(path)));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        for e in entries.iter_mut().filter(|e| e.manager != w.manager) {
            e.fields.retain(|p| !applied.contains(p));
        }
    }
    let mut merged = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let previous: FieldSet = entries
        .iter()
        .find(|e| same_slot(e, w.manager, "Apply", w.scope))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied) {
        let shared = entries
            .iter()
            .any(|e| !same_slot(e, w.manager, "Apply", w.scope) && e.fields.contains(path));
        if !shared {
            remove_at(&mut merged, path);
        }
    }
    let mut scoped = config.clone();
    if let Some(map) = scoped.as_object_mut() {
        map.retain(|k, _| {
            matches!(k.as_str(), "apiVersion" | "kind" | "metadata") || w.scope.admits(k)
        });
    }
    merge_applied(&mut merged, &scoped, "");
    match entries
        .iter_mut()
        .find(|e| same_slot(e, w.manager, "Apply", w.scope))
    {
        Some(e) => {
            if e.fields != applied {
                e.time = w.now.to_string();
            }
            e.fields = applied;
            e.api_version = w.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: w.manager.to_string(),
            operation: "Apply".into(),
            api_version: w.api_version.to_string(),
            time: w.now.to_string(),
            subresource: w.scope.subresource().map(String::from),
            fields: applied,
        }),
    }
    let all = fields_of(&merged, Scope::All);
    for e in entries.iter_mut() {
        e.fields.retain(|p| all.contains(p));
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok((merged, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            scope: Scope::Main,
            now: "2024-01-01T00:00:00Z",
        }
    }

    #[test]
    fn fields_use_the_fields_v1_notation() {
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "args": ["1"]},
            "status": {"phase": "Running"}});
        let fields = fields_of(&object, Scope::Main);
        let shown: Vec<String> = fields.iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            [
                ".metadata.finalizers[=\"x\"]",
                ".metadata.labels.a",
                ".spec.args",
                ".spec.containers[name=\"c\"].image",
                ".spec.containers[name=\"c\"].name",
            ]
        );
        let v1 = to_value(&[Entry {
            manager: "m".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            time: "t".into(),
            subresource: None,
            fields: fields.clone(),
        }]);
        let round = entries_of(&json!({"metadata": {"managedFields": v1}}));
        assert_eq!(round[0].fields, fields);
    }

    #[test]
    fn apply_conflicts_unless_forced_and_prunes_what_it_dropped() {
        let w = writer("ctl");
        let config = json!({"spec": {"replicas": 1, "paused": false}});
        let (live, entries) = apply(None, &config, Vec::new(), false, &w).unwrap();
        assert_eq!(live["spec"]["replicas"], 1);

        // Another manager changes replicas with an ordinary update.
        let mut updated = live.clone();
        updated["spec"]["replicas"] = json!(3);
        let mut entries = entries;
        record_update(Some(&live), &updated, &mut entries, &writer("scaler"));

        let conflicts = apply(Some(&updated), &config, entries.clone(), false, &w).unwrap_err();
        assert_eq!(
            conflicts,
            vec![("scaler".to_string(), ".spec.replicas".to_string())]
        );

        // Dropping `paused` removes it; forcing takes replicas back.
        let config = json!({"spec": {"replicas": 1}});
        let (merged, entries) = apply(Some(&updated), &config, entries, true, &w).unwrap();
        assert_eq!(merged, json!({"spec": {"replicas": 1}}));
        assert!(entries.iter().all(|e| e.manager == "ctl"));
    }
}
