//! Benchmark (run on demand, not a test): `imagecleaner node clean` on a node with 1,000
//! images of which 500 are removable, against the sum of the raw CRI calls the job needs,
//! made by a minimal client in the same run on the same containerd; plus the binary's peak RSS.
//!
//! ```sh
//! cargo bench -p image-cleaner-cli --bench node_clean            # 1,000 images, 500 removable
//! IMAGES=200 cargo bench -p image-cleaner-cli --bench node_clean # smaller
//! ```
//!
//! The raw client makes, one after another, exactly the calls the contract requires: list
//! images, containers and sandboxes, read the runtime status (sandbox image), and for each
//! removal re-list containers and sandboxes and call RemoveImage. It decides nothing and
//! measures nothing; it is the floor for "the same CRI work".

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use image_cleaner_cri::Endpoint;
use image_cleaner_cri::proto;
use image_cleaner_cri::proto::image_service_client::ImageServiceClient;
use image_cleaner_cri::proto::runtime_service_client::RuntimeServiceClient;
use image_cleaner_testkit::oci::{ImageSpec, Layer};
use image_cleaner_testkit::{BuiltImage, Containerd};

/// Runs argv[1:] and prints the child's peak RSS (KiB) on stderr, keeping its exit status.
const PEAK_RSS: &str = "import resource, subprocess, sys\n\
p = subprocess.run(sys.argv[1:])\n\
print('peak-rss-kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
sys.exit(p.returncode)\n";

const KEEP_PREFIX: &str = "localhost/bench/keep";
const DROP_PREFIX: &str = "localhost/bench/drop";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let total: usize = std::env::var("IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let removable = total / 2;
    let containerd = Containerd::start().await?;
    eprintln!("bench: importing {total} images ({removable} removable)…");
    let started = Instant::now();
    load(&containerd, KEEP_PREFIX, 0, total - removable).await?;
    let drop = load(&containerd, DROP_PREFIX, 0, removable).await?;
    eprintln!("bench: imported in {:.1?}", started.elapsed());

    // The floor: the raw CRI calls, sequential, by a minimal client.
    let raw = raw_calls(&containerd.endpoint(), &drop).await?;
    // Put the removed images back (same content, same IDs) for the real run.
    load(&containerd, DROP_PREFIX, 0, removable).await?;

    let state = tempfile::tempdir()?;
    let exclude = format!("{KEEP_PREFIX}/*");
    // A small parent reports the peak RSS of imagecleaner alone: this process's own children
    // include the `ctr` imports, which would dominate RUSAGE_CHILDREN here.
    let started = Instant::now();
    let output = Command::new("python3")
        .args(["-c", PEAK_RSS, env!("CARGO_BIN_EXE_imagecleaner")])
        .args([
            "node",
            "clean",
            "--runtime-endpoint",
            &containerd.endpoint(),
        ])
        .args(["--min-unused", "0", "--exclude", &exclude, "-o", "json"])
        .arg("--state-dir")
        .arg(state.path())
        .output()?;
    let wall = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "imagecleaner failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let rss_kib: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no peak RSS reported: {stderr}"))?;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let removed = report["summary"]["removed"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        removed as usize == removable,
        "removed {removed}, expected {removable}"
    );

    println!("images: {total}, removed: {removed}");
    println!("raw CRI calls (sequential sum): {:.3} s", raw.as_secs_f64());
    println!(
        "imagecleaner node clean (wall):  {:.3} s",
        wall.as_secs_f64()
    );
    println!("ratio: {:.2}x", wall.as_secs_f64() / raw.as_secs_f64());
    println!("peak RSS: {:.1} MiB", rss_kib / 1024.0);
    println!("freed: {} bytes", report["summary"]["freed_bytes"]);
    containerd.shutdown().await?;
    Ok(())
}

/// Imports `count` small images under `prefix`, sharing a busybox base, eight at a time.
async fn load(
    containerd: &Containerd,
    prefix: &str,
    from: usize,
    count: usize,
) -> anyhow::Result<Vec<BuiltImage>> {
    let base = Layer::busybox()?;
    stream::iter(from..from + count)
        .map(|i| {
            let spec = ImageSpec::new()
                .layer(base.clone())
                .layer(Layer::random(seed(prefix, i), 8 * 1024))
                .name(format!("{prefix}/app{i}:1"));
            async move { containerd.load(&spec).await }
        })
        .buffer_unordered(8)
        .try_collect()
        .await
}

fn seed(prefix: &str, i: usize) -> u64 {
    let salt = if prefix == KEEP_PREFIX {
        1 << 32
    } else {
        2 << 32
    };
    salt + i as u64
}

/// The CRI calls a clean of `drop` must make, one after another, timed as a sum.
async fn raw_calls(endpoint: &str, drop: &[BuiltImage]) -> anyhow::Result<Duration> {
    let channel = endpoint
        .parse::<Endpoint>()?
        .connect(Duration::from_secs(5))
        .await?;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);
    let started = Instant::now();
    images
        .list_images(proto::ListImagesRequest::default())
        .await?;
    runtime
        .list_containers(proto::ListContainersRequest::default())
        .await?;
    runtime
        .list_pod_sandbox(proto::ListPodSandboxRequest::default())
        .await?;
    runtime
        .status(proto::StatusRequest { verbose: true })
        .await?;
    for image in drop {
        runtime
            .list_containers(proto::ListContainersRequest::default())
            .await?;
        runtime
            .list_pod_sandbox(proto::ListPodSandboxRequest::default())
            .await?;
        images
            .remove_image(proto::RemoveImageRequest {
                image: Some(proto::ImageSpec {
                    image: image.id.clone(),
                    ..Default::default()
                }),
            })
            .await?;
    }
    Ok(started.elapsed())
}
