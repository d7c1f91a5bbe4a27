//! The private containerd starts, runs real pods, and leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_cleaner_testkit::{Containerd, Options, pause, pods};

fn alive(pid: u32) -> bool {
    // Zombies hold nothing; count them as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .filter(|&pid| alive(pid) && pid != std::process::id())
        .collect()
}

/// The socket a pod's shim serves: containerd names it `sha256(<address>/<namespace>/<id>)`.
fn shim_socket(address: &Path, sandbox_id: &str) -> PathBuf {
    use sha2::Digest as _;
    let key = format!("{}/k8s.io/{sandbox_id}", address.display());
    Path::new("/run/containerd/s").join(hex::encode(sha2::Sha256::digest(key)))
}

fn sleep_cmd() -> Vec<String> {
    vec!["/bin/sleep".into(), "3600".into()]
}

/// Everything a torn-down instance must have released.
fn assert_gone(dir: &Path, pid: u32, shims_and_containers: &[u32]) {
    assert!(!alive(pid), "containerd {pid} is still alive");
    for &p in shims_and_containers {
        assert!(!alive(p), "process {p} outlived the teardown");
    }
    let dir_str = dir.to_string_lossy().into_owned();
    assert_eq!(processes_mentioning(&dir_str), Vec::<u32>::new());
    assert_eq!(mounts_under(dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} still exists", dir.display());
}

async fn busybox_image(c: &Containerd) -> image_cleaner_testkit::BuiltImage {
    let spec = image_cleaner_testkit::ImageSpec::new()
        .name("docker.io/library/busybox:test")
        .layer(image_cleaner_testkit::Layer::busybox().unwrap());
    c.load(&spec).await.unwrap()
}

#[tokio::test]
async fn shutdown_leaves_no_process_mount_or_directory() {
    let started = Instant::now();
    let c = Containerd::start().await.unwrap();
    let dir: PathBuf = c.dir().to_path_buf();
    let pid = c.pid();
    assert!(c.endpoint().starts_with("unix:///"));
    assert!(c.socket_path().starts_with(&dir));
    assert!(c.log_path().is_file());
    assert!(c.root_dir().is_dir());
    assert_eq!(c.sandbox_image().unwrap().names, [pause::IMAGE.to_string()]);
    eprintln!("started with the pause image in {:?}", started.elapsed());

    let image = busybox_image(&c).await;
    let t = Instant::now();
    let pod = pods::run_pod(
        &c.endpoint(),
        "sleeper",
        "default",
        &image.names[0],
        sleep_cmd(),
    )
    .await
    .unwrap();
    eprintln!("pod running in {:?}", t.elapsed());
    // A second container in the same pod, created by image ID and never started.
    let created = pods::create_container_in(
        &c.endpoint(),
        &pod.sandbox(),
        "idle",
        &image.id,
        sleep_cmd(),
    )
    .await
    .unwrap();
    assert_ne!(created, pod.container_id);

    // The pod really runs: rootfs mounts under the directory and shims naming the socket.
    assert!(!mounts_under(&dir).is_empty(), "no rootfs mounted");
    let socket = c.socket_path().to_string_lossy().into_owned();
    let shims = processes_mentioning(&socket);
    assert!(!shims.is_empty(), "no shim names {socket}");
    let running = c.list_images().await.unwrap();
    assert!(running.iter().any(|i| i.id == image.id));

    let t = Instant::now();
    c.shutdown().await.unwrap();
    eprintln!("shut down in {:?}", t.elapsed());
    assert_gone(&dir, pid, &shims);
}

#[tokio::test]
async fn drop_tears_down_without_cri_cleanup_by_the_test() {
    let c = Containerd::start().await.unwrap();
    let dir = c.dir().to_path_buf();
    let pid = c.pid();
    let image = busybox_image(&c).await;
    pods::run_pod(&c.endpoint(), "dropped", "default", &image.id, sleep_cmd())
        .await
        .unwrap();
    let shims = processes_mentioning(&c.socket_path().to_string_lossy());
    assert!(!shims.is_empty());
    drop(c);
    assert_gone(&dir, pid, &shims);
}

#[tokio::test]
async fn a_custom_socket_path_is_honoured_and_cleaned_up() {
    let outside = tempfile::tempdir().unwrap();
    let socket = outside.path().join("custom/k3s-containerd.sock");
    let c = Containerd::start_with(Options {
        socket_path: Some(socket.clone()),
        import_pause: false,
        ..Options::default()
    })
    .await
    .unwrap();
    assert_eq!(c.endpoint(), format!("unix://{}", socket.display()));
    assert!(c.sandbox_image().is_none());
    // Only the containerd answers there.
    let channel = image_cleaner_cri::Endpoint::from_path(&socket)
        .connect(Duration::from_secs(2))
        .await
        .unwrap();
    let mut client =
        image_cleaner_cri::proto::runtime_service_client::RuntimeServiceClient::new(channel);
    let version = client
        .version(image_cleaner_cri::proto::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "containerd");
    let dir = c.dir().to_path_buf();
    c.shutdown().await.unwrap();
    assert!(!socket.exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn stopping_and_removing_pods_one_by_one() {
    let c = Containerd::start().await.unwrap();
    let image = busybox_image(&c).await;
    let endpoint = c.endpoint();
    let pod = pods::run_pod(&endpoint, "one", "ns", &image.names[0], sleep_cmd())
        .await
        .unwrap();
    pods::stop_container(&endpoint, &pod.container_id)
        .await
        .unwrap();
    pods::remove_container(&endpoint, &pod.container_id)
        .await
        .unwrap();
    pods::stop_pod(&endpoint, &pod.sandbox_id).await.unwrap();
    pods::remove_pod(&endpoint, &pod.sandbox_id).await.unwrap();
    let channel = image_cleaner_cri::Endpoint::from_path(c.socket_path())
        .connect(Duration::from_secs(2))
        .await
        .unwrap();
    let mut client =
        image_cleaner_cri::proto::runtime_service_client::RuntimeServiceClient::new(channel);
    let sandboxes = client
        .list_pod_sandbox(image_cleaner_cri::proto::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn teardown_survives_a_dead_containerd() {
    let c = Containerd::start().await.unwrap();
    let dir = c.dir().to_path_buf();
    let pid = c.pid();
    let image = busybox_image(&c).await;
    let pod = pods::run_pod(&c.endpoint(), "orphan", "default", &image.id, sleep_cmd())
        .await
        .unwrap();
    let socket = c.socket_path().to_path_buf();
    let shim_socket = shim_socket(&socket, &pod.sandbox_id);
    assert!(shim_socket.exists(), "{}", shim_socket.display());
    let shims = processes_mentioning(&c.socket_path().to_string_lossy());
    assert!(!shims.is_empty());
    // containerd dies; its shims, containers and mounts stay behind.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let err = c.shutdown().await.unwrap_err();
    assert!(format!("{err:#}").contains("removing pods"), "{err:#}");
    assert_gone(&dir, pid, &shims);
    // The container's runc state, cgroups and shim socket outside the directory went too.
    for id in [&pod.sandbox_id, &pod.container_id] {
        let state = Path::new("/run/containerd/runc/k8s.io").join(id);
        assert!(!state.exists(), "{} left behind", state.display());
        let cgroup = Path::new("/sys/fs/cgroup/pids/k8s.io").join(id);
        assert!(!cgroup.exists(), "{} left behind", cgroup.display());
    }
    assert!(
        !shim_socket.exists(),
        "{} left behind",
        shim_socket.display()
    );
}
