//! `deploy/imagecleaner.yaml` is exactly what `imagecleaner manifests` renders with its
//! defaults, and every namespaced object in it lands in one namespace.

use std::path::PathBuf;

use image_cleaner_manager::manifests::{Options, render};

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/imagecleaner.yaml")
}

#[test]
fn checked_in_manifests_match_the_types() {
    let rendered = render(&Options::default()).expect("renders");
    let checked_in = std::fs::read_to_string(checked_in()).unwrap_or_default();
    assert!(
        checked_in == rendered,
        "deploy/imagecleaner.yaml is out of date: run scripts/generate.sh"
    );
}

#[test]
fn checked_in_manifests_parse_as_objects() {
    let text = std::fs::read_to_string(checked_in()).expect("checked in");
    let mut kinds = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_json::Value =
            serde::Deserialize::deserialize(document).expect("a YAML document");
        assert!(value["apiVersion"].is_string(), "{value}");
        if let Some(namespace) = value["metadata"]["namespace"].as_str() {
            assert_eq!(namespace, "kube-system");
        }
        kinds.push(value["kind"].as_str().unwrap_or_default().to_owned());
    }
    for kind in [
        "CustomResourceDefinition",
        "ClusterRole",
        "Role",
        "ConfigMap",
        "Deployment",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in {kinds:?}");
    }
}
