//! The end-to-end harness: a 3-node test cluster (each node its own real containerd), the
//! generated manifests applied (RBAC enforced), the same small images on every node, and the
//! manager running in this process as its service account. Workers are the real
//! `imagecleaner` binary, run by the fake kubelets.
//!
//! Every wait polls a condition under a deadline; nothing sleeps a fixed time.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use image_cleaner_api::constants::{
    MANAGER_CONFIG_KEY, MANAGER_CONFIG_MAP, MANAGER_SERVICE_ACCOUNT,
};
use image_cleaner_api::{ImageJob, ImageList, ImageListSpec, JobPhase, all_crds};
use image_cleaner_manager::manifests;
use image_cleaner_manager::{LeaseSettings, Running, Settings, WorkerTimeouts};
use image_cleaner_testkit::{ClusterOptions, Fault, ImageSpec, Layer, TestCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The cleaner's namespace, as on AKS.
pub const NS: &str = "kube-system";
/// The image the workers run (the kubelets run the cleaner binary for it).
pub const IMAGE: &str = "ghcr.io/image-cleaner/imagecleaner:e2e";
/// How long any condition may take.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Fixture images, on every node.
pub const ALPINE: &str = "docker.io/library/alpine:3.7.3";
pub const NGINX: &str = "docker.io/library/nginx:1.25";
pub const REDIS: &str = "docker.io/library/redis:7";
pub const BUSYBOX: &str = "docker.io/library/busybox:1.36";
pub const APP: &str = "docker.io/library/app:2";
pub const KUBE_PROXY: &str = "mcr.microsoft.com/oss/kube-proxy:1.30";
pub const WEB_ONE: &str = "example.com/team/web:one";
pub const WEB_TWO: &str = "example.com/team/web:two";

/// The config, written as an operator would.
#[derive(Clone, Debug)]
pub struct TestConfig {
    pub collector: bool,
    pub begin_immediately: bool,
    pub repeat_interval: &'static str,
    pub success_ratio: f64,
    pub delay_on_success: &'static str,
    pub filter_type: &'static str,
    pub selectors: Vec<&'static str>,
    pub runtime_address: String,
    pub additional_pod_labels: BTreeMap<String, String>,
    pub pull_secrets: Vec<&'static str>,
}

impl Default for TestConfig {
    fn default() -> TestConfig {
        TestConfig {
            collector: false,
            begin_immediately: true,
            repeat_interval: "1h",
            success_ratio: 1.0,
            delay_on_success: "10m",
            filter_type: "exclude",
            selectors: vec!["eraser.sh/cleanup.filter", "kubernetes.io/os=windows"],
            runtime_address: "unix:///run/containerd/containerd.sock".into(),
            additional_pod_labels: BTreeMap::new(),
            pull_secrets: Vec::new(),
        }
    }
}

impl TestConfig {
    pub fn yaml(&self) -> String {
        let labels = serde_json::to_string(&self.additional_pod_labels).unwrap_or_default();
        let selectors = serde_json::to_string(&self.selectors).unwrap_or_default();
        let pull_secrets = serde_json::to_string(&self.pull_secrets).unwrap_or_default();
        format!(
            r#"apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  runtime:
    name: containerd
    address: {address}
  scheduling:
    repeatInterval: {interval}
    beginImmediately: {begin}
    minUnused: 0s
  imageJob:
    successRatio: {ratio}
    cleanup:
      delayOnSuccess: {delay}
      delayOnFailure: {delay}
  additionalPodLabels: {labels}
  pullSecrets: {pull_secrets}
  nodeFilter:
    type: {filter}
    selectors: {selectors}
components:
  collector:
    enabled: {collector}
  scanner:
    enabled: false
"#,
            address = self.runtime_address,
            interval = self.repeat_interval,
            begin = self.begin_immediately,
            ratio = self.success_ratio,
            delay = self.delay_on_success,
            labels = labels,
            pull_secrets = pull_secrets,
            filter = self.filter_type,
            selectors = selectors,
            collector = self.collector,
        )
    }
}

/// A running test environment.
pub struct Env {
    pub cluster: TestCluster,
    pub admin: Client,
    nodes: Vec<String>,
}

/// How the cluster is made.
#[derive(Clone, Debug)]
pub struct EnvOptions {
    pub nodes: usize,
    pub runtime_socket: Option<&'static str>,
}

impl Default for EnvOptions {
    fn default() -> EnvOptions {
        EnvOptions {
            nodes: 3,
            runtime_socket: None,
        }
    }
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imagecleaner"))
}

impl Env {
    /// A cluster with the manifests applied and `config` as the manager's config.
    pub async fn start(config: &TestConfig) -> Env {
        Env::start_with(config, EnvOptions::default()).await
    }

    pub async fn start_with(config: &TestConfig, options: EnvOptions) -> Env {
        let crds = all_crds()
            .iter()
            .map(|crd| serde_json::to_value(crd).expect("a CRD"))
            .collect();
        let mut cluster_options = ClusterOptions {
            nodes: options.nodes,
            cleaner_binary: Some(binary()),
            crds,
            max_grace: Duration::from_secs(2),
            extra_env: vec![("RUST_LOG".into(), "info".into())],
            ..Default::default()
        };
        if let Some(socket) = options.runtime_socket {
            cluster_options.runtime_socket = socket.into();
        }
        let cluster = TestCluster::start(cluster_options)
            .await
            .expect("starting the test cluster");
        let admin = cluster.client().expect("an admin client");
        let env = Env {
            nodes: cluster
                .nodes()
                .iter()
                .map(|n| n.name().to_owned())
                .collect(),
            cluster,
            admin,
        };
        env.install(config).await;
        env.load_images().await;
        env
    }

    /// Node names.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Applies the generated manifests (but for the CRDs, installed with the cluster) with
    /// `config` in the config ConfigMap.
    async fn install(&self, config: &TestConfig) {
        let objects = manifests::objects(&manifests::Options {
            namespace: NS.into(),
            interval_hours: 1,
            image: IMAGE.into(),
        })
        .expect("manifests");
        for mut object in objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            if kind == "CustomResourceDefinition" {
                continue;
            }
            if kind == "ConfigMap" && object["metadata"]["name"] == MANAGER_CONFIG_MAP {
                object["data"][MANAGER_CONFIG_KEY] = Value::String(config.yaml());
            }
            create(&self.admin, object).await;
        }
    }

    /// The fixture images, on every node, built once and loaded everywhere.
    async fn load_images(&self) {
        let image = |seed: u64| -> ImageSpec {
            ImageSpec::new()
                .layer(Layer::busybox().expect("busybox layer"))
                .layer(Layer::random(seed, 16 * 1024))
                .cmd(["/bin/sleep", "3600"])
        };
        let specs = [
            image(1).name(ALPINE),
            image(2).name(NGINX),
            image(3).name(REDIS),
            image(4).name(BUSYBOX),
            image(5).name(APP),
            image(6).name(KUBE_PROXY),
            image(7).name(WEB_ONE).name(WEB_TWO),
        ];
        let loads = self.cluster.nodes().iter().map(|node| {
            let specs = specs.clone();
            async move {
                for spec in &specs {
                    node.containerd()
                        .load(spec)
                        .await
                        .expect("loading an image");
                }
            }
        });
        futures::future::join_all(loads).await;
    }

    /// Tags of the images on `node`.
    pub async fn images_on(&self, node: &str) -> BTreeSet<String> {
        let containerd = self.cluster.containerd(node).expect("a node");
        containerd
            .list_images()
            .await
            .expect("listing images")
            .into_iter()
            .flat_map(|image| image.repo_tags)
            .collect()
    }

    /// Waits until `check` holds for the images of every node in `nodes`.
    pub async fn wait_images(
        &self,
        what: &str,
        nodes: &[String],
        check: impl Fn(&BTreeSet<String>) -> bool,
    ) {
        wait_for(what, || async {
            for node in nodes {
                if !check(&self.images_on(node).await) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Replaces the manager's config.
    pub async fn set_config(&self, yaml: &str) {
        let api: Api<ConfigMap> = Api::namespaced(self.admin.clone(), NS);
        let patch = json!({"data": {MANAGER_CONFIG_KEY: yaml}});
        api.patch(
            MANAGER_CONFIG_MAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("updating the config");
    }

    /// Labels `node`.
    pub async fn label_node(&self, node: &str, key: &str, value: &str) {
        let api: Api<Node> = Api::all(self.admin.clone());
        let patch = json!({"metadata": {"labels": {key: value}}});
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("labelling a node");
    }

    /// Injects a fault on `node`.
    pub fn fault(&self, node: &str, fault: Fault) {
        self.cluster.set_fault(node, fault).expect("a node");
    }

    /// Starts a manager as its service account, with test timings.
    pub async fn manager(&self, identity: &str) -> Running {
        self.manager_with(identity, |_| {}).await
    }

    pub async fn manager_with(
        &self,
        identity: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> Running {
        let client = self
            .cluster
            .client_for_service_account(NS, MANAGER_SERVICE_ACCOUNT)
            .await
            .expect("a client for the manager's service account");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut settings = Settings {
            namespace: NS.into(),
            identity: identity.into(),
            image: IMAGE.into(),
            timeouts: WorkerTimeouts {
                start: Duration::from_secs(60),
                run: Duration::from_secs(60),
            },
            lease: LeaseSettings {
                duration: Duration::from_secs(4),
                grace: Duration::from_secs(1),
                ..LeaseSettings::default()
            },
            api_timeout: Duration::from_secs(10),
            metrics_address: loopback,
            health_address: loopback,
            status_interval: Duration::from_millis(200),
            worker_log_level: Some("info".into()),
            ..Settings::default()
        };
        adjust(&mut settings);
        image_cleaner_manager::start(client, settings)
            .await
            .expect("starting the manager")
    }

    /// Starts `imagecleaner manager` as a process with a kubeconfig for its service account
    /// (as in a pod), and `args`.
    pub async fn manager_process(&self, identity: &str, args: &[&str]) -> tokio::process::Child {
        let server = self.cluster.api_server();
        let token = server
            .service_account_token(NS, MANAGER_SERVICE_ACCOUNT)
            .await
            .expect("a token for the manager's service account");
        let kubeconfig = self.cluster.dir().join(format!("{identity}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            server.kubeconfig(&token, MANAGER_SERVICE_ACCOUNT),
        )
        .expect("writing the manager's kubeconfig");
        tokio::process::Command::new(binary())
            .arg("manager")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--namespace", NS, "--identity", identity, "--image", IMAGE])
            .args(["--metrics-bind-address", "127.0.0.1:0"])
            .args(["--health-probe-bind-address", "127.0.0.1:0"])
            .args(["--lease-duration", "4s", "--lease-renew-before", "1s"])
            .args(args)
            .env("IMAGECLEANER_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .expect("starting imagecleaner manager")
    }

    /// Creates an ImageList.
    pub async fn create_list(&self, name: &str, images: &[&str]) -> ImageList {
        let api: Api<ImageList> = Api::all(self.admin.clone());
        let list = ImageList::new(
            name,
            ImageListSpec {
                images: images.iter().map(|s| s.to_string()).collect(),
                action: None,
            },
        );
        api.create(&PostParams::default(), &list)
            .await
            .expect("creating an ImageList")
    }

    /// Replaces the images of an ImageList.
    pub async fn update_list(&self, name: &str, images: &[&str]) {
        let api: Api<ImageList> = Api::all(self.admin.clone());
        let patch = json!({"spec": {"images": images}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("updating an ImageList");
    }

    /// Sets (`Some`) or removes (`None`) the `eraser.sh/exclude.list` label of ImageList `name`.
    pub async fn label_list(&self, name: &str, value: Option<&str>) {
        let api: Api<ImageList> = Api::all(self.admin.clone());
        let patch = json!({"metadata": {"labels": {"eraser.sh/exclude.list": value}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("labelling an ImageList");
    }

    /// The ImageList `name`.
    pub async fn list(&self, name: &str) -> Option<ImageList> {
        let api: Api<ImageList> = Api::all(self.admin.clone());
        api.get_opt(name).await.expect("reading an ImageList")
    }

    /// Waits until the removal job of generation `generation` of list `name` is recorded in
    /// the list's status.
    pub async fn wait_list_done(&self, name: &str, generation: i64) -> ImageList {
        wait_for(
            &format!("ImageList {name} generation {generation} to be done"),
            || async {
                let list = self.list(name).await?;
                let status = list.status.as_ref()?;
                (status.observed_generation == Some(generation) && status.timestamp.is_some())
                    .then_some(list)
            },
        )
        .await
    }

    /// Events about object `name` (in the cleaner's namespace, where the manager writes
    /// them), as `(reason, note)`.
    pub async fn events_about(&self, name: &str) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.admin.clone(), NS);
        api.list(&ListParams::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Every ImageJob.
    pub async fn jobs(&self) -> Vec<ImageJob> {
        let api: Api<ImageJob> = Api::all(self.admin.clone());
        api.list(&ListParams::default())
            .await
            .expect("listing ImageJobs")
            .items
    }

    /// Waits for a finished job that satisfies `check`.
    pub async fn wait_job(&self, what: &str, check: impl Fn(&ImageJob) -> bool) -> ImageJob {
        wait_for(what, || async {
            self.jobs().await.into_iter().find(|job| {
                job.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(JobPhase::is_finished)
                    && check(job)
            })
        })
        .await
    }

    /// Worker pods in the namespace.
    pub async fn worker_pods(&self) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), NS);
        api.list(&ListParams::default().labels("app=eraser"))
            .await
            .expect("listing worker pods")
            .items
    }

    /// Creates a pod in `default` bound to `node`.
    pub async fn create_pod(&self, pod: Value) -> Pod {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        let pod: Pod = serde_json::from_value(pod).expect("a pod");
        api.create(&PostParams::default(), &pod)
            .await
            .expect("creating a pod")
    }

    /// Waits until pod `name` in `default` is in `phase`.
    pub async fn wait_pod_phase(&self, name: &str, phase: &str) {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        wait_for(&format!("pod {name} to be {phase}"), || async {
            let pod = api.get_opt(name).await.ok()??;
            (pod.status?.phase? == phase).then_some(())
        })
        .await
    }

    /// Waits until the init container of pod `name` runs (its pod stays Pending).
    pub async fn wait_init_running(&self, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.admin.clone(), "default");
        wait_for(&format!("the init container of {name} to run"), || async {
            let pod = api.get_opt(name).await.ok()??;
            let status = pod.status?;
            let running = status
                .init_container_statuses?
                .first()?
                .state
                .as_ref()?
                .running
                .is_some();
            (running && status.phase.as_deref() == Some("Pending")).then_some(())
        })
        .await
    }

    /// Waits until the manager counts `count` config reloads with `result` (`applied` or
    /// `rejected`); returns the metrics then.
    pub async fn wait_reloads(&self, manager: &Running, result: &str, count: f64) -> String {
        let sample = format!("imagecleaner_config_reloads_total{{result=\"{result}\"}}");
        wait_for(&format!("{count} config reloads {result}"), || async {
            let metrics = self.metrics(manager).await;
            (metric(&metrics, &sample) == Some(count)).then_some(metrics)
        })
        .await
    }

    /// Scrapes the manager's metrics.
    pub async fn metrics(&self, manager: &Running) -> String {
        scrape(manager.metrics_address).await
    }

    /// Asserts nobody got a 403, then tears the cluster down.
    pub async fn finish(self) {
        let forbidden = self.cluster.forbidden();
        assert!(
            forbidden.is_empty(),
            "requests were forbidden: {forbidden:#?}"
        );
        self.cluster
            .shutdown()
            .await
            .expect("tearing the cluster down");
    }
}

/// A pod running `image` (sleeping) on `node`.
pub fn running_pod(name: &str, node: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": ["/bin/sleep", "3600"]}]
        }
    })
}

/// A pod on `node` that stays Pending: its init container (`init_image`) sleeps, so its
/// main container (`image`) never starts.
pub fn pending_pod(name: &str, node: &str, init_image: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "initContainers": [{"name": "init", "image": init_image, "command": ["/bin/sleep", "3600"]}],
            "containers": [{"name": "main", "image": image, "command": ["/bin/sleep", "3600"]}]
        }
    })
}

/// Creates any object through the admin client.
pub async fn create(client: &Client, object: Value) {
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), api_version.clone()),
    };
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    let api: Api<DynamicObject> = match object.namespace() {
        Some(namespace) => Api::namespaced_with(client.clone(), &namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => panic!("creating {kind} {}: {error}", object.name_any()),
    }
}

/// `GET /metrics`.
pub async fn scrape(address: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connecting to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("sending");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("reading");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of `name` (a full sample name with labels, as exposed) in `metrics`.
pub fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (sample, value) = line.rsplit_once(' ')?;
        (sample == name).then(|| value.parse().ok()).flatten()
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
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts `check` stays false for `period` (used sparingly: to show something does NOT
/// happen, e.g. no second job).
pub async fn never<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + period;
    while Instant::now() < end {
        assert!(!check().await, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
