//! DELETE as the real server does it. Preconditions (`uid`, `resourceVersion`) are checked; an
//! object with finalizers (including the `orphan` or `foregroundDeletion` finalizer that the
//! propagation policy adds) only gets `deletionTimestamp` and stays until they are removed; a
//! bound, still-running pod is deleted gracefully: `deletionTimestamp` = now + grace period,
//! and its kubelet removes it once its containers have stopped (grace period 0 removes it at
//! once). Dependents are left to the garbage collector ([`super::controllers`]).

use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::meta;
use super::request::Query;
use super::resources::Builtin;
use super::store::{Key, Store};
use super::write::{self, Op};

/// How dependents are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Propagation {
    Orphan,
    Background,
    Foreground,
}

/// `DeleteOptions` from the query and the body.
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<Propagation>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl DeleteOptions {
    /// Parses the options; the body wins over the query, as in the real server.
    pub fn parse(query: &Query, body: &[u8]) -> ApiResult<DeleteOptions> {
        let mut options = DeleteOptions::default();
        let parse_policy = |s: &str| -> ApiResult<Propagation> {
            match s {
                "Orphan" => Ok(Propagation::Orphan),
                "Background" => Ok(Propagation::Background),
                "Foreground" => Ok(Propagation::Foreground),
                other => Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ))),
            }
        };
        if let Some(g) = query.get("gracePeriodSeconds") {
            options.grace_period =
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g}"))
                })?);
        }
        if let Some(p) = query.get("propagationPolicy") {
            options.propagation = Some(parse_policy(p)?);
        }
        if query.flag("orphanDependents") {
            options.propagation = Some(Propagation::Orphan);
        }
        let trimmed = body.iter().filter(|b| !b.is_ascii_whitespace()).count();
        if trimmed > 0 {
            let body: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
            if let Some(g) = body.get("gracePeriodSeconds").and_then(Value::as_i64) {
                options.grace_period = Some(g);
            }
            if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
                options.propagation = Some(parse_policy(p)?);
            }
            if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
                options.propagation = Some(Propagation::Orphan);
            }
            if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str) {
                options.uid = Some(uid.to_string());
            }
            if let Some(rv) = body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
            {
                options.resource_version = Some(rv.to_string());
            }
        }
        Ok(options)
    }
}

/// Whether a pod deletion must wait for its kubelet.
fn graceful_pod(object: &Value) -> bool {
    let bound = object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        object.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    bound && !finished
}

/// Deletes the object at `key`. Returns its state and whether it is gone.
pub(crate) fn delete(
    store: &mut Store,
    op: &Op<'_>,
    key: &Key,
    options: &DeleteOptions,
) -> ApiResult<(Arc<Value>, bool)> {
    let rt = op.rt;
    let Some(old) = store.get(&rt.storage, key) else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, &key.1));
    };
    if let Some(uid) = &options.uid
        && uid != meta::uid(&old)
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            &key.1,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(&old)
            ),
        ));
    }
    if let Some(rv) = &options.resource_version
        && rv != meta::meta_str(&old, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &rt.group,
            &rt.plural,
            &key.1,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::meta_str(&old, "resourceVersion")
            ),
        ));
    }
    let mut new = (*old).clone();
    let mut finalizers = meta::finalizers(&old);
    let policy_finalizer = match options.propagation {
        Some(Propagation::Orphan) => Some("orphan"),
        Some(Propagation::Foreground) => Some("foregroundDeletion"),
        _ => None,
    };
    if let Some(f) = policy_finalizer
        && !finalizers.iter().any(|x| x == f)
    {
        finalizers.push(f.to_string());
    }
    let was_deleting = meta::is_deleting(&old);
    let pod_grace =
        (rt.builtin == Some(Builtin::Pod) && graceful_pod(&old) && options.grace_period != Some(0))
            .then(|| {
                options.grace_period.unwrap_or_else(|| {
                    old.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(30)
                })
            })
            .map(|g| g.max(1));
    let force_pod = rt.builtin == Some(Builtin::Pod) && options.grace_period == Some(0);

    let namespace_held = rt.builtin == Some(Builtin::Namespace) && write::held(rt, &old);
    if finalizers.is_empty() && pod_grace.is_none() && !namespace_held {
        if op.dry_run {
            return Ok((old, true));
        }
        let gone = store
            .remove(&rt.storage, key)
            .ok_or_else(|| ApiError::internal("object vanished during deletion"))?;
        write::after_write(store, rt, &gone);
        return Ok((gone, true));
    }
    let metadata = meta::metadata_mut(&mut new);
    if !finalizers.is_empty() {
        metadata.insert("finalizers".into(), json!(finalizers));
    }
    match pod_grace {
        Some(grace) => {
            let current = metadata
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if !was_deleting || current.is_some_and(|c| grace < c) {
                metadata.insert("deletionTimestamp".into(), json!(meta::in_seconds(grace)));
                metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
        }
        None => {
            if !was_deleting || force_pod {
                metadata.insert("deletionTimestamp".into(), json!(meta::now()));
                metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
        }
    }
    if rt.builtin == Some(Builtin::Namespace) {
        new["status"] = json!({"phase": "Terminating"});
    }
    if rt.generation && !was_deleting {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
    }
    if new == *old {
        return Ok((old, false));
    }
    if op.dry_run {
        return Ok((Arc::new(new), false));
    }
    let stored = write::commit(store, rt, new)?;
    let gone = store.get(&rt.storage, key).is_none();
    Ok((stored, gone))
}
