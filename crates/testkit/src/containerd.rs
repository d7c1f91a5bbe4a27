//! A private, real containerd: every path under one temporary directory, the CRI plugin on,
//! the sandbox image imported, and a teardown that leaves no process, mount or file behind.
//!
//! Teardown order matters because containers outlive containerd and shims outlive both:
//! containers and pod sandboxes are stopped and removed through CRI first, then containerd is
//! stopped (SIGTERM, then SIGKILL), then any shim still naming this instance's socket is
//! killed together with its children, then tasks containerd never deleted (because it died)
//! get `runc delete --force` and lose their shim sockets (both live under `/run/containerd`,
//! outside the directory), then everything mounted under the directory is unmounted
//! (deepest first) and the directory removed. [`Containerd::shutdown`] does this and
//! reports what it could not clean; `Drop` does the same on a best-effort basis, without
//! needing an async runtime, so a failing test still cleans up.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use image_cleaner_cri::proto;
use nix::sys::signal::Signal;
use sha2::Digest as _;

use crate::cri::Clients;
use crate::oci::{BuiltImage, ImageSpec};
use crate::{pause, procs};

/// How long containerd may take to answer CRI `Version` after it is spawned.
pub const START_DEADLINE: Duration = Duration::from_secs(10);
/// How long containerd may take to exit after SIGTERM before it is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How long one `ctr` command, such as `ctr images import`, may take.
pub const IMPORT_DEADLINE: Duration = Duration::from_secs(60);
/// How long an imported image may take to show up in CRI's image list.
pub const VISIBLE_DEADLINE: Duration = Duration::from_secs(10);
/// How long tearing down all pods through CRI may take, in total.
pub const TEARDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// The containerd namespace CRI works in: only images there are visible to CRI.
pub const NAMESPACE: &str = "k8s.io";

/// Instance directories by socket path, so pods run on an instance of this process keep
/// their logs inside its directory and go with it.
static INSTANCES: Mutex<BTreeMap<PathBuf, PathBuf>> = Mutex::new(BTreeMap::new());

/// The directory for pod logs of the instance serving `socket`, if this process started it.
pub(crate) fn pod_log_dir(socket: &Path) -> Option<PathBuf> {
    let instances = INSTANCES.lock().unwrap_or_else(|e| e.into_inner());
    instances.get(socket).map(|dir| dir.join("pods"))
}

/// Longest unix socket path the kernel accepts (`sun_path` less the NUL).
const MAX_SOCKET_PATH: usize = 107;
const POLL: Duration = Duration::from_millis(20);

/// How to start a [`Containerd`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the gRPC (and CRI) socket goes; default `DIR/run/containerd.sock`. The ttrpc
    /// socket goes beside it with a `.ttrpc` suffix. Use this to test non-default runtime
    /// addresses; the socket's directory is created if missing, the socket files are removed
    /// on teardown.
    pub socket_path: Option<PathBuf>,
    /// Import the sandbox image after start (default true). Without it pods cannot run.
    pub import_pause: bool,
    /// Directory to create the instance directory in; default [`crate::temp_base`].
    pub temp_base: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket_path: None,
            import_pause: true,
            temp_base: None,
        }
    }
}

/// A running private containerd. Stop it with [`Containerd::shutdown`] to see errors; dropping
/// it tears it down too.
#[derive(Debug)]
pub struct Containerd {
    instance: Option<Instance>,
    sandbox_image: Option<BuiltImage>,
    archives: AtomicU64,
}

/// What teardown needs, separable from `Containerd` so it can move to a blocking thread.
#[derive(Debug)]
struct Instance {
    dir: PathBuf,
    socket: PathBuf,
    child: Child,
}

impl Containerd {
    /// Starts a private containerd with default [`Options`] and imports the sandbox image.
    pub async fn start() -> anyhow::Result<Containerd> {
        Self::start_with(Options::default()).await
    }

    /// Starts a private containerd.
    pub async fn start_with(options: Options) -> anyhow::Result<Containerd> {
        let base = options.temp_base.clone().unwrap_or_else(crate::temp_base);
        std::fs::create_dir_all(&base)
            .with_context(|| format!("creating temporary directory base {}", base.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("imagecleaner-containerd-")
            .tempdir_in(&base)
            .with_context(|| format!("creating an instance directory in {}", base.display()))?
            .keep();
        // From here on a failure must remove the directory.
        let result = Self::spawn(&dir, &options);
        let mut containerd = match result {
            Ok(instance) => Containerd {
                instance: Some(instance),
                sandbox_image: None,
                archives: AtomicU64::new(0),
            },
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        containerd.wait_ready().await?;
        if options.import_pause {
            let spec = pause::image().await?;
            containerd.sandbox_image = Some(containerd.load(&spec).await?);
        }
        tracing::debug!(dir = %dir.display(), pid = containerd.pid(), "containerd ready");
        Ok(containerd)
    }

    fn spawn(dir: &Path, options: &Options) -> anyhow::Result<Instance> {
        let socket = match &options.socket_path {
            Some(path) => path.clone(),
            None => dir.join("run/containerd.sock"),
        };
        anyhow::ensure!(
            socket.is_absolute(),
            "the socket path must be absolute: {}",
            socket.display()
        );
        let ttrpc = ttrpc_path(&socket);
        anyhow::ensure!(
            ttrpc.as_os_str().len() <= MAX_SOCKET_PATH,
            "socket path {} is too long for a unix socket; set {} to a shorter directory",
            ttrpc.display(),
            crate::TMP_ENV
        );
        for sub in ["root", "state", "run", "opt", "cni", "images", "pods"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating socket directory {}", parent.display()))?;
        }
        let config = config_toml(dir, &socket);
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let log_path = dir.join("containerd.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .with_context(|| format!("duplicating {}", log_path.display()))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C meant for the test or demo must not stop
            // containerd before the pods are torn down through it.
            .process_group(0)
            .spawn()
            .context("spawning containerd (is it installed?)")?;
        INSTANCES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(socket.clone(), dir.to_path_buf());
        Ok(Instance {
            dir: dir.to_path_buf(),
            socket,
            child,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let endpoint = self.endpoint();
        let end = Instant::now() + START_DEADLINE;
        let mut last_error = anyhow::anyhow!("not tried");
        loop {
            let instance = self.instance.as_mut().expect("a started instance");
            if let Some(status) = instance
                .child
                .try_wait()
                .context("checking on containerd")?
            {
                anyhow::bail!(
                    "containerd exited during start-up ({status}); log {}:\n{}",
                    instance.dir.join("containerd.log").display(),
                    log_tail(&instance.dir.join("containerd.log"))
                );
            }
            match version(&endpoint).await {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
            if Instant::now() >= end {
                return Err(last_error.context(format!(
                    "containerd did not answer CRI Version on {endpoint} within {START_DEADLINE:?}; log tail:\n{}",
                    log_tail(&self.log_path())
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn instance(&self) -> &Instance {
        self.instance
            .as_ref()
            .expect("the instance lives until shutdown or drop")
    }

    /// The CRI endpoint, `unix://…/containerd.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The gRPC (and CRI) socket.
    pub fn socket_path(&self) -> &Path {
        &self.instance().socket
    }

    /// The instance directory everything lives under (removed on teardown).
    pub fn dir(&self) -> &Path {
        &self.instance().dir
    }

    /// containerd's `root` (content store, snapshots, metadata).
    pub fn root_dir(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// containerd's `state` (tasks, shims' bundles, sandbox files).
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// containerd's process ID.
    pub fn pid(&self) -> u32 {
        self.instance().child.id()
    }

    /// containerd's combined stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("containerd.log")
    }

    /// The imported sandbox image, unless started without it.
    pub fn sandbox_image(&self) -> Option<&BuiltImage> {
        self.sandbox_image.as_ref()
    }

    /// Runs `ctr` against this containerd in the CRI namespace (e.g. `["content", "ls"]`)
    /// and returns its stdout. Fails with ctr's stderr, or after [`IMPORT_DEADLINE`].
    pub async fn ctr<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> anyhow::Result<String> {
        let shown = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = tokio::process::Command::new("ctr");
        command
            .arg("--address")
            .arg(self.socket_path())
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(IMPORT_DEADLINE, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("ctr {shown} did not finish within {IMPORT_DEADLINE:?}"))?
            .context("running ctr (is containerd installed?)")?;
        anyhow::ensure!(
            output.status.success(),
            "ctr {shown} on {} failed ({}): {}",
            self.endpoint(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8(output.stdout)
            .with_context(|| format!("ctr {shown}: output is not UTF-8"))
    }

    /// Imports an OCI image-layout archive into the CRI namespace with `ctr images import`
    /// (which also unpacks it into overlayfs snapshots).
    ///
    /// containerd tells CRI about new images asynchronously: to use an image through CRI right
    /// away, prefer [`Containerd::load`], which waits until CRI lists it.
    pub async fn import(&self, archive: &Path) -> anyhow::Result<()> {
        let args = [
            std::ffi::OsStr::new("images"),
            std::ffi::OsStr::new("import"),
            archive.as_os_str(),
        ];
        self.ctr(&args).await?;
        Ok(())
    }

    /// Writes `spec` as an archive, imports it, and waits until CRI lists the image under all
    /// its names and digests.
    pub async fn load(&self, spec: &ImageSpec) -> anyhow::Result<BuiltImage> {
        let n = self.archives.fetch_add(1, Ordering::Relaxed);
        let archive = self.dir().join("images").join(format!("image-{n}.tar"));
        let built = spec.write_archive(&archive)?;
        self.import(&archive).await?;
        let _ = std::fs::remove_file(&archive);
        self.wait_visible(&built).await?;
        Ok(built)
    }

    /// Waits until CRI reports `image` with all its tags and repo digests.
    pub async fn wait_visible(&self, image: &BuiltImage) -> anyhow::Result<()> {
        let endpoint = self.endpoint();
        let clients = Clients::connect(&endpoint).await?;
        let end = Instant::now() + VISIBLE_DEADLINE;
        loop {
            let mut images = clients.images.clone();
            let status = clients
                .call(
                    "ImageStatus",
                    images.image_status(proto::ImageStatusRequest {
                        image: Some(proto::ImageSpec {
                            image: image.id.clone(),
                            ..Default::default()
                        }),
                        verbose: false,
                    }),
                )
                .await?;
            let complete = status.image.as_ref().is_some_and(|found| {
                image.names.iter().all(|n| found.repo_tags.contains(n))
                    && image
                        .repo_digests
                        .iter()
                        .all(|d| found.repo_digests.contains(d))
            });
            if complete {
                return Ok(());
            }
            if Instant::now() >= end {
                anyhow::bail!(
                    "image {} ({:?}) not listed completely by CRI on {endpoint} within {VISIBLE_DEADLINE:?}; status: {:?}",
                    image.id,
                    image.names,
                    status.image
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// All images CRI lists.
    pub async fn list_images(&self) -> anyhow::Result<Vec<proto::Image>> {
        let clients = Clients::connect(&self.endpoint()).await?;
        let mut images = clients.images.clone();
        Ok(clients
            .call(
                "ListImages",
                images.list_images(proto::ListImagesRequest::default()),
            )
            .await?
            .images)
    }

    /// Stops and removes every container and pod sandbox, stops containerd, kills leftover
    /// shims, unmounts everything under the instance directory and removes it. Errors say
    /// what was left behind.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let Some(instance) = self.instance.take() else {
            return Ok(());
        };
        let endpoint = format!("unix://{}", instance.socket.display());
        let pods = match tokio::time::timeout(TEARDOWN_DEADLINE, remove_all_pods(&endpoint)).await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "removing pods on {endpoint} took longer than {TEARDOWN_DEADLINE:?}"
            )),
        };
        let finish = tokio::task::spawn_blocking(move || instance.finish())
            .await
            .context("joining the teardown thread")?;
        pods.context("removing pods through CRI")?;
        finish
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let Some(instance) = self.instance.take() else {
            return;
        };
        // CRI calls need an async runtime; run one on a fresh thread so this works whether or
        // not the dropping thread is inside a runtime.
        let endpoint = format!("unix://{}", instance.socket.display());
        let pods = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::time::timeout(TEARDOWN_DEADLINE, remove_all_pods(&endpoint))
                    .await
                    .map_err(|_| anyhow::anyhow!("removing pods timed out"))?
            })
        })
        .join();
        if let Ok(Err(e)) = pods {
            tracing::warn!("tearing down pods on drop: {e:#}");
        }
        if let Err(e) = instance.finish() {
            tracing::warn!("tearing down containerd on drop: {e:#}");
        }
    }
}

impl Instance {
    /// Stops containerd, kills leftover shims and containers, unmounts and removes the
    /// directory. Blocking.
    fn finish(mut self) -> anyhow::Result<()> {
        INSTANCES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.socket);
        let mut problems = Vec::new();
        let pid = self.child.id();
        procs::signal(pid as i32, Signal::SIGTERM);
        if !wait_child(&mut self.child, STOP_DEADLINE) {
            procs::signal(pid as i32, Signal::SIGKILL);
            if !wait_child(&mut self.child, STOP_DEADLINE) {
                problems.push(format!("containerd (pid {pid}) survived SIGKILL"));
            }
        }
        let killed = procs::kill_shims(&self.socket, STOP_DEADLINE);
        if !killed.survivors.is_empty() {
            problems.push(format!(
                "shim processes survived SIGKILL: {:?}",
                killed.survivors
            ));
        }
        // Tasks whose bundles are still here were not deleted through containerd (it died,
        // or CRI teardown failed): their runc state, cgroups and shim sockets live outside
        // the directory.
        for (namespace, id) in self.leftover_tasks() {
            if let Err(e) = delete_runc_container(&namespace, &id) {
                problems.push(format!("{e:#}"));
            }
            let _ = std::fs::remove_file(shim_socket(&self.socket, &namespace, &id));
        }
        for (namespace, id) in killed.groups {
            let _ = std::fs::remove_file(shim_socket(&self.socket, &namespace, &id));
        }
        for (mount, errno) in procs::unmount_all_under(&self.dir) {
            problems.push(format!("cannot unmount {}: {errno}", mount.display()));
        }
        if !self.socket.starts_with(&self.dir) {
            for path in [self.socket.clone(), ttrpc_path(&self.socket)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => problems.push(format!("cannot remove {}: {e}", path.display())),
                }
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("cannot remove {}: {e}", self.dir.display()));
        }
        anyhow::ensure!(
            problems.is_empty(),
            "containerd teardown left things behind: {}",
            problems.join("; ")
        );
        Ok(())
    }

    /// `(namespace, id)` of every task bundle left in the state directory.
    fn leftover_tasks(&self) -> Vec<(String, String)> {
        let tasks = self.dir.join("state/io.containerd.runtime.v2.task");
        let names = |dir: &Path| -> Vec<String> {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        names(&tasks)
            .into_iter()
            .flat_map(|ns| {
                names(&tasks.join(&ns))
                    .into_iter()
                    .map(move |id| (ns.clone(), id))
            })
            .collect()
    }
}

/// Where runc keeps container state for a containerd namespace (shared by all instances;
/// container IDs are unique).
const RUNC_ROOT: &str = "/run/containerd/runc";
/// Where shims put their sockets (shared by all instances; names hash the address).
const SHIM_SOCKETS: &str = "/run/containerd/s";

/// `runc delete --force`: removes an orphaned container's state and cgroups.
fn delete_runc_container(namespace: &str, id: &str) -> anyhow::Result<()> {
    let root = Path::new(RUNC_ROOT).join(namespace);
    if !root.join(id).exists() {
        return Ok(());
    }
    let mut child = Command::new("runc")
        .arg("--root")
        .arg(&root)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning runc")?;
    if !wait_child(&mut child, STOP_DEADLINE) {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("runc delete {id} did not finish within {STOP_DEADLINE:?}");
    }
    Ok(())
}

/// The socket a shim serves for task group `id`: containerd names it by
/// `sha256(<address>/<namespace>/<id>)`.
fn shim_socket(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = address.join(namespace).join(id);
    let digest = sha2::Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKETS).join(hex::encode(digest))
}

/// Polls `child` until it exits (and is reaped); false if `deadline` passed first.
fn wait_child(child: &mut Child, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            // Already reaped elsewhere: gone.
            Err(_) => return true,
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Answers whether CRI `Version` works on `endpoint`, with short deadlines for polling.
async fn version(endpoint: &str) -> anyhow::Result<()> {
    let short = Duration::from_secs(1);
    let clients = Clients::connect_within(endpoint, short).await?;
    let mut runtime = clients.runtime.clone();
    crate::cri::within(
        short,
        "Version",
        endpoint,
        runtime.version(proto::VersionRequest::default()),
    )
    .await?;
    Ok(())
}

/// Stops and removes every container, then every pod sandbox, through CRI.
async fn remove_all_pods(endpoint: &str) -> anyhow::Result<()> {
    let clients = Clients::connect_within(endpoint, Duration::from_secs(2)).await?;
    let mut runtime = clients.runtime.clone();
    let mut errors = Vec::new();
    let containers = clients
        .call(
            "ListContainers",
            runtime.list_containers(proto::ListContainersRequest::default()),
        )
        .await?
        .containers;
    for container in containers {
        if let Err(e) = crate::pods::stop_container(endpoint, &container.id).await {
            errors.push(format!("{e:#}"));
        }
        if let Err(e) = crate::pods::remove_container(endpoint, &container.id).await {
            errors.push(format!("{e:#}"));
        }
    }
    let sandboxes = clients
        .call(
            "ListPodSandbox",
            runtime.list_pod_sandbox(proto::ListPodSandboxRequest::default()),
        )
        .await?
        .items;
    for sandbox in sandboxes {
        if let Err(e) = crate::pods::stop_pod(endpoint, &sandbox.id).await {
            errors.push(format!("{e:#}"));
        }
        if let Err(e) = crate::pods::remove_pod(endpoint, &sandbox.id).await {
            errors.push(format!("{e:#}"));
        }
    }
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(())
}

fn ttrpc_path(socket: &Path) -> PathBuf {
    let mut path = socket.as_os_str().to_owned();
    path.push(".ttrpc");
    PathBuf::from(path)
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The private configuration: every path under `dir`, CRI with a local sandbox image.
fn config_toml(dir: &Path, socket: &Path) -> String {
    let dir = dir.display();
    let socket_display = socket.display();
    let ttrpc = ttrpc_path(socket);
    let ttrpc = ttrpc.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
[grpc]
  address = "{socket_display}"
[ttrpc]
  address = "{ttrpc}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # No CAP_SYS_RESOURCE in CI containers: never lower the OOM score below ours.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stats_collect_period = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    # Pods use the host network; the conf dir stays empty.
    bin_dir = "/usr/lib/cni"
    conf_dir = "{dir}/cni"
"#,
        sandbox = pause::IMAGE,
    )
}
