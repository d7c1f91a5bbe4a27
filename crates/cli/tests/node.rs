//! `imagecleaner node plan|clean` end to end: the real binary against a real, private
//! containerd with real image layers (testkit), judged by what the runtime holds afterwards.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use image_cleaner_testkit::fixtures::{
    APP_1_0, APP_1_1, DEBUG_REPO, REDIS_7, SampleNode, WEB_2, WEB_STABLE,
};
use image_cleaner_testkit::oci::{ImageSpec, Layer};
use image_cleaner_testkit::{Containerd, pods, sample_node};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the binary with a deadline; a hang fails the test instead of stalling the suite.
fn imagecleaner(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagecleaner"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imagecleaner");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("imagecleaner {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn run_json(verb: &str, endpoint: &str, state: &Path, extra: &[&str]) -> (i32, Value) {
    let state = state.to_str().expect("utf-8 path");
    let mut args = vec![
        "node",
        verb,
        "--runtime-endpoint",
        endpoint,
        "--state-dir",
        state,
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = imagecleaner(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}); stderr: {stderr}"));
    (out.status.code().expect("exit code"), report)
}

/// The report entry of the image that carries `name` as a tag or repo digest.
fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| {
            ["names", "digests"].iter().any(|k| {
                i[*k]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|n| n == name))
            })
        })
        .unwrap_or_else(|| panic!("{name} not in report"))
}

fn reason(report: &Value, name: &str) -> String {
    entry(report, name)["reason"]
        .as_str()
        .expect("reason")
        .to_string()
}

/// Image IDs the runtime holds now.
async fn ids(containerd: &Containerd) -> Vec<String> {
    containerd
        .list_images()
        .await
        .expect("list images")
        .into_iter()
        .map(|i| i.id)
        .collect()
}

struct Fixture {
    containerd: Containerd,
    node: SampleNode,
    state: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let containerd = Containerd::start().await.expect("start containerd");
    let node = sample_node(&containerd).await.expect("sample node");
    Fixture {
        containerd,
        node,
        state: tempfile::tempdir().expect("state dir"),
    }
}

impl Fixture {
    fn run(&self, verb: &str, extra: &[&str]) -> (i32, Value) {
        run_json(verb, &self.containerd.endpoint(), self.state.path(), extra)
    }

    async fn shutdown(self) {
        self.containerd.shutdown().await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_clean_removes_unused_and_keeps_running_and_sandbox() {
    let f = fixture().await;
    let (code, report) = f.run("clean", &["--min-unused", "0"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(reason(&report, APP_1_1), "running");
    assert_eq!(reason(&report, "docker.io/library/pause:local"), "sandbox");
    for name in [APP_1_0, WEB_2, REDIS_7] {
        assert_eq!(reason(&report, name), "unused", "{name}");
        assert_eq!(entry(&report, name)["removed"], true, "{name}");
    }
    let left = ids(&f.containerd).await;
    assert!(left.contains(&f.node.app_1_1.id));
    assert!(!left.contains(&f.node.app_1_0.id));
    assert!(!left.contains(&f.node.web.id));
    assert_eq!(
        left.len(),
        2,
        "only the running image and pause stay: {left:?}"
    );
    let summary = &report["summary"];
    assert_eq!(summary["removed"], 4);
    assert_eq!(summary["failed"], 0);
    assert!(summary["freed_bytes"].as_u64().unwrap() > 0);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freshly_pulled_images_are_recent_under_the_default_age() {
    let f = fixture().await;
    let (code, report) = f.run("plan", &[]);
    assert_eq!(code, 0);
    assert_eq!(reason(&report, APP_1_0), "recent");
    assert_eq!(report["summary"]["remove"], 0);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_one_image_frees_only_its_unique_layers_as_planned() {
    let f = fixture().await;
    let (_, plan) = f.run("plan", &["--remove", APP_1_0]);
    let planned = entry(&plan, APP_1_0)["reclaimable_bytes"].as_u64().unwrap();
    let size = entry(&plan, APP_1_0)["size_bytes"].as_u64().unwrap();
    // Its own blobs (size minus the shared base) plus their unpacked snapshot, which for the
    // fixture's incompressible layer is about as large again; the base counts for nothing.
    let own_blobs = size - Layer::busybox().unwrap().size();
    let ratio = planned as f64 / own_blobs as f64;
    assert!(
        (1.9..2.1).contains(&ratio),
        "reclaimable {planned} should be about twice its own blobs {own_blobs}"
    );
    assert_eq!(
        plan["summary"]["reclaimable_bytes"].as_u64().unwrap(),
        planned
    );

    let (code, report) = f.run("clean", &["--remove", APP_1_0]);
    assert_eq!(code, 0, "{report:#}");
    let freed = report["summary"]["freed_bytes"].as_u64().unwrap();
    let error = (freed as f64 - planned as f64).abs() / planned as f64;
    assert!(error <= 0.05, "planned {planned}, freed {freed}");
    assert_eq!(report["summary"]["removed"], 1);
    // The base layer is still there for the others.
    let left = ids(&f.containerd).await;
    assert!(left.contains(&f.node.app_1_1.id) && left.contains(&f.node.web.id));
    let (_, after) = f.run("plan", &[]);
    assert!(
        entry(&after, APP_1_1)["reclaimable_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_aliases_are_one_image() {
    let f = fixture().await;
    // Removing by one tag removes the image and so both tags.
    let (code, report) = f.run("clean", &["--remove", WEB_STABLE]);
    assert_eq!(code, 0);
    assert_eq!(reason(&report, WEB_2), "listed");
    assert!(!ids(&f.containerd).await.contains(&f.node.web.id));
    f.shutdown().await;

    // Excluding either alias protects the image from everything.
    let f = fixture().await;
    let (_, report) = f.run("clean", &["--remove", "*", "--exclude", WEB_2]);
    assert_eq!(reason(&report, WEB_STABLE), "excluded");
    assert!(ids(&f.containerd).await.contains(&f.node.web.id));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_only_images_are_listed_and_removable_by_digest() {
    let f = fixture().await;
    let by_digest = f.node.debug.repo_digests[0].clone();
    assert!(by_digest.starts_with(DEBUG_REPO));
    let (_, plan) = f.run("plan", &[]);
    assert!(
        entry(&plan, &by_digest)["names"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (code, report) = f.run("clean", &["--remove", &by_digest]);
    assert_eq!(code, 0);
    assert_eq!(reason(&report, &by_digest), "listed");
    assert_eq!(reason(&report, APP_1_0), "not-listed");
    let left = ids(&f.containerd).await;
    assert!(!left.contains(&f.node.debug.id) && left.contains(&f.node.app_1_0.id));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pattern_kinds_respect_the_registry_port_boundary() {
    let containerd = Containerd::start().await.unwrap();
    let mut ids_by_name = std::collections::BTreeMap::new();
    for (seed, name) in [
        (1, "localhost:5000/app:1"),
        (2, "localhost:5000/app:2"),
        (3, "localhost:5000/app2:1"),
        (4, "localhost/other:1"),
        (5, "quay.io/team/tool:1"),
        (6, "quay.io/other/tool:1"),
    ] {
        let spec = ImageSpec::new().layer(Layer::random(seed, 4096)).name(name);
        let built = containerd.load(&spec).await.unwrap();
        ids_by_name.insert(name, built.id);
    }
    let state = tempfile::tempdir().unwrap();
    let endpoint = containerd.endpoint();
    let (_, report) = run_json(
        "plan",
        &endpoint,
        state.path(),
        &[
            "--remove",
            "localhost:5000/app:*",
            "--remove",
            "quay.io/team/*",
        ],
    );
    for (name, expected) in [
        ("localhost:5000/app:1", "listed"),
        ("localhost:5000/app:2", "listed"),
        ("localhost:5000/app2:1", "not-listed"),
        ("localhost/other:1", "not-listed"),
        ("quay.io/team/tool:1", "listed"),
        ("quay.io/other/tool:1", "not-listed"),
    ] {
        assert_eq!(reason(&report, name), expected, "{name}");
    }
    // An ID prefix and a full ID name images too.
    let id = &ids_by_name["localhost/other:1"];
    let short = &id["sha256:".len().."sha256:".len() + 14];
    let (_, report) = run_json("plan", &endpoint, state.path(), &["--remove", short]);
    assert_eq!(reason(&report, "localhost/other:1"), "listed");
    assert_eq!(report["summary"]["remove"], 1);
    let (_, report) = run_json("plan", &endpoint, state.path(), &["--remove", id]);
    assert_eq!(reason(&report, "localhost/other:1"), "listed");
    containerd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn star_prunes_every_non_running_non_excluded_image() {
    let f = fixture().await;
    let (code, report) = f.run(
        "clean",
        &["--remove", "*", "--exclude", "registry.local:5000/*"],
    );
    assert_eq!(code, 0);
    assert_eq!(reason(&report, APP_1_1), "running");
    assert_eq!(reason(&report, REDIS_7), "excluded");
    assert_eq!(reason(&report, "docker.io/library/pause:local"), "sandbox");
    let mut left = ids(&f.containerd).await;
    left.sort();
    let pause = f.containerd.sandbox_image().unwrap().id.clone();
    let mut expected = vec![f.node.app_1_1.id.clone(), f.node.redis.id.clone(), pause];
    expected.sort();
    assert_eq!(left, expected);
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_image_is_kept_with_no_pods() {
    let containerd = Containerd::start().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let (code, report) = run_json(
        "clean",
        &containerd.endpoint(),
        state.path(),
        &["--remove", "*"],
    );
    assert_eq!(code, 0);
    assert_eq!(reason(&report, "docker.io/library/pause:local"), "sandbox");
    assert_eq!(ids(&containerd).await.len(), 1);
    containerd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn exited_containers_protect_only_while_their_sandbox_is_ready() {
    let f = fixture().await;
    let endpoint = f.containerd.endpoint();
    let pod = pods::run_pod(
        &endpoint,
        "job",
        "default",
        APP_1_0,
        vec!["/bin/sleep".into(), "3600".into()],
    )
    .await
    .unwrap();
    pods::stop_container(&endpoint, &pod.container_id)
        .await
        .unwrap();
    // Exited, but the pod is still ready: kubelet may restart it.
    let (_, report) = f.run("plan", &["--remove", "*"]);
    assert_eq!(reason(&report, APP_1_0), "running");
    // The pod is gone (its sandbox stopped): the exited container no longer protects.
    pods::stop_pod(&endpoint, &pod.sandbox_id).await.unwrap();
    let (code, report) = f.run("clean", &["--remove", "*"]);
    assert_eq!(code, 0);
    assert_eq!(reason(&report, APP_1_0), "listed");
    assert!(!ids(&f.containerd).await.contains(&f.node.app_1_0.id));
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn state_survives_restarts_and_a_corrupt_file_is_rebuilt() {
    let f = fixture().await;
    let file = f.state.path().join("last-seen.json");
    f.run("plan", &[]);
    let state: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        state["last_seen_in_use"][&f.node.app_1_1.id].is_u64(),
        "the running image is recorded: {state}"
    );
    std::fs::write(&file, b"{ not json").unwrap();
    let out = imagecleaner(&[
        "node",
        "plan",
        "--runtime-endpoint",
        &f.containerd.endpoint(),
        "--state-dir",
        f.state.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("last-seen.json"),
        "{stderr}"
    );
    let state: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(state["last_seen_in_use"][&f.node.app_1_1.id].is_u64());
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_and_hung_sockets_fail_fast_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}/nothing.sock", dir.path().display());
    let start = Instant::now();
    let out = imagecleaner(&["node", "plan", "--runtime-endpoint", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&missing));

    // A socket that accepts and never answers.
    let hung_path = dir.path().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&hung_path).unwrap();
    let hung = format!("unix://{}", hung_path.display());
    let out = imagecleaner(&["node", "clean", "--runtime-endpoint", &hung]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&hung), "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn bad_input_exits_2_naming_the_flag_and_value() {
    for (args, flag, value) in [
        (vec!["--exclude", "Nginx:*"], "--exclude", "Nginx:*"),
        (vec!["--exclude", "*"], "--exclude", "*"),
        (vec!["--remove", "foo:"], "--remove", "foo:"),
        (vec!["--remove", "@sha256:zz"], "--remove", "@sha256:zz"),
        (vec!["--min-unused", "soon"], "--min-unused", "soon"),
        (
            vec!["--runtime-endpoint", "tcp://10.0.0.1:1"],
            "--runtime-endpoint",
            "tcp://10.0.0.1:1",
        ),
        (
            vec!["--exclude-file", "/nonexistent/excl.json"],
            "--exclude-file",
            "/nonexistent/excl.json",
        ),
        (vec!["-o", "yaml"], "--output", "yaml"),
    ] {
        let mut full = vec!["node", "plan"];
        full.extend(args);
        let out = imagecleaner(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{full:?}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exclude_files_in_eraser_json_and_plain_text() {
    let f = fixture().await;
    let json = f.state.path().join("excluded.json");
    std::fs::write(&json, r#"{"excluded": ["docker.io/library/*"]}"#).unwrap();
    let text = f.state.path().join("excluded.txt");
    std::fs::write(&text, "# team images\nexample.com/team/web:*\n").unwrap();
    let (code, report) = f.run(
        "clean",
        &[
            "--remove",
            "*",
            "--exclude-file",
            json.to_str().unwrap(),
            "--exclude-file",
            text.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(reason(&report, APP_1_0), "excluded");
    assert_eq!(reason(&report, WEB_2), "excluded");
    assert_eq!(reason(&report, REDIS_7), "listed");
    f.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn table_output_lines_up_with_human_sizes() {
    let f = fixture().await;
    let out = imagecleaner(&[
        "node",
        "plan",
        "--runtime-endpoint",
        &f.containerd.endpoint(),
        "--state-dir",
        f.state.path().to_str().unwrap(),
        "--min-unused",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("IMAGE"), "{stdout}");
    let column = header.find("ACTION").unwrap();
    for row in lines[1..7].iter() {
        let cell = &row[column..];
        assert!(
            cell.starts_with("keep") || cell.starts_with("remove"),
            "{stdout}"
        );
    }
    assert!(stdout.contains(" MiB"), "{stdout}");
    assert!(stdout.contains("(+1 more)"), "aliases are shown: {stdout}");
    assert!(stdout.contains("Removing them would free"), "{stdout}");
    f.shutdown().await;
}
