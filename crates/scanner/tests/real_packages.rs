//! Scans of filesystems built from real Debian packages, against OSV records built from the
//! CVE facts in those packages' own changelogs. The expected findings are exactly the CVEs
//! the changelog says were fixed after the installed version: no miss, nothing spurious.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use image_cleaner_scanner::fs::archive::Archive;
use image_cleaner_scanner::fs::layers::{FileTree, read_layer};
use image_cleaner_scanner::fs::overlay::Overlay;
use image_cleaner_scanner::fs::rootfs::RootDir;
use image_cleaner_scanner::{Database, Family, ImageScan, ScanPolicy, Severity, scan, wanted};
use support::debian::{self, RealData};

struct Fixture {
    data: &'static RealData,
    db: Database,
    db_path: PathBuf,
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let data = debian::real_data();
    let dir = tempfile::tempdir().unwrap();
    let db_path = debian::build_db(data, dir.path());
    let db = Database::open(&db_path).unwrap();
    Fixture {
        data,
        db,
        db_path,
        dir,
    }
}

fn cves(scan: &ImageScan, package: &str) -> BTreeSet<String> {
    scan.findings
        .iter()
        .filter(|f| f.package == package)
        .map(|f| f.vulnerability_id.clone())
        .collect()
}

/// A Debian root with base-files and the given packages, recorded in `status` or, for
/// distroless, in `status.d`.
fn debian_root(root: &Path, data: &RealData, debs: &[&Path], distroless: bool) {
    debian::extract(&data.base_files, root);
    let dpkg = root.join("var/lib/dpkg");
    std::fs::create_dir_all(dpkg.join("status.d")).unwrap();
    let mut status = String::new();
    for deb in debs {
        debian::extract(deb, root);
        if distroless {
            let name = debian::field(&debian::control(deb), "Package")
                .unwrap()
                .to_string();
            std::fs::write(
                dpkg.join("status.d").join(name),
                debian::distroless_stanza(deb),
            )
            .unwrap();
        } else {
            status.push_str(&debian::status_stanza(deb));
            status.push('\n');
        }
    }
    if !distroless {
        // A removed package's leftover stanza must not count.
        status.push_str(&debian::status_stanza(&data.zlib_new).replace(
            "Status: install ok installed",
            "Status: deinstall ok config-files",
        ));
        std::fs::write(dpkg.join("status"), status).unwrap();
    }
}

fn assert_exact(scan: &ImageScan, data: &RealData, zlib: bool, expat: bool) {
    let os = scan.os.as_ref().expect("OS detected");
    assert_eq!(os.family, Family::Debian);
    assert_eq!(os.release(), "12");
    let want_zlib = if zlib {
        data.zlib_open.clone()
    } else {
        BTreeSet::new()
    };
    let want_expat = if expat {
        data.expat_open.clone()
    } else {
        BTreeSet::new()
    };
    assert_eq!(cves(scan, "zlib1g"), want_zlib, "zlib findings");
    assert_eq!(cves(scan, "libexpat1"), want_expat, "expat findings");
    assert_eq!(
        scan.findings.len(),
        want_zlib.len() + want_expat.len(),
        "nothing else: {:?}",
        scan.findings
    );
    for f in &scan.findings {
        let fact = data
            .facts
            .iter()
            .find(|fact| fact.cve == f.vulnerability_id && fact.source == f.source_package)
            .expect("every finding is a fact");
        assert_eq!(f.fixed_version.as_deref(), Some(fact.fixed.as_str()));
        assert_eq!(Some(f.severity), Severity::from_vendor(&fact.urgency));
    }
}

#[test]
fn facts_are_real() {
    let f = fixture();
    // The changelogs name CVEs fixed after the old versions, and older ones fixed before.
    assert!(!f.data.zlib_open.is_empty() && !f.data.expat_open.is_empty());
    assert!(
        f.data
            .facts
            .iter()
            .any(|x| x.cve == "CVE-2022-37434" && x.fixed == "1:1.2.11.dfsg-4.1")
    );
    let header = f.db.header();
    assert_eq!(header.records, f.data.facts.len());
    assert_eq!(header.ecosystems.keys().collect::<Vec<_>>(), ["debian 12"]);
}

#[test]
fn rootfs_with_dpkg_status() {
    let f = fixture();
    let root = f.dir.path().join("root");
    debian_root(&root, f.data, &[&f.data.zlib_old, &f.data.expat_old], false);
    let scan = scan(&RootDir::new(&root), &f.db, SystemTime::now()).unwrap();
    assert_exact(&scan, f.data, true, true);
    assert_eq!(scan.databases, ["var/lib/dpkg/status"]);
    // zlib's open CVEs were an urgency=high upload: the default policy condemns the image.
    let ids = scan.condemning_ids(&ScanPolicy::default());
    assert!(f.data.zlib_open.iter().all(|c| ids.contains(c)), "{ids:?}");
}

#[test]
fn fixed_package_is_clean() {
    let f = fixture();
    let root = f.dir.path().join("root");
    debian_root(&root, f.data, &[&f.data.zlib_new], false);
    let scan = scan(&RootDir::new(&root), &f.db, SystemTime::now()).unwrap();
    assert_eq!(scan.findings, []);
    assert!(scan.condemning_ids(&ScanPolicy::default()).is_empty());
}

#[test]
fn distroless_status_d() {
    let f = fixture();
    let root = f.dir.path().join("root");
    debian_root(&root, f.data, &[&f.data.zlib_old, &f.data.expat_old], true);
    let scan = scan(&RootDir::new(&root), &f.db, SystemTime::now()).unwrap();
    assert_exact(&scan, f.data, true, true);
    assert_eq!(scan.databases.len(), 2);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Layer directories as containerd's overlayfs snapshotter writes them: whiteouts are
/// character devices 0:0 and opaque directories carry `trusted.overlay.opaque=y`.
#[test]
fn overlay_layers_with_device_whiteouts_and_opaque_xattrs() {
    if !is_root() {
        eprintln!("skipped: making 0:0 devices and trusted xattrs needs root");
        return;
    }
    let f = fixture();
    let base = f.dir.path().join("layers/1");
    debian_root(&base, f.data, &[&f.data.zlib_old, &f.data.expat_old], true);
    // Layer 2 deletes expat's record with a 0:0 device.
    let mid = f.dir.path().join("layers/2");
    std::fs::create_dir_all(mid.join("var/lib/dpkg/status.d")).unwrap();
    let status = std::process::Command::new("mknod")
        .arg(mid.join("var/lib/dpkg/status.d/libexpat1"))
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(status.success());
    let two = Overlay::new("two layers", vec![mid.clone(), base.clone()]);
    assert_exact(
        &scan(&two, &f.db, SystemTime::now()).unwrap(),
        f.data,
        true,
        false,
    );

    // Layer 3 makes status.d opaque and brings back only expat: zlib's record is hidden.
    let top = f.dir.path().join("layers/3");
    let status_d = top.join("var/lib/dpkg/status.d");
    std::fs::create_dir_all(&status_d).unwrap();
    xattr::set(&status_d, "trusted.overlay.opaque", b"y").unwrap();
    std::fs::write(
        status_d.join("libexpat1"),
        debian::distroless_stanza(&f.data.expat_old),
    )
    .unwrap();
    let three = Overlay::new("three layers", vec![top, mid, base]);
    assert_exact(
        &scan(&three, &f.db, SystemTime::now()).unwrap(),
        f.data,
        false,
        true,
    );
}

fn tar_of_dir(root: &Path) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", root).unwrap();
    builder.into_inner().unwrap()
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Three layers as tarballs: the base (gzip), a layer deleting expat's record with a
/// `.wh.` entry (zstd), and one making `status.d` opaque with only zlib in it (plain).
fn layer_blobs(f: &Fixture) -> Vec<(Vec<u8>, Vec<u8>)> {
    let base_root = f.dir.path().join("base");
    debian_root(&base_root, f.data, &[&f.data.expat_old], true);
    let base_tar = tar_of_dir(&base_root);
    let zlib = debian::distroless_stanza(&f.data.zlib_old);
    let mid_tar = tar_of(&[("var/lib/dpkg/status.d/.wh.libexpat1", b"")]);
    let top_tar = tar_of(&[
        ("var/lib/dpkg/status.d/.wh..wh..opq", b""),
        ("var/lib/dpkg/status.d/zlib1g", zlib.as_bytes()),
    ]);
    vec![
        (gzip(&base_tar), base_tar),
        (zstd::encode_all(mid_tar.as_slice(), 3).unwrap(), mid_tar),
        (top_tar.clone(), top_tar),
    ]
}

#[test]
fn streamed_layers_with_tar_whiteouts_and_opaque_markers() {
    let f = fixture();
    let blobs = layer_blobs(&f);
    let wanted = wanted();
    let mut tree = FileTree::new("layers");
    for (blob, _) in blobs.iter().rev() {
        tree.add_lower(&read_layer(blob.as_slice(), &wanted).unwrap());
    }
    assert_exact(
        &scan(&tree, &f.db, SystemTime::now()).unwrap(),
        f.data,
        true,
        false,
    );
}

#[test]
fn oci_archive() {
    let f = fixture();
    let blobs = layer_blobs(&f);
    let path = f.dir.path().join("image.tar");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    for (blob, tar) in &blobs {
        let digest = sha256(blob);
        files.push((format!("blobs/sha256/{}", &digest[7..]), blob.clone()));
        layers.push((digest, sha256(tar), blob.len()));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
    })
    .to_string()
    .into_bytes();
    let config_digest = sha256(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().map(|(d, _, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": size})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let manifest_digest = sha256(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": manifest.len(), "annotations": {"io.containerd.image.name": "example.com/app:1"}}],
    })
    .to_string()
    .into_bytes();
    files.push((format!("blobs/sha256/{}", &config_digest[7..]), config));
    files.push((format!("blobs/sha256/{}", &manifest_digest[7..]), manifest));
    files.push(("index.json".into(), index));
    files.push((
        "oci-layout".into(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    ));
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    std::fs::write(&path, tar_of(&entries)).unwrap();

    let archive = Archive::open(&path).unwrap();
    let images = archive.images().unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].id, config_digest);
    assert_eq!(images[0].names, ["example.com/app:1"]);
    let tree = archive.file_tree(&images[0], &wanted()).unwrap();
    assert_exact(
        &scan(&tree, &f.db, SystemTime::now()).unwrap(),
        f.data,
        true,
        false,
    );
}

#[test]
fn image_without_package_database_is_reported_not_condemned() {
    let f = fixture();
    let root = f.dir.path().join("root");
    debian::extract(&f.data.base_files, &root);
    let scan = scan(&RootDir::new(&root), &f.db, SystemTime::now()).unwrap();
    assert_eq!(scan.packages, 0);
    assert!(
        scan.notes
            .iter()
            .any(|n| n.contains("no OS package database")),
        "{:?}",
        scan.notes
    );
    assert!(scan.condemning_ids(&ScanPolicy::default()).is_empty());
}

#[test]
fn unreadable_package_database_is_an_error_naming_the_file() {
    let f = fixture();
    let root = f.dir.path().join("root");
    debian::extract(&f.data.base_files, &root);
    let dpkg = root.join("var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    std::os::unix::fs::symlink("status", dpkg.join("status")).unwrap();
    let err = scan(&RootDir::new(&root), &f.db, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/var/lib/dpkg/status") && err.contains("symbolic links"),
        "{err}"
    );

    std::fs::remove_file(dpkg.join("status")).unwrap();
    std::fs::create_dir(dpkg.join("status")).unwrap();
    let err = scan(&RootDir::new(&root), &f.db, SystemTime::now()).unwrap_err();
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        text.contains("/var/lib/dpkg/status") && text.contains("directory"),
        "{text}"
    );
}

#[test]
fn corrupt_database_is_a_clear_error() {
    let f = fixture();
    let bytes = std::fs::read(&f.db_path).unwrap();
    let damaged = f.dir.path().join("damaged.db");

    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&damaged, &flipped).unwrap();
    let err = Database::open(&damaged).unwrap_err().to_string();
    assert!(
        err.contains("damaged.db") && err.contains("checksum"),
        "{err}"
    );

    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let err = Database::open(&damaged).unwrap_err().to_string();
    assert!(err.contains("damaged.db"), "{err}");

    std::fs::write(&damaged, b"{\"id\": \"not a database\"}").unwrap();
    let err = Database::open(&damaged).unwrap_err().to_string();
    assert!(
        err.contains("damaged.db") && err.contains("signature"),
        "{err}"
    );

    let mut future = bytes.clone();
    future[8] = 99;
    std::fs::write(&damaged, &future).unwrap();
    let err = Database::open(&damaged).unwrap_err().to_string();
    assert!(
        err.contains("format 99") && err.contains("db build"),
        "{err}"
    );
}
