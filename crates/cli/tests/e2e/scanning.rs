//! Vulnerability scanning in a scheduled run: the database kept once in the cluster (a
//! ConfigMap the manager reads and serves), fetched by each node once, the scanner's config
//! keys honoured by every worker, vulnerable images removed unless running, and an old
//! database reported.
//!
//! The images are made of real Debian packages (an old zlib1g and libexpat1, and their
//! security updates) and the database of the CVE facts those packages' changelogs state.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use image_cleaner_api::JobPhase;
use image_cleaner_api::constants::{JOB_OWNER_COLLECTOR, JOB_OWNER_LABEL};
use image_cleaner_testkit::{FileEntry, ImageSpec, Layer};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use sha2::{Digest, Sha256};

use crate::debian;
use crate::support::*;

const VULNERABLE: &str = "example.com/debian/zlib-old:1";
const RUNNING: &str = "example.com/debian/zlib-old-running:1";
const PATCHED: &str = "example.com/debian/zlib-patched:1";

/// A layer of the files of `debs`, with a dpkg status listing them.
fn packages_layer(debs: &[&PathBuf]) -> Layer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut status = String::new();
    for deb in debs {
        debian::extract(deb, dir.path());
        status.push_str(&debian::status_stanza(deb));
        status.push('\n');
    }
    let mut entries = FileEntry::tree(dir.path()).expect("the unpacked packages");
    entries.retain(|e| !matches!(e, FileEntry::Dir { path, .. } if path.starts_with("var")));
    entries.push(FileEntry::file("var/lib/dpkg/status", status));
    Layer::from_files(entries).expect("a layer")
}

/// The compiled database of the changelog facts, built `age` ago.
fn database(data: &debian::RealData, age: Duration) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<_> = data.facts.iter().map(debian::osv_record).collect();
    let source = dir.path().join("osv");
    debian::write_records(&source, &records);
    let out = dir.path().join("vulns.db");
    image_cleaner_scanner::db::build(&source, &out, SystemTime::now() - age)
        .expect("building the database");
    std::fs::read(out).expect("reading the database")
}

fn config() -> String {
    r#"apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  runtime:
    name: containerd
    address: unix:///run/containerd/containerd.sock
  scheduling:
    repeatInterval: 20s
    beginImmediately: true
    minUnused: 24h
  imageJob:
    successRatio: 1.0
    cleanup:
      delayOnSuccess: 10m
      delayOnFailure: 10m
components:
  collector:
    enabled: true
  scanner:
    enabled: true
    config: |
      db:
        configMap:
          name: vulnerability-db
          key: vulns.db
        maxAge: 24h
      vulnerabilities:
        severities: [CRITICAL, HIGH]
        ignoreUnfixed: false
      deleteFailedImages: false
      deleteEOLImages: false
      timeout:
        total: 5m
        perImage: 1m
"#
    .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulnerable_images_are_removed_with_the_clusters_one_database() {
    let data = debian::real_data();
    let env = Env::start_with(
        &TestConfig::default(),
        EnvOptions {
            nodes: 2,
            ..EnvOptions::default()
        },
    )
    .await;
    env.set_config(&config()).await;

    let old = packages_layer(&[&data.zlib_old, &data.expat_old]);
    let expat_new = debian::deb(debian::EXPAT_NEW.0, Some(debian::EXPAT_NEW.1));
    let new = packages_layer(&[&data.zlib_new, &expat_new]);
    let base = packages_layer(&[&data.base_files]);
    let spec = |name: &str| {
        ImageSpec::new()
            .name(name)
            .layer(Layer::busybox().expect("busybox"))
            .layer(base.clone())
            .layer(old.clone())
            .cmd(["/bin/sleep", "3600"])
            // Distinct configs, so each name is its own image.
            .label("fixture", name)
    };
    let nodes = env.nodes().to_vec();
    for node in &nodes {
        let containerd = env.cluster.containerd(node).expect("a node");
        for name in [VULNERABLE, RUNNING] {
            containerd.load(&spec(name)).await.expect("loading");
        }
        containerd
            .load(&spec(PATCHED).layer(new.clone()))
            .await
            .expect("loading");
    }
    for (i, node) in nodes.iter().enumerate() {
        env.create_pod(running_pod(&format!("old-zlib-{i}"), node, RUNNING))
            .await;
    }
    for i in 0..nodes.len() {
        env.wait_pod_phase(&format!("old-zlib-{i}"), "Running")
            .await;
    }

    // Built two days ago, maxAge one day: used, and reported stale.
    let db = database(data, Duration::from_secs(2 * 86_400));
    let sha = hex::encode(Sha256::digest(&db));
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("vulnerability-db".into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        binary_data: Some([("vulns.db".to_owned(), ByteString(db))].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(env.admin.clone(), NS)
        .create(&PostParams::default(), &map)
        .await
        .expect("creating the database ConfigMap");

    let cache = env.cluster.dir().join("manager-cache");
    let manager = env
        .manager_with("manager-a", |settings| {
            settings.database.dir = cache.clone()
        })
        .await;
    let is_scheduled = |job: &image_cleaner_api::ImageJob| {
        job.labels().get(JOB_OWNER_LABEL).map(String::as_str) == Some(JOB_OWNER_COLLECTOR)
    };
    let job = env
        .wait_job("the scheduled job to finish", is_scheduled)
        .await;
    let status = job.status.clone().expect("status");
    assert_eq!(status.phase, Some(JobPhase::Completed), "{status:#?}");
    assert_eq!((status.desired, status.succeeded, status.failed), (2, 2, 0));
    assert_eq!(status.images_removed, Some(2), "{status:#?}");
    for node in &status.nodes {
        assert_eq!(node.vulnerable_images, Some(1), "{node:#?}");
        let message = node.message.clone().unwrap_or_default();
        assert!(
            message.contains("stale vulnerability database"),
            "{node:#?}"
        );
    }

    for node in &nodes {
        let images = env.images_on(node).await;
        assert!(!images.contains(VULNERABLE), "{VULNERABLE} left on {node}");
        for kept in [RUNNING, PATCHED, ALPINE, NGINX] {
            assert!(
                images.contains(kept),
                "{kept} removed from {node}: {images:?}"
            );
        }
        // Each node keeps the copy it fetched, under its digest.
        let host = env.cluster.node(node).expect("a node").host_root();
        let kept = host.join(format!("var/lib/imagecleaner/vulnerability-db/{sha}.icvdb"));
        assert!(kept.exists(), "no database copy at {}", kept.display());
    }

    let events = env.events_about(&job.name_any()).await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "StaleVulnerabilityDatabase" && note.contains("24h")),
        "{events:#?}"
    );
    let metrics = env.metrics(&manager).await;
    let age = metric(&metrics, "imagecleaner_vulnerability_database_age_seconds")
        .expect("the database age metric");
    assert!(age >= 2.0 * 86_400.0, "{age}");

    // The next run: the database has not changed, so no node downloads it again.
    let stamps: Vec<_> = nodes
        .iter()
        .map(|node| {
            let host = env.cluster.node(node).expect("a node").host_root();
            let path = host.join(format!("var/lib/imagecleaner/vulnerability-db/{sha}.icvdb"));
            std::fs::metadata(path)
                .expect("copy")
                .modified()
                .expect("mtime")
        })
        .collect();
    let first = job.name_any();
    env.wait_job("a second scheduled job to finish", |job| {
        is_scheduled(job) && job.name_any() != first
    })
    .await;
    for (node, stamp) in nodes.iter().zip(stamps) {
        let host = env.cluster.node(node).expect("a node").host_root();
        let path = host.join(format!("var/lib/imagecleaner/vulnerability-db/{sha}.icvdb"));
        let now = std::fs::metadata(path)
            .expect("copy")
            .modified()
            .expect("mtime");
        assert_eq!(now, stamp, "{node} downloaded the database again");
    }

    manager.stop().await.expect("stopping the manager");
    env.finish().await;
}
