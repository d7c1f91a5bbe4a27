//! Every name, label, path and metric that must match Eraser, in one place.
//!
//! Eraser's manifests, the AKS how-to guides and operators' scripts address these strings
//! directly (`kubectl get pods -l app=eraser`, a ConfigMap labelled `eraser.sh/exclude.list`,
//! a query on `images_removed_run_total`), so a typo anywhere would silently break
//! compatibility. Code elsewhere refers to these constants and never spells the strings out.

// --- API group and versions -------------------------------------------------------------

/// API group of the ImageList and ImageJob CRDs and of the config file's `apiVersion`.
pub const GROUP: &str = "eraser.sh";
/// The storage version of both CRDs.
pub const VERSION_V1: &str = "v1";
/// The older version, still served so Eraser-era manifests apply, and deprecated.
pub const VERSION_V1ALPHA1: &str = "v1alpha1";
/// The warning the API server returns to clients of `eraser.sh/v1alpha1`, word for word Eraser's.
pub const V1ALPHA1_DEPRECATION_WARNING: &str =
    "v1alpha1 of the eraser API has been deprecated. Please migrate to v1.";
/// Kind of the image list resource.
pub const IMAGE_LIST_KIND: &str = "ImageList";
/// Kind of the job resource.
pub const IMAGE_JOB_KIND: &str = "ImageJob";
/// Name of the ImageList CRD.
pub const IMAGE_LIST_CRD_NAME: &str = "imagelists.eraser.sh";
/// Name of the ImageJob CRD.
pub const IMAGE_JOB_CRD_NAME: &str = "imagejobs.eraser.sh";

// --- ImageLists ------------------------------------------------------------------------

/// The only ImageList name Eraser acts on; it is a removal list.
pub const ERASER_IMAGE_LIST_NAME: &str = "imagelist";
/// Names containing this are exclusion lists when neither `spec.action` nor the label says
/// otherwise (the how-to guides' `excluded-images`, `prepulled-exclusions`).
pub const EXCLUSION_NAME_MARKER: &str = "exclu";

// --- Labels and annotations ----------------------------------------------------------

/// Label of exclusion lists: ConfigMaps (Eraser) and ImageLists (Image Cleaner).
pub const EXCLUDE_LIST_LABEL: &str = "eraser.sh/exclude.list";
/// The value of [`EXCLUDE_LIST_LABEL`] that marks an exclusion list.
pub const EXCLUDE_LIST_LABEL_VALUE: &str = "true";
/// Node label that the node filter always selects on, whatever the config lists.
pub const CLEANUP_FILTER_LABEL: &str = "eraser.sh/cleanup.filter";
/// ImageJob label naming the controller that created the job.
pub const JOB_OWNER_LABEL: &str = "eraser.sh/job-owner";
/// [`JOB_OWNER_LABEL`] value of scheduled (collector) jobs.
pub const JOB_OWNER_COLLECTOR: &str = "imagecollector";
/// [`JOB_OWNER_LABEL`] value of jobs started by a removal list.
pub const JOB_OWNER_IMAGE_LIST: &str = "imagelist-controller";
/// Worker pod label saying which kind of job the pod belongs to.
pub const POD_TYPE_LABEL: &str = "eraser.sh/type";
/// [`POD_TYPE_LABEL`] value of scheduled-run workers.
pub const POD_TYPE_COLLECTOR: &str = "collector";
/// [`POD_TYPE_LABEL`] value of removal-list workers.
pub const POD_TYPE_MANUAL: &str = "manual";
/// The `app` label key, selected by the how-to guides' `kubectl get pods -l app=...`.
pub const APP_LABEL: &str = "app";
/// [`APP_LABEL`] value of worker pods.
pub const APP_WORKER: &str = "eraser";
/// [`APP_LABEL`] value of manager pods.
pub const APP_MANAGER: &str = "eraser-controller-manager";
/// Label key of the manager pod selector.
pub const CONTROL_PLANE_LABEL: &str = "control-plane";
/// [`CONTROL_PLANE_LABEL`] value of the manager pods.
pub const CONTROL_PLANE_MANAGER: &str = "controller-manager";
/// Annotation Eraser bumps on its own pod so the kubelet refreshes the mounted ConfigMap.
pub const CONFIG_VERSION_ANNOTATION: &str = "eraser.sh/configVersion";
/// Well-known node label holding the operating system.
pub const NODE_OS_LABEL: &str = "kubernetes.io/os";
/// [`NODE_OS_LABEL`] value of Windows nodes, which are never cleaned.
pub const NODE_OS_WINDOWS: &str = "windows";

// --- Config ----------------------------------------------------------------------------

/// Name of the ConfigMap holding the manager's config.
pub const MANAGER_CONFIG_MAP: &str = "eraser-manager-config";
/// Key of the config file in [`MANAGER_CONFIG_MAP`].
pub const MANAGER_CONFIG_KEY: &str = "controller_manager_config.yaml";
/// `kind` of the config file.
pub const CONFIG_KIND: &str = "EraserConfig";
/// Config `apiVersion`s, oldest first.
pub const CONFIG_API_VERSIONS: [&str; 3] = [
    "eraser.sh/v1alpha1",
    "eraser.sh/v1alpha2",
    "eraser.sh/v1alpha3",
];

// --- Namespace, service accounts, RBAC -----------------------------------------------

/// Namespace of the manager and its workers unless told otherwise (as on AKS).
pub const DEFAULT_NAMESPACE: &str = "kube-system";
/// Eraser's own default namespace, where its manifests put everything.
pub const ERASER_NAMESPACE: &str = "eraser-system";
/// Service account of the manager.
pub const MANAGER_SERVICE_ACCOUNT: &str = "eraser-controller-manager";
/// Service account of the worker pods.
pub const WORKER_SERVICE_ACCOUNT: &str = "eraser-imagejob-pods";
/// Name of the manager's ClusterRole and Role.
pub const MANAGER_ROLE: &str = "eraser-manager-role";
/// Name of the manager Deployment.
pub const MANAGER_DEPLOYMENT: &str = "eraser-controller-manager";

// --- Environment ----------------------------------------------------------------------

/// Environment variable with the namespace of the manager and its workers.
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
/// Environment variable overriding [`MANAGER_CONFIG_MAP`].
pub const ENV_CONFIG_MAP_NAME: &str = "ERASER_CONFIGMAP_NAME";
/// Environment variable with comma-separated pull secrets added to worker pods.
pub const ENV_PULL_SECRET_NAMES: &str = "ERASER_PULL_SECRET_NAMES";
/// Environment variable with the worker's node name (downward API `spec.nodeName`).
pub const ENV_NODE_NAME: &str = "NODE_NAME";

// --- Worker pods --------------------------------------------------------------------

/// Prefix of worker pod names: `eraser-<node>-<random>`.
pub const WORKER_POD_NAME_PREFIX: &str = "eraser-";
/// `generateName` of ImageJobs.
pub const IMAGE_JOB_GENERATE_NAME: &str = "imagejob-";
/// `generateName` of the ConfigMap carrying a removal list to the workers.
pub const IMAGE_LIST_CONFIG_MAP_GENERATE_NAME: &str = "imagelist-";
/// Key of the removal list (a JSON array of strings) in that ConfigMap.
pub const IMAGE_LIST_CONFIG_MAP_KEY: &str = "images";
/// Container name of the collector in scheduled-run pods.
pub const COLLECTOR_CONTAINER: &str = "collector";
/// Container name of the remover in every worker pod.
pub const REMOVER_CONTAINER: &str = "remover";
/// Container name of the scanner in scheduled-run pods.
pub const SCANNER_CONTAINER: &str = "trivy-scanner";
/// Volume name of the runtime socket's hostPath.
pub const RUNTIME_SOCKET_VOLUME: &str = "runtime-sock-volume";
/// Where the runtime socket is mounted in every worker container.
pub const RUNTIME_SOCKET_MOUNT_PATH: &str = "/run/cri/cri.sock";
/// Volume name of the shared emptyDir of scheduled-run pods.
pub const SHARED_DATA_VOLUME: &str = "shared-data";
/// Where the shared emptyDir is mounted.
pub const SHARED_DATA_MOUNT_PATH: &str = "/run/eraser.sh/shared-data";
/// Volume name of the manager's config, mounted into the scanner.
pub const CONFIG_VOLUME: &str = "eraser-config";
/// Where the manager's config is mounted (the manager's own `--config` and the scanner's).
pub const CONFIG_MOUNT_PATH: &str = "/config";
/// The config file under [`CONFIG_MOUNT_PATH`].
pub const CONFIG_FILE_PATH: &str = "/config/controller_manager_config.yaml";
/// Where the removal list ConfigMap is mounted in manual-mode workers.
pub const IMAGE_LIST_MOUNT_PATH: &str = "/run/eraser.sh/imagelist";
/// The removal list file under [`IMAGE_LIST_MOUNT_PATH`].
pub const IMAGE_LIST_FILE_PATH: &str = "/run/eraser.sh/imagelist/images";
/// Exclusion ConfigMaps are mounted at `exclude-<name>`, relative to the working directory.
pub const EXCLUSION_MOUNT_PREFIX: &str = "exclude-";
/// Exclusion ConfigMaps hold their list in the first key with this suffix.
pub const EXCLUSION_KEY_SUFFIX: &str = ".json";
/// Repository prefix of Eraser's own images, which do not run Image Cleaner.
pub const ERASER_IMAGE_REPO_PREFIX: &str = "ghcr.io/eraser-dev/";

// --- Runtime sockets ---------------------------------------------------------------

/// Default CRI address of containerd.
pub const CONTAINERD_DEFAULT_ADDRESS: &str = "unix:///run/containerd/containerd.sock";
/// Default CRI address of dockershim (cri-dockerd users set their own).
pub const DOCKERSHIM_DEFAULT_ADDRESS: &str = "unix:///run/dockershim.sock";
/// Default CRI address of CRI-O.
pub const CRIO_DEFAULT_ADDRESS: &str = "unix:///run/crio/crio.sock";

// --- Metrics (Eraser's names) --------------------------------------------------------

/// Images removed in a run, per node.
pub const METRIC_IMAGES_REMOVED: &str = "images_removed_run_total";
/// Images found vulnerable in a run, per node.
pub const METRIC_VULNERABLE_IMAGES: &str = "vulnerable_images_run_total";
/// Duration of an ImageJob, in seconds.
pub const METRIC_IMAGEJOB_DURATION: &str = "imagejob_duration_run_seconds";
/// Worker pods that succeeded.
pub const METRIC_PODS_COMPLETED: &str = "pods_completed_run_total";
/// Worker pods that failed.
pub const METRIC_PODS_FAILED: &str = "pods_failed_run_total";
/// Finished ImageJobs.
pub const METRIC_IMAGEJOBS: &str = "imagejob_run_total";
