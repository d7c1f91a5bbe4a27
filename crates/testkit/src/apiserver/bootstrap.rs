//! What a fresh cluster holds before anyone writes: the four system namespaces (each with its
//! `default` service account), the default RBAC roles and bindings a real API server
//! reconciles at start (`cluster-admin` for `system:masters`, discovery and self-review for
//! every authenticated user, public info for everyone), and the two system priority classes.
//! With these, "no RBAC rule" behaves as on a real cluster: discovery works for any
//! authenticated identity, everything else needs a grant.

use serde_json::{Value, json};

use super::auth::{MASTERS, UserInfo};
use super::error::ApiResult;
use super::store::Store;
use super::write::{self, Op};

const RBAC: &str = "rbac.authorization.k8s.io";

/// Creates `object` as the system, through the ordinary write path.
pub(crate) fn create_system(
    store: &mut Store,
    group: &str,
    version: &str,
    plural: &str,
    namespace: &str,
    object: Value,
) -> ApiResult<()> {
    let Some(rt) = store.registry.find(group, version, plural) else {
        return Err(super::error::ApiError::no_route());
    };
    let user = UserInfo::new("system:apiserver", &[MASTERS]);
    let op = Op {
        rt: &rt,
        version,
        user: &user,
        manager: "kube-apiserver",
        dry_run: false,
    };
    write::create(store, &op, namespace, object)?;
    Ok(())
}

fn defaults_meta(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": defaults_meta(name), "rules": rules})
}

fn cluster_binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC, "kind": "Group", "name": g}))
        .collect();
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": defaults_meta(name),
           "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
           "subjects": subjects})
}

/// Fills an empty store.
pub(crate) fn bootstrap(store: &mut Store) -> ApiResult<()> {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_system(
            store,
            "",
            "v1",
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                   "labels": {"kubernetes.io/metadata.name": ns}}}),
        )?;
    }
    let roles = [
        cluster_role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        cluster_role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                        "/livez", "/openapi", "/openapi/*", "/readyz",
                                        "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        cluster_role(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"],
                    "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
        ),
        cluster_role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
    ];
    for role in roles {
        create_system(store, RBAC, "v1", "clusterroles", "", role)?;
    }
    let bindings = [
        cluster_binding("cluster-admin", "cluster-admin", &[MASTERS]),
        cluster_binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        cluster_binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        cluster_binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
    ];
    for binding in bindings {
        create_system(store, RBAC, "v1", "clusterrolebindings", "", binding)?;
    }
    for (name, value) in [
        ("system-cluster-critical", 2_000_000_000),
        ("system-node-critical", 2_000_001_000),
    ] {
        create_system(
            store,
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "",
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value,
                   "description": "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
                   "preemptionPolicy": "PreemptLowerPriority"}),
        )?;
    }
    Ok(())
}
