//! The write path shared by every verb that changes an object (create, update, the patches,
//! apply, `/status`, finalizer removal, and the built-in controllers), so the API conventions
//! hold the same way whoever writes:
//!
//! - `apiVersion`/`kind` must match the endpoint; names and namespaces must match the URL;
//!   names, label keys and values are validated (422); `generateName` is honoured.
//! - A stale `metadata.resourceVersion` (or a wrong `uid`) in the body is a 409.
//! - The server owns `uid`, `creationTimestamp`, `generation`, `deletionTimestamp` and
//!   `managedFields`; clients cannot change them.
//! - With a status subresource, main-resource writes keep the stored `status` and `/status`
//!   writes change nothing but `status`.
//! - `metadata.generation` bumps when anything but metadata (and status, when it is a
//!   subresource) changes, for the types that keep a generation.
//! - A write that changes nothing is not a write: same `resourceVersion`, no watch event.
//! - An object being deleted goes away when its last finalizer is removed; no finalizer may
//!   be added to it.
//! - Namespaced objects need an existing namespace that is not terminating.

use std::sync::Arc;

use serde_json::{Value, json};

use super::admission;
use super::apply::{self, Entry, Scope, Writer};
use super::auth::UserInfo;
use super::error::{ApiError, ApiResult, Cause};
use super::meta;
use super::output;
use super::resources::{Builtin, ResourceId, ResourceType, crd_type};
use super::schema;
use super::store::{Key, Store};

/// Who writes, through which type and version.
pub(crate) struct Op<'a> {
    pub rt: &'a ResourceType,
    pub version: &'a str,
    pub user: &'a UserInfo,
    pub manager: &'a str,
    pub dry_run: bool,
}

impl Op<'_> {
    fn writer<'b>(&'b self, scope: Scope, now: &'b str, api_version: &'b str) -> Writer<'b> {
        Writer {
            manager: self.manager,
            api_version,
            scope,
            now,
        }
    }

    /// The write scope for the main resource or `/status`.
    pub fn scope(&self, status: bool) -> Scope {
        if status {
            Scope::Status
        } else if self.rt.has_status(self.version) {
            Scope::Main
        } else {
            Scope::All
        }
    }
}

/// Checks the body's `apiVersion` and `kind` against the endpoint (filling them when absent).
fn check_type_meta(op: &Op<'_>, object: &mut Value) -> ApiResult<()> {
    let Some(map) = object.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let expected = op.rt.api_version(op.version);
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected));
        }
        Some(v) if v == expected => {}
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(op.rt.kind));
        }
        Some(k) if k == op.rt.kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                op.rt.kind
            )));
        }
    }
    Ok(())
}

fn invalid(op: &Op<'_>, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&op.rt.kind, &op.rt.group, name, causes)
}

/// Validates label keys and values and annotation keys.
fn validate_metadata(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(labels) = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (key, value) in labels {
            if let Some(why) = meta::qualified_name_problem(key) {
                causes.push(Cause::invalid("metadata.labels", &json!(key), why));
            }
            match value.as_str() {
                Some(v) if meta::label_value_ok(v) => {}
                _ => causes.push(Cause::invalid(
                    format!("metadata.labels.{key}"),
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )),
            }
        }
    }
    if let Some(annotations) = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        for (key, value) in annotations {
            if let Some(why) = meta::qualified_name_problem(key) {
                causes.push(Cause::invalid("metadata.annotations", &json!(key), why));
            }
            if !value.is_string() {
                causes.push(Cause::wrong_type(
                    format!("metadata.annotations.{key}"),
                    value,
                    "string",
                ));
            }
        }
    }
    causes
}

/// Checks that `namespace` exists and accepts new objects.
fn check_namespace(store: &Store, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<()> {
    if !rt.namespaced {
        return Ok(());
    }
    let ns = store.get(
        &ResourceId::new("", "namespaces"),
        &(String::new(), namespace.to_string()),
    );
    match ns {
        None => Err(ApiError::not_found("", "namespaces", namespace)),
        Some(ns) if meta::is_deleting(&ns) => Err(ApiError::forbidden(
            &rt.group,
            &rt.plural,
            name,
            format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                super::error::qualified(&rt.group, &rt.plural)
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Prunes, defaults and validates a custom resource.
fn check_schema(op: &Op<'_>, object: &mut Value) -> ApiResult<()> {
    if !op.rt.is_custom() {
        return Ok(());
    }
    let Some(schema) = op.rt.version(op.version).and_then(|v| v.schema.clone()) else {
        return Ok(());
    };
    let causes = schema::apply(object, &schema);
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(op, meta::name(object), causes))
    }
}

fn set_managed(object: &mut Value, entries: &[Entry]) {
    let metadata = meta::metadata_mut(object);
    if entries.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), apply::to_value(entries));
    }
}

/// Creates an object sent in `op.version`, in `namespace` (empty for cluster-scoped types).
/// Returns the stored object.
pub(crate) fn create(
    store: &mut Store,
    op: &Op<'_>,
    namespace: &str,
    body: Value,
) -> ApiResult<Arc<Value>> {
    create_with(store, op, namespace, body, None)
}

/// [`create`], with the field ownership an apply computed (`None`: recorded as an `Update`).
pub(crate) fn create_with(
    store: &mut Store,
    op: &Op<'_>,
    namespace: &str,
    body: Value,
    applied: Option<Vec<Entry>>,
) -> ApiResult<Arc<Value>> {
    let mut object = body;
    check_type_meta(op, &mut object)?;
    let mut object = output::to_storage(op.rt, &object);
    let rt = op.rt;
    {
        let metadata = meta::metadata_mut(&mut object);
        if rt.namespaced {
            match metadata.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert("namespace".into(), json!(namespace));
                }
                Some(ns) if ns == namespace => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        } else {
            metadata.remove("namespace");
        }
    }
    let storage = &rt.storage;
    let mut name = meta::name(&object).to_string();
    let generate = meta::meta_str(&object, "generateName").to_string();
    if name.is_empty() && !generate.is_empty() {
        for _ in 0..8 {
            let candidate = meta::generate_name(&generate);
            if store
                .get(storage, &(namespace_of(rt, namespace), candidate.clone()))
                .is_none()
            {
                name = candidate;
                break;
            }
        }
        meta::metadata_mut(&mut object).insert("name".into(), json!(name));
    }
    if name.is_empty() {
        return Err(invalid(
            op,
            "",
            vec![Cause {
                reason: "FieldValueRequired",
                field: "metadata.name".into(),
                message: "Required value: name or generateName is required".into(),
            }],
        ));
    }
    if let Some(why) = meta::name_problem(&name, rt.name_rule) {
        return Err(invalid(
            op,
            &name,
            vec![Cause::invalid("metadata.name", &json!(name), why)],
        ));
    }
    let causes = validate_metadata(&object);
    if !causes.is_empty() {
        return Err(invalid(op, &name, causes));
    }
    let key: Key = (namespace_of(rt, namespace), name.clone());
    if store.get(storage, &key).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    check_namespace(store, rt, namespace, &name)?;
    let now = meta::now();
    {
        let metadata = meta::metadata_mut(&mut object);
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(now));
        for server_owned in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "managedFields",
            "selfLink",
            "generation",
        ] {
            metadata.remove(server_owned);
        }
        if rt.generation {
            metadata.insert("generation".into(), json!(1));
        }
    }
    if let Some(map) = object.as_object_mut() {
        match rt.builtin {
            Some(Builtin::Pod) => {
                map.insert(
                    "status".into(),
                    json!({"phase": "Pending", "qosClass": "BestEffort"}),
                );
            }
            Some(Builtin::Namespace) => {
                map.insert("status".into(), json!({"phase": "Active"}));
            }
            Some(Builtin::Node) => {}
            _ if rt.has_status(op.version) => {
                map.remove("status");
            }
            _ => {}
        }
    }
    admission::on_create(store, op, &mut object)?;
    check_schema(op, &mut object)?;
    let api_version = rt.api_version(op.version);
    let entries = match applied {
        Some(entries) => entries,
        None => {
            let mut entries = Vec::new();
            apply::record_update(
                None,
                &object,
                &mut entries,
                &op.writer(Scope::All, &now, &api_version),
            );
            entries
        }
    };
    set_managed(&mut object, &entries);
    if op.dry_run {
        return Ok(Arc::new(object));
    }
    let stored = store.put(storage, object);
    after_write(store, rt, &stored);
    if rt.builtin == Some(Builtin::Namespace) {
        admission::namespace_created(store, &name);
    }
    Ok(stored)
}

fn namespace_of(rt: &ResourceType, namespace: &str) -> String {
    if rt.namespaced {
        namespace.to_string()
    } else {
        String::new()
    }
}

/// The object without what does not count for `generation`.
fn spec_part(object: &Value, status_is_subresource: bool) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("apiVersion");
        map.remove("kind");
        if status_is_subresource {
            map.remove("status");
        }
    }
    copy
}

/// Replaces `old` with `body` (sent in `op.version`) within `scope`. `applied` carries the
/// field ownership an apply computed; otherwise the write is recorded as an `Update`.
pub(crate) fn update(
    store: &mut Store,
    op: &Op<'_>,
    old: &Arc<Value>,
    body: Value,
    scope: Scope,
    applied: Option<Vec<Entry>>,
) -> ApiResult<Arc<Value>> {
    let rt = op.rt;
    let mut body = body;
    check_type_meta(op, &mut body)?;
    let incoming = output::to_storage(rt, &body);
    let name = meta::name(old).to_string();
    let body_name = meta::name(&incoming);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_namespace = meta::namespace(&incoming);
    if rt.namespaced && !body_namespace.is_empty() && body_namespace != meta::namespace(old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let rv = meta::meta_str(&incoming, "resourceVersion");
    if !rv.is_empty() && rv != meta::meta_str(old, "resourceVersion") {
        return Err(ApiError::stale(&rt.group, &rt.plural, &name));
    }
    let uid = meta::uid(&incoming);
    if !uid.is_empty() && uid != meta::uid(old) {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            &name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(old)
            ),
        ));
    }
    let mut new = match scope {
        Scope::Status => {
            let mut new = (**old).clone();
            if let Some(map) = new.as_object_mut() {
                match incoming.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            new
        }
        Scope::Main | Scope::All => {
            let mut new = incoming;
            if scope == Scope::Main
                && let Some(map) = new.as_object_mut()
            {
                match old.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            let old_meta = meta::metadata(old).cloned().unwrap_or_default();
            let metadata = meta::metadata_mut(&mut new);
            for owned in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
                "managedFields",
            ] {
                match old_meta.get(owned) {
                    Some(v) => metadata.insert(owned.into(), v.clone()),
                    None => metadata.remove(owned),
                };
            }
            metadata.remove("selfLink");
            new
        }
    };
    if meta::is_deleting(old) {
        let before = meta::finalizers(old);
        let added: Vec<String> = meta::finalizers(&new)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            return Err(invalid(
                op,
                &name,
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    let causes = validate_metadata(&new);
    if !causes.is_empty() {
        return Err(invalid(op, &name, causes));
    }
    admission::on_update(store, op, old, &mut new, scope)?;
    check_schema(op, &mut new)?;
    if rt.generation
        && spec_part(old, rt.has_status(op.version)) != spec_part(&new, rt.has_status(op.version))
    {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    let now = meta::now();
    let api_version = rt.api_version(op.version);
    let entries = match applied {
        Some(entries) => entries,
        None => {
            let mut entries = apply::entries_of(old);
            apply::record_update(
                Some(old),
                &new,
                &mut entries,
                &op.writer(scope, &now, &api_version),
            );
            entries
        }
    };
    set_managed(&mut new, &entries);
    if new == **old {
        return Ok(old.clone());
    }
    if op.dry_run {
        return Ok(Arc::new(new));
    }
    commit(store, rt, new)
}

/// Stores an updated object, or removes it when it is being deleted and has no finalizers.
pub(crate) fn commit(store: &mut Store, rt: &ResourceType, object: Value) -> ApiResult<Arc<Value>> {
    let key = (
        meta::namespace(&object).to_string(),
        meta::name(&object).to_string(),
    );
    let stored = if meta::is_deleting(&object) && !held(rt, &object) {
        store
            .remove_as(&rt.storage, &key, Some(object))
            .ok_or_else(|| ApiError::internal("object vanished during removal"))?
    } else {
        store.put(&rt.storage, object)
    };
    after_write(store, rt, &stored);
    Ok(stored)
}

/// Whether `object`, being deleted, must stay: it has finalizers (for namespaces,
/// `spec.finalizers` too), or it is a pod within its grace period (its kubelet removes it).
pub(crate) fn held(rt: &ResourceType, object: &Value) -> bool {
    let graceful_pod = rt.builtin == Some(Builtin::Pod)
        && object
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0);
    graceful_pod
        || !meta::finalizers(object).is_empty()
        || (rt.builtin == Some(Builtin::Namespace)
            && object
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty()))
}

/// Keeps derived state in step with a write: a CRD's custom resource is served from the
/// moment it is created until it is gone.
pub(crate) fn after_write(store: &mut Store, rt: &ResourceType, object: &Arc<Value>) {
    if rt.builtin != Some(Builtin::Crd) {
        return;
    }
    let name = meta::name(object).to_string();
    let present = store
        .get(&rt.storage, &(String::new(), name.clone()))
        .is_some();
    let served = if present { crd_type(object).ok() } else { None };
    store.registry.set_custom(&name, served);
}
