//! The objects of one job, as pure functions: the ImageJob, the ConfigMap that carries the job
//! to the workers, and the PodTemplate.
//!
//! ```text
//! ImageList (removal lists only) ──owns──> ImageJob ──owns──> ConfigMap <job>   (job.json, config)
//!                                                   ├─owns──> PodTemplate <job>
//!                                                   └─owns──> Pod eraser-<node>-<suffix>, one per node
//! ```
//!
//! Every object a job needs is owned by it, so deleting the job (as cleanup does after
//! `delayOnSuccess`/`delayOnFailure`) lets the garbage collector take the rest, and nothing is
//! orphaned when the manager dies: Eraser owns its templates by the manager pod instead, so a
//! restart of the manager deletes the workers of the job in flight.

use std::collections::BTreeMap;

use image_cleaner_api::constants::{
    IMAGE_JOB_GENERATE_NAME, JOB_OWNER_COLLECTOR, JOB_OWNER_IMAGE_LIST, JOB_OWNER_LABEL,
    MANAGER_CONFIG_KEY,
};
use image_cleaner_api::{ImageJob, ImageJobSpec, ImageList};
use image_cleaner_protocol::{JOB_FILE_NAME, JobMode, WorkerJob};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::names::{JOB_LABEL, LIST_ANNOTATION, LIST_GENERATION_ANNOTATION};
use crate::pods::Owner;

/// The standard label saying which tool manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// [`MANAGED_BY_LABEL`] on ImageJobs of Image Cleaner (Eraser's jobs, from before a
/// migration, are left alone).
pub const MANAGED_BY: &str = "imagecleaner";

/// Which controller a job belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A scheduled run.
    Scheduled,
    /// A removal list's run.
    List,
}

impl JobKind {
    /// `scheduled` or `list`, for metrics.
    pub fn as_str(self) -> &'static str {
        self.mode().as_str()
    }

    /// The workers' mode.
    pub fn mode(self) -> JobMode {
        match self {
            JobKind::Scheduled => JobMode::Scheduled,
            JobKind::List => JobMode::List,
        }
    }

    fn owner_label(self) -> &'static str {
        match self {
            JobKind::Scheduled => JOB_OWNER_COLLECTOR,
            JobKind::List => JOB_OWNER_IMAGE_LIST,
        }
    }

    /// The kind of an ImageJob of ours, from its `eraser.sh/job-owner` label.
    pub fn of(job: &ImageJob) -> Option<JobKind> {
        let labels = job.metadata.labels.as_ref()?;
        if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY) {
            return None;
        }
        match labels.get(JOB_OWNER_LABEL).map(String::as_str) {
            Some(JOB_OWNER_COLLECTOR) => Some(JobKind::Scheduled),
            Some(JOB_OWNER_IMAGE_LIST) => Some(JobKind::List),
            _ => None,
        }
    }
}

/// A new ImageJob (to create with `generateName`).
pub fn new_job(kind: JobKind, list: Option<&ImageList>) -> ImageJob {
    let mut job = ImageJob::new("", ImageJobSpec {});
    job.metadata.name = None;
    job.metadata.generate_name = Some(IMAGE_JOB_GENERATE_NAME.into());
    job.metadata.labels = Some(BTreeMap::from([
        (JOB_OWNER_LABEL.to_owned(), kind.owner_label().to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
    ]));
    if let Some(list) = list {
        job.metadata.annotations = Some(BTreeMap::from([
            (LIST_ANNOTATION.to_owned(), list.name_any()),
            (
                LIST_GENERATION_ANNOTATION.to_owned(),
                list.metadata.generation.unwrap_or(0).to_string(),
            ),
        ]));
        job.metadata.owner_references = list.controller_owner_ref(&()).map(|owner| vec![owner]);
    }
    job
}

/// The job as an owner of its objects.
pub fn owner(job: &ImageJob) -> Owner {
    Owner {
        api_version: ImageJob::api_version(&()).into_owned(),
        kind: ImageJob::kind(&()).into_owned(),
        name: job.name_any(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
    }
}

fn owned_meta(owner: &Owner, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(owner.name.clone()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(JOB_LABEL.to_owned(), owner.name.clone())])),
        owner_references: Some(vec![OwnerReference {
            ..owner.reference()
        }]),
        ..Default::default()
    }
}

/// The ConfigMap that carries the job and the config to the workers.
pub fn job_config_map(
    owner: &Owner,
    namespace: &str,
    job: &WorkerJob,
    config_yaml: String,
) -> ConfigMap {
    ConfigMap {
        metadata: owned_meta(owner, namespace),
        data: Some(BTreeMap::from([
            (JOB_FILE_NAME.to_owned(), job.to_json()),
            (MANAGER_CONFIG_KEY.to_owned(), config_yaml),
        ])),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The job's PodTemplate, named after it (as in Eraser).
pub fn pod_template(owner: &Owner, namespace: &str, template: PodTemplateSpec) -> PodTemplate {
    PodTemplate {
        metadata: owned_meta(owner, namespace),
        template: Some(template),
    }
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::ImageListSpec;

    use super::*;

    #[test]
    fn list_jobs_are_owned_by_their_list() {
        let mut list = ImageList::new(
            "imagelist",
            ImageListSpec {
                images: vec!["*".into()],
                action: None,
            },
        );
        list.metadata.uid = Some("list-uid".into());
        list.metadata.generation = Some(3);
        let job = new_job(JobKind::List, Some(&list));
        assert_eq!(job.metadata.generate_name.as_deref(), Some("imagejob-"));
        let labels = job.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(JOB_OWNER_LABEL).map(String::as_str),
            Some("imagelist-controller")
        );
        let owners = job.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners[0].uid, "list-uid");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(
            crate::lists::job_list_generation(&job),
            Some(("imagelist".to_string(), 3))
        );
        assert_eq!(JobKind::of(&job), Some(JobKind::List));

        let scheduled = new_job(JobKind::Scheduled, None);
        assert_eq!(JobKind::of(&scheduled), Some(JobKind::Scheduled));
        assert!(scheduled.metadata.owner_references.is_none());
        let mut erasers = scheduled.clone();
        if let Some(labels) = erasers.metadata.labels.as_mut() {
            labels.remove(MANAGED_BY_LABEL);
        }
        assert_eq!(JobKind::of(&erasers), None);
    }

    #[test]
    fn job_objects_are_owned_by_the_job() {
        let mut job = new_job(JobKind::Scheduled, None);
        job.metadata.name = Some("imagejob-abcde".into());
        job.metadata.uid = Some("job-uid".into());
        let owner = owner(&job);
        assert_eq!(owner.api_version, "eraser.sh/v1");
        let worker_job = WorkerJob {
            version: image_cleaner_protocol::PROTOCOL_VERSION,
            job: "imagejob-abcde".into(),
            mode: JobMode::Scheduled,
            exclusions: vec![],
            removal: vec![],
            min_unused_seconds: 60,
            scan: false,
            dry_run: false,
            database: None,
        };
        let cm = job_config_map(&owner, "kube-system", &worker_job, "config".into());
        assert_eq!(cm.metadata.name.as_deref(), Some("imagejob-abcde"));
        let data = cm.data.clone().unwrap_or_default();
        assert!(data.contains_key("job.json"));
        assert!(data.contains_key("controller_manager_config.yaml"));
        let refs = cm.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs[0].uid, "job-uid");
        let template = pod_template(&owner, "kube-system", PodTemplateSpec::default());
        assert_eq!(template.metadata.namespace.as_deref(), Some("kube-system"));
    }
}
