//! Containers of other images run for real on the node's containerd, through CRI, shaped as
//! kubelet shapes them: the container is created from the image ID (the name the pod gave
//! is kept as `user_specified_image`), one pod sandbox per pod (host network) whose metadata
//! carries the
//! pod's name, namespace and UID, containers labelled `io.kubernetes.pod.*` and
//! `io.kubernetes.container.name`, the termination message file bind-mounted at the
//! container's `terminationMessagePath`, and the pod's volumes bind-mounted at their mount
//! paths. The image must already be on the node (there is no registry); exited containers stay
//! until the pod is deleted, as with kubelet.

use std::collections::HashMap;
use std::time::Duration;

use image_cleaner_cri::proto;

use crate::cri::{self, Clients};

/// How often a running container's state is polled.
const POLL: Duration = Duration::from_millis(200);

/// A pod's sandbox on one node.
#[derive(Clone, Debug)]
pub(crate) struct CriPod {
    pub endpoint: String,
    pub sandbox_id: String,
    config: proto::PodSandboxConfig,
}

/// How a container ended.
#[derive(Clone, Debug)]
pub(crate) struct Exit {
    pub code: i32,
    pub reason: String,
}

/// One container to create.
#[derive(Clone, Debug)]
pub(crate) struct CriPlan {
    pub name: String,
    /// The image ID, as kubelet passes it.
    pub image: String,
    /// The image as the pod names it.
    pub user_image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// `(container path, host path, read-only)`.
    pub mounts: Vec<(String, String, bool)>,
}

fn kube_labels(pod_name: &str, namespace: &str, uid: &str) -> HashMap<String, String> {
    HashMap::from([
        ("io.kubernetes.pod.name".to_string(), pod_name.to_string()),
        (
            "io.kubernetes.pod.namespace".to_string(),
            namespace.to_string(),
        ),
        ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
    ])
}

/// The ID of `image` on the node's runtime, if it has it.
pub(crate) async fn image_id(endpoint: &str, image: &str) -> anyhow::Result<Option<String>> {
    let clients = Clients::connect(endpoint).await?;
    let mut images = clients.images.clone();
    let status = clients
        .call(
            "ImageStatus",
            images.image_status(proto::ImageStatusRequest {
                image: Some(proto::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )
        .await?;
    Ok(status.image.map(|i| i.id))
}

impl CriPod {
    /// Runs the sandbox of pod `namespace/name` (UID `uid`), logging under `log_dir`.
    pub async fn run(
        endpoint: &str,
        name: &str,
        namespace: &str,
        uid: &str,
        log_dir: &str,
    ) -> anyhow::Result<CriPod> {
        let config = cri::sandbox_config(
            name,
            namespace,
            uid,
            log_dir,
            kube_labels(name, namespace, uid),
        );
        let request = proto::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let response = cri::runtime_call(endpoint, "RunPodSandbox", |mut runtime| async move {
            runtime.run_pod_sandbox(request).await
        })
        .await?;
        Ok(CriPod {
            endpoint: endpoint.to_string(),
            sandbox_id: response.pod_sandbox_id,
            config,
        })
    }

    /// Creates and starts a container; returns its ID.
    pub async fn start(&self, plan: &CriPlan, attempt: u32) -> anyhow::Result<String> {
        let meta = self.config.metadata.clone().unwrap_or_default();
        let mut labels = kube_labels(&meta.name, &meta.namespace, &meta.uid);
        labels.insert("io.kubernetes.container.name".into(), plan.name.clone());
        let config = proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: plan.name.clone(),
                attempt,
            }),
            image: Some(proto::ImageSpec {
                image: plan.image.clone(),
                user_specified_image: plan.user_image.clone(),
                ..Default::default()
            }),
            command: plan.command.clone(),
            args: plan.args.clone(),
            working_dir: plan.working_dir.clone(),
            envs: plan
                .env
                .iter()
                .map(|(key, value)| proto::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: plan
                .mounts
                .iter()
                .map(|(container, host, readonly)| proto::Mount {
                    container_path: container.clone(),
                    host_path: host.clone(),
                    readonly: *readonly,
                    ..Default::default()
                })
                .collect(),
            labels,
            log_path: format!("{}_{attempt}.log", plan.name),
            linux: Some(cri::container_linux()),
            ..Default::default()
        };
        let clients = Clients::connect(&self.endpoint).await?;
        let mut runtime = clients.runtime.clone();
        let created = clients
            .call(
                "CreateContainer",
                runtime.create_container(proto::CreateContainerRequest {
                    pod_sandbox_id: self.sandbox_id.clone(),
                    config: Some(config),
                    sandbox_config: Some(self.config.clone()),
                }),
            )
            .await?;
        clients
            .call(
                "StartContainer",
                runtime.start_container(proto::StartContainerRequest {
                    container_id: created.container_id.clone(),
                }),
            )
            .await?;
        Ok(created.container_id)
    }

    async fn container_status(&self, id: &str) -> anyhow::Result<proto::ContainerStatusResponse> {
        let request = proto::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: false,
        };
        cri::runtime_call(
            &self.endpoint,
            "ContainerStatus",
            |mut runtime| async move { runtime.container_status(request).await },
        )
        .await
    }

    async fn status(&self, id: &str) -> anyhow::Result<Option<Exit>> {
        let response = self.container_status(id).await?;
        let Some(status) = response.status else {
            return Ok(Some(Exit {
                code: 128,
                reason: "ContainerMissing".into(),
            }));
        };
        if status.state == proto::ContainerState::ContainerExited as i32 {
            return Ok(Some(Exit {
                code: status.exit_code,
                reason: if status.reason.is_empty() {
                    if status.exit_code == 0 {
                        "Completed"
                    } else {
                        "Error"
                    }
                    .into()
                } else {
                    status.reason
                },
            }));
        }
        Ok(None)
    }

    /// The image reference the runtime resolved for container `id` (a repo digest or the
    /// image ID), as kubelet reports it in `imageID`.
    pub async fn image_ref(&self, id: &str) -> Option<String> {
        let response = self.container_status(id).await.ok()?;
        response
            .status
            .map(|s| s.image_ref)
            .filter(|r| !r.is_empty())
    }

    /// Waits until container `id` exits.
    pub async fn wait(&self, id: &str) -> Exit {
        loop {
            match self.status(id).await {
                Ok(Some(exit)) => return exit,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("container {id} status: {e:#}");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops container `id` (SIGTERM, SIGKILL after `grace`) and reports how it ended.
    pub async fn stop(&self, id: &str, grace: Duration) -> Exit {
        let stopped = async {
            let clients = Clients::connect(&self.endpoint).await?;
            let mut runtime = clients.runtime.clone();
            clients
                .call(
                    "StopContainer",
                    runtime.stop_container(proto::StopContainerRequest {
                        container_id: id.to_string(),
                        timeout: grace.as_secs() as i64,
                    }),
                )
                .await?;
            anyhow::Ok(())
        };
        if let Err(e) = stopped.await {
            tracing::debug!("stopping container {id}: {e:#}");
        }
        match self.status(id).await {
            Ok(Some(exit)) => exit,
            _ => Exit {
                code: 137,
                reason: "Error".into(),
            },
        }
    }

    /// Stops and removes the sandbox and all its containers.
    pub async fn remove(&self) -> anyhow::Result<()> {
        crate::pods::stop_pod(&self.endpoint, &self.sandbox_id).await?;
        crate::pods::remove_pod(&self.endpoint, &self.sandbox_id).await
    }
}
