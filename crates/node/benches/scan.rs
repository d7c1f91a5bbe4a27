//! Scan benchmark on a real containerd: 100 images (10 bases of real files with this
//! machine's dpkg database, each under 10 applications), scanned from unpacked snapshots and
//! from streamed layers, against the decompression floor of the same layers measured in the
//! same run, with each mode's peak RSS.
//!
//! Run on demand: `cargo bench -p image-cleaner-node --bench scan` (root, containerd, runc,
//! ctr). Each mode runs in a child process of this binary so its peak RSS is its own.

#[path = "../../scanner/tests/support/debian.rs"]
mod debian;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use image_cleaner_cri::snapshots::Snapshots;
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::Runtime;
use image_cleaner_node::scan::{self, Scanner, Settings};
use image_cleaner_scanner::Database;
use image_cleaner_testkit::{Containerd, FileEntry, ImageSpec, Layer};

const BASES: usize = 10;
const APPS_PER_BASE: usize = 10;
const APP_LAYER_BYTES: usize = 512 * 1024;
/// Real files for the base layers: this machine's Perl library (about 21 MB).
const BASE_CONTENT: &str = "/usr/share/perl";

fn files_under(host: &Path, prefix: &str, out: &mut Vec<FileEntry>) {
    let mut children: Vec<PathBuf> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    children.sort();
    for path in children {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let rel = format!("{prefix}/{name}");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            out.push(FileEntry::symlink(rel, target.to_string_lossy()));
        } else if meta.is_dir() {
            files_under(&path, &rel, out);
        } else if meta.is_file() {
            out.push(FileEntry::file(rel, std::fs::read(&path).unwrap()));
        }
    }
}

fn base_layer(n: usize, base_files: &Path) -> Layer {
    let mut entries = Vec::new();
    files_under(
        Path::new(BASE_CONTENT),
        BASE_CONTENT.trim_start_matches('/'),
        &mut entries,
    );
    files_under(&base_files.join("etc"), "etc", &mut entries);
    files_under(&base_files.join("usr/lib"), "usr/lib", &mut entries);
    entries.retain(|e| !matches!(e, FileEntry::File { path, .. } if path == "etc/hostname"));
    entries.push(FileEntry::file("etc/hostname", format!("base-{n}\n")));
    entries.push(FileEntry::file(
        "var/lib/dpkg/status",
        std::fs::read("/var/lib/dpkg/status").unwrap(),
    ));
    Layer::from_files(entries).unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// One mode, in this (child) process; prints one JSON line.
async fn child(mode: &str, endpoint: &str, db: &Path) {
    let endpoint: Endpoint = endpoint.parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let mut images = runtime.cri.list_images().await.unwrap();
    images.retain(|i| i.names.iter().any(|n| n.contains("/bench/")));
    images.sort_by(|a, b| a.names.cmp(&b.names));
    let started = Instant::now();
    let result = match mode {
        "snapshot" | "layers" => {
            let db = Arc::new(Database::open(db).unwrap());
            let mut settings = Settings::new(Scanner::Native(db));
            settings.use_snapshots = mode == "snapshot";
            settings.concurrency = 1;
            let results = scan::scan_images(&runtime, &images, &settings, &|_, _| {}).await;
            let wall = started.elapsed();
            let failed = results.iter().filter(|r| r.error.is_some()).count();
            assert_eq!(
                failed,
                0,
                "{:?}",
                results.iter().find(|r| r.error.is_some())
            );
            let packages = results
                .first()
                .and_then(|r| r.scan.as_ref())
                .map_or(0, |s| s.packages);
            let mut times: Vec<f64> = results.iter().map(|r| r.millis as f64).collect();
            // With shared bases, the first image of each base reads it cold.
            let mut seen = std::collections::BTreeSet::new();
            let mut cold: Vec<f64> = Vec::new();
            for (image, r) in images.iter().zip(&results) {
                let base = image.names[0]
                    .split("/app")
                    .next()
                    .unwrap_or("")
                    .to_string();
                if seen.insert(base) {
                    cold.push(r.millis as f64);
                }
            }
            times.sort_by(f64::total_cmp);
            cold.sort_by(f64::total_cmp);
            serde_json::json!({
                "mode": mode, "images": images.len(), "packages_per_image": packages,
                "wall_s": wall.as_secs_f64(),
                "per_image_ms_mean": wall.as_secs_f64() * 1000.0 / images.len() as f64,
                "per_image_ms_median": percentile(&times, 0.5),
                "per_image_ms_p95": percentile(&times, 0.95),
                "cold_image_ms_median": percentile(&cold, 0.5),
                "peak_rss_mib": peak_rss_mib(),
            })
        }
        "steps" => {
            // Where a snapshot scan's time goes, per image, in one shared lease: taking the
            // view (config read, Snapshots.View), reading and matching, removing the view.
            let db = Database::open(db).unwrap();
            let snapshots = bench_snapshots(&runtime).await;
            let (mut take, mut read, mut release) = (Vec::new(), Vec::new(), Vec::new());
            let lease = snapshots.lease().await.unwrap();
            for image in &images {
                let t = Instant::now();
                let view = snapshots.view_in(&lease, &image.id).await.unwrap().unwrap();
                take.push(t.elapsed().as_secs_f64() * 1000.0);
                let t = Instant::now();
                let overlay =
                    image_cleaner_scanner::fs::overlay::Overlay::new("bench", view.layer_dirs());
                image_cleaner_scanner::scan(&overlay, &db, std::time::SystemTime::now()).unwrap();
                read.push(t.elapsed().as_secs_f64() * 1000.0);
                let t = Instant::now();
                view.release().await.unwrap();
                release.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lease.release().await.unwrap();
            for v in [&mut take, &mut read, &mut release] {
                v.sort_by(f64::total_cmp);
            }
            serde_json::json!({
                "mode": mode,
                "take_view_ms_median": percentile(&take, 0.5),
                "read_and_match_ms_median": percentile(&read, 0.5),
                "release_ms_median": percentile(&release, 0.5),
            })
        }
        "floor" => {
            // Every unique layer blob, streamed from the content store, gunzipped and
            // walked as tar, every byte read: what reading the layers costs at minimum.
            let snapshots = bench_snapshots(&runtime).await;
            let mut blobs = std::collections::BTreeSet::new();
            for image in &images {
                let layers = snapshots.image_layers(&image.id).await.unwrap();
                blobs.extend(layers.blobs.into_iter().map(|(d, _)| d));
            }
            let started = Instant::now();
            let mut tar_bytes = 0u64;
            for digest in &blobs {
                let reader = snapshots.open_blob(digest);
                tar_bytes += tokio::task::spawn_blocking(move || {
                    let (_, decompressed) =
                        image_cleaner_scanner::fs::layers::decompress(reader).unwrap();
                    let mut archive = tar::Archive::new(decompressed);
                    let mut n = 0u64;
                    for entry in archive.entries().unwrap() {
                        let mut entry = entry.unwrap();
                        let mut sink = Vec::new();
                        n += entry.read_to_end(&mut sink).unwrap() as u64 + 512;
                    }
                    n
                })
                .await
                .unwrap();
            }
            let wall = started.elapsed();
            serde_json::json!({
                "mode": mode, "blobs": blobs.len(), "tar_mib": tar_bytes as f64 / 1048576.0,
                "wall_s": wall.as_secs_f64(),
                "mib_per_s": tar_bytes as f64 / 1048576.0 / wall.as_secs_f64(),
                "peak_rss_mib": peak_rss_mib(),
            })
        }
        other => panic!("unknown mode {other}"),
    };
    println!("{result}");
}

async fn bench_snapshots(runtime: &Runtime) -> Snapshots {
    let config = runtime.cri.runtime_config().await.unwrap();
    let snapshotter = config
        .as_ref()
        .and_then(|c| c.pointer("/containerd/snapshotter"))
        .and_then(|s| s.as_str())
        .unwrap_or("overlayfs")
        .to_string();
    Snapshots::new(
        runtime.cri.endpoint(),
        runtime.cri.channel(),
        &snapshotter,
        Duration::from_secs(60),
    )
}

fn run_child(mode: &str, endpoint: &str, db: &Path) -> serde_json::Value {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode, endpoint])
        .arg(db)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(&args[at + 1], &args[at + 2], Path::new(&args[at + 3])).await;
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` probes the binary; nothing to list or test.
        return;
    }
    let data = debian::real_data();
    let work = tempfile::tempdir().unwrap();
    let db = debian::build_db(data, work.path());
    let base_files = work.path().join("base-files");
    debian::extract(&data.base_files, &base_files);

    let containerd = Containerd::start().await.unwrap();
    let setup = Instant::now();
    let busybox = Layer::busybox().unwrap();
    let mut base_bytes = (0u64, 0u64);
    for b in 0..BASES {
        let base = base_layer(b, &base_files);
        base_bytes = (base.uncompressed_size(), base.size());
        for a in 0..APPS_PER_BASE {
            let spec = ImageSpec::new()
                .name(format!("example.com/bench/base{b}/app{a}:1"))
                .layer(busybox.clone())
                .layer(base.clone())
                .layer(Layer::random(
                    (b * APPS_PER_BASE + a) as u64,
                    APP_LAYER_BYTES,
                ));
            containerd.load(&spec).await.unwrap();
        }
    }
    eprintln!(
        "{} images on {} bases ({:.1} MiB tar, {:.1} MiB gzip each) ready in {:.1}s",
        BASES * APPS_PER_BASE,
        BASES,
        base_bytes.0 as f64 / 1048576.0,
        base_bytes.1 as f64 / 1048576.0,
        setup.elapsed().as_secs_f64()
    );
    let endpoint = containerd.endpoint();
    let snapshot = run_child("snapshot", &endpoint, &db);
    let steps = run_child("steps", &endpoint, &db);
    let layers = run_child("layers", &endpoint, &db);
    let floor = run_child("floor", &endpoint, &db);
    let ratio = floor["wall_s"].as_f64().unwrap_or(0.0) / layers["wall_s"].as_f64().unwrap_or(1.0);
    println!("{snapshot}");
    println!("{steps}");
    println!("{layers}");
    println!("{floor}");
    println!(
        "{}",
        serde_json::json!({"layers_vs_floor": ratio, "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)})
    );
    containerd.shutdown().await.unwrap();
}
