//! The control loops a real control plane runs beside the API server, reduced to what API
//! semantics depend on:
//!
//! - **Garbage collector**: a dependent whose owners are all gone (or all being deleted in
//!   the foreground) is deleted; owner references to absent or orphaning owners are removed;
//!   the `foregroundDeletion` and `orphan` finalizers are removed once no dependent refers to
//!   the owner. Owners are found by UID, and a namespaced owner only in the dependent's
//!   namespace, as in the real collector.
//! - **Namespace lifecycle**: a terminating namespace has its contents deleted (pods
//!   gracefully, through their kubelets) and goes when it is empty.
//! - **CRD cleanup**: a deleted CRD deletes its custom resources and is removed (and no longer
//!   served) when they are gone.
//!
//! The loop wakes on changes that can matter (deletions, owner references, finalizers), runs
//! until nothing more changes, and writes through the same paths as clients (as `system:kube-controller-manager`), so its changes are watched
//! like any other.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::Shared;
use super::admission::CRD_CLEANUP_FINALIZER;
use super::apply::Scope;
use super::auth::{MASTERS, UserInfo};
use super::delete::{self, DeleteOptions, Propagation};
use super::meta;
use super::resources::{ResourceId, ResourceType};
use super::store::{Change, ChangeKind, Key, Store};
use super::write::{self, Op};

const MANAGER: &str = "kube-controller-manager";

/// Whether `change` can give the loops work: something was deleted, is being deleted, or
/// gained or changed owner references or finalizers. Status updates (the bulk of writes) do
/// not, so they cost no pass over the store.
fn relevant(change: &Change) -> bool {
    let field = |object: &Value, pointer: &str| object.pointer(pointer).cloned();
    match (change.kind, &change.prev) {
        (ChangeKind::Deleted, _) => true,
        (ChangeKind::Added, _) => {
            meta::is_deleting(&change.object)
                || field(&change.object, "/metadata/ownerReferences").is_some()
        }
        (ChangeKind::Modified, Some(prev)) => [
            "/metadata/ownerReferences",
            "/metadata/deletionTimestamp",
            "/metadata/finalizers",
            "/spec/finalizers",
        ]
        .iter()
        .any(|p| field(prev, p) != field(&change.object, p)),
        (ChangeKind::Modified, None) => true,
    }
}

/// Runs the loops until the server shuts down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.lock().subscribe();
    let user = UserInfo::new("system:kube-controller-manager", &[MASTERS]);
    loop {
        let mut work = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            received = changes.recv() => match received {
                Ok(change) => relevant(&change),
                Err(RecvError::Lagged(_)) => true,
                Err(RecvError::Closed) => return,
            },
        };
        loop {
            match changes.try_recv() {
                Ok(change) => work |= relevant(&change),
                Err(TryRecvError::Lagged(_)) => work = true,
                Err(_) => break,
            }
        }
        if !work {
            continue;
        }
        // Bounded: each pass either writes (and a later pass sees the result) or is idle.
        for _ in 0..100 {
            let mut store = shared.lock();
            if !reconcile(&mut store, &user) {
                break;
            }
        }
    }
}

fn op<'a>(rt: &'a ResourceType, user: &'a UserInfo) -> Op<'a> {
    Op {
        rt,
        version: &rt.storage_version,
        user,
        manager: MANAGER,
        dry_run: false,
    }
}

fn key_of(object: &Value) -> Key {
    (
        meta::namespace(object).to_string(),
        meta::name(object).to_string(),
    )
}

/// One pass over everything; true if it wrote.
pub(crate) fn reconcile(store: &mut Store, user: &UserInfo) -> bool {
    let mut wrote = false;
    wrote |= namespaces(store, user);
    wrote |= crds(store, user);
    wrote |= garbage(store, user);
    wrote
}

fn delete_quietly(
    store: &mut Store,
    rt: &ResourceType,
    user: &UserInfo,
    key: &Key,
    propagation: Propagation,
) -> bool {
    let options = DeleteOptions {
        propagation: Some(propagation),
        ..Default::default()
    };
    match delete::delete(store, &op(rt, user), key, &options) {
        Ok((_, _)) => true,
        Err(e) => {
            tracing::debug!(error = %e.message, "controller delete failed");
            false
        }
    }
}

fn update_quietly(
    store: &mut Store,
    rt: &ResourceType,
    user: &UserInfo,
    old: &Arc<Value>,
    new: Value,
) -> bool {
    let scope = if rt.has_status(&rt.storage_version) {
        Scope::Main
    } else {
        Scope::All
    };
    match write::update(store, &op(rt, user), old, new, scope, None) {
        Ok(stored) => !Arc::ptr_eq(&stored, old),
        Err(e) => {
            tracing::debug!(error = %e.message, "controller update failed");
            false
        }
    }
}

fn namespaces(store: &mut Store, user: &UserInfo) -> bool {
    let Some(ns_type) = store.registry.find("", "v1", "namespaces") else {
        return false;
    };
    let terminating: Vec<Arc<Value>> = store
        .list(&ns_type.storage, None)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|ns| meta::is_deleting(ns))
        .collect();
    let mut wrote = false;
    for ns in terminating {
        let name = meta::name(&ns).to_string();
        let mut remaining = 0;
        let types: Vec<Arc<ResourceType>> = store
            .resources()
            .iter()
            .filter_map(|id| store.registry.by_storage(id))
            .filter(|t| t.namespaced)
            .collect();
        for rt in types {
            for (key, object) in store.list(&rt.storage, Some(&name)) {
                remaining += 1;
                if !meta::is_deleting(&object) {
                    wrote |= delete_quietly(store, &rt, user, &key, Propagation::Background);
                }
            }
        }
        if remaining == 0 {
            let mut finished = (*ns).clone();
            finished["spec"] = json!({"finalizers": []});
            if let Some(spec) = finished.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
            if write::commit(store, &ns_type, finished).is_ok() {
                wrote = true;
            }
        }
    }
    wrote
}

fn crds(store: &mut Store, user: &UserInfo) -> bool {
    let Some(crd_type) =
        store
            .registry
            .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    else {
        return false;
    };
    let deleting: Vec<Arc<Value>> = store
        .list(&crd_type.storage, None)
        .into_iter()
        .map(|(_, v)| v)
        .filter(|crd| {
            meta::is_deleting(crd)
                && meta::finalizers(crd)
                    .iter()
                    .any(|f| f == CRD_CLEANUP_FINALIZER)
        })
        .collect();
    let mut wrote = false;
    for crd in deleting {
        let group = meta::str_at(&crd, "/spec/group");
        let plural = meta::str_at(&crd, "/spec/names/plural");
        let id = ResourceId::new(group, plural);
        let instances = store.list(&id, None);
        if let Some(rt) = store.registry.by_storage(&id)
            && !instances.is_empty()
        {
            for (key, object) in instances {
                if !meta::is_deleting(&object) {
                    wrote |= delete_quietly(store, &rt, user, &key, Propagation::Background);
                }
            }
            continue;
        }
        let mut finished = (*crd).clone();
        let finalizers: Vec<String> = meta::finalizers(&crd)
            .into_iter()
            .filter(|f| f != CRD_CLEANUP_FINALIZER)
            .collect();
        meta::metadata_mut(&mut finished).insert("finalizers".into(), json!(finalizers));
        wrote |= update_quietly(store, &crd_type, user, &crd, finished);
    }
    wrote
}

/// What the collector knows about a possible owner.
struct Owner {
    namespace: String,
    namespaced: bool,
    deleting: bool,
    finalizers: Vec<String>,
    storage: ResourceId,
    key: Key,
}

fn garbage(store: &mut Store, user: &UserInfo) -> bool {
    let mut owners: HashMap<String, Owner> = HashMap::new();
    let mut dependents: Vec<(Arc<ResourceType>, Arc<Value>)> = Vec::new();
    for id in store.resources() {
        let Some(rt) = store.registry.by_storage(&id) else {
            continue;
        };
        for (key, object) in store.list(&id, None) {
            owners.insert(
                meta::uid(&object).to_string(),
                Owner {
                    namespace: key.0.clone(),
                    namespaced: rt.namespaced,
                    deleting: meta::is_deleting(&object),
                    finalizers: meta::finalizers(&object),
                    storage: id.clone(),
                    key: key.clone(),
                },
            );
            let has_refs = object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty());
            if has_refs {
                dependents.push((rt.clone(), object));
            }
        }
    }
    let mut wrote = false;
    let mut referenced: Vec<String> = Vec::new();
    for (rt, object) in dependents {
        let refs = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let namespace = meta::namespace(&object);
        let (mut solid, mut dangling, mut waiting) = (0, 0, 0);
        let mut keep = Vec::new();
        for r in &refs {
            let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
            let owner = owners.get(uid).filter(|o| {
                if o.namespaced {
                    rt.namespaced && o.namespace == namespace
                } else {
                    true
                }
            });
            let Some(owner) = owner else {
                dangling += 1;
                continue;
            };
            referenced.push(uid.to_string());
            let has = |f: &str| owner.deleting && owner.finalizers.iter().any(|x| x == f);
            if has("foregroundDeletion") {
                waiting += 1;
                keep.push(r.clone());
            } else if has("orphan") {
                solid += 1;
            } else {
                solid += 1;
                keep.push(r.clone());
            }
        }
        if solid == 0 && dangling + waiting > 0 {
            if !meta::is_deleting(&object) {
                let propagation = if waiting > 0 {
                    Propagation::Foreground
                } else {
                    Propagation::Background
                };
                wrote |= delete_quietly(store, &rt, user, &key_of(&object), propagation);
            }
            continue;
        }
        if keep.len() != refs.len() {
            let mut new = (*object).clone();
            let metadata = meta::metadata_mut(&mut new);
            if keep.is_empty() {
                metadata.remove("ownerReferences");
            } else {
                metadata.insert("ownerReferences".into(), Value::Array(keep));
            }
            wrote |= update_quietly(store, &rt, user, &object, new);
        }
    }
    // Owners waiting for their dependents to go (foreground) or to let go (orphan).
    let blocking = ["foregroundDeletion", "orphan"];
    for (uid, owner) in &owners {
        let waits = owner.deleting
            && owner
                .finalizers
                .iter()
                .any(|f| blocking.contains(&f.as_str()));
        if !waits || referenced.contains(uid) {
            continue;
        }
        let Some(rt) = store.registry.by_storage(&owner.storage) else {
            continue;
        };
        let Some(current) = store.get(&owner.storage, &owner.key) else {
            continue;
        };
        let mut new = (*current).clone();
        let finalizers: Vec<String> = owner
            .finalizers
            .iter()
            .filter(|f| !blocking.contains(&f.as_str()))
            .cloned()
            .collect();
        meta::metadata_mut(&mut new).insert("finalizers".into(), json!(finalizers));
        wrote |= update_quietly(store, &rt, user, &current, new);
    }
    wrote
}

#[cfg(test)]
mod tests {
    use crate::apiserver::resources::Builtin;

    #[test]
    fn builtin_is_used() {
        // The collector relies on pods being a namespaced built-in.
        let registry = super::super::resources::Registry::default();
        let pods = registry.find("", "v1", "pods").unwrap();
        assert_eq!(pods.builtin, Some(Builtin::Pod));
        assert!(pods.namespaced);
    }
}
