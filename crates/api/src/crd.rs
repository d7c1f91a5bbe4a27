//! The ImageList and ImageJob custom resources, in both served versions, and their CRDs.
//!
//! Eraser serves `eraser.sh/v1` (storage) and `eraser.sh/v1alpha1` (deprecated) with
//! identical schemas and no conversion webhook. One macro declares the kinds of a version so
//! the two cannot drift apart; [`all_crds`] merges them into one CRD per kind, which is what
//! `imagecleaner crds` prints and `deploy/crds/` holds.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;

use crate::constants::VERSION_V1;

/// Declares `ImageList` and `ImageJob` for one API version. The group and kind literals
/// must equal `constants::GROUP` and the kind constants; a test checks that they do.
macro_rules! eraser_kinds {
    (version = $version:literal, storage = $storage:literal $(, deprecated = $warning:literal)?) => {
        use kube::CustomResource;
        use schemars::JsonSchema;
        use serde::{Deserialize, Serialize};

        use image_cleaner_core::{PatternError, PatternSet};

        use crate::imagejob::ImageJobStatus;
        use crate::imagelist::{resolve_role, ImageListStatus, ListAction, Role};

        /// Images to remove from every node, or never to remove.
        #[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "eraser.sh",
            version = $version,
            kind = "ImageList",
            plural = "imagelists",
            status = "ImageListStatus",
            derive = "PartialEq",
            derive = "Default",
            doc = "A list of images to remove from every node where they are not running (Remove), \
                   or never to remove (Exclude).",
            storage = $storage,
            $(deprecated = $warning,)?
            printcolumn(name = "Action", type_ = "string", json_path = ".status.action",
                        description = "Remove or Exclude, as resolved by the manager"),
            printcolumn(name = "Success", type_ = "integer", json_path = ".status.success",
                        description = "Nodes where the last job succeeded"),
            printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed",
                        description = "Nodes where the last job failed"),
            printcolumn(name = "Skipped", type_ = "integer", json_path = ".status.skipped",
                        description = "Nodes skipped by the node filter"),
            printcolumn(name = "Last Run", type_ = "date", json_path = ".status.timestamp",
                        description = "When the last job for this list completed"),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
        )]
        #[serde(rename_all = "camelCase")]
        pub struct ImageListSpec {
            /// Image references, IDs, digests, `repo:*` or `prefix/*` patterns. In a removal
            /// list `*` means every image that is not running.
            pub images: Vec<String>,
            /// Remove or Exclude. When absent, the label eraser.sh/exclude.list=true means
            /// Exclude, and otherwise the name decides: a name containing "exclu" means Exclude,
            /// any other name Remove.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub action: Option<ListAction>,
        }

        impl ImageList {
            /// The list's role, resolved from `spec.action`, its labels and its name.
            pub fn role(&self) -> Role {
                resolve_role(
                    self.metadata.name.as_deref().unwrap_or_default(),
                    self.metadata.labels.as_ref(),
                    self.spec.action,
                )
            }
        }

        impl ImageListSpec {
            /// The entries as patterns for a list of this role, and the entries that are not
            /// patterns (to report; the rest of the list still applies).
            pub fn patterns(&self, action: ListAction) -> (PatternSet, Vec<PatternError>) {
                PatternSet::parse_lenient(action.list_kind(), &self.images)
            }
        }

        /// An ImageJob has no spec: this empty struct only carries the kind's definition.
        #[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[kube(
            group = "eraser.sh",
            version = $version,
            kind = "ImageJob",
            plural = "imagejobs",
            status = "ImageJobStatus",
            no_spec,
            derive = "PartialEq",
            derive = "Default",
            doc = "One run of the cleaner over the cluster's nodes: a worker pod per node.",
            storage = $storage,
            $(deprecated = $warning,)?
            printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
            printcolumn(name = "Succeeded", type_ = "integer", json_path = ".status.succeeded",
                        description = "Nodes whose worker succeeded"),
            printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed",
                        description = "Nodes whose worker failed or did not finish in time"),
            printcolumn(name = "Skipped", type_ = "integer", json_path = ".status.skipped",
                        description = "Nodes skipped by the node filter"),
            printcolumn(name = "Freed", type_ = "integer", json_path = ".status.bytesFreed",
                        description = "Bytes freed on all nodes"),
            printcolumn(name = "Removed", type_ = "integer", json_path = ".status.imagesRemoved",
                        description = "Images removed on all nodes", priority = 1),
            printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desired",
                        description = "Nodes in the cluster when the job started", priority = 1),
            printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
        )]
        pub struct ImageJobSpec {}
    };
}

/// `eraser.sh/v1`, the storage version. The manager and workers use these types.
pub mod v1 {
    eraser_kinds!(version = "v1", storage = true);
}

/// `eraser.sh/v1alpha1`, served for Eraser-era manifests and deprecated with Eraser's
/// warning. Same schema as v1; the API server converts by rewriting `apiVersion`.
pub mod v1alpha1 {
    eraser_kinds!(
        version = "v1alpha1",
        storage = false,
        deprecated = "v1alpha1 of the eraser API has been deprecated. Please migrate to v1."
    );
}

/// One CRD per kind, each serving v1 (storage) and v1alpha1 (deprecated): ImageList first,
/// then ImageJob.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        merged(v1::ImageList::crd(), v1alpha1::ImageList::crd()),
        merged(v1::ImageJob::crd(), v1alpha1::ImageJob::crd()),
    ]
}

fn merged(
    storage: CustomResourceDefinition,
    served: CustomResourceDefinition,
) -> CustomResourceDefinition {
    // Both come from the same macro with the same group, kind and scope, which is all
    // merge_crds checks; the crate's tests exercise this on every build.
    merge_crds(vec![storage, served], VERSION_V1).expect("versions of one kind merge")
}

/// First line of every generated CRD file.
pub const GENERATED_HEADER: &str =
    "# Generated from crates/api by scripts/generate.sh (imagecleaner crds). Do not edit.\n";

/// One CRD as a YAML document, with the generated-file header.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("{GENERATED_HEADER}{}", serde_yaml::to_string(crd)?))
}

/// Every CRD as one multi-document YAML stream.
pub fn all_crds_yaml() -> Result<String, serde_yaml::Error> {
    let documents = all_crds()
        .iter()
        .map(crd_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(documents.join("---\n"))
}

/// The file name a CRD is written to under `deploy/crds/`: `<crd name>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;
    use crate::constants::{
        GROUP, IMAGE_JOB_CRD_NAME, IMAGE_JOB_KIND, IMAGE_LIST_CRD_NAME, IMAGE_LIST_KIND,
        V1ALPHA1_DEPRECATION_WARNING, VERSION_V1ALPHA1,
    };
    use crate::imagelist::{ListAction, RoleSource};

    #[test]
    fn literals_in_the_derives_match_the_constants() {
        assert_eq!(v1::ImageList::group(&()), GROUP);
        assert_eq!(v1::ImageJob::group(&()), GROUP);
        assert_eq!(v1::ImageList::kind(&()), IMAGE_LIST_KIND);
        assert_eq!(v1::ImageJob::kind(&()), IMAGE_JOB_KIND);
        assert_eq!(v1alpha1::ImageList::version(&()), VERSION_V1ALPHA1);
        assert_eq!(v1::ImageList::crd_name(), IMAGE_LIST_CRD_NAME);
        assert_eq!(v1::ImageJob::crd_name(), IMAGE_JOB_CRD_NAME);
        let crds = all_crds();
        for crd in &crds {
            let served = &crd.spec.versions[1];
            assert_eq!(served.name, VERSION_V1ALPHA1);
            assert_eq!(
                served.deprecation_warning.as_deref(),
                Some(V1ALPHA1_DEPRECATION_WARNING)
            );
        }
    }

    #[test]
    fn merged_crds_serve_both_versions_and_store_v1() {
        for crd in all_crds() {
            assert_eq!(crd.spec.scope, "Cluster");
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.served, v.storage, v.deprecated))
                .collect();
            assert_eq!(
                versions,
                [
                    ("v1", true, true, None),
                    ("v1alpha1", true, false, Some(true))
                ]
            );
            assert_eq!(
                crd.spec.versions[0].schema, crd.spec.versions[1].schema,
                "identical schemas"
            );
            assert!(
                crd.spec
                    .versions
                    .iter()
                    .all(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some()))
            );
        }
    }

    #[test]
    fn schema_bounds_match_the_constants() {
        let status_property = |crd: &CustomResourceDefinition, name: &str| {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref());
            let status = schema
                .and_then(|s| s.properties.as_ref())
                .map(|p| p["status"].clone());
            status
                .and_then(|s| s.properties)
                .map(|p| p[name].clone())
                .expect("status property")
        };
        let crds = all_crds();
        let nodes = status_property(&crds[1], "nodes");
        assert_eq!(
            nodes.max_items,
            Some(crate::imagejob::MAX_NODE_RESULTS as i64)
        );
        assert_eq!(
            nodes.x_kubernetes_list_map_keys,
            Some(vec!["node".to_owned()])
        );
        let malformed = status_property(&crds[0], "malformed");
        assert_eq!(
            malformed.max_items,
            Some(crate::imagelist::MAX_MALFORMED_ENTRIES as i64)
        );
    }

    #[test]
    fn image_job_has_no_spec_on_the_wire() {
        let job = v1::ImageJob::new("imagejob-abc", v1::ImageJobSpec {});
        let json = serde_json::to_value(&job).expect("serializes");
        assert_eq!(json["apiVersion"], "eraser.sh/v1");
        assert_eq!(json["kind"], "ImageJob");
        assert!(json.get("spec").is_none(), "{json}");
        let read: v1::ImageJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "eraser.sh/v1", "kind": "ImageJob",
            "metadata": {"name": "imagejob-x"},
            "status": {"desired": 3, "succeeded": 3, "failed": 0, "skipped": 0, "phase": "Completed"}
        }))
        .expect("reads Eraser's ImageJob");
        assert_eq!(read.status.map(|s| s.succeeded), Some(3));
    }

    #[test]
    fn image_list_reads_eraser_manifests_and_resolves_its_role() {
        let list: v1::ImageList = serde_json::from_value(serde_json::json!({
            "apiVersion": "eraser.sh/v1", "kind": "ImageList",
            "metadata": {"name": "imagelist"},
            "spec": {"images": ["docker.io/library/alpine:3.7.3", "*"]}
        }))
        .expect("reads Eraser's ImageList");
        let role = list.role();
        assert_eq!(role.action, ListAction::Remove);
        assert_eq!(role.source, RoleSource::EraserName);
        let (patterns, malformed) = list.spec.patterns(role.action);
        assert_eq!(patterns.len(), 2);
        assert!(malformed.is_empty());
        let json = serde_json::to_value(&list).expect("serializes");
        assert!(
            json["spec"].get("action").is_none(),
            "no action unless set: {json}"
        );

        let exclusions = v1::ImageList::new(
            "excluded-images",
            v1::ImageListSpec {
                images: vec!["*".into(), "docker.io/library/*".into()],
                action: None,
            },
        );
        let role = exclusions.role();
        assert!(role.inferred_from_name());
        let (patterns, malformed) = exclusions.spec.patterns(role.action);
        assert_eq!(
            patterns.len(),
            1,
            "the lone * is refused in an exclusion list"
        );
        assert_eq!(malformed.len(), 1);
    }

    #[test]
    fn yaml_documents_and_file_names() {
        let yaml = all_crds_yaml().expect("renders");
        assert_eq!(yaml.matches("---\n").count(), 1);
        assert!(yaml.starts_with(GENERATED_HEADER));
        let names: Vec<_> = all_crds().iter().map(crd_file_name).collect();
        assert_eq!(
            names,
            ["imagelists.eraser.sh.yaml", "imagejobs.eraser.sh.yaml"]
        );
    }
}
