//! The worker pod, as pure functions of the config and the job: the template (stored as the
//! job's PodTemplate, as in Eraser) and the pod of each node.
//!
//! A worker pod is Eraser's, as far as anyone can see from outside: name `eraser-<node>-…`,
//! labels `app=eraser` and `eraser.sh/type=collector|manual` (plus `additionalPodLabels`),
//! `spec.nodeName` set, every taint tolerated, the runtime socket mounted from
//! `manager.runtime.address` at `/run/cri/cri.sock`, `NODE_NAME` from the downward API,
//! `pullSecrets` and `priorityClassName` applied, one container named `remover`. What differs:
//!
//! - one container runs the whole pipeline (`imagecleaner worker`), with the job's ConfigMap
//!   (the job and a snapshot of the config) mounted read-only at `/run/eraser.sh/job`;
//! - the node's last-use state lives in a hostPath directory, `/var/lib/imagecleaner`;
//! - the container is hardened: root only for the socket (whose owner is root), no
//!   capabilities, no privilege escalation, read-only root filesystem, the runtime's seccomp
//!   profile;
//! - the pod's name is derived from the node and the job, so creating it again after a
//!   restart is idempotent, and the pod is owned by the ImageJob, so deleting the job
//!   collects it.

use std::collections::BTreeMap;

use image_cleaner_api::Config;
use image_cleaner_api::config::{ContainerConfig, ResourceConfig};
use image_cleaner_api::constants::{
    APP_LABEL, APP_WORKER, ENV_NODE_NAME, ERASER_IMAGE_REPO_PREFIX, IMAGE_JOB_GENERATE_NAME,
    MANAGER_CONFIG_KEY, POD_TYPE_COLLECTOR, POD_TYPE_LABEL, POD_TYPE_MANUAL, REMOVER_CONTAINER,
    RUNTIME_SOCKET_MOUNT_PATH, RUNTIME_SOCKET_VOLUME, WORKER_POD_NAME_PREFIX,
    WORKER_SERVICE_ACCOUNT,
};
use image_cleaner_protocol::{JOB_FILE_NAME, JOB_MOUNT_PATH, JobMode};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HostPathVolumeSource,
    KeyToPath, LocalObjectReference, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::names::{JOB_LABEL, JOB_VOLUME, STATE_PATH, STATE_VOLUME};

/// Longest object name Kubernetes accepts for a pod.
const MAX_POD_NAME: usize = 253;
/// Where the worker leaves its report (the kubelet's default termination message path).
const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Seconds a worker gets to stop when its pod is deleted.
const TERMINATION_GRACE_SECONDS: i64 = 30;

/// Everything a worker pod is made from.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSpec<'a> {
    /// The ImageJob's name.
    pub job: &'a str,
    /// Scheduled run or removal list.
    pub mode: JobMode,
    /// Whether the worker scans (scheduled runs with the scanner enabled).
    pub scan: bool,
    /// The effective config when the job started.
    pub config: &'a Config,
    /// The worker image (see [`worker_image`]).
    pub image: &'a str,
    /// Pull secrets from the manager's environment (`ERASER_PULL_SECRET_NAMES`), added to the
    /// config's.
    pub extra_pull_secrets: &'a [String],
    /// Log filter for the worker, if any.
    pub log_level: Option<&'a str>,
}

/// The image workers run: `components.remover.image` when it names an image of ours, else the
/// manager's own. Eraser's images (`ghcr.io/eraser-dev/...`, in every Eraser config) cannot
/// run this worker, so they are replaced, and the second value says so.
pub fn worker_image(config: &Config, own_image: &str) -> (String, Option<String>) {
    let image = &config.components.remover.image;
    match (&image.repo, &image.tag) {
        (None, None) => (own_image.to_owned(), None),
        (Some(repo), _) if repo.starts_with(ERASER_IMAGE_REPO_PREFIX) => (
            own_image.to_owned(),
            Some(format!(
                "components.remover.image {repo} is Eraser's; workers run {own_image}"
            )),
        ),
        (Some(repo), tag) => {
            let tag = tag.as_deref().unwrap_or("latest");
            (format!("{repo}:{tag}"), None)
        }
        (None, Some(tag)) => {
            let (repo, _) = split_image(own_image);
            (format!("{repo}:{tag}"), None)
        }
    }
}

/// `repo` and `tag` of `repo[:tag][@digest]`, the tag after the last `/`.
fn split_image(image: &str) -> (&str, Option<&str>) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name_start = without_digest.rfind('/').map_or(0, |slash| slash + 1);
    match without_digest[name_start..].rfind(':') {
        Some(colon) => {
            let at = name_start + colon;
            (&without_digest[..at], Some(&without_digest[at + 1..]))
        }
        None => (without_digest, None),
    }
}

/// The container's resources: the scanner's when scanning, the collector's for other
/// scheduled runs, the remover's for removal lists (as Eraser sizes those containers). CPU
/// and memory requests as configured; limits as configured but never `0` (which Eraser's
/// shipped config writes to mean "none").
fn resources(spec: &WorkerSpec<'_>) -> ResourceRequirements {
    let components = &spec.config.components;
    let container: &ContainerConfig = match (spec.mode, spec.scan) {
        (JobMode::Scheduled, true) => &components.scanner.container,
        (JobMode::Scheduled, false) => &components.collector.container,
        (JobMode::List, _) => &components.remover,
    };
    let map = |resources: &ResourceConfig, allow_zero: bool| {
        let mut map = BTreeMap::new();
        for (name, quantity) in [("memory", &resources.mem), ("cpu", &resources.cpu)] {
            if let Some(quantity) = quantity
                && (allow_zero || !is_zero(quantity))
            {
                map.insert(name.to_owned(), quantity.clone());
            }
        }
        (!map.is_empty()).then_some(map)
    };
    ResourceRequirements {
        requests: map(&container.request, false),
        limits: map(&container.limit, false),
        ..Default::default()
    }
}

fn is_zero(quantity: &Quantity) -> bool {
    let number: String = quantity
        .0
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '+')
        .collect();
    number.parse::<f64>().is_ok_and(|n| n == 0.0)
}

/// Labels of a job's worker pods.
pub fn pod_labels(spec: &WorkerSpec<'_>) -> BTreeMap<String, String> {
    let mut labels = spec.config.manager.additional_pod_labels.clone();
    labels.insert(APP_LABEL.into(), APP_WORKER.into());
    let kind = match spec.mode {
        JobMode::Scheduled => POD_TYPE_COLLECTOR,
        JobMode::List => POD_TYPE_MANUAL,
    };
    labels.insert(POD_TYPE_LABEL.into(), kind.into());
    labels.insert(JOB_LABEL.into(), spec.job.into());
    labels
}

/// The pod template of a job: everything but the node.
pub fn template(spec: &WorkerSpec<'_>) -> PodTemplateSpec {
    let manager = &spec.config.manager;
    let mut pull_secrets: Vec<String> = manager.pull_secrets.clone();
    for secret in spec.extra_pull_secrets {
        if !pull_secrets.contains(secret) {
            pull_secrets.push(secret.clone());
        }
    }
    let job_file = format!("{JOB_MOUNT_PATH}/{JOB_FILE_NAME}");
    let config_file = format!("{JOB_MOUNT_PATH}/{MANAGER_CONFIG_KEY}");
    let mut args = vec![
        "worker".to_owned(),
        format!("--job={job_file}"),
        format!("--config={config_file}"),
        format!("--runtime-endpoint=unix://{RUNTIME_SOCKET_MOUNT_PATH}"),
        format!("--state-dir={STATE_PATH}"),
        format!("--termination-log={TERMINATION_MESSAGE_PATH}"),
    ];
    if let Some(level) = spec.log_level {
        args.push(format!("--log-level={level}"));
    }
    let mut volumes = vec![
        Volume {
            name: RUNTIME_SOCKET_VOLUME.into(),
            host_path: Some(HostPathVolumeSource {
                path: manager.runtime.address.socket_path().to_owned(),
                type_: Some("Socket".into()),
            }),
            ..Default::default()
        },
        Volume {
            name: JOB_VOLUME.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: spec.job.to_owned(),
                items: Some(
                    [JOB_FILE_NAME, MANAGER_CONFIG_KEY]
                        .into_iter()
                        .map(|key| KeyToPath {
                            key: key.into(),
                            path: key.into(),
                            mode: None,
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: STATE_VOLUME.into(),
            host_path: Some(HostPathVolumeSource {
                path: STATE_PATH.into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: RUNTIME_SOCKET_VOLUME.into(),
            mount_path: RUNTIME_SOCKET_MOUNT_PATH.into(),
            ..Default::default()
        },
        VolumeMount {
            name: JOB_VOLUME.into(),
            mount_path: JOB_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        },
        VolumeMount {
            name: STATE_VOLUME.into(),
            mount_path: STATE_PATH.into(),
            ..Default::default()
        },
    ];
    if spec.scan {
        // Eraser mounts the scanner's hostPath volumes read-only at their host paths (a
        // database kept on the node, a cache).
        for volume in &spec.config.components.scanner.volumes {
            let Some(host_path) = &volume.host_path else {
                continue;
            };
            if volumes.iter().any(|v| v.name == volume.name) {
                continue;
            }
            mounts.push(VolumeMount {
                name: volume.name.clone(),
                mount_path: host_path.path.clone(),
                read_only: Some(true),
                ..Default::default()
            });
            volumes.push(volume.clone());
        }
    }
    let mut env = vec![EnvVar {
        name: ENV_NODE_NAME.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "spec.nodeName".into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }];
    env.push(EnvVar {
        name: "CONTAINERD_NAMESPACE".into(),
        value: Some("k8s.io".into()),
        ..Default::default()
    });
    let container = Container {
        name: REMOVER_CONTAINER.into(),
        image: Some(spec.image.to_owned()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: Some(env),
        resources: Some(resources(spec)),
        volume_mounts: Some(mounts),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        security_context: Some(SecurityContext {
            // Root owns the runtime socket; nothing else of root's is kept.
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels(spec)),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            service_account_name: Some(WORKER_SERVICE_ACCOUNT.into()),
            automount_service_account_token: Some(true),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            priority_class_name: (!manager.priority_class_name.is_empty())
                .then(|| manager.priority_class_name.clone()),
            image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
                pull_secrets
                    .into_iter()
                    .map(|name| LocalObjectReference { name })
                    .collect()
            }),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            enable_service_links: Some(false),
            ..Default::default()
        }),
    }
}

/// The ImageJob as a pod's owner (the controller: deleting the job collects the pod).
#[derive(Clone, Debug)]
pub struct Owner {
    /// `apiVersion` of the owner.
    pub api_version: String,
    /// Kind of the owner.
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl Owner {
    /// The controller owner reference.
    pub fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }
}

/// The worker pod of `node` in job `owner`, from the job's template.
pub fn pod_for_node(template: &PodTemplateSpec, owner: &Owner, namespace: &str, node: &str) -> Pod {
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(pod_name(node, &owner.name));
    metadata.namespace = Some(namespace.to_owned());
    metadata.owner_references = Some(vec![owner.reference()]);
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.node_name = Some(node.to_owned());
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

/// `eraser-<node>-<job suffix>`: Eraser's `eraser-<node>-` prefix, then what tells jobs apart,
/// so the same job never gets two pods on one node. A node name too long to fit is cut and a
/// hash of it added, keeping names unique.
pub fn pod_name(node: &str, job: &str) -> String {
    let suffix = job.strip_prefix(IMAGE_JOB_GENERATE_NAME).unwrap_or(job);
    let name = format!("{WORKER_POD_NAME_PREFIX}{node}-{suffix}");
    if name.len() <= MAX_POD_NAME {
        return name;
    }
    let hash = format!("{:08x}", fnv1a(node.as_bytes()) as u32);
    let room = MAX_POD_NAME - WORKER_POD_NAME_PREFIX.len() - suffix.len() - hash.len() - 2;
    let mut cut = node.len().min(room);
    while !node.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = node[..cut].trim_end_matches(['-', '.']);
    format!("{WORKER_POD_NAME_PREFIX}{head}-{hash}-{suffix}")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::config::ImageConfig;

    use super::*;

    fn config(yaml: &str) -> Config {
        Config::from_yaml(yaml).expect("valid config").config
    }

    const V1ALPHA3: &str = r#"
apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  runtime: {name: containerd, address: unix:///run/k3s/containerd/containerd.sock}
  pullSecrets: [regcred]
  priorityClassName: system-node-critical
  additionalPodLabels: {team: platform}
components:
  remover:
    image: {repo: ghcr.io/eraser-dev/remover, tag: v1.5.0-beta.0}
    request: {mem: 25Mi, cpu: 0}
    limit: {mem: 30Mi, cpu: 0}
"#;

    fn spec<'a>(config: &'a Config, extra: &'a [String], mode: JobMode) -> WorkerSpec<'a> {
        WorkerSpec {
            job: "imagejob-ab12c",
            mode,
            scan: false,
            config,
            image: "registry.example/imagecleaner:1.0",
            extra_pull_secrets: extra,
            log_level: None,
        }
    }

    #[test]
    fn a_worker_pod_is_erasers_from_outside() {
        let config = config(V1ALPHA3);
        let extra = vec!["from-env".to_string(), "regcred".to_string()];
        let template = template(&spec(&config, &extra, JobMode::List));
        let owner = Owner {
            api_version: "eraser.sh/v1".into(),
            kind: "ImageJob".into(),
            name: "imagejob-ab12c".into(),
            uid: "uid-1".into(),
        };
        let pod = pod_for_node(&template, &owner, "kube-system", "node-1");
        assert_eq!(pod.metadata.name.as_deref(), Some("eraser-node-1-ab12c"));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("eraser"));
        assert_eq!(
            labels.get("eraser.sh/type").map(String::as_str),
            Some("manual")
        );
        assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            labels.get(JOB_LABEL).map(String::as_str),
            Some("imagejob-ab12c")
        );
        let owners = pod.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].controller, Some(true));

        let spec = pod.spec.expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("eraser-imagejob-pods")
        );
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let secrets: Vec<_> = spec
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(secrets, vec!["regcred", "from-env"]);
        let tolerations = spec.tolerations.unwrap_or_default();
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(tolerations[0].key, None);

        let volumes = spec.volumes.unwrap_or_default();
        let socket = volumes
            .iter()
            .find(|v| v.name == RUNTIME_SOCKET_VOLUME)
            .and_then(|v| v.host_path.clone())
            .expect("socket volume");
        assert_eq!(socket.path, "/run/k3s/containerd/containerd.sock");

        assert_eq!(spec.containers.len(), 1);
        let container = &spec.containers[0];
        assert_eq!(container.name, "remover");
        // Eraser's image in the config is replaced by ours.
        assert_eq!(
            container.image.as_deref(),
            Some("registry.example/imagecleaner:1.0")
        );
        let mounts = container.volume_mounts.clone().unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/run/cri/cri.sock" && m.name == RUNTIME_SOCKET_VOLUME)
        );
        let env = container.env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| {
            e.name == "NODE_NAME"
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.as_str())
                    == Some("spec.nodeName")
        }));
        let security = container.security_context.clone().expect("hardened");
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            security.capabilities.and_then(|c| c.drop),
            Some(vec!["ALL".to_string()])
        );
        // cpu: 0 means none; memory as configured.
        let resources = container.resources.clone().expect("resources");
        let requests = resources.requests.unwrap_or_default();
        assert_eq!(requests.get("memory").map(|q| q.0.as_str()), Some("25Mi"));
        assert!(!requests.contains_key("cpu"));
        let limits = resources.limits.unwrap_or_default();
        assert_eq!(limits.get("memory").map(|q| q.0.as_str()), Some("30Mi"));
        assert!(!limits.contains_key("cpu"));
    }

    #[test]
    fn scheduled_pods_are_collectors() {
        let config = Config::default();
        let template = template(&spec(&config, &[], JobMode::Scheduled));
        let labels = template.metadata.and_then(|m| m.labels).unwrap_or_default();
        assert_eq!(
            labels.get("eraser.sh/type").map(String::as_str),
            Some("collector")
        );
        let spec = template.spec.expect("spec");
        assert_eq!(spec.priority_class_name, None);
        assert_eq!(spec.image_pull_secrets, None);
    }

    #[test]
    fn worker_images() {
        let own = "registry.example/team/imagecleaner:1.2";
        let mut config = Config::default();
        assert_eq!(worker_image(&config, own), (own.to_string(), None));
        config.components.remover.image = ImageConfig {
            repo: Some("ghcr.io/eraser-dev/remover".into()),
            tag: Some("v1".into()),
        };
        let (image, warning) = worker_image(&config, own);
        assert_eq!(image, own);
        assert!(warning.is_some());
        config.components.remover.image = ImageConfig {
            repo: Some("mirror.local/imagecleaner".into()),
            tag: None,
        };
        assert_eq!(
            worker_image(&config, own).0,
            "mirror.local/imagecleaner:latest"
        );
        config.components.remover.image = ImageConfig {
            repo: None,
            tag: Some("1.3".into()),
        };
        assert_eq!(
            worker_image(&config, own).0,
            "registry.example/team/imagecleaner:1.3"
        );
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", None));
        assert_eq!(
            split_image("localhost:5000/x:1@sha256:ab"),
            ("localhost:5000/x", Some("1"))
        );
    }

    #[test]
    fn pod_names_are_stable_and_fit() {
        assert_eq!(
            pod_name("aks-pool-0", "imagejob-x7k2p"),
            "eraser-aks-pool-0-x7k2p"
        );
        let long = format!("{}.example.com", "n".repeat(260));
        let name = pod_name(&long, "imagejob-x7k2p");
        assert!(name.len() <= MAX_POD_NAME, "{}", name.len());
        assert!(name.starts_with("eraser-nnn"));
        assert!(name.ends_with("-x7k2p"));
        assert_eq!(name, pod_name(&long, "imagejob-x7k2p"));
        let other = format!("{}.example.org", "n".repeat(260));
        assert_ne!(name, pod_name(&other, "imagejob-x7k2p"));
    }
}
