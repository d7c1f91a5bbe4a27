//! What the lists mean for the next job, as pure functions: the merged exclusions (from
//! Exclude ImageLists and Eraser's labelled ConfigMaps) and the removal list waiting for a
//! job.
//!
//! Eraser's exclusion ConfigMaps (label `eraser.sh/exclude.list=true` in the manager's
//! namespace) hold their list in the first key ending in `.json`, as
//! `{"excluded": ["pattern", ...]}`. Eraser's worker exits when such a ConfigMap has no
//! `.json` key; here the ConfigMap is reported and the other sources still apply. Malformed
//! entries are skipped and reported the same way, wherever they come from.

use std::collections::BTreeMap;
use std::sync::Arc;

use image_cleaner_api::constants::EXCLUSION_KEY_SUFFIX;
use image_cleaner_api::{ImageJob, ImageList, ListAction};
use image_cleaner_core::{ListKind, PatternError, PatternSet};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::Deserialize;

use crate::names::{LIST_ANNOTATION, LIST_GENERATION_ANNOTATION};

/// Why an exclusion ConfigMap could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConfigMapError {
    /// No key ends in `.json`.
    #[error("no key ending in .json (Eraser reads the first such key)")]
    NoJsonKey,
    /// The `.json` key does not hold `{"excluded": [...]}`.
    #[error("key {key}: not {{\"excluded\": [\"pattern\", ...]}}: {source}")]
    Json {
        /// The key read.
        key: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl ConfigMapError {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ConfigMapError::NoJsonKey => "no_json_key",
            ConfigMapError::Json { .. } => "invalid_json",
        }
    }
}

/// One problem with an exclusion source, for a log line and an Event on it.
#[derive(Debug)]
pub enum Problem {
    /// A ConfigMap that could not be read.
    ConfigMap {
        /// Its name.
        name: String,
        /// Why.
        error: ConfigMapError,
    },
    /// Entries of a ConfigMap that are not patterns.
    ConfigMapEntries {
        /// Its name.
        name: String,
        /// The entries.
        errors: Vec<PatternError>,
    },
}

/// The exclusion entries of one of Eraser's labelled ConfigMaps.
pub fn config_map_entries(config_map: &ConfigMap) -> Result<Vec<String>, ConfigMapError> {
    #[derive(Deserialize)]
    struct ExclusionList {
        #[serde(default)]
        excluded: Vec<String>,
    }
    let data = config_map.data.as_ref();
    // `data` is a BTreeMap: its first `.json` key is the first in name order, as the
    // directory listing Eraser's worker reads.
    let Some((key, text)) = data
        .into_iter()
        .flatten()
        .find(|(key, _)| key.ends_with(EXCLUSION_KEY_SUFFIX))
    else {
        return Err(ConfigMapError::NoJsonKey);
    };
    let list: ExclusionList =
        serde_json::from_str(text).map_err(|source| ConfigMapError::Json {
            key: key.clone(),
            source,
        })?;
    Ok(list.excluded)
}

/// Every exclusion in force, and what was wrong with the sources.
#[derive(Debug, Default)]
pub struct Exclusions {
    /// The merged patterns, deduplicated.
    pub patterns: PatternSet,
    /// Problems with ConfigMaps (ImageLists report their own, in their status).
    pub problems: Vec<Problem>,
}

impl Exclusions {
    /// The patterns as the strings delivered to workers (normalised, in order).
    pub fn entries(&self) -> Vec<String> {
        self.patterns
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}

/// Merges the exclusions of every Exclude ImageList and every labelled ConfigMap (objects
/// being deleted no longer count). Malformed entries are skipped.
pub fn exclusions(lists: &[Arc<ImageList>], config_maps: &[Arc<ConfigMap>]) -> Exclusions {
    let mut merged = Exclusions::default();
    let mut lists: Vec<&Arc<ImageList>> = lists
        .iter()
        .filter(|list| list.metadata.deletion_timestamp.is_none())
        .collect();
    lists.sort_by_key(|list| list.name_any());
    for list in lists {
        if list.role().action == ListAction::Exclude {
            let (patterns, _malformed) = list.spec.patterns(ListAction::Exclude);
            merged.patterns.extend(patterns);
        }
    }
    let mut config_maps: Vec<&Arc<ConfigMap>> = config_maps
        .iter()
        .filter(|cm| cm.metadata.deletion_timestamp.is_none())
        .collect();
    config_maps.sort_by_key(|cm| cm.name_any());
    for config_map in config_maps {
        let name = config_map.name_any();
        match config_map_entries(config_map) {
            Ok(entries) => {
                let (patterns, errors) = PatternSet::parse_lenient(ListKind::Exclusion, &entries);
                merged.patterns.extend(patterns);
                if !errors.is_empty() {
                    merged
                        .problems
                        .push(Problem::ConfigMapEntries { name, errors });
                }
            }
            Err(error) => merged.problems.push(Problem::ConfigMap { name, error }),
        }
    }
    merged
}

/// The generation of the ImageList a removal job runs, from the job's annotations.
pub fn job_list_generation(job: &ImageJob) -> Option<(String, i64)> {
    let annotations = job.metadata.annotations.as_ref()?;
    let name = annotations.get(LIST_ANNOTATION)?;
    let generation = annotations.get(LIST_GENERATION_ANNOTATION)?.parse().ok()?;
    Some((name.clone(), generation))
}

/// The removal list that waits for a job: a Remove list whose current generation has been
/// neither run nor started (oldest first). Re-applying an unchanged list does not change its
/// generation, so it does not run again (as in Eraser); changing it during a run makes it
/// wait until that run is over.
pub fn pending_removal<'a>(
    lists: &'a [Arc<ImageList>],
    jobs: &[Arc<ImageJob>],
) -> Option<&'a Arc<ImageList>> {
    let started: BTreeMap<String, i64> = jobs
        .iter()
        .filter_map(|job| job_list_generation(job))
        .fold(BTreeMap::new(), |mut newest, (name, generation)| {
            let entry = newest.entry(name).or_insert(generation);
            *entry = (*entry).max(generation);
            newest
        });
    lists
        .iter()
        .filter(|list| list.metadata.deletion_timestamp.is_none())
        .filter(|list| list.role().action == ListAction::Remove)
        .filter(|list| {
            let generation = list.metadata.generation.unwrap_or(0);
            let observed = list
                .status
                .as_ref()
                .and_then(|status| status.observed_generation)
                .unwrap_or(0);
            let started = started.get(&list.name_any()).copied().unwrap_or(0);
            generation > observed && generation > started
        })
        .min_by_key(|list| (list.metadata.creation_timestamp.clone(), list.name_any()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use image_cleaner_api::constants::EXCLUDE_LIST_LABEL;
    use image_cleaner_api::{ImageListSpec, ImageListStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn list(name: &str, images: &[&str], generation: i64, observed: Option<i64>) -> Arc<ImageList> {
        let mut list = ImageList::new(
            name,
            ImageListSpec {
                images: images.iter().map(|s| s.to_string()).collect(),
                action: None,
            },
        );
        list.metadata.generation = Some(generation);
        list.status = Some(ImageListStatus {
            observed_generation: observed,
            ..Default::default()
        });
        Arc::new(list)
    }

    fn config_map(name: &str, data: &[(&str, &str)]) -> Arc<ConfigMap> {
        Arc::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(EXCLUDE_LIST_LABEL.to_string(), "true".to_string())].into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        })
    }

    fn job(list: &str, generation: i64) -> Arc<ImageJob> {
        let mut job = ImageJob::new("imagejob-x", Default::default());
        job.metadata.annotations = Some(
            [
                (LIST_ANNOTATION.to_string(), list.to_string()),
                (
                    LIST_GENERATION_ANNOTATION.to_string(),
                    generation.to_string(),
                ),
            ]
            .into(),
        );
        Arc::new(job)
    }

    #[test]
    fn reads_the_first_json_key_like_eraser() {
        let cm = config_map(
            "excluded",
            &[
                ("a.txt", "ignored"),
                ("b.json", r#"{"excluded": ["docker.io/library/*"]}"#),
                ("c.json", r#"{"excluded": ["never-read"]}"#),
            ],
        );
        assert_eq!(
            config_map_entries(&cm).expect("reads"),
            vec!["docker.io/library/*"]
        );
        let none = config_map("x", &[("sample.txt", "{}")]);
        let error = config_map_entries(&none).expect_err("no json key");
        assert_eq!(error.metric_label(), "no_json_key");
        let bad = config_map("x", &[("sample.json", "[1,2]")]);
        assert!(matches!(
            config_map_entries(&bad),
            Err(ConfigMapError::Json { .. })
        ));
    }

    #[test]
    fn merges_every_exclusion_source_and_skips_bad_entries() {
        let lists = vec![
            list(
                "excluded-images",
                &["docker.io/library/alpine:*", "bad:*:*"],
                1,
                None,
            ),
            list("prepulled-exclusions", &["registry.k8s.io/*"], 1, None),
            list(
                "vulnerable-images",
                &["docker.io/library/nginx:1.0"],
                1,
                None,
            ),
            {
                let mut labelled = (*list("keep", &["quay.io/x:1"], 1, None)).clone();
                labelled.metadata.labels =
                    Some([(EXCLUDE_LIST_LABEL.to_string(), "true".to_string())].into());
                Arc::new(labelled)
            },
        ];
        let config_maps = vec![
            config_map(
                "a",
                &[(
                    "sample.json",
                    r#"{"excluded": ["ghcr.io/x/y:latest", "*"]}"#,
                )],
            ),
            config_map("b", &[("readme", "no json here")]),
        ];
        let merged = exclusions(&lists, &config_maps);
        assert_eq!(
            merged.entries(),
            vec![
                "docker.io/library/alpine:*",
                "quay.io/x:1",
                "registry.k8s.io/*",
                "ghcr.io/x/y:latest",
            ]
        );
        assert_eq!(merged.problems.len(), 2);
        assert!(
            matches!(&merged.problems[0], Problem::ConfigMapEntries { name, errors }
            if name == "a" && errors.len() == 1)
        );
        assert!(matches!(&merged.problems[1], Problem::ConfigMap { name, .. } if name == "b"));
    }

    #[test]
    fn a_removal_list_waits_until_its_generation_ran() {
        let lists = vec![
            list("excluded-images", &["x"], 5, None),
            list("imagelist", &["*"], 2, Some(1)),
            list("vulnerable-images", &["y"], 1, Some(1)),
        ];
        let pending = pending_removal(&lists, &[]).map(|l| l.name_any());
        assert_eq!(pending.as_deref(), Some("imagelist"));
        // A job for generation 2 exists (running or finished but not yet recorded).
        assert!(pending_removal(&lists, &[job("imagelist", 2)]).is_none());
        // A job for the previous generation does not count.
        assert!(pending_removal(&lists, &[job("imagelist", 1)]).is_some());
        // Never run: generation 1, no status.
        let fresh = vec![list("vulnerable-images", &["y"], 1, None)];
        assert!(pending_removal(&fresh, &[]).is_some());
    }
}
