//! kubectl against the loopback server, through a kubeconfig: discovery, get, apply (client-
//! and server-side), delete, CRDs created through the API, printer columns, impersonation.
//!
//! Uses `$IMAGECLEANER_KUBECTL`, else `kubectl` on `PATH` (Debian's `kubernetes-client`,
//! installed by `scripts/setup.sh`). There is no OpenAPI document, hence `--validate=false`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use image_cleaner_testkit::ApiServer;

use super::support::{server, wait_for};

/// How long one kubectl command may take.
const KUBECTL_DEADLINE: Duration = Duration::from_secs(60);

struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

/// Runs kubectl with `args`, blocking, with a deadline.
fn run(binary: &Path, kubeconfig: &Path, home: &Path, args: &[String]) -> Output {
    let mut child = Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env("HOME", home)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "running {} (install kubectl, e.g. Debian's kubernetes-client, or set IMAGECLEANER_KUBECTL): {e}",
                binary.display()
            )
        });
    let end = Instant::now() + KUBECTL_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("kubectl {args:?} did not finish within {KUBECTL_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

impl Kubectl {
    fn new(server: &ApiServer) -> Kubectl {
        let binary = std::env::var_os("IMAGECLEANER_KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let home = tempfile::tempdir().unwrap();
        let kubeconfig = home.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            server.kubeconfig(server.admin_token(), "admin"),
        )
        .unwrap();
        Kubectl {
            binary,
            kubeconfig,
            home,
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.home.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs kubectl on a blocking thread (the server shares this runtime).
    async fn run_async(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (binary, kubeconfig, home) = (
            self.binary.clone(),
            self.kubeconfig.clone(),
            self.home.path().to_path_buf(),
        );
        tokio::task::spawn_blocking(move || run(&binary, &kubeconfig, &home, &args))
            .await
            .unwrap()
    }

    /// Runs kubectl and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run_async(args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs kubectl and expects failure; returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let output = self.run_async(args).await;
        assert!(
            !output.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

#[tokio::test]
async fn kubectl_discovers_and_gets() {
    let server = server().await;
    let kubectl = Kubectl::new(&server);
    let version = kubectl.ok(&["version", "-o", "json"]).await;
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(version["serverVersion"]["minor"], "33");
    let resources = kubectl.ok(&["api-resources"]).await;
    for expected in [
        "imagelists",
        "pods",
        "leases",
        "clusterroles",
        "customresourcedefinitions",
    ] {
        assert!(
            resources.contains(expected),
            "{expected} missing from:\n{resources}"
        );
    }
    let namespaces = kubectl.ok(&["get", "namespaces"]).await;
    assert!(
        namespaces.contains("kube-system") && namespaces.contains("Active"),
        "{namespaces}"
    );
    let output = kubectl.run_async(&["get", "nodes"]).await;
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("No resources found"));
    let missing = kubectl.fails(&["get", "configmap", "nope"]).await;
    assert!(
        missing.contains("NotFound") || missing.contains("not found"),
        "{missing}"
    );
    server.shutdown().await;
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: worker
  namespace: default
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
  labels:
    app: eraser
data:
  interval: "24h"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: worker
  namespace: default
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: worker
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: worker
subjects:
- kind: ServiceAccount
  name: worker
  namespace: default
"#;

#[tokio::test]
async fn kubectl_applies_and_deletes() {
    let server = server().await;
    let kubectl = Kubectl::new(&server);
    let file = kubectl.write("manifest.yaml", MANIFEST);
    let file = file.to_str().unwrap();
    let applied = kubectl.ok(&["apply", "--validate=false", "-f", file]).await;
    assert!(applied.contains("configmap/settings created"), "{applied}");
    let again = kubectl.ok(&["apply", "--validate=false", "-f", file]).await;
    assert!(again.contains("configmap/settings unchanged"), "{again}");
    let changed = kubectl.write("changed.yaml", &MANIFEST.replace("\"24h\"", "\"48h\""));
    let out = kubectl
        .ok(&["apply", "--validate=false", "-f", changed.to_str().unwrap()])
        .await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    let interval = kubectl
        .ok(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.interval}",
        ])
        .await;
    assert_eq!(interval, "48h");
    let labelled = kubectl
        .ok(&["get", "configmaps", "-l", "app=eraser", "-o", "name"])
        .await;
    assert_eq!(labelled.trim(), "configmap/settings");

    // The role works for the service account it binds, and only for what it grants.
    let can = kubectl
        .ok(&[
            "auth",
            "can-i",
            "list",
            "configmaps",
            "--as",
            "system:serviceaccount:default:worker",
        ])
        .await;
    assert_eq!(can.trim(), "yes");
    let cannot = kubectl
        .run_async(&[
            "auth",
            "can-i",
            "delete",
            "configmaps",
            "--as",
            "system:serviceaccount:default:worker",
        ])
        .await;
    assert_eq!(String::from_utf8_lossy(&cannot.stdout).trim(), "no");
    let denied = kubectl
        .fails(&[
            "get",
            "pods",
            "--as",
            "system:serviceaccount:default:worker",
        ])
        .await;
    assert!(denied.contains("forbidden"), "{denied}");
    assert!(
        server
            .forbidden()
            .iter()
            .any(|f| f.resource == "pods" && f.verb == "list")
    );
    // The same audit, for a separate process holding only the kubeconfig.
    let audit = kubectl.ok(&["get", "--raw", "/testkit/forbidden"]).await;
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(audit[0]["user"], "system:serviceaccount:default:worker");
    assert_eq!(audit[0]["resource"], "pods");

    let server_side = kubectl.write(
        "ss.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ss\ndata:\n  a: b\n",
    );
    let out = kubectl
        .ok(&[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            server_side.to_str().unwrap(),
        ])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let managers = kubectl
        .ok(&[
            "get",
            "configmap",
            "ss",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await;
    assert_eq!(managers, "kubectl");

    let deleted = kubectl.ok(&["delete", "-f", file]).await;
    assert!(
        deleted.contains("configmap \"settings\" deleted"),
        "{deleted}"
    );
    let gone = kubectl.fails(&["get", "configmap", "settings"]).await;
    assert!(gone.contains("not found"), "{gone}");
    server.shutdown().await;
}

const JOB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: imagejobs.eraser.sh
spec:
  group: eraser.sh
  names:
    kind: ImageJob
    listKind: ImageJobList
    plural: imagejobs
    singular: imagejob
  scope: Cluster
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Phase
      type: string
      jsonPath: .status.phase
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              phase:
                type: string
"#;

#[tokio::test]
async fn kubectl_manages_crds_and_their_objects() {
    let server = server().await;
    let kubectl = Kubectl::new(&server);
    let crd = kubectl.write("crd.yaml", JOB_CRD);
    let out = kubectl
        .ok(&["apply", "--validate=false", "-f", crd.to_str().unwrap()])
        .await;
    assert!(out.contains("imagejobs.eraser.sh created"), "{out}");
    let job = kubectl.write(
        "job.yaml",
        "apiVersion: eraser.sh/v1\nkind: ImageJob\nmetadata:\n  name: job-1\nspec:\n  nodes: 2\n",
    );
    let out = kubectl
        .ok(&["apply", "--validate=false", "-f", job.to_str().unwrap()])
        .await;
    assert!(out.contains("imagejob.eraser.sh/job-1 created"), "{out}");
    let changed = kubectl.write(
        "job2.yaml",
        "apiVersion: eraser.sh/v1\nkind: ImageJob\nmetadata:\n  name: job-1\nspec:\n  nodes: 3\n",
    );
    let out = kubectl
        .ok(&["apply", "--validate=false", "-f", changed.to_str().unwrap()])
        .await;
    assert!(out.contains("configured"), "{out}");
    let nodes = kubectl
        .ok(&["get", "imagejob", "job-1", "-o", "jsonpath={.spec.nodes}"])
        .await;
    assert_eq!(nodes, "3");

    // Printer columns come from the CRD.
    let client = server.client().unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("eraser.sh", "v1", "ImageJob");
    let jobs: kube::Api<kube::api::DynamicObject> =
        kube::Api::all_with(client.clone(), &kube::api::ApiResource::from_gvk(&gvk));
    jobs.patch_status(
        "job-1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"status": {"phase": "Completed"}})),
    )
    .await
    .unwrap();
    let table = kubectl.ok(&["get", "imagejobs"]).await;
    let header = table.lines().next().unwrap_or("");
    assert!(
        header.contains("NAME") && header.contains("PHASE"),
        "{table}"
    );
    assert!(
        table.contains("job-1") && table.contains("Completed"),
        "{table}"
    );
    let lists = kubectl.write("list.yaml", "apiVersion: eraser.sh/v1\nkind: ImageList\nmetadata:\n  name: imagelist\nspec:\n  images: [\"docker.io/library/app:1\"]\n");
    kubectl
        .ok(&["apply", "--validate=false", "-f", lists.to_str().unwrap()])
        .await;
    let table = kubectl.ok(&["get", "imagelist", "-A"]).await;
    assert!(
        table.contains("IMAGES") && table.contains("docker.io/library/app:1"),
        "{table}"
    );

    kubectl.ok(&["delete", "imagejob", "job-1"]).await;
    kubectl.ok(&["delete", "-f", crd.to_str().unwrap()]).await;
    wait_for("the CRD to stop being served", || async {
        let output = kubectl.run_async(&["get", "imagejobs"]).await;
        (!output.status.success()).then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn kubectl_create_sends_protobuf_that_is_understood() {
    let server = server().await;
    let kubectl = Kubectl::new(&server);
    kubectl.ok(&["create", "namespace", "demo"]).await;
    kubectl
        .ok(&[
            "create",
            "configmap",
            "excluded",
            "-n",
            "demo",
            "--from-literal=a.json={\"excluded\":[\"x\"]}",
        ])
        .await;
    kubectl
        .ok(&[
            "label",
            "configmap",
            "excluded",
            "-n",
            "demo",
            "eraser.sh/exclude.list=true",
        ])
        .await;
    let data = kubectl
        .ok(&[
            "get",
            "configmap",
            "excluded",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.a\\.json}",
        ])
        .await;
    assert_eq!(data, "{\"excluded\":[\"x\"]}");
    kubectl
        .ok(&[
            "create",
            "secret",
            "generic",
            "pull",
            "-n",
            "demo",
            "--from-literal=k=v",
        ])
        .await;
    let secret = kubectl
        .ok(&[
            "get",
            "secret",
            "pull",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.k}",
        ])
        .await;
    assert_eq!(secret, "dg==");
    kubectl
        .ok(&["create", "serviceaccount", "bot", "-n", "demo"])
        .await;
    kubectl
        .ok(&[
            "create",
            "role",
            "reader",
            "-n",
            "demo",
            "--verb=get,list",
            "--resource=configmaps",
        ])
        .await;
    kubectl
        .ok(&[
            "create",
            "rolebinding",
            "reader",
            "-n",
            "demo",
            "--role=reader",
            "--serviceaccount=demo:bot",
        ])
        .await;
    let can = kubectl
        .ok(&[
            "auth",
            "can-i",
            "list",
            "configmaps",
            "-n",
            "demo",
            "--as",
            "system:serviceaccount:demo:bot",
        ])
        .await;
    assert_eq!(can.trim(), "yes");
    // `kubectl create token` exists from 1.24.
    let version = kubectl.ok(&["version", "--client", "-o", "json"]).await;
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let minor: u32 = version["clientVersion"]["minor"]
        .as_str()
        .unwrap()
        .trim_end_matches('+')
        .parse()
        .unwrap();
    if minor >= 24 {
        let token = kubectl.ok(&["create", "token", "bot", "-n", "demo"]).await;
        let client = server.client_with_token(token.trim()).unwrap();
        let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
            kube::Api::namespaced(client, "demo");
        cms.get("excluded").await.unwrap();
    }
    server.shutdown().await;
}
