//! Shared helpers: a server per test, a small CRD shaped like Eraser's, and a polling wait.

use std::future::Future;
use std::time::{Duration, Instant};

use image_cleaner_testkit::apiserver::{ApiServer, ServerOptions};
use serde_json::{Value, json};

/// How long any condition may take to become true.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A server with the test CRD installed.
pub async fn server() -> ApiServer {
    server_with(ServerOptions::default()).await
}

/// A server with `options` and the test CRD.
pub async fn server_with(mut options: ServerOptions) -> ApiServer {
    options.crds.push(crd());
    ApiServer::start(options)
        .await
        .expect("starting the API server")
}

/// A cluster-scoped CRD with a status subresource, a schema and printer columns, like
/// Eraser's ImageList: `imagelists.eraser.sh` (v1 storage, v1alpha1 served and deprecated).
pub fn crd() -> Value {
    let schema = json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "images": {"type": "array", "items": {"type": "string"}},
                "action": {"type": "string", "enum": ["Remove", "Exclude"]}
            }},
            "status": {"type": "object", "properties": {
                "success": {"type": "integer"},
                "failed": {"type": "integer"},
                "timestamp": {"type": "string"}
            }}
        }
    });
    let columns = json!([
        {"name": "Images", "type": "string", "jsonPath": ".spec.images[*]"},
        {"name": "Success", "type": "integer", "jsonPath": ".status.success"}
    ]);
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "imagelists.eraser.sh"},
        "spec": {
            "group": "eraser.sh",
            "names": {"plural": "imagelists", "singular": "imagelist", "kind": "ImageList", "listKind": "ImageListList"},
            "scope": "Cluster",
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": schema},
                 "subresources": {"status": {}},
                 "additionalPrinterColumns": columns},
                {"name": "v1alpha1", "served": true, "storage": false, "deprecated": true,
                 "schema": {"openAPIV3Schema": schema},
                 "subresources": {"status": {}}}
            ]
        }
    })
}

/// Polls `check` until it returns `Some`, failing after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < end,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The HTTP status code of a failed kube call.
pub fn code(error: kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
