//! A whole test cluster on this machine: the loopback API server ([`crate::apiserver`]) with
//! the CRDs installed, and N nodes, each a private real containerd ([`Containerd`]) plus a
//! fake kubelet ([`crate::kubelet`]). Tests, the e2e suite, the demo and the
//! `imagecleaner-testcluster` launcher all start clusters through [`TestCluster::start`].
//!
//! Layout, all under one temporary directory that goes with the cluster:
//!
//! ```text
//! DIR/kubeconfig                        admin kubeconfig (token, user kubernetes-admin)
//! DIR/nodes/NAME/host/                  the node's "/" for hostPath volumes
//! DIR/nodes/NAME/host/run/containerd/containerd.sock   its containerd's socket
//! DIR/nodes/NAME/imagecleaner-containerd-*/            containerd's root, state, logs
//! DIR/nodes/NAME/pods/NAMESPACE_NAME_UID/              a pod's volumes, logs, termination files
//! ```
//!
//! Teardown (explicit with [`TestCluster::shutdown`], best effort on drop) stops the kubelets
//! (killing every local process and CRI pod), then each containerd (containers, shims, mounts,
//! by PID), then the server, then unmounts anything left under the directory and removes it.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use image_cleaner_testkit::{ClusterOptions, TestCluster};
//! let cluster = TestCluster::start(ClusterOptions {
//!     nodes: 2,
//!     cleaner_binary: Some("target/debug/imagecleaner".into()),
//!     crd_paths: vec!["deploy/crds".into()],
//!     ..Default::default()
//! })
//! .await?;
//! let admin = cluster.client()?; // system:masters
//! // … install manifests, run the manager with cluster.kubeconfig_path(), drive the test …
//! let manager = cluster.client_for_service_account("kube-system", "eraser-controller-manager").await?;
//! assert!(cluster.forbidden().is_empty(), "someone hit a 403: {:?}", cluster.forbidden());
//! let node = cluster.node("node-1").expect("node-1");
//! let images = node.containerd().list_images().await?; // the node's real runtime
//! cluster.shutdown().await?;
//! # let _ = (admin, manager, images);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use crate::apiserver::{ApiServer, Forbidden, NODES, RequestRecord, ServerOptions, UserInfo};
use crate::containerd::{self, Containerd};
use crate::kubelet::{DEFAULT_RUNTIME_SOCKET, Fault, Kubelet, KubeletOptions, LocalImage};

/// The cleaner's own image (any tag or digest): its containers run the cleaner binary.
pub const DEFAULT_CLEANER_IMAGE: &str = "ghcr.io/image-cleaner/imagecleaner";

/// How to start a [`TestCluster`].
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How many nodes (named `node-1` … `node-N`) when `node_names` is empty.
    pub nodes: usize,
    /// Node names, overriding `nodes`.
    pub node_names: Vec<String>,
    /// The cleaner binary that containers of `cleaner_images` run. Without it those images
    /// are treated like any other (and, not being on the nodes, never start).
    pub cleaner_binary: Option<PathBuf>,
    /// Image patterns (see [`LocalImage`]) of the cleaner; default [`DEFAULT_CLEANER_IMAGE`].
    pub cleaner_images: Vec<String>,
    /// More images that run as local processes (e.g. a shell for tests).
    pub local_images: Vec<LocalImage>,
    /// CRDs to install (objects).
    pub crds: Vec<Value>,
    /// CRD files or directories to install (YAML or JSON).
    pub crd_paths: Vec<PathBuf>,
    /// The API server's options (its `crds` are installed too).
    pub server: ServerOptions,
    /// Where each node's runtime socket is on the node (hostPath), default
    /// `/run/containerd/containerd.sock`.
    pub runtime_socket: String,
    /// The longest grace period a stopping container gets.
    pub max_grace: Duration,
    /// Extra environment for every local process.
    pub extra_env: Vec<(String, String)>,
    /// Where to create the cluster directory; default [`crate::temp_base`].
    pub temp_base: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 1,
            node_names: Vec::new(),
            cleaner_binary: None,
            cleaner_images: vec![DEFAULT_CLEANER_IMAGE.to_string()],
            local_images: Vec::new(),
            crds: Vec::new(),
            crd_paths: Vec::new(),
            server: ServerOptions::default(),
            runtime_socket: DEFAULT_RUNTIME_SOCKET.to_string(),
            max_grace: Duration::from_secs(5),
            extra_env: Vec::new(),
            temp_base: None,
        }
    }
}

impl ClusterOptions {
    fn names(&self) -> Vec<String> {
        if self.node_names.is_empty() {
            (1..=self.nodes).map(|i| format!("node-{i}")).collect()
        } else {
            self.node_names.clone()
        }
    }

    fn local_images(&self) -> Vec<LocalImage> {
        let mut images = self.local_images.clone();
        if let Some(binary) = &self.cleaner_binary {
            images.extend(
                self.cleaner_images
                    .iter()
                    .map(|pattern| LocalImage::new(pattern.clone(), binary.clone())),
            );
        }
        images
    }
}

/// One node of the cluster.
pub struct ClusterNode {
    name: String,
    host_root: PathBuf,
    pods_dir: PathBuf,
    containerd: Option<Containerd>,
    kubelet: Option<Kubelet>,
}

impl ClusterNode {
    /// The node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's containerd.
    pub fn containerd(&self) -> &Containerd {
        self.containerd
            .as_ref()
            .expect("a node's containerd lives until shutdown")
    }

    /// The node's CRI endpoint (`unix:///…/containerd.sock`).
    pub fn runtime_endpoint(&self) -> String {
        self.containerd().endpoint()
    }

    /// The directory standing in for the node's `/`.
    pub fn host_root(&self) -> &Path {
        &self.host_root
    }

    /// The node's fake kubelet.
    pub fn kubelet(&self) -> &Kubelet {
        self.kubelet
            .as_ref()
            .expect("a node's kubelet lives until shutdown")
    }
}

/// A running test cluster.
pub struct TestCluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    server: Option<ApiServer>,
    nodes: Vec<ClusterNode>,
}

impl TestCluster {
    /// Starts the API server (CRDs installed) and the nodes, and writes the admin kubeconfig.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<TestCluster> {
        let base = options.temp_base.clone().unwrap_or_else(crate::temp_base);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("imagecleaner-cluster-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a cluster directory in {}", base.display()))?
            .keep();
        let mut cluster = TestCluster {
            kubeconfig: dir.join("kubeconfig"),
            dir,
            server: None,
            nodes: Vec::new(),
        };
        // On failure the partly started cluster is torn down by drop.
        cluster.start_parts(&options).await?;
        Ok(cluster)
    }

    async fn start_parts(&mut self, options: &ClusterOptions) -> anyhow::Result<()> {
        let mut server_options = options.server.clone();
        server_options.crds.extend(options.crds.iter().cloned());
        for path in &options.crd_paths {
            server_options
                .crds
                .extend(crate::apiserver::read_crds(path)?);
        }
        let server = ApiServer::start(server_options).await?;
        std::fs::write(
            &self.kubeconfig,
            server.kubeconfig(server.admin_token(), crate::apiserver::ADMIN_USER),
        )
        .with_context(|| format!("writing {}", self.kubeconfig.display()))?;
        let url = server.url();
        self.server = Some(server);
        for name in options.names() {
            let node = self.start_node(&name, &url, options).await?;
            self.nodes.push(node);
        }
        let pods_dirs: Vec<PathBuf> = self.nodes.iter().map(|n| n.pods_dir.clone()).collect();
        self.server()?
            .set_log_reader(Arc::new(move |namespace, pod, uid, container| {
                pods_dirs
                    .iter()
                    .find_map(|dir| crate::kubelet::read_log(dir, namespace, pod, uid, container))
            }));
        Ok(())
    }

    async fn start_node(
        &self,
        name: &str,
        url: &str,
        options: &ClusterOptions,
    ) -> anyhow::Result<ClusterNode> {
        let node_dir = self.dir.join("nodes").join(name);
        let host_root = node_dir.join("host");
        std::fs::create_dir_all(&host_root)
            .with_context(|| format!("creating {}", host_root.display()))?;
        let socket = host_root.join(options.runtime_socket.trim_start_matches('/'));
        let containerd = Containerd::start_with(containerd::Options {
            socket_path: Some(socket),
            temp_base: Some(node_dir.clone()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("starting containerd for node {name}"))?;
        let mut node = ClusterNode {
            name: name.to_string(),
            host_root: host_root.clone(),
            pods_dir: node_dir.join("pods"),
            containerd: Some(containerd),
            kubelet: None,
        };
        let server = self.server()?;
        let token = server.issue_token(UserInfo::new(&format!("system:node:{name}"), &[NODES]));
        let client = server.client_with_token(&token)?;
        let kubelet = Kubelet::start(
            client,
            KubeletOptions {
                node_name: name.to_string(),
                runtime_endpoint: node.runtime_endpoint(),
                host_root,
                pods_dir: node_dir.join("pods"),
                local_images: options.local_images(),
                server_url: url.to_string(),
                server_ca: server.ca_pem().to_string(),
                extra_env: options.extra_env.clone(),
                max_grace: options.max_grace,
                labels: Vec::new(),
            },
        )
        .await
        .with_context(|| format!("starting the kubelet of node {name}"))?;
        node.kubelet = Some(kubelet);
        Ok(node)
    }

    fn server(&self) -> anyhow::Result<&ApiServer> {
        self.server
            .as_ref()
            .context("the API server is not running")
    }

    /// The API server.
    pub fn api_server(&self) -> &ApiServer {
        self.server
            .as_ref()
            .expect("the API server lives until shutdown")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn server_url(&self) -> String {
        self.api_server().url()
    }

    /// The admin kubeconfig (for kubectl, or `imagecleaner manager --kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An admin client (`system:masters`).
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        self.server()?.client()
    }

    /// A client acting as service account `namespace/name` (it must exist), with a token from
    /// the TokenRequest API.
    pub async fn client_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        self.server()?
            .client_for_service_account(namespace, name)
            .await
    }

    /// A client acting as `user` in `groups` (plus `system:authenticated`).
    pub fn client_for_user(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
        let server = self.server()?;
        let token = server.issue_token(UserInfo::new(user, groups));
        server.client_with_token(&token)
    }

    /// Every request denied so far (empty: nobody hit a 403).
    pub fn forbidden(&self) -> Vec<Forbidden> {
        self.api_server().forbidden()
    }

    /// The last requests served, for diagnostics.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.api_server().requests()
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[ClusterNode] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&ClusterNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The containerd of node `name`.
    pub fn containerd(&self, name: &str) -> Option<&Containerd> {
        self.node(name).map(ClusterNode::containerd)
    }

    /// Injects `fault` on node `name` for the pods that arrive from now on.
    pub fn set_fault(&self, name: &str, fault: Fault) -> anyhow::Result<()> {
        let node = self.node(name).with_context(|| format!("no node {name}"))?;
        node.kubelet().set_fault(fault);
        Ok(())
    }

    /// Tears everything down; errors say what was left behind.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        let nodes = std::mem::take(&mut self.nodes);
        for mut node in nodes {
            if let Some(kubelet) = node.kubelet.take() {
                kubelet.shutdown().await;
            }
            if let Some(containerd) = node.containerd.take()
                && let Err(e) = containerd.shutdown().await
            {
                problems.push(format!("node {}: {e:#}", node.name));
            }
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let dir = self.dir.clone();
        let removed = tokio::task::spawn_blocking(move || remove_cluster_dir(&dir))
            .await
            .context("joining the clean-up thread")?;
        if let Err(e) = removed {
            problems.push(format!("{e:#}"));
        }
        anyhow::ensure!(
            problems.is_empty(),
            "cluster teardown: {}",
            problems.join("; ")
        );
        Ok(())
    }
}

/// Unmounts whatever is left under `dir` and removes it.
fn remove_cluster_dir(dir: &Path) -> anyhow::Result<()> {
    let stuck = crate::procs::unmount_all_under(dir);
    anyhow::ensure!(
        stuck.is_empty(),
        "cannot unmount under {}: {stuck:?}",
        dir.display()
    );
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.server.is_none() && self.nodes.is_empty() {
            return;
        }
        for mut node in std::mem::take(&mut self.nodes) {
            // The kubelet kills its processes; the containerd tears down its pods itself.
            drop(node.kubelet.take());
            drop(node.containerd.take());
        }
        drop(self.server.take());
        if let Err(e) = remove_cluster_dir(&self.dir) {
            tracing::warn!("tearing down the test cluster on drop: {e:#}");
        }
    }
}
