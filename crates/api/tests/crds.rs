//! The CRDs checked in under `deploy/crds/` are exactly what the types render, and they are
//! valid CRDs: one per kind, v1 the only storage version, v1alpha1 served and deprecated.

use std::path::PathBuf;

use image_cleaner_api::constants::{V1ALPHA1_DEPRECATION_WARNING, VERSION_V1, VERSION_V1ALPHA1};
use image_cleaner_api::{all_crds, crd_file_name, crd_yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn deploy_crds() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

#[test]
fn checked_in_crds_match_the_types() {
    let dir = deploy_crds();
    let mut expected_files: Vec<String> = Vec::new();
    for crd in all_crds() {
        let name = crd_file_name(&crd);
        let rendered = crd_yaml(&crd).expect("renders");
        let path = dir.join(&name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == rendered,
            "deploy/crds/{name} is out of date with the API types: run scripts/generate.sh"
        );
        expected_files.push(name);
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/crds exists")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    present.sort();
    expected_files.sort();
    assert_eq!(
        present, expected_files,
        "deploy/crds holds files no type renders: run scripts/generate.sh"
    );
}

#[test]
fn checked_in_crds_are_valid_crds_storing_v1() {
    let dir = deploy_crds();
    for name in ["imagelists.eraser.sh", "imagejobs.eraser.sh"] {
        let path = dir.join(format!("{name}.yaml"));
        let text = std::fs::read_to_string(&path).expect("checked in");
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text).expect("parses as a CRD");
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.group, "eraser.sh");
        assert_eq!(crd.spec.scope, "Cluster");
        let storage: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            storage,
            [VERSION_V1],
            "{name}: v1 is the only storage version"
        );
        let served: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(served, [VERSION_V1, VERSION_V1ALPHA1], "{name}");
        let v1alpha1 = &crd.spec.versions[1];
        assert_eq!(v1alpha1.deprecated, Some(true));
        assert_eq!(
            v1alpha1.deprecation_warning.as_deref(),
            Some(V1ALPHA1_DEPRECATION_WARNING)
        );
        for version in &crd.spec.versions {
            let status = version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref());
            assert!(
                status.is_some(),
                "{name} {}: status subresource",
                version.name
            );
            let schema = version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("a schema");
            let properties = schema.properties.as_ref().expect("properties");
            assert!(properties.contains_key("status"), "{name}");
            // ImageJob has no spec in Eraser's schema; ImageList requires spec.images.
            if name.starts_with("imagejobs") {
                assert!(!properties.contains_key("spec"), "ImageJob has no spec");
            } else {
                let spec = &properties["spec"];
                assert_eq!(spec.required.as_deref(), Some(&["images".to_owned()][..]));
            }
        }
    }
}
