//! The fake kubelet over real containerd nodes: local processes with the pod's files,
//! environment, token and termination message; real CRI containers for other images; faults;
//! deletion; and a teardown that leaves nothing behind.
//!
//! Local pods here run `/bin/sh` (image `local/sh`), standing in for the cleaner binary: the
//! contract is the same (arguments, environment, rewritten paths, termination message).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image_cleaner_testkit::{ClusterOptions, Fault, ImageSpec, Layer, LocalImage, TestCluster};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use super::support::{code, wait_for};

async fn cluster(nodes: usize) -> TestCluster {
    TestCluster::start(ClusterOptions {
        nodes,
        local_images: vec![LocalImage::new("local/sh", "/bin/sh")],
        crds: vec![super::support::crd()],
        ..Default::default()
    })
    .await
    .expect("starting the test cluster")
}

fn shell_pod(name: &str, node: &str, script: &str, extra: Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{
                "name": "main",
                "image": "local/sh:1",
                "command": ["/bin/sh", "-c", script],
            }]
        }
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if k == "container" {
                for (ck, cv) in v.as_object().unwrap() {
                    pod["spec"]["containers"][0][ck] = cv.clone();
                }
            } else {
                pod["spec"][k] = v;
            }
        }
    }
    serde_json::from_value(pod).unwrap()
}

async fn wait_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Pod {
    wait_for(&format!("pod {name} to be {phase}"), || async {
        let pod = pods.get_opt(name).await.unwrap()?;
        let current = pod.status.as_ref()?.phase.clone()?;
        (current == phase).then_some(pod)
    })
    .await
}

fn terminated(pod: &Pod) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    pod.status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .expect("a terminated container")
}

#[tokio::test]
async fn nodes_register_ready_with_their_labels() {
    let cluster = cluster(2).await;
    let nodes: Api<Node> = Api::all(cluster.client().unwrap());
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = list
        .items
        .iter()
        .map(|n| n.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["node-1", "node-2"]);
    for node in &list.items {
        let labels = node.metadata.labels.clone().unwrap();
        assert_eq!(
            labels["kubernetes.io/hostname"],
            *node.metadata.name.as_ref().unwrap()
        );
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let conditions = node.status.as_ref().unwrap().conditions.clone().unwrap();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
        let runtime = node
            .status
            .as_ref()
            .unwrap()
            .node_info
            .as_ref()
            .unwrap()
            .container_runtime_version
            .clone();
        assert!(runtime.starts_with("containerd://"), "{runtime}");
    }
    let socket = cluster
        .node("node-2")
        .unwrap()
        .host_root()
        .join("run/containerd/containerd.sock");
    assert_eq!(
        cluster.node("node-2").unwrap().runtime_endpoint(),
        format!("unix://{}", socket.display())
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_local_pod_runs_to_completion_with_its_termination_message() {
    let cluster = cluster(1).await;
    let client = cluster.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello"}}))
            .unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The script sees the ConfigMap, NODE_NAME, the node's runtime socket and its token at
    // the container paths named in its environment, and reports through the termination
    // message path.
    let script = r#"set -e
test -S "$SOCK"
test -s "$TOKEN"
test -s "$KUBECONFIG"
printf '%s from %s as %s' "$(cat "$CFG")" "$NODE_NAME" "$(cat "$NS")" > "$MSG""#;
    let extra = json!({
        "volumes": [
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock", "type": "Socket"}}
        ],
        "container": {
            "env": [
                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "CFG", "value": "/config/greeting"},
                {"name": "SOCK", "value": "/run/cri/cri.sock"},
                {"name": "MSG", "value": "/dev/termination-log"},
                {"name": "TOKEN", "value": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
                {"name": "NS", "value": "/var/run/secrets/kubernetes.io/serviceaccount/namespace"}
            ],
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/config"},
                {"name": "sock", "mountPath": "/run/cri/cri.sock"}
            ]
        }
    });
    pods.create(
        &PostParams::default(),
        &shell_pod("ok", "node-1", script, extra),
    )
    .await
    .unwrap();
    let done = wait_phase(&pods, "ok", "Succeeded").await;
    let end = terminated(&done);
    assert_eq!(end.exit_code, 0);
    assert_eq!(end.reason.as_deref(), Some("Completed"));
    assert_eq!(end.message.as_deref(), Some("hello from node-1 as default"));
    assert!(end.container_id.unwrap().starts_with("process://"));

    // A failure: exit code, Failed phase, and the log tail as the message when asked for.
    let failing = shell_pod(
        "fails",
        "node-1",
        "echo something broke; exit 3",
        json!({"container": {"terminationMessagePolicy": "FallbackToLogsOnError"}}),
    );
    pods.create(&PostParams::default(), &failing).await.unwrap();
    let failed = wait_phase(&pods, "fails", "Failed").await;
    let end = terminated(&failed);
    assert_eq!(end.exit_code, 3);
    assert_eq!(end.reason.as_deref(), Some("Error"));
    assert_eq!(end.message.as_deref(), Some("something broke"));
    let log = pods
        .logs("fails", &kube::api::LogParams::default())
        .await
        .unwrap();
    assert_eq!(log, "something broke\n");

    // The process's token is its service account's own, bound to the pod.
    let whoami = shell_pod(
        "whoami",
        "node-1",
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/termination-log",
        json!({}),
    );
    pods.create(&PostParams::default(), &whoami).await.unwrap();
    let token = terminated(&wait_phase(&pods, "whoami", "Succeeded").await)
        .message
        .unwrap();
    let as_pod = cluster.api_server().client_with_token(&token).unwrap();
    let denied = Api::<ConfigMap>::namespaced(as_pod.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(code(denied), 403);
    assert!(
        cluster
            .forbidden()
            .iter()
            .any(|f| f.user == "system:serviceaccount:default:default")
    );
    pods.delete("whoami", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the pod to go", || async {
        pods.get_opt("whoami")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let expired = Api::<ConfigMap>::namespaced(as_pod, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert_eq!(code(expired), 401, "a bound token dies with its pod");
    cluster.shutdown().await.unwrap();
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("");
            state != "Z" && state != "X"
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn deleting_a_pod_kills_its_process() {
    let cluster = cluster(1).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    let pod = shell_pod(
        "sleeper",
        "node-1",
        "exec sleep 600",
        json!({"restartPolicy": "Always"}),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_phase(&pods, "sleeper", "Running").await;
    let status = &running.status.unwrap().container_statuses.unwrap()[0];
    assert!(status.ready);
    let id = status.container_id.clone().unwrap();
    let pid: i32 = id.trim_start_matches("process://").parse().unwrap();
    assert!(alive(pid));
    pods.delete("sleeper", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the pod to go", || async {
        pods.get_opt("sleeper")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(!alive(pid), "process {pid} outlived its pod");
    assert!(
        cluster
            .node("node-1")
            .unwrap()
            .kubelet()
            .process_groups()
            .is_empty()
    );
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn restarts_follow_the_restart_policy() {
    let cluster = cluster(1).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    let pod = shell_pod(
        "flaky",
        "node-1",
        "exit 1",
        json!({"restartPolicy": "OnFailure"}),
    );
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for("a restart", || async {
        let pod = pods.get("flaky").await.unwrap();
        let status = pod.status?.container_statuses?.first()?.clone();
        (status.restart_count >= 1 && status.last_state?.terminated?.exit_code == 1).then_some(())
    })
    .await;
    assert_eq!(
        pods.get("flaky")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Running")
    );
    cluster.shutdown().await.unwrap();
}

async fn load_app(cluster: &TestCluster, node: &str, name: &str) {
    let spec = ImageSpec::new()
        .layer(Layer::busybox().unwrap())
        .cmd(["/bin/sleep", "3600"])
        .name(name);
    cluster.containerd(node).unwrap().load(&spec).await.unwrap();
}

async fn ctr_containers(cluster: &TestCluster, node: &str) -> Vec<String> {
    let out = cluster
        .containerd(node)
        .unwrap()
        .ctr(&["containers", "ls"])
        .await
        .unwrap();
    out.lines().skip(1).map(String::from).collect()
}

#[tokio::test]
async fn other_images_run_as_real_cri_containers_on_their_node() {
    let cluster = cluster(2).await;
    load_app(&cluster, "node-2", "docker.io/library/app:1").await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {"nodeName": "node-2", "containers": [{"name": "app", "image": "docker.io/library/app:1",
                 "command": ["/bin/sh", "-c", "echo hello from cri; exec sleep 3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let running = wait_phase(&pods, "app", "Running").await;
    let status = &running.status.unwrap().container_statuses.unwrap()[0];
    assert!(
        status
            .container_id
            .as_deref()
            .unwrap()
            .starts_with("containerd://")
    );
    let containers = ctr_containers(&cluster, "node-2").await;
    assert!(
        containers
            .iter()
            .any(|l| l.contains("docker.io/library/app:1")),
        "{containers:?}"
    );
    assert!(
        ctr_containers(&cluster, "node-1")
            .await
            .iter()
            .all(|l| !l.contains("app:1"))
    );
    // kubelet's labels tie the container to its pod.
    let id = status
        .container_id
        .as_deref()
        .unwrap()
        .trim_start_matches("containerd://");
    let info = cluster
        .containerd("node-2")
        .unwrap()
        .ctr(&["containers", "info", id])
        .await
        .unwrap();
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Labels"]["io.kubernetes.pod.name"], "app");
    assert_eq!(info["Labels"]["io.kubernetes.container.name"], "app");

    // Its log is served as `pods/log`, and a CRI container's termination message is read
    // from the file mounted at its termination message path.
    wait_for("the container's log", || async {
        let log = pods
            .logs("app", &kube::api::LogParams::default())
            .await
            .ok()?;
        (log == "hello from cri\n").then_some(())
    })
    .await;
    let reporter: Pod = serde_json::from_value(json!({
        "metadata": {"name": "reporter"},
        "spec": {"nodeName": "node-2", "restartPolicy": "Never",
                 "containers": [{"name": "app", "image": "docker.io/library/app:1",
                 "command": ["/bin/sh", "-c", "echo -n cri report > /dev/termination-log"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &reporter)
        .await
        .unwrap();
    let reported = wait_phase(&pods, "reporter", "Succeeded").await;
    assert_eq!(terminated(&reported).message.as_deref(), Some("cri report"));
    pods.delete("reporter", &DeleteParams::default())
        .await
        .unwrap();

    // An image the node does not have never starts.
    let missing: Pod = serde_json::from_value(json!({
        "metadata": {"name": "missing"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "docker.io/library/app:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &missing).await.unwrap();
    wait_for("the image error", || async {
        let pod = pods.get("missing").await.unwrap();
        let waiting = pod
            .status?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .waiting?;
        (waiting.reason.as_deref() == Some("ErrImageNeverPull")).then_some(())
    })
    .await;

    pods.delete("app", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    wait_for("the pod to go", || async {
        pods.get_opt("app").await.unwrap().is_none().then_some(())
    })
    .await;
    wait_for("its containers to go", || async {
        ctr_containers(&cluster, "node-2")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    cluster.shutdown().await.unwrap();
}

#[tokio::test]
async fn faults_leave_pods_pending_or_fail_them() {
    let cluster = cluster(1).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    cluster.set_fault("node-1", Fault::PendingForever).unwrap();
    pods.create(
        &PostParams::default(),
        &shell_pod("stuck", "node-1", "exit 0", json!({})),
    )
    .await
    .unwrap();
    let stuck = wait_for("the kubelet to report the pod", || async {
        let pod = pods.get("stuck").await.unwrap();
        let waiting = pod
            .status
            .clone()?
            .container_statuses?
            .first()?
            .state
            .clone()?
            .waiting?;
        (waiting.reason.as_deref() == Some("ContainerCreating")).then_some(pod)
    })
    .await;
    assert_eq!(stuck.status.unwrap().phase.as_deref(), Some("Pending"));

    cluster.set_fault("node-1", Fault::FailPods).unwrap();
    pods.create(
        &PostParams::default(),
        &shell_pod("doomed", "node-1", "exit 0", json!({})),
    )
    .await
    .unwrap();
    let failed = wait_phase(&pods, "doomed", "Failed").await;
    assert_eq!(terminated(&failed).exit_code, 1);

    cluster.set_fault("node-1", Fault::None).unwrap();
    pods.create(
        &PostParams::default(),
        &shell_pod("fine", "node-1", "exit 0", json!({})),
    )
    .await
    .unwrap();
    wait_phase(&pods, "fine", "Succeeded").await;
    assert_eq!(
        pods.get("stuck")
            .await
            .unwrap()
            .status
            .unwrap()
            .phase
            .as_deref(),
        Some("Pending")
    );
    cluster.shutdown().await.unwrap();
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(String::from)
        .collect()
}

fn processes_mentioning(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) && alive(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[tokio::test]
async fn shutdown_leaves_no_process_mount_or_file() {
    let cluster = cluster(2).await;
    load_app(&cluster, "node-1", "docker.io/library/app:1").await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    pods.create(
        &PostParams::default(),
        &shell_pod("local", "node-2", "exec sleep 600", json!({})),
    )
    .await
    .unwrap();
    let cri: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cri"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "docker.io/library/app:1",
                 "command": ["/bin/sleep", "3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &cri).await.unwrap();
    let local = wait_phase(&pods, "local", "Running").await;
    wait_phase(&pods, "cri", "Running").await;
    let pid: i32 = local.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap()
        .trim_start_matches("process://")
        .parse()
        .unwrap();
    let containerd_pids: Vec<i32> = cluster
        .nodes()
        .iter()
        .map(|n| n.containerd().pid() as i32)
        .collect();
    let dir: PathBuf = cluster.dir().to_path_buf();
    assert!(
        !mounts_under(&dir).is_empty(),
        "the CRI pod mounts its rootfs under the cluster directory"
    );

    cluster.shutdown().await.unwrap();
    assert!(!alive(pid), "the local process survived");
    for p in containerd_pids {
        assert!(!alive(p), "containerd {p} survived");
    }
    assert_eq!(
        processes_mentioning(&dir),
        Vec::<(i32, String)>::new(),
        "shims or containers survived"
    );
    assert!(
        mounts_under(&dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(&dir)
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// The launcher process; SIGTERMed and waited for on drop, so a failing test leaves no
/// cluster behind.
struct Launcher(std::process::Child);

impl Launcher {
    /// SIGTERM, then wait (polling, with a deadline) for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        use std::time::{Duration, Instant};
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= end {
                let _ = self.0.kill();
                panic!("the launcher did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

#[tokio::test]
async fn the_launcher_prints_one_json_line_and_tears_down_on_sigterm() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let crds = tempfile::tempdir().unwrap();
    let crd = serde_yaml::to_string(&super::support::crd()).unwrap();
    std::fs::write(crds.path().join("crd.yaml"), crd).unwrap();
    let mut launcher = Launcher(
        Command::new(env!("CARGO_BIN_EXE_imagecleaner-testcluster"))
            .args(["--nodes", "2", "--crds"])
            .arg(crds.path())
            .args(["--cleaner-binary", "/bin/true"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = launcher.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a ready line within 60 s")
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    let kubeconfig = PathBuf::from(ready["kubeconfig"].as_str().unwrap());
    let server = ready["server"].as_str().unwrap();
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let nodes: BTreeMap<String, Value> = serde_json::from_value(ready["nodes"].clone()).unwrap();
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["node-1", "node-2"]);
    for node in nodes.values() {
        let endpoint = node["runtime_endpoint"].as_str().unwrap();
        assert!(
            Path::new(endpoint.trim_start_matches("unix://")).exists(),
            "{endpoint}"
        );
    }
    // The kubeconfig works for an unmodified client, and the CRDs are served.
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    let gvk = kube::api::GroupVersionKind::gvk("eraser.sh", "v1", "ImageList");
    let lists: Api<kube::api::DynamicObject> =
        Api::all_with(client, &kube::api::ApiResource::from_gvk(&gvk));
    assert!(
        lists
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );

    let dir = kubeconfig.parent().unwrap().to_path_buf();
    let status = launcher.stop();
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(processes_mentioning(&dir).is_empty());
}

#[tokio::test]
async fn dropping_a_cluster_cleans_up_too() {
    let cluster = cluster(1).await;
    load_app(&cluster, "node-1", "docker.io/library/app:1").await;
    let pods: Api<Pod> = Api::namespaced(cluster.client().unwrap(), "default");
    let local = shell_pod("local", "node-1", "exec sleep 600", json!({}));
    pods.create(&PostParams::default(), &local).await.unwrap();
    let cri: Pod = serde_json::from_value(json!({
        "metadata": {"name": "cri"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app",
                 "image": "docker.io/library/app:1", "command": ["/bin/sleep", "3600"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &cri).await.unwrap();
    let running = wait_phase(&pods, "local", "Running").await;
    wait_phase(&pods, "cri", "Running").await;
    let pid: i32 = running.status.unwrap().container_statuses.unwrap()[0]
        .container_id
        .clone()
        .unwrap()
        .trim_start_matches("process://")
        .parse()
        .unwrap();
    let containerd = cluster.nodes()[0].containerd().pid() as i32;
    let dir = cluster.dir().to_path_buf();
    // What a panicking test does: no shutdown, just drop.
    drop(cluster);
    wait_for("the local process to die", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    assert!(!alive(containerd), "containerd {containerd} survived");
    assert_eq!(processes_mentioning(&dir), Vec::<(i32, String)>::new());
    assert!(
        mounts_under(&dir).is_empty(),
        "mounts left: {:?}",
        mounts_under(&dir)
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
