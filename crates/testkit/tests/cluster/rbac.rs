//! Authentication and RBAC through kube clients acting as service accounts: namespaced and
//! cluster rules, ClusterRoles bound in one namespace, subresources, resourceNames,
//! non-resource URLs, impersonation, escalation, token lifetimes, and the 403 audit.

use image_cleaner_testkit::ApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::support::{code, server};

fn object<T: DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

async fn create_in<K>(client: &kube::Client, namespace: &str, value: Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &object(value))
        .await
        .unwrap();
}

async fn create_cluster<K>(client: &kube::Client, value: Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    api.create(&PostParams::default(), &object(value))
        .await
        .unwrap();
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": name}})),
    )
    .await
    .unwrap();
}

async fn service_account(client: &kube::Client, namespace: &str, name: &str) {
    create_in::<ServiceAccount>(client, namespace, json!({"metadata": {"name": name}})).await;
}

fn role_ref(kind: &str, name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name})
}

fn sa_subject(namespace: &str, name: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": name, "namespace": namespace}])
}

/// A server with namespace `team` and service account `team/reader`.
async fn setup() -> (ApiServer, kube::Client) {
    let server = server().await;
    let admin = server.client().unwrap();
    namespace(&admin, "team").await;
    service_account(&admin, "team", "reader").await;
    (server, admin)
}

#[tokio::test]
async fn namespaced_rules_allow_only_their_namespace_and_verbs() {
    let (server, admin) = setup().await;
    create_in::<Role>(&admin, "team", json!({"metadata": {"name": "cm-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]})).await;
    create_in::<RoleBinding>(
        &admin,
        "team",
        json!({"metadata": {"name": "cm-reader"},
        "roleRef": role_ref("Role", "cm-reader"), "subjects": sa_subject("team", "reader")}),
    )
    .await;
    let reader = server
        .client_for_service_account("team", "reader")
        .await
        .unwrap();

    let team: Api<ConfigMap> = Api::namespaced(reader.clone(), "team");
    assert!(
        !team
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    team.get("kube-root-ca.crt").await.unwrap();
    let _allowed = team
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap();
    let create = team
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "x"}})),
        )
        .await;
    assert_eq!(code(create.unwrap_err()), 403);
    let other: Api<ConfigMap> = Api::namespaced(reader.clone(), "default");
    assert_eq!(
        code(other.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    let everywhere: Api<ConfigMap> = Api::all(reader.clone());
    assert_eq!(
        code(everywhere.list(&ListParams::default()).await.unwrap_err()),
        403
    );

    let forbidden = server.forbidden();
    assert_eq!(forbidden.len(), 3, "{forbidden:#?}");
    assert_eq!(forbidden[0].user, "system:serviceaccount:team:reader");
    assert_eq!(
        (forbidden[0].verb.as_str(), forbidden[0].namespace.as_str()),
        ("create", "team")
    );
    assert_eq!(
        forbidden[1].message,
        "configmaps is forbidden: User \"system:serviceaccount:team:reader\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    assert!(
        forbidden[2].message.ends_with("at the cluster scope"),
        "{}",
        forbidden[2].message
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cluster_rules_and_cluster_roles_bound_in_a_namespace() {
    let (server, admin) = setup().await;
    create_cluster::<ClusterRole>(
        &admin,
        json!({"metadata": {"name": "node-reader"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
                  {"apiGroups": ["eraser.sh"], "resources": ["imagelists"], "verbs": ["*"]}]}),
    )
    .await;
    create_cluster::<ClusterRoleBinding>(&admin, json!({"metadata": {"name": "node-reader"},
        "roleRef": role_ref("ClusterRole", "node-reader"), "subjects": sa_subject("team", "reader")})).await;
    create_cluster::<ClusterRole>(
        &admin,
        json!({"metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
    )
    .await;
    create_in::<RoleBinding>(&admin, "team", json!({"metadata": {"name": "pod-reader"},
        "roleRef": role_ref("ClusterRole", "pod-reader"), "subjects": sa_subject("team", "reader")})).await;
    let reader = server
        .client_for_service_account("team", "reader")
        .await
        .unwrap();

    let nodes: Api<Node> = Api::all(reader.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        code(
            nodes
                .delete("n", &DeleteParams::default())
                .await
                .unwrap_err()
        ),
        403
    );
    // `*` verbs on a custom resource.
    let gvk = kube::api::GroupVersionKind::gvk("eraser.sh", "v1", "ImageList");
    let lists: Api<kube::api::DynamicObject> =
        Api::all_with(reader.clone(), &kube::api::ApiResource::from_gvk(&gvk));
    let mut list =
        kube::api::DynamicObject::new("imagelist", &kube::api::ApiResource::from_gvk(&gvk));
    list.data = json!({"spec": {"images": ["*"]}});
    lists.create(&PostParams::default(), &list).await.unwrap();
    lists
        .delete("imagelist", &DeleteParams::default())
        .await
        .unwrap();

    // A ClusterRole bound by a RoleBinding grants only in that namespace.
    let team_pods: Api<Pod> = Api::namespaced(reader.clone(), "team");
    team_pods.list(&ListParams::default()).await.unwrap();
    let default_pods: Api<Pod> = Api::namespaced(reader.clone(), "default");
    assert_eq!(
        code(default_pods.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    let all_pods: Api<Pod> = Api::all(reader.clone());
    assert_eq!(
        code(all_pods.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    server.shutdown().await;
}

#[tokio::test]
async fn subresources_and_resource_names() {
    let (server, admin) = setup().await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "team");
    pods.create(
        &PostParams::default(),
        &object(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "app:1"}]}})),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "team");
    for name in ["allowed", "other"] {
        cms.create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": name}})),
        )
        .await
        .unwrap();
    }
    create_in::<Role>(
        &admin,
        "team",
        json!({"metadata": {"name": "narrow"},
        "rules": [
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch", "get"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"],
             "verbs": ["get", "update", "patch", "list", "watch"]}
        ]}),
    )
    .await;
    create_in::<RoleBinding>(
        &admin,
        "team",
        json!({"metadata": {"name": "narrow"},
        "roleRef": role_ref("Role", "narrow"), "subjects": sa_subject("team", "reader")}),
    )
    .await;
    let reader = server
        .client_for_service_account("team", "reader")
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(reader.clone(), "team");
    let status = json!({"status": {"phase": "Running"}});
    pods.patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let main = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(code(main.unwrap_err()), 403);
    assert_eq!(
        code(pods.get("p").await.unwrap_err()),
        403,
        "pods/status does not grant pods"
    );

    let cms: Api<ConfigMap> = Api::namespaced(reader.clone(), "team");
    cms.get("allowed").await.unwrap();
    cms.patch(
        "allowed",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    assert_eq!(code(cms.get("other").await.unwrap_err()), 403);
    assert_eq!(
        code(cms.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    // A list or watch of exactly that name is a request about that name.
    let one = cms
        .list(&ListParams::default().fields("metadata.name=allowed"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let _allowed = cms
        .watch(
            &WatchParams::default()
                .fields("metadata.name=allowed")
                .timeout(1),
            "0",
        )
        .await
        .unwrap();

    let denied: Vec<(String, String)> = server
        .forbidden()
        .into_iter()
        .map(|f| {
            (
                f.verb,
                if f.subresource.is_empty() {
                    f.resource
                } else {
                    format!("{}/{}", f.resource, f.subresource)
                },
            )
        })
        .collect();
    assert_eq!(
        denied,
        [
            ("patch", "pods"),
            ("get", "pods"),
            ("get", "configmaps"),
            ("list", "configmaps")
        ]
        .map(|(v, r)| (v.to_string(), r.to_string()))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_impersonation_escalation_and_urls() {
    let (server, admin) = setup().await;
    // Requesting another service account's token needs serviceaccounts/token.
    service_account(&admin, "team", "other").await;
    let reader = server
        .client_for_service_account("team", "reader")
        .await
        .unwrap();
    let request =
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
    let sas: Api<ServiceAccount> = Api::namespaced(reader.clone(), "team");
    let denied = sas
        .create_subresource::<_, Value>("token", "other", &PostParams::default(), &request)
        .await
        .unwrap_err();
    assert_eq!(code(denied), 403);
    create_in::<Role>(&admin, "team", json!({"metadata": {"name": "tokens"},
        "rules": [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["other"], "verbs": ["create"]}]})).await;
    create_in::<RoleBinding>(
        &admin,
        "team",
        json!({"metadata": {"name": "tokens"},
        "roleRef": role_ref("Role", "tokens"), "subjects": sa_subject("team", "reader")}),
    )
    .await;
    let answer: Value = sas
        .create_subresource("token", "other", &PostParams::default(), &request)
        .await
        .unwrap();
    assert!(!answer["status"]["token"].as_str().unwrap().is_empty());

    // The admin impersonates; others may not.
    let mut config = server.config_with_token(server.admin_token()).unwrap();
    config.auth_info.impersonate = Some("system:serviceaccount:team:reader".into());
    let as_reader = kube::Client::try_from(config).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(as_reader, "default");
    assert_eq!(
        code(cms.list(&ListParams::default()).await.unwrap_err()),
        403
    );
    let last = server.forbidden().pop().unwrap();
    assert_eq!(last.user, "system:serviceaccount:team:reader");
    let token = server.service_account_token("team", "other").await.unwrap();
    let mut config = server.config_with_token(&token).unwrap();
    config.auth_info.impersonate = Some("kubernetes-admin".into());
    let sneaky = kube::Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(sneaky);
    let kube::Error::Api(status) = nodes.list(&ListParams::default()).await.unwrap_err() else {
        panic!("not an API error")
    };
    assert_eq!(status.code, 403);
    assert!(
        status
            .message
            .contains("cannot impersonate resource \"users\""),
        "{}",
        status.message
    );

    // Granting what one does not hold is an escalation.
    create_in::<Role>(&admin, "team", json!({"metadata": {"name": "role-writer"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create"]}]})).await;
    create_in::<RoleBinding>(
        &admin,
        "team",
        json!({"metadata": {"name": "role-writer"},
        "roleRef": role_ref("Role", "role-writer"), "subjects": sa_subject("team", "reader")}),
    )
    .await;
    let roles: Api<Role> = Api::namespaced(reader.clone(), "team");
    let greedy = roles
        .create(
            &PostParams::default(),
            &object(json!({"metadata": {"name": "greedy"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(greedy), 403);
    roles
        .create(&PostParams::default(), &object(json!({"metadata": {"name": "modest"},
            "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["create"]}]})))
        .await
        .unwrap();

    // Discovery is for every authenticated identity; other URLs need nonResourceURLs.
    let get = |path: &str| axum::http::Request::get(path).body(Vec::new()).unwrap();
    reader.request_text(get("/version")).await.unwrap();
    reader.request_text(get("/apis")).await.unwrap();
    let metrics = reader.request_text(get("/metrics")).await.unwrap_err();
    assert_eq!(code(metrics), 403);

    // A service account's tokens die with it.
    Api::<ServiceAccount>::namespaced(admin.clone(), "team")
        .delete("reader", &DeleteParams::default())
        .await
        .unwrap();
    let gone = Api::<ConfigMap>::namespaced(reader, "team")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(code(gone), 401);
    server.shutdown().await;
}
