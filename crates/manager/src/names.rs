//! Names the manager adds beside Eraser's (which are in `image_cleaner_api::constants`): how
//! it ties worker pods, ConfigMaps and PodTemplates to their ImageJob, where it keeps its
//! schedule across restarts, and its Lease.

/// Label on every worker pod (and the job's ConfigMap and PodTemplate): the ImageJob's name.
pub const JOB_LABEL: &str = "eraser.sh/imagejob";
/// Annotation on a removal job: the ImageList it runs.
pub const LIST_ANNOTATION: &str = "eraser.sh/imagelist";
/// Annotation on a removal job: the generation of the ImageList it runs.
pub const LIST_GENERATION_ANNOTATION: &str = "eraser.sh/imagelist-generation";
/// Condition type on an ImageJob: a worker pod exists for every eligible node.
pub const CONDITION_WORKERS_CREATED: &str = "WorkersCreated";
/// ConfigMap in the manager's namespace recording when the last scheduled run started, so a
/// restarted manager keeps the schedule.
pub const STATE_CONFIG_MAP: &str = "imagecleaner-manager-state";
/// Key of the last scheduled start (RFC 3339) in [`STATE_CONFIG_MAP`].
pub const STATE_LAST_SCHEDULED_START: &str = "lastScheduledStart";
/// The Lease the managers elect their leader on.
pub const LEASE_NAME: &str = "imagecleaner-manager-leader";
/// Field manager of every write.
pub const FIELD_MANAGER: &str = "imagecleaner-manager";
/// `reportingController` of the manager's Events.
pub const EVENT_CONTROLLER: &str = "eraser.sh/imagecleaner-manager";
/// Environment variable with the worker image (the manager's own image).
pub const ENV_IMAGE: &str = "IMAGECLEANER_IMAGE";
/// Environment variable with the manager pod's name (its leader identity).
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Environment variable with the manager pod's IP (where workers fetch the database).
pub const ENV_POD_IP: &str = "POD_IP";
/// Volume (emptyDir) of the manager holding the cluster's vulnerability database.
pub const CACHE_VOLUME: &str = "cache";
/// Where that volume is mounted in the manager.
pub const CACHE_PATH: &str = "/var/cache/imagecleaner";
/// Volume (hostPath) holding each node's last-use state across runs.
pub const STATE_VOLUME: &str = "imagecleaner-state";
/// Where that state lives on the node and in the worker.
pub const STATE_PATH: &str = "/var/lib/imagecleaner";
/// Volume of the job's ConfigMap in worker pods.
pub const JOB_VOLUME: &str = "job";
/// Default worker image when neither the flag nor the environment names one.
pub const DEFAULT_IMAGE: &str = "ghcr.io/image-cleaner/imagecleaner:latest";
/// Name of the manager container in the Deployment.
pub const MANAGER_CONTAINER: &str = "manager";
/// Port of `/metrics`.
pub const METRICS_PORT: u16 = 8889;
/// Port of `/healthz` and `/readyz`.
pub const HEALTH_PORT: u16 = 8081;
/// Name of the worker's ClusterRole (and its binding).
pub const WORKER_ROLE: &str = "eraser-imagejob-pods-role";
