//! Request-shape tests: a `kube::Client` over a mock service that plays an expected sequence
//! of API calls (kube-rs controller-rs's "ApiServerVerifier"), each with a deadline. They pin
//! down what the manager sends (method, path, query, content type, body), which the RBAC in
//! the manifests and the fake API server both rely on.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use crate::context::Context;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::vulndb::Keeper;

/// How long a test waits for the manager's next request.
const STEP: Duration = Duration::from_secs(5);

/// One expected call and the answer to give.
pub struct Expect {
    pub method: &'static str,
    /// The path and query must start with this.
    pub path: String,
    /// Checks the request body (parsed as JSON, `Null` if empty).
    pub body: fn(&Value),
    /// Content type, when it matters.
    pub content_type: Option<&'static str>,
    pub status: u16,
    pub response: Value,
}

/// A client whose calls are checked against `script`; returns the client and the task that
/// plays the script (await it to see the first mismatch).
pub fn verifier(script: Vec<Expect>) -> (Client, tokio::task::JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "kube-system");
    let task = tokio::spawn(play(handle, script));
    (client, task)
}

async fn play(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Expect>) {
    for (step, expect) in script.into_iter().enumerate() {
        let (request, send) = tokio::time::timeout(STEP, handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("step {step}: no request within {STEP:?}"))
            .unwrap_or_else(|| panic!("step {step}: the client went away"));
        let uri = request.uri().to_string();
        assert_eq!(
            request.method().as_str(),
            expect.method,
            "step {step}: {uri}"
        );
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        assert!(
            path.starts_with(&expect.path),
            "step {step}: {path} does not start with {}",
            expect.path
        );
        if let Some(content_type) = expect.content_type {
            let sent = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert_eq!(sent, content_type, "step {step}: content type");
        }
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (expect.body)(&body);
        let response = Response::builder()
            .status(expect.status)
            .body(Body::from(
                serde_json::to_vec(&expect.response).expect("json"),
            ))
            .expect("response");
        send.send_response(response);
    }
}

/// A context over `client` with test settings.
pub fn context(client: Client) -> Arc<Context> {
    let settings = Settings {
        namespace: "kube-system".into(),
        identity: "test-manager".into(),
        image: "registry.example/imagecleaner:test".into(),
        pod_create_concurrency: 1,
        ..Settings::default()
    };
    let database = Arc::new(Keeper::new(settings.database.clone()));
    Arc::new(Context::new(
        client,
        Arc::new(settings),
        Metrics::new(),
        Timestamp::now(),
        database,
        None,
    ))
}

/// A Kubernetes `Status` error body.
pub fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": format!("{reason} (test)"),
        "reason": reason,
        "code": code,
    })
}

/// Ignores the body.
pub fn any(_: &Value) {}

mod tests {
    use std::collections::HashSet;

    use k8s_openapi::api::core::v1::PodTemplateSpec;

    use super::*;
    use crate::fanout::{RateLimiter, create_pods, list_nodes};
    use crate::pods::Owner;

    #[tokio::test]
    async fn the_schedule_state_is_patched_or_created() {
        let (client, script) = verifier(vec![
            Expect {
                method: "PATCH",
                path: "/api/v1/namespaces/kube-system/configmaps/imagecleaner-manager-state?"
                    .into(),
                body: |body| {
                    assert!(body["data"]["lastScheduledStart"].is_string(), "{body}");
                },
                content_type: Some("application/merge-patch+json"),
                status: 404,
                response: status(404, "NotFound"),
            },
            Expect {
                method: "POST",
                path: "/api/v1/namespaces/kube-system/configmaps?".into(),
                body: |body| {
                    assert_eq!(body["metadata"]["name"], "imagecleaner-manager-state");
                    assert!(body["data"]["lastScheduledStart"].is_string());
                },
                content_type: Some("application/json"),
                status: 201,
                response: json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "imagecleaner-manager-state", "namespace": "kube-system"}}),
            },
        ]);
        let ctx = context(client);
        crate::state::record_scheduled_start(&ctx, Timestamp::now())
            .await
            .expect("recorded");
        script.await.expect("script played");
    }

    #[tokio::test]
    async fn nodes_are_listed_in_pages() {
        let node = |name: &str| json!({"metadata": {"name": name, "labels": {"pool": "a"}}});
        let (client, script) = verifier(vec![
            Expect {
                method: "GET",
                path: "/api/v1/nodes?&limit=250".into(),
                body: any,
                content_type: None,
                status: 200,
                response: json!({"apiVersion": "v1", "kind": "NodeList",
                    "metadata": {"continue": "page2", "resourceVersion": "5"},
                    "items": [node("a"), node("b")]}),
            },
            Expect {
                method: "GET",
                path: "/api/v1/nodes?&limit=250&continue=page2".into(),
                body: any,
                content_type: None,
                status: 200,
                response: json!({"apiVersion": "v1", "kind": "NodeList",
                    "metadata": {"resourceVersion": "5"}, "items": [node("c")]}),
            },
        ]);
        let ctx = context(client);
        let nodes = list_nodes(&ctx).await.expect("listed");
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        script.await.expect("script played");
    }

    #[tokio::test]
    async fn worker_pods_are_created_once_per_node() {
        fn pod_body(body: &Value) {
            assert_eq!(body["metadata"]["namespace"], "kube-system");
            assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "ImageJob");
            assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
            assert!(body["spec"]["nodeName"].is_string());
            let name = body["metadata"]["name"].as_str().unwrap_or_default();
            let node = body["spec"]["nodeName"].as_str().unwrap_or_default();
            assert_eq!(name, format!("eraser-{node}-abcde"));
        }
        let created = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}});
        let (client, script) = verifier(vec![
            Expect {
                method: "POST",
                path: "/api/v1/namespaces/kube-system/pods?&fieldManager=imagecleaner-manager"
                    .into(),
                body: pod_body,
                content_type: Some("application/json"),
                status: 201,
                response: created.clone(),
            },
            Expect {
                method: "POST",
                path: "/api/v1/namespaces/kube-system/pods?".into(),
                body: pod_body,
                content_type: None,
                status: 409,
                response: status(409, "AlreadyExists"),
            },
            Expect {
                method: "POST",
                path: "/api/v1/namespaces/kube-system/pods?".into(),
                body: pod_body,
                content_type: None,
                status: 403,
                response: status(403, "Forbidden"),
            },
        ]);
        let ctx = context(client);
        let owner = Owner {
            api_version: "eraser.sh/v1".into(),
            kind: "ImageJob".into(),
            name: "imagejob-abcde".into(),
            uid: "uid".into(),
        };
        let nodes: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let have: HashSet<String> = ["d".to_string()].into();
        let limiter = RateLimiter::new(1000.0, 10);
        let fan_out = create_pods(
            &ctx,
            &limiter,
            &PodTemplateSpec::default(),
            &owner,
            &nodes,
            &have,
        )
        .await;
        assert_eq!(fan_out.created, 1);
        assert_eq!(fan_out.existing, 2, "d had a pod, b's existed");
        assert_eq!(fan_out.failures.keys().collect::<Vec<_>>(), vec!["c"]);
        script.await.expect("script played");
    }

    #[tokio::test]
    async fn a_list_gets_its_role_in_status_and_an_event() {
        let (client, script) = verifier(vec![
            Expect {
                method: "PATCH",
                path: "/apis/eraser.sh/v1/imagelists/excluded-images/status?".into(),
                body: |body| {
                    assert_eq!(body["status"]["action"], "Exclude");
                    assert_eq!(body["status"]["actionSource"], "Name");
                    assert_eq!(body["status"]["observedGeneration"], 2);
                    assert!(body["status"]["conditions"].is_array());
                    assert!(body.get("spec").is_none(), "status only");
                },
                content_type: Some("application/merge-patch+json"),
                status: 200,
                response: json!({"apiVersion": "eraser.sh/v1", "kind": "ImageList",
                    "metadata": {"name": "excluded-images"}, "spec": {"images": []}}),
            },
            Expect {
                method: "POST",
                path: "/apis/events.k8s.io/v1/namespaces/kube-system/events?".into(),
                body: |body| {
                    assert_eq!(body["reason"], "RoleInferred");
                    assert_eq!(body["type"], "Normal");
                    assert_eq!(body["regarding"]["kind"], "ImageList");
                    assert_eq!(body["regarding"]["name"], "excluded-images");
                    assert_eq!(
                        body["reportingController"],
                        "eraser.sh/imagecleaner-manager"
                    );
                    assert!(body["eventTime"].is_string());
                },
                content_type: Some("application/json"),
                status: 201,
                response: json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
                    "metadata": {"name": "x", "namespace": "kube-system"},
                    "eventTime": "2025-01-01T00:00:00.000000Z"}),
            },
        ]);
        let ctx = context(client);
        let mut list = image_cleaner_api::ImageList::new(
            "excluded-images",
            image_cleaner_api::ImageListSpec {
                images: vec!["docker.io/library/alpine:*".into()],
                action: None,
            },
        );
        list.metadata.generation = Some(2);
        list.metadata.uid = Some("uid-1".into());
        crate::list_status::reconcile(Arc::new(list), ctx)
            .await
            .expect("reconciled");
        script.await.expect("script played");
    }
}
