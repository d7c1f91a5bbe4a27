//! Vulnerability scanning and vulnerability-based removal on a real containerd, with images
//! made of real Debian packages and a database built from those packages' changelogs.
//!
//! containerd unpacks the layers itself, so the whiteouts (0:0 devices) and opaque
//! directories (xattrs) the scanner meets in the snapshot directories are containerd's own.

#[path = "../../scanner/tests/support/debian.rs"]
mod debian;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use image_cleaner_core::{Decision, ListKind, PatternSet, Policy, Reason, References};
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::scan::{self, Method, Scanner, Settings};
use image_cleaner_node::{Options, Runtime};
use image_cleaner_scanner::{Database, Severity};
use image_cleaner_testkit::{BuiltImage, Containerd, FileEntry, ImageSpec, Layer, pods};

const VULNERABLE: &str = "example.com/debian/vulnerable:1";
const RUNNING: &str = "example.com/debian/vulnerable-running:1";
const EXCLUDED: &str = "example.com/debian/vulnerable-excluded:1";
const PATCHED: &str = "example.com/debian/patched:1";
const NO_DATABASE: &str = "example.com/debian/dpkg-whited-out:1";
const DISTROLESS: &str = "example.com/distroless/opaque:1";

fn deb_layer(debs: &[&Path], extra: Vec<FileEntry>) -> Layer {
    let dir = tempfile::tempdir().unwrap();
    for deb in debs {
        debian::extract(deb, dir.path());
    }
    let mut entries = FileEntry::tree(dir.path()).unwrap();
    // Leave the parent directories of the extra entries to the layer builder.
    entries.retain(|e| !matches!(e, FileEntry::Dir { path, .. } if path.starts_with("var")));
    entries.extend(extra);
    Layer::from_files(entries).unwrap()
}

struct Node {
    containerd: Containerd,
    images: BTreeMap<&'static str, BuiltImage>,
}

async fn node(data: &debian::RealData) -> Node {
    let containerd = Containerd::start().await.unwrap();
    let expat_new = debian::deb(debian::EXPAT_NEW.0, Some(debian::EXPAT_NEW.1));
    let base = deb_layer(&[&data.base_files], Vec::new());
    let mut status = debian::status_stanza(&data.zlib_old);
    status.push('\n');
    status.push_str(&debian::status_stanza(&data.expat_old));
    let old_packages = deb_layer(
        &[&data.zlib_old, &data.expat_old],
        vec![FileEntry::file("var/lib/dpkg/status", status)],
    );
    let spec = |name: &str| {
        ImageSpec::new()
            .name(name)
            .layer(Layer::busybox().unwrap())
            .layer(base.clone())
            .layer(old_packages.clone())
            .label("fixture", name)
    };
    let mut images = BTreeMap::new();
    for name in [VULNERABLE, RUNNING, EXCLUDED] {
        images.insert(name, containerd.load(&spec(name)).await.unwrap());
    }
    // A later layer upgrades zlib and expat: the status it writes replaces the old one.
    let mut fixed_status = debian::status_stanza(&data.zlib_new);
    fixed_status.push('\n');
    fixed_status.push_str(&debian::status_stanza(&expat_new));
    let upgrade = deb_layer(
        &[&data.zlib_new, &expat_new],
        vec![FileEntry::file("var/lib/dpkg/status", fixed_status)],
    );
    images.insert(
        PATCHED,
        containerd
            .load(&spec(PATCHED).layer(upgrade))
            .await
            .unwrap(),
    );
    // A later layer deletes the dpkg database: nothing left to match.
    let whiteout = Layer::from_files(vec![FileEntry::whiteout("var/lib/dpkg/status")]).unwrap();
    images.insert(
        NO_DATABASE,
        containerd
            .load(&spec(NO_DATABASE).layer(whiteout))
            .await
            .unwrap(),
    );
    // Distroless: status.d records, then an opaque status.d holding only the fixed expat.
    let distroless_old = Layer::from_files(vec![
        FileEntry::file(
            "var/lib/dpkg/status.d/zlib1g",
            debian::distroless_stanza(&data.zlib_old),
        ),
        FileEntry::file(
            "var/lib/dpkg/status.d/libexpat1",
            debian::distroless_stanza(&data.expat_old),
        ),
    ])
    .unwrap();
    let distroless_top = Layer::from_files(vec![
        FileEntry::opaque("var/lib/dpkg/status.d"),
        FileEntry::file(
            "var/lib/dpkg/status.d/libexpat1",
            debian::distroless_stanza(&expat_new),
        ),
    ])
    .unwrap();
    let distroless = ImageSpec::new()
        .name(DISTROLESS)
        .layer(base.clone())
        .layer(distroless_old)
        .layer(distroless_top);
    images.insert(DISTROLESS, containerd.load(&distroless).await.unwrap());
    Node { containerd, images }
}

fn expected_condemning(data: &debian::RealData) -> Vec<String> {
    let high = |cve: &String, source: &str| {
        data.facts.iter().any(|f| {
            f.cve == *cve
                && f.source == source
                && matches!(
                    Severity::from_vendor(&f.urgency),
                    Some(Severity::High | Severity::Critical)
                )
        })
    };
    let mut ids: BTreeSet<String> = data
        .zlib_open
        .iter()
        .filter(|c| high(c, "zlib"))
        .cloned()
        .collect();
    ids.extend(data.expat_open.iter().filter(|c| high(c, "expat")).cloned());
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn vulnerable_images_are_removed_unless_running_or_excluded() {
    let data = debian::real_data();
    let db_dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&debian::build_db(data, db_dir.path())).unwrap());
    let node = node(data).await;
    let endpoint: Endpoint = node.containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let pod = pods::run_pod(
        &node.containerd.endpoint(),
        "running",
        "default",
        RUNNING,
        vec!["/bin/sleep".into(), "3600".into()],
    )
    .await
    .unwrap();

    let images = runtime.cri.list_images().await.unwrap();
    let by_id = |name: &str| node.images[name].id.clone();
    let want = expected_condemning(data);
    assert!(!want.is_empty());

    // The same verdicts whether the files come from snapshots or from streamed layers.
    let mut settings = Settings::new(Scanner::Native(db.clone()));
    let mut last = None;
    for (use_snapshots, method) in [(true, Method::Snapshot), (false, Method::Layers)] {
        settings.use_snapshots = use_snapshots;
        let results = scan::scan_images(&runtime, &images, &settings, &|_, _| {}).await;
        for result in &results {
            assert_eq!(result.error, None, "{}: {:?}", result.id, result.names);
            assert_eq!(result.method, Some(method), "{:?}", result.names);
        }
        let vulnerable = scan::vulnerable(&results, &settings);
        let condemned: BTreeMap<String, Vec<String>> = vulnerable
            .iter()
            .map(|(id, ids)| (id.to_string(), ids.clone()))
            .collect();
        let expected: BTreeMap<String, Vec<String>> = [VULNERABLE, RUNNING, EXCLUDED]
            .into_iter()
            .map(|n| (by_id(n), want.clone()))
            .collect();
        assert_eq!(
            condemned, expected,
            "scanning with snapshots={use_snapshots}"
        );
        let no_db = results.iter().find(|r| r.id == by_id(NO_DATABASE)).unwrap();
        let notes = &no_db.scan.as_ref().unwrap().notes;
        assert!(
            notes.iter().any(|n| n.contains("no OS package database")),
            "{notes:?}"
        );
        last = Some(vulnerable);
    }

    // No scan view or lease is left behind.
    let leases = node.containerd.ctr(&["leases", "ls"]).await.unwrap();
    assert!(!leases.contains("imagecleaner-scan"), "{leases}");
    let snapshots = node.containerd.ctr(&["snapshots", "ls"]).await.unwrap();
    assert!(!snapshots.contains("imagecleaner-scan"), "{snapshots}");

    // Every fixture is named by a live pod, so only the vulnerability decides.
    let names: Vec<String> = node.images.keys().map(|n| n.to_string()).collect();
    let options = Options {
        node: "scan".into(),
        policy: Policy {
            exclusions: PatternSet::parse_strict(ListKind::Exclusion, [EXCLUDED]).unwrap(),
            removal: None,
            min_unused: Duration::ZERO,
        },
        references: References::new(names),
        vulnerable: last.unwrap(),
        state_dir: None,
        concurrency: 2,
    };
    let report = image_cleaner_node::plan(&runtime, options)
        .await
        .unwrap()
        .execute(false)
        .await
        .unwrap();
    let entry = |name: &str| {
        report
            .images
            .iter()
            .find(|i| i.id == by_id(name))
            .unwrap_or_else(|| panic!("{name} in the report"))
    };
    let vulnerable = entry(VULNERABLE);
    assert_eq!(
        (vulnerable.reason, vulnerable.removed),
        (Reason::Vulnerable, true)
    );
    assert_eq!(vulnerable.vulnerabilities, want);
    assert_eq!(entry(RUNNING).reason, Reason::Running);
    assert_eq!(entry(EXCLUDED).reason, Reason::Excluded);
    for name in [PATCHED, NO_DATABASE, DISTROLESS] {
        assert_eq!(entry(name).reason, Reason::Referenced, "{name}");
    }
    assert_eq!(
        report
            .images
            .iter()
            .filter(|i| i.decision == Decision::Remove)
            .count(),
        1
    );
    let left: Vec<String> = node
        .containerd
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(!left.contains(&by_id(VULNERABLE)));
    for name in [RUNNING, EXCLUDED, PATCHED, NO_DATABASE, DISTROLESS] {
        assert!(left.contains(&by_id(name)), "{name} stays");
    }
    pods::stop_pod(&node.containerd.endpoint(), &pod.sandbox_id)
        .await
        .unwrap();
    node.containerd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn images_that_cannot_be_scanned_are_kept_unless_asked() {
    let data = debian::real_data();
    let containerd = Containerd::start().await.unwrap();
    // A dpkg "database" that is a directory cannot be read.
    let broken = Layer::from_files(vec![FileEntry::dir("var/lib/dpkg/status")]).unwrap();
    let base = deb_layer(&[&data.base_files], Vec::new());
    let image = containerd
        .load(&ImageSpec::new().name(VULNERABLE).layer(base).layer(broken))
        .await
        .unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&debian::build_db(data, db_dir.path())).unwrap());
    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let images = runtime.cri.list_images().await.unwrap();
    let mut settings = Settings::new(Scanner::Native(db));
    let results = scan::scan_images(&runtime, &images, &settings, &|_, _| {}).await;
    let result = results.iter().find(|r| r.id == image.id).unwrap();
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.contains("/var/lib/dpkg/status"), "{error}");
    assert!(
        scan::vulnerable(&results, &settings).is_empty(),
        "kept by default"
    );
    settings.delete_failed = true;
    let condemned = scan::vulnerable(&results, &settings);
    assert_eq!(
        condemned.get(&image_cleaner_core::ImageId::new(image.id.clone())),
        Some(&vec![scan::SCAN_FAILED_ID.to_string()])
    );
    containerd.shutdown().await.unwrap();
}

/// An image that was never unpacked scans by streaming its layers; an image whose layer
/// blobs were discarded after unpacking (`discard_unpacked_layers`) still scans through its
/// snapshots, where streaming layers would fail.
#[tokio::test(flavor = "multi_thread")]
async fn scans_without_snapshots_and_without_layer_blobs() {
    let data = debian::real_data();
    let db_dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(&debian::build_db(data, db_dir.path())).unwrap());
    let containerd = Containerd::start().await.unwrap();
    let base = deb_layer(&[&data.base_files], Vec::new());
    let packages = |marker: &str| {
        deb_layer(
            &[&data.zlib_old],
            vec![
                FileEntry::file("var/lib/dpkg/status", debian::status_stanza(&data.zlib_old)),
                FileEntry::file(format!("opt/{marker}"), marker),
            ],
        )
    };

    let packed = ImageSpec::new()
        .name("example.com/debian/not-unpacked:1")
        .layer(base.clone())
        .layer(packages("packed"));
    let archive = containerd.dir().join("not-unpacked.tar");
    let packed = packed.write_archive(&archive).unwrap();
    containerd
        .ctr(&[
            "images".as_ref(),
            "import".as_ref(),
            "--no-unpack".as_ref(),
            archive.as_os_str(),
        ])
        .await
        .unwrap();
    containerd.wait_visible(&packed).await.unwrap();

    let discarded_layer = packages("discarded");
    let discarded = containerd
        .load(
            &ImageSpec::new()
                .name("example.com/debian/blobs-discarded:1")
                .layer(base)
                .layer(discarded_layer.clone()),
        )
        .await
        .unwrap();
    containerd
        .ctr(&["content", "rm", discarded_layer.digest()])
        .await
        .unwrap();

    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let images: Vec<_> = runtime
        .cri
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.id.as_str() == packed.id || i.id.as_str() == discarded.id)
        .collect();
    assert_eq!(images.len(), 2);
    let mut settings = Settings::new(Scanner::Native(db));
    let results = scan::scan_images(&runtime, &images, &settings, &|_, _| {}).await;
    let result = |id: &str| results.iter().find(|r| r.id == id).unwrap();
    let zlib: Vec<String> = data.zlib_open.iter().cloned().collect();
    for (id, method) in [
        (&packed.id, Method::Layers),
        (&discarded.id, Method::Snapshot),
    ] {
        let r = result(id);
        assert_eq!(
            (r.error.as_deref(), r.method),
            (None, Some(method)),
            "{:?}",
            r.names
        );
        let found: Vec<String> = r
            .scan
            .as_ref()
            .unwrap()
            .findings
            .iter()
            .map(|f| f.vulnerability_id.clone())
            .collect();
        assert_eq!(found, zlib, "{:?}", r.names);
    }
    // Without snapshots the discarded image cannot be read: it fails, and is kept.
    settings.use_snapshots = false;
    let results = scan::scan_images(&runtime, &images, &settings, &|_, _| {}).await;
    let failed = results.iter().find(|r| r.id == discarded.id).unwrap();
    assert!(failed.error.is_some(), "{failed:?}");
    assert!(
        !scan::vulnerable(&results, &settings)
            .contains_key(&image_cleaner_core::ImageId::new(discarded.id.clone()))
    );
    containerd.shutdown().await.unwrap();
}
