//! A fake kubelet for one node backed by a real containerd: it registers the Node (labels
//! `kubernetes.io/hostname`, `kubernetes.io/os=linux`, condition Ready), watches the pods
//! bound to it (`spec.nodeName`), and runs them: containers of the cleaner's own
//! image as local processes running the real binary, all others as real CRI containers on
//! the node's containerd, so the images they use are really in use there.
//!
//! # How a local container runs
//!
//! - **Program**: the [`LocalImage`] whose pattern matches the container image gives the
//!   program. The arguments are `command[1..]` followed by `args` (`command[0]` is the path of
//!   the binary inside the image, replaced by the program); with no `command`, just `args`.
//!   `$(VAR)` references are expanded as kubelet does.
//! - **Files**: the pod's volumes are made under its pod directory and every argument or
//!   environment value naming a container path is rewritten to the host path standing in for
//!   it (see [`PathTable`]): ConfigMaps at their mount paths become files in
//!   `POD/volumes/NAME/`, a hostPath is the same path under the node's host root (the node's
//!   containerd socket is at `HOST/run/containerd/containerd.sock`, or where
//!   `ClusterOptions::runtime_socket` says), the termination message path becomes
//!   `POD/termination/CONTAINER`.
//! - **Environment**: only the pod's (`env`, `envFrom`, `fieldRef` such as `spec.nodeName`,
//!   ConfigMap and Secret keys) plus `PATH`, `HOSTNAME`, `HOME`,
//!   `KUBERNETES_SERVICE_HOST`/`PORT` and `KUBECONFIG`, a kubeconfig for the loopback server
//!   (HTTPS, trusting its CA) whose token is the pod's own service-account token (bound to the pod, from the
//!   TokenRequest API); `RUST_LOG` and `RUST_BACKTRACE` pass through. kube's
//!   `Config::infer()` reads `KUBECONFIG` first, so an unmodified worker talks to the loopback
//!   server as its service account.
//! - **Termination message**: the file at the (rewritten) termination message path, read when
//!   the process exits (at most 4096 bytes); with `FallbackToLogsOnError` and a failure, the
//!   log tail instead.
//!
//! # Faults
//!
//! [`Fault::PendingForever`] leaves new pods Pending (containers `ContainerCreating`);
//! [`Fault::FailPods`] fails them at once. Either applies to pods that arrive after it is set.

mod containers;
mod env;
mod paths;
mod pod;
mod process;
mod sandbox;
mod status;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use paths::PathTable;

use pod::{Signal, Worker};
use process::ProcessGroups;

/// The runtime socket path on a node, relative to its host root, unless configured.
pub const DEFAULT_RUNTIME_SOCKET: &str = "/run/containerd/containerd.sock";
/// How long the kubelet waits for its pods to stop when it shuts down.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// A pod failure mode to inject on a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Run pods normally.
    #[default]
    None,
    /// Leave new pods Pending forever.
    PendingForever,
    /// Fail new pods at once (exit code 1).
    FailPods,
}

/// Images that run as local processes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalImage {
    /// An image name: matches itself and any tag or digest of it (`repo` matches `repo:tag`
    /// and `repo@sha256:…`); a trailing `*` matches any image starting with what precedes it.
    pub pattern: String,
    /// The program that stands in for the image's entrypoint.
    pub program: PathBuf,
}

impl LocalImage {
    /// `pattern` runs `program`.
    pub fn new(pattern: impl Into<String>, program: impl Into<PathBuf>) -> LocalImage {
        LocalImage {
            pattern: pattern.into(),
            program: program.into(),
        }
    }

    /// Whether `image` matches the pattern.
    pub fn matches(&self, image: &str) -> bool {
        if let Some(prefix) = self.pattern.strip_suffix('*') {
            return image.starts_with(prefix);
        }
        image == self.pattern
            || image
                .strip_prefix(self.pattern.as_str())
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
    }
}

/// How to start a [`Kubelet`].
#[derive(Clone, Debug)]
pub struct KubeletOptions {
    /// The node name.
    pub node_name: String,
    /// The node's CRI endpoint (`unix:///…`).
    pub runtime_endpoint: String,
    /// The directory standing in for the node's `/` (hostPath volumes resolve under it).
    pub host_root: PathBuf,
    /// Where pod directories go.
    pub pods_dir: PathBuf,
    /// Images whose containers run as local processes.
    pub local_images: Vec<LocalImage>,
    /// The API server URL processes are pointed at.
    pub server_url: String,
    /// The CA (PEM) that signed the API server's certificate.
    pub server_ca: String,
    /// Extra environment for every local process (the pod's own variables win).
    pub extra_env: Vec<(String, String)>,
    /// The longest a stopping container is given before SIGKILL (the pod's grace period is
    /// honoured up to this, so deleting a namespace does not take 30 s per pod).
    pub max_grace: Duration,
    /// The node's labels beyond the standard ones.
    pub labels: Vec<(String, String)>,
}

/// Shared by the kubelet loop and its pod workers.
pub(crate) struct NodeCtx {
    name: String,
    client: kube::Client,
    endpoint: String,
    host_root: PathBuf,
    pods_root: PathBuf,
    local_images: Vec<LocalImage>,
    server_url: String,
    server_ca: String,
    server_port: u16,
    fault: Mutex<Fault>,
    groups: ProcessGroups,
    extra_env: Vec<(String, String)>,
    max_grace: Duration,
}

impl NodeCtx {
    fn fault(&self) -> Fault {
        *self.fault.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct WorkerHandle {
    signal: watch::Sender<Signal>,
    task: JoinHandle<()>,
}

type Workers = Arc<Mutex<HashMap<String, WorkerHandle>>>;

/// A running fake kubelet.
pub struct Kubelet {
    ctx: Arc<NodeCtx>,
    workers: Workers,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Kubelet {
    /// Registers the node with the API server (through `client`, which should act as
    /// `system:node:NAME`) and starts running its pods.
    pub async fn start(client: kube::Client, options: KubeletOptions) -> anyhow::Result<Kubelet> {
        let port = options
            .server_url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .unwrap_or(80);
        std::fs::create_dir_all(&options.pods_dir)
            .with_context(|| format!("creating {}", options.pods_dir.display()))?;
        let ctx = Arc::new(NodeCtx {
            name: options.node_name.clone(),
            client,
            endpoint: options.runtime_endpoint.clone(),
            host_root: options.host_root.clone(),
            pods_root: options.pods_dir.clone(),
            local_images: options.local_images.clone(),
            server_url: options.server_url.clone(),
            server_ca: options.server_ca.clone(),
            server_port: port,
            fault: Mutex::new(Fault::None),
            groups: ProcessGroups::default(),
            extra_env: options.extra_env.clone(),
            max_grace: options.max_grace,
        });
        register(&ctx, &options).await?;
        let workers: Workers = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_pods(ctx.clone(), workers.clone(), stop.clone()));
        Ok(Kubelet {
            ctx,
            workers,
            stop,
            task: Some(task),
        })
    }

    /// The node name.
    pub fn node_name(&self) -> &str {
        &self.ctx.name
    }

    /// Sets the fault for pods that arrive from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self.ctx.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        self.ctx.fault()
    }

    /// Process groups of the local containers running now.
    pub fn process_groups(&self) -> Vec<i32> {
        self.ctx.groups.list()
    }

    /// Stops watching, kills every pod's containers (removing their sandboxes and files, not
    /// the pod objects), and waits for that.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let handles: Vec<WorkerHandle> = self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, h)| h)
            .collect();
        for handle in &handles {
            let _ = handle.signal.send(Signal::Removed);
        }
        let all = futures::future::join_all(handles.into_iter().map(|h| h.task));
        if tokio::time::timeout(SHUTDOWN_DEADLINE, all).await.is_err() {
            tracing::warn!(node = %self.ctx.name, "pods did not stop within {SHUTDOWN_DEADLINE:?}");
        }
        self.ctx.groups.kill_all();
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.cancel();
        for (_, handle) in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = handle.signal.send(Signal::Removed);
            handle.task.abort();
        }
        self.ctx.groups.kill_all();
    }
}

async fn runtime_version(endpoint: &str) -> String {
    let version = async {
        let clients = crate::cri::Clients::connect(endpoint).await?;
        let mut runtime = clients.runtime.clone();
        let v = clients
            .call(
                "Version",
                runtime.version(image_cleaner_cri::proto::VersionRequest::default()),
            )
            .await?;
        anyhow::Ok(format!("{}://{}", v.runtime_name, v.runtime_version))
    };
    version
        .await
        .unwrap_or_else(|_| "containerd://unknown".into())
}

/// Creates the Node object, Ready.
async fn register(ctx: &NodeCtx, options: &KubeletOptions) -> anyhow::Result<()> {
    let name = &ctx.name;
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    for (k, v) in &options.labels {
        labels.insert(k.clone(), json!(v));
    }
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let resources =
        json!({"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "20Gi"});
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": "", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": runtime_version(&ctx.endpoint).await,
                "kubeletVersion": format!("v{}.{}.0", crate::apiserver::MAJOR, crate::apiserver::MINOR),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    }))
    .context("building the Node object")?;
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("registering node {name}"))?;
    Ok(())
}

/// The log of container `container` of pod `namespace/name` (UID `uid`) if it ran under
/// `pods_dir`: a local process's output as written, a CRI container's (its latest attempt)
/// without the CRI log-line prefixes.
pub fn read_log(
    pods_dir: &std::path::Path,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
) -> Option<String> {
    let dir = volumes::PodDir::of(pods_dir, namespace, name, uid);
    if let Ok(text) = std::fs::read_to_string(dir.log(container)) {
        return Some(text);
    }
    let logs = dir.root.join("logs");
    let prefix = format!("{container}_");
    let latest = std::fs::read_dir(&logs)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let attempt: u32 = file
                .strip_prefix(&prefix)?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((attempt, e.path()))
        })
        .max_by_key(|(attempt, _)| *attempt)?;
    let text = std::fs::read_to_string(latest.1).ok()?;
    let mut out = String::new();
    for line in text.lines() {
        // "TIME STREAM P|F MESSAGE": P is a partial line continued by the next.
        let mut fields = line.splitn(4, ' ');
        let (_, _, tag, message) = (fields.next(), fields.next(), fields.next(), fields.next());
        out.push_str(message.unwrap_or(""));
        if tag != Some("P") {
            out.push('\n');
        }
    }
    Some(out)
}

fn grace_of(pod: &Pod) -> u64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0) as u64
}

/// Starts a worker for a new pod, or tells the existing one about a deletion.
fn on_pod(ctx: &Arc<NodeCtx>, workers: &Workers, pod: Pod) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    let deleting = pod.metadata.deletion_timestamp.is_some();
    let mut map = workers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = map.get(&uid) {
        if deleting && *handle.signal.borrow() == Signal::Run {
            let _ = handle.signal.send(Signal::Terminate(grace_of(&pod)));
        }
        return;
    }
    let initial = if deleting {
        Signal::Terminate(grace_of(&pod))
    } else {
        Signal::Run
    };
    let (signal, receiver) = watch::channel(initial);
    let worker = Worker::new(ctx.clone(), pod, receiver);
    let finished = workers.clone();
    let key = uid.clone();
    let task = tokio::spawn(async move {
        worker.run().await;
        finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    });
    map.insert(uid, WorkerHandle { signal, task });
}

fn on_gone(workers: &Workers, uid: &str) {
    let map = workers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = map.get(uid) {
        let _ = handle.signal.send(Signal::Removed);
    }
}

async fn watch_pods(ctx: Arc<NodeCtx>, workers: Workers, stop: CancellationToken) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Apply(pod))) => on_pod(&ctx, &workers, pod),
            Some(Ok(watcher::Event::InitApply(pod))) => {
                if let Some(uid) = &pod.metadata.uid {
                    listed.insert(uid.clone());
                }
                on_pod(&ctx, &workers, pod);
            }
            Some(Ok(watcher::Event::Delete(pod))) => {
                if let Some(uid) = &pod.metadata.uid {
                    on_gone(&workers, uid);
                }
            }
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitDone)) => {
                let known: Vec<String> = workers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                for uid in known.iter().filter(|u| !listed.contains(*u)) {
                    on_gone(&workers, uid);
                }
            }
            Some(Err(e)) => tracing::debug!(node = %ctx.name, "pod watch: {e}"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_images_match_tags_and_digests() {
        let image = LocalImage::new("ghcr.io/image-cleaner/imagecleaner", "/bin/true");
        assert!(image.matches("ghcr.io/image-cleaner/imagecleaner"));
        assert!(image.matches("ghcr.io/image-cleaner/imagecleaner:v0.1.0"));
        assert!(image.matches("ghcr.io/image-cleaner/imagecleaner@sha256:abc"));
        assert!(!image.matches("ghcr.io/image-cleaner/imagecleaner-extra:v1"));
        let prefix = LocalImage::new("local/*", "/bin/sh");
        assert!(prefix.matches("local/sh:1"));
        assert!(!prefix.matches("docker.io/library/busybox"));
    }
}
