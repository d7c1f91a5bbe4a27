//! `imagecleaner db build|info`, `imagecleaner scan` and `node plan --scan`, run as an
//! operator would, on data from real Debian packages (see the scanner's test support).

#[path = "../../scanner/tests/support/debian.rs"]
mod debian;

use std::path::Path;
use std::process::{Command, Output};

use image_cleaner_testkit::{Containerd, FileEntry, ImageSpec, Layer};

fn imagecleaner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imagecleaner"))
        .args(args)
        .env_remove("IMAGECLEANER_DB")
        .env_remove("IMAGECLEANER_RUNTIME_ENDPOINT")
        .output()
        .expect("runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The OSV records of the facts, written where `db build` can read them.
fn osv_dir(data: &debian::RealData, dir: &Path) -> String {
    let records: Vec<_> = data.facts.iter().map(debian::osv_record).collect();
    let osv = dir.join("osv");
    debian::write_records(&osv, &records);
    osv.display().to_string()
}

/// A bookworm root with the old zlib installed.
fn vulnerable_root(data: &debian::RealData, root: &Path) {
    debian::extract(&data.base_files, root);
    debian::extract(&data.zlib_old, root);
    let dpkg = root.join("var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    std::fs::write(dpkg.join("status"), debian::status_stanza(&data.zlib_old)).unwrap();
}

/// The CVEs of the old zlib that the default severities (HIGH, CRITICAL) count.
fn zlib_condemning(data: &debian::RealData) -> Vec<String> {
    data.facts
        .iter()
        .filter(|f| f.source == "zlib" && data.zlib_open.contains(&f.cve))
        .filter(|f| matches!(f.urgency.as_str(), "high" | "critical" | "emergency"))
        .map(|f| f.cve.clone())
        .collect()
}

#[test]
fn build_inspect_and_scan_a_root_filesystem() {
    let data = debian::real_data();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vulns.db");
    let db_str = db.display().to_string();
    let built = imagecleaner(&["db", "build", &osv_dir(data, dir.path()), "-o", &db_str]);
    assert_eq!(built.status.code(), Some(0), "{}", text(&built.stderr));
    assert!(text(&built.stdout).contains(&format!("{} records", data.facts.len())));

    let info = imagecleaner(&["db", "info", &db_str, "-o", "json"]);
    assert_eq!(info.status.code(), Some(0), "{}", text(&info.stderr));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["header"]["records"], data.facts.len());
    assert!(info["header"]["ecosystems"]["debian 12"].as_u64().unwrap() > 0);
    assert!(info["age_seconds"].as_u64().unwrap() < 600);
    let table = imagecleaner(&["db", "info", &db_str]);
    assert!(
        text(&table.stdout).contains("debian 12"),
        "{}",
        text(&table.stdout)
    );

    let root = dir.path().join("root");
    vulnerable_root(data, &root);
    let root_str = root.display().to_string();
    let scan = imagecleaner(&["scan", "--rootfs", &root_str, "--db", &db_str, "-o", "json"]);
    assert_eq!(scan.status.code(), Some(0), "{}", text(&scan.stderr));
    let report: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    let image = &report["images"][0];
    let condemned: Vec<String> = serde_json::from_value(image["condemned_by"].clone()).unwrap();
    assert_eq!(condemned, zlib_condemning(data));
    assert_eq!(report["summary"]["vulnerable"], 1);
    let found: Vec<&str> = image["scan"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["vulnerability_id"].as_str().unwrap())
        .collect();
    assert_eq!(found.len(), data.zlib_open.len(), "{found:?}");

    let table = imagecleaner(&["scan", "--rootfs", &root_str, "--db", &db_str]);
    let out = text(&table.stdout);
    assert!(
        out.contains("verdict: vulnerable") && out.contains("zlib1g"),
        "{out}"
    );
}

#[test]
fn bad_input_and_broken_databases_are_clear() {
    let data = debian::real_data();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    vulnerable_root(data, &root);
    let root_str = root.display().to_string();

    let no_db = imagecleaner(&["scan", "--rootfs", &root_str]);
    assert_eq!(no_db.status.code(), Some(2));
    assert!(
        text(&no_db.stderr).contains("--db"),
        "{}",
        text(&no_db.stderr)
    );

    let db = dir.path().join("vulns.db");
    let db_str = db.display().to_string();
    imagecleaner(&["db", "build", &osv_dir(data, dir.path()), "-o", &db_str]);
    let severity = imagecleaner(&[
        "scan",
        "--rootfs",
        &root_str,
        "--db",
        &db_str,
        "--severity",
        "SEVERE",
    ]);
    assert_eq!(severity.status.code(), Some(2));
    assert!(
        text(&severity.stderr).contains("--severity"),
        "{}",
        text(&severity.stderr)
    );

    let mut bytes = std::fs::read(&db).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, bytes).unwrap();
    let damaged_str = damaged.display().to_string();
    let corrupt = imagecleaner(&["scan", "--rootfs", &root_str, "--db", &damaged_str]);
    assert_eq!(corrupt.status.code(), Some(1));
    let err = text(&corrupt.stderr);
    assert!(
        err.contains("damaged.db") && err.contains("checksum"),
        "{err}"
    );

    let missing = imagecleaner(&[
        "scan",
        "--archive",
        "/nonexistent/image.tar",
        "--db",
        &db_str,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/nonexistent/image.tar"));

    // An absent Trivy is a failed scan of that target (exit 3), not a crash.
    let trivy = imagecleaner(&[
        "scan",
        "--rootfs",
        &root_str,
        "--scanner",
        "trivy",
        "--trivy",
        "/nonexistent/trivy",
    ]);
    assert_eq!(trivy.status.code(), Some(3), "{}", text(&trivy.stderr));
    assert!(
        text(&trivy.stdout).contains("NOT SCANNED"),
        "{}",
        text(&trivy.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn node_plan_with_scan_condemns_the_vulnerable_image() {
    let data = debian::real_data();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vulns.db");
    let db_str = db.display().to_string();
    imagecleaner(&["db", "build", &osv_dir(data, dir.path()), "-o", &db_str]);

    let root = dir.path().join("root");
    vulnerable_root(data, &root);
    let mut entries = Vec::new();
    for path in [
        "etc/os-release",
        "etc/debian_version",
        "usr/lib/os-release",
        "var/lib/dpkg/status",
    ] {
        let full = root.join(path);
        let meta = std::fs::symlink_metadata(&full).unwrap();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&full).unwrap();
            entries.push(FileEntry::symlink(path, target.to_string_lossy()));
        } else {
            entries.push(FileEntry::file(path, std::fs::read(&full).unwrap()));
        }
    }
    let containerd = Containerd::start().await.unwrap();
    let vulnerable = containerd
        .load(
            &ImageSpec::new()
                .name("example.com/debian/zlib-old:1")
                .layer(Layer::busybox().unwrap())
                .layer(Layer::from_files(entries).unwrap()),
        )
        .await
        .unwrap();
    let clean = containerd
        .load(
            &ImageSpec::new()
                .name("example.com/busybox:1")
                .layer(Layer::busybox().unwrap()),
        )
        .await
        .unwrap();
    let endpoint = containerd.endpoint();
    let state = dir.path().join("state").display().to_string();
    let plan = imagecleaner(&[
        "node",
        "plan",
        "--runtime-endpoint",
        &endpoint,
        "--state-dir",
        &state,
        "--min-unused",
        "10d",
        "--scan",
        "--db",
        &db_str,
        "-o",
        "json",
    ]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    let report: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let image = |id: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap()
    };
    let condemned = image(&vulnerable.id);
    assert_eq!(condemned["reason"], "vulnerable", "{condemned}");
    let ids: Vec<String> = serde_json::from_value(condemned["vulnerabilities"].clone()).unwrap();
    assert_eq!(ids, zlib_condemning(data));
    // Pulled just now: without a vulnerability it is too recent to remove.
    assert_eq!(image(&clean.id)["reason"], "recent");
    assert!(text(&plan.stderr).contains("vulnerable: example.com/debian/zlib-old:1"));

    let no_db = imagecleaner(&[
        "node",
        "plan",
        "--runtime-endpoint",
        &endpoint,
        "--state-dir",
        &state,
        "--scan",
    ]);
    assert_eq!(no_db.status.code(), Some(2), "{}", text(&no_db.stderr));
    containerd.shutdown().await.unwrap();
}
