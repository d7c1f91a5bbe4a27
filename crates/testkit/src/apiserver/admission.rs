//! Per-type behaviour on writes, from the real registry strategies, defaulting and admission
//! plugins that a manifest or controller would otherwise only meet on a real cluster:
//!
//! - Pods: defaults (restart policy, grace period, termination message path and policy, pull
//!   policy), basic validation, the ServiceAccount plugin (`serviceAccountName` defaults to
//!   `default`, which must exist; its token is mounted as the `kube-api-access-*` projected
//!   volume unless automounting is off), the Priority plugin (a `priorityClassName` must
//!   exist), and the immutability of the pod spec after creation (but for images, the
//!   active deadline and added tolerations).
//! - Secrets: `stringData` is folded into `data`.
//! - Namespaces: the `kubernetes` finalizer; a new namespace gets its `default` service account
//!   and `kube-root-ca.crt` ConfigMap (the controllers that do this run instantly here).
//! - CRDs: validated, given the cleanup finalizer and an Established status.
//! - RBAC: role references are checked and immutable, and nobody grants permissions they do
//!   not hold unless allowed to `escalate` or `bind`.
//! - Deployments: `replicas` defaults to 1.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::apply::Scope;
use super::auth::{MASTERS, NODES};
use super::error::{ApiError, ApiResult, Cause, qualified};
use super::meta;
use super::rbac::{self, Attributes, Rule};
use super::resources::{Builtin, ResourceId, crd_type};
use super::store::Store;
use super::write::Op;

const RBAC: &str = "rbac.authorization.k8s.io";
/// Where service-account credentials are mounted in every container.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The finalizer with which CRDs clean up their custom resources.
pub const CRD_CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Type-specific checks and defaults for a create.
pub(crate) fn on_create(store: &Store, op: &Op<'_>, object: &mut Value) -> ApiResult<()> {
    match op.rt.builtin {
        Some(Builtin::Pod) => pod_create(store, op, object),
        Some(Builtin::Secret) => fold_string_data(object),
        Some(Builtin::Namespace) => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            Ok(())
        }
        Some(Builtin::Crd) => crd_admit(object, None),
        Some(Builtin::Workload) => {
            if op.rt.kind == "Deployment"
                && object.pointer("/spec/replicas").is_none()
                && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.insert("replicas".into(), json!(1));
            }
            Ok(())
        }
        Some(Builtin::Role | Builtin::ClusterRole) => role_escalation(store, op, object),
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding) => {
            check_role_ref(op, object)?;
            binding_escalation(store, op, object)
        }
        _ => Ok(()),
    }
}

/// Type-specific checks for an update.
pub(crate) fn on_update(
    store: &Store,
    op: &Op<'_>,
    old: &Value,
    new: &mut Value,
    scope: Scope,
) -> ApiResult<()> {
    match op.rt.builtin {
        Some(Builtin::Pod) if scope != Scope::Status => pod_update(op, old, new),
        Some(Builtin::Secret) => fold_string_data(new),
        Some(Builtin::Crd) if scope != Scope::Status => crd_admit(new, Some(old)),
        Some(Builtin::Role | Builtin::ClusterRole) => role_escalation(store, op, new),
        Some(Builtin::RoleBinding | Builtin::ClusterRoleBinding) => {
            if old.get("roleRef") != new.get("roleRef") {
                return Err(ApiError::invalid(
                    &op.rt.kind,
                    RBAC,
                    meta::name(old),
                    vec![Cause::invalid(
                        "roleRef",
                        new.get("roleRef").unwrap_or(&Value::Null),
                        "cannot change roleRef",
                    )],
                ));
            }
            binding_escalation(store, op, new)
        }
        _ => Ok(()),
    }
}

/// Creates what a new namespace gets in a real cluster.
pub(crate) fn namespace_created(store: &mut Store, namespace: &str) {
    let now = meta::now();
    let root_ca = store.root_ca.clone();
    let objects = [
        (
            ResourceId::new("", "serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": namespace}}),
        ),
        (
            ResourceId::new("", "configmaps"),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "kube-root-ca.crt", "namespace": namespace,
                                "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                   "data": {"ca.crt": root_ca}}),
        ),
    ];
    for (resource, mut object) in objects {
        let key = (namespace.to_string(), meta::name(&object).to_string());
        if store.get(&resource, &key).is_some() {
            continue;
        }
        let metadata = meta::metadata_mut(&mut object);
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(now));
        store.put(&resource, object);
    }
}

fn invalid(op: &Op<'_>, object: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&op.rt.kind, &op.rt.group, meta::name(object), causes)
}

fn forbidden(op: &Op<'_>, object: &Value, reason: String) -> ApiError {
    let name = meta::name(object);
    ApiError::forbidden(
        &op.rt.group,
        &op.rt.plural,
        name,
        format!(
            "{} \"{name}\" is forbidden: {reason}",
            qualified(&op.rt.group, &op.rt.plural)
        ),
    )
}

fn insert_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            Some((_, "latest")) | None => "Always",
            Some(_) => "IfNotPresent",
        }
    }
}

const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

fn pod_create(store: &Store, op: &Op<'_>, pod: &mut Value) -> ApiResult<()> {
    let namespace = meta::namespace(pod).to_string();
    let mut causes = Vec::new();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err(invalid(op, pod, vec![Cause::required("spec")]));
    };
    if spec
        .get("containers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        causes.push(Cause::required("spec.containers"));
    }
    let mut names = Vec::new();
    for list in CONTAINER_LISTS {
        let Some(containers) = spec.get_mut(*list).and_then(Value::as_array_mut) else {
            continue;
        };
        for (i, c) in containers.iter_mut().enumerate() {
            let Some(c) = c.as_object_mut() else {
                causes.push(Cause::wrong_type(
                    format!("spec.{list}[{i}]"),
                    &Value::Null,
                    "object",
                ));
                continue;
            };
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if name.is_empty() {
                causes.push(Cause::required(format!("spec.{list}[{i}].name")));
            } else if !meta::is_label(&name) || name.len() > 63 {
                causes.push(Cause::invalid(format!("spec.{list}[{i}].name"), &json!(name), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"));
            } else if names.contains(&name) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    field: format!("spec.{list}[{i}].name"),
                    message: format!("Duplicate value: \"{name}\""),
                });
            }
            names.push(name);
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if image.is_empty() && *list != "ephemeralContainers" {
                causes.push(Cause::required(format!("spec.{list}[{i}].image")));
            }
            insert_default(c, "terminationMessagePath", json!("/dev/termination-log"));
            insert_default(c, "terminationMessagePolicy", json!("File"));
            insert_default(c, "imagePullPolicy", json!(pull_policy(&image)));
            insert_default(c, "resources", json!({}));
        }
    }
    if !causes.is_empty() {
        return Err(invalid(op, pod, causes));
    }
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .expect("checked above");
    insert_default(spec, "restartPolicy", json!("Always"));
    insert_default(spec, "terminationGracePeriodSeconds", json!(30));
    insert_default(spec, "dnsPolicy", json!("ClusterFirst"));
    insert_default(spec, "schedulerName", json!("default-scheduler"));
    insert_default(spec, "securityContext", json!({}));
    insert_default(spec, "enableServiceLinks", json!(true));
    let sa_name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa_name));
    spec.insert("serviceAccount".into(), json!(sa_name));
    let priority_class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let pod_automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool);

    let sa = store.get(
        &ResourceId::new("", "serviceaccounts"),
        &(namespace.clone(), sa_name.clone()),
    );
    let Some(sa) = sa else {
        return Err(forbidden(
            op,
            pod,
            format!(
                "error looking up service account {namespace}/{sa_name}: serviceaccount \"{sa_name}\" not found"
            ),
        ));
    };
    let priority = if priority_class.is_empty() {
        0
    } else {
        let class = store.get(
            &ResourceId::new("scheduling.k8s.io", "priorityclasses"),
            &(String::new(), priority_class.clone()),
        );
        match class {
            Some(class) => class.get("value").and_then(Value::as_i64).unwrap_or(0),
            None => {
                return Err(forbidden(
                    op,
                    pod,
                    format!("no PriorityClass with name {priority_class} was found"),
                ));
            }
        }
    };
    let automount = pod_automount
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    let spec = pod
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .expect("checked above");
    spec.insert("priority".into(), json!(priority));
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Adds the projected service-account volume and mounts it in every container that does not
/// already mount something there.
fn mount_token(spec: &mut Map<String, Value>) {
    let volume_name = format!("kube-api-access-{}", &meta::generate_name("")[..5]);
    let mut mounted_any = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(
                    json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}),
                );
                mounted_any = true;
            }
        }
    }
    if !mounted_any {
        return;
    }
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }
        }));
    }
}

/// The pod spec with the fields a pod update may change blanked out.
fn frozen_spec(pod: &Value) -> Value {
    let mut spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(map) = spec.as_object_mut() {
        map.remove("activeDeadlineSeconds");
        map.remove("tolerations");
        map.remove("terminationGracePeriodSeconds");
        for list in CONTAINER_LISTS {
            if let Some(containers) = map.get_mut(*list).and_then(Value::as_array_mut) {
                for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    }
    spec
}

fn pod_update(op: &Op<'_>, old: &Value, new: &mut Value) -> ApiResult<()> {
    let old_node = meta::str_at(old, "/spec/nodeName");
    let new_node = meta::str_at(new, "/spec/nodeName");
    if frozen_spec(old) != frozen_spec(new) || (!old_node.is_empty() && old_node != new_node) {
        return Err(invalid(
            op,
            new,
            vec![Cause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )],
        ));
    }
    Ok(())
}

fn fold_string_data(secret: &mut Value) -> ApiResult<()> {
    let Some(map) = secret.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or("").to_string();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(text)),
                );
            }
        }
    }
    if let Some(data) = map.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let ok = v
                .as_str()
                .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k}]"
                )));
            }
        }
    }
    map.entry("type").or_insert_with(|| json!("Opaque"));
    Ok(())
}

/// Validates a CRD, adds the cleanup finalizer and fills the status a real server's CRD
/// controllers would set.
fn crd_admit(crd: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let t = crd_type(crd)?;
    if let Some(old) = old {
        let old_t = crd_type(old)?;
        if old_t.namespaced != t.namespaced {
            return Err(ApiError::invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                meta::name(crd),
                vec![Cause::invalid(
                    "spec.scope",
                    &json!(if t.namespaced {
                        "Namespaced"
                    } else {
                        "Cluster"
                    }),
                    "field is immutable",
                )],
            ));
        }
    }
    if !meta::is_deleting(crd) {
        let mut finalizers = meta::finalizers(crd);
        if !finalizers.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
            finalizers.push(CRD_CLEANUP_FINALIZER.into());
            meta::metadata_mut(crd).insert("finalizers".into(), json!(finalizers));
        }
    }
    let mut stored: Vec<String> = old
        .and_then(|o| o.pointer("/status/storedVersions"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if !stored.contains(&t.storage_version) {
        stored.push(t.storage_version.clone());
    }
    let now = meta::now();
    let condition = |kind: &str, reason: &str, message: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason, "message": message});
    crd["status"] = json!({
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or(json!({})),
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        ],
        "storedVersions": stored,
    });
    if let Some(names) = crd
        .pointer_mut("/status/acceptedNames")
        .and_then(Value::as_object_mut)
    {
        names.insert("singular".into(), json!(t.singular));
        names.insert("listKind".into(), json!(t.list_kind));
    }
    Ok(())
}

fn check_role_ref(op: &Op<'_>, binding: &Value) -> ApiResult<()> {
    let kind = meta::str_at(binding, "/roleRef/kind");
    let group = meta::str_at(binding, "/roleRef/apiGroup");
    let name = meta::str_at(binding, "/roleRef/name");
    let allowed: &[&str] = if op.rt.builtin == Some(Builtin::ClusterRoleBinding) {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    let mut causes = Vec::new();
    if !allowed.contains(&kind) {
        causes.push(Cause::not_supported(
            "roleRef.kind",
            &json!(kind),
            &allowed.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        ));
    }
    if group != RBAC {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            &json!(group),
            &[RBAC.to_string()],
        ));
    }
    if name.is_empty() {
        causes.push(Cause::required("roleRef.name"));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(invalid(op, binding, causes))
    }
}

fn privileged(op: &Op<'_>) -> bool {
    op.user.in_group(MASTERS) || op.user.in_group(NODES)
}

fn rules_in(object: &Value) -> Vec<Rule> {
    object
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| rules.iter().map(Rule::parse).collect())
        .unwrap_or_default()
}

fn escalation_error(op: &Op<'_>, object: &Value, missing: &[String]) -> ApiError {
    forbidden(
        op,
        object,
        format!(
            "user \"{}\" (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
            op.user.username,
            op.user.groups,
            missing.join("\n")
        ),
    )
}

fn role_escalation(store: &Store, op: &Op<'_>, role: &Value) -> ApiResult<()> {
    if privileged(op) {
        return Ok(());
    }
    let namespace = meta::namespace(role);
    let may_escalate = rbac::allowed(
        store,
        op.user,
        &Attributes {
            verb: "escalate".into(),
            is_resource: true,
            group: RBAC.into(),
            resource: op.rt.plural.clone(),
            namespace: namespace.into(),
            name: meta::name(role).into(),
            ..Default::default()
        },
    );
    if may_escalate {
        return Ok(());
    }
    let owner = rbac::rules_for(store, op.user, namespace);
    let missing = rbac::uncovered(&owner, &rules_in(role));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(escalation_error(op, role, &missing))
    }
}

fn binding_escalation(store: &Store, op: &Op<'_>, binding: &Value) -> ApiResult<()> {
    if privileged(op) {
        return Ok(());
    }
    let namespace = meta::namespace(binding);
    let kind = meta::str_at(binding, "/roleRef/kind");
    let name = meta::str_at(binding, "/roleRef/name");
    let (resource, role_namespace) = if kind == "Role" {
        ("roles", namespace)
    } else {
        ("clusterroles", "")
    };
    let may_bind = rbac::allowed(
        store,
        op.user,
        &Attributes {
            verb: "bind".into(),
            is_resource: true,
            group: RBAC.into(),
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
            ..Default::default()
        },
    );
    if may_bind {
        return Ok(());
    }
    let role = store.get(
        &ResourceId::new(RBAC, resource),
        &(role_namespace.to_string(), name.to_string()),
    );
    let Some(role) = role else {
        return Err(ApiError::not_found(RBAC, resource, name));
    };
    let owner = rbac::rules_for(store, op.user, namespace);
    let missing = rbac::uncovered(&owner, &rules_in(&role));
    if missing.is_empty() {
        Ok(())
    } else {
        Err(escalation_error(op, binding, &missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_follow_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("localhost:5000/app"), "Always");
        assert_eq!(pull_policy("localhost:5000/app:1"), "IfNotPresent");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn string_data_becomes_data() {
        let mut secret = json!({"stringData": {"a": "hello"}});
        fold_string_data(&mut secret).unwrap();
        assert_eq!(secret, json!({"data": {"a": "aGVsbG8="}, "type": "Opaque"}));
        let mut bad = json!({"data": {"a": "not base64!"}});
        assert_eq!(fold_string_data(&mut bad).unwrap_err().code, 400);
    }
}
