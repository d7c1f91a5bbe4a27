//! Real pods and containers through CRI, as kubelet would make them, so images are really in
//! use: a running (or created, or exited) container pins its image only in the runtime's own
//! records, which is exactly what the cleaner must read.
//!
//! Pods use the host network (no CNI needed) and an empty hostname. Each pod's log directory
//! lives in the [`crate::Containerd`] instance directory (or, for a runtime this process did
//! not start, under the temporary directory) and goes away with [`remove_pod`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use image_cleaner_cri::proto;

use crate::cri::{self, Clients};

/// A pod sandbox and the config it was made with (CRI wants it again for each container).
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// The sandbox ID.
    pub id: String,
    /// The config it was run with.
    pub config: proto::PodSandboxConfig,
}

/// A pod with one started container.
#[derive(Clone, Debug)]
pub struct RunningPod {
    /// The pod sandbox ID.
    pub sandbox_id: String,
    /// The container ID.
    pub container_id: String,
    /// The sandbox config, to add containers with [`create_container_in`].
    pub sandbox_config: proto::PodSandboxConfig,
}

impl RunningPod {
    /// The pod's sandbox.
    pub fn sandbox(&self) -> Sandbox {
        Sandbox {
            id: self.sandbox_id.clone(),
            config: self.sandbox_config.clone(),
        }
    }
}

/// Runs a pod sandbox named `namespace/name` and starts one container in it from `image` (a
/// name or an image ID) running `command`, e.g. `["/bin/sleep", "3600"]`.
pub async fn run_pod(
    endpoint: &str,
    name: &str,
    namespace: &str,
    image: &str,
    command: Vec<String>,
) -> anyhow::Result<RunningPod> {
    let sandbox = run_sandbox(endpoint, name, namespace).await?;
    let container_id = create_container_in(endpoint, &sandbox, name, image, command).await?;
    start_container(endpoint, &container_id).await?;
    Ok(RunningPod {
        sandbox_id: sandbox.id,
        container_id,
        sandbox_config: sandbox.config,
    })
}

/// Runs an empty pod sandbox (host network) named `namespace/name`.
pub async fn run_sandbox(endpoint: &str, name: &str, namespace: &str) -> anyhow::Result<Sandbox> {
    let uid = unique_uid();
    let log_directory = logs_base(endpoint).join(&uid);
    std::fs::create_dir_all(&log_directory)
        .with_context(|| format!("creating pod log directory {}", log_directory.display()))?;
    let config = cri::sandbox_config(
        name,
        namespace,
        &uid,
        &log_directory.to_string_lossy(),
        HashMap::new(),
    );
    let request = proto::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    };
    let response = cri::runtime_call(endpoint, "RunPodSandbox", |mut runtime| async move {
        runtime.run_pod_sandbox(request).await
    })
    .await
    .with_context(|| format!("running pod {namespace}/{name}"));
    match response {
        Ok(response) => Ok(Sandbox {
            id: response.pod_sandbox_id,
            config,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&log_directory);
            Err(e)
        }
    }
}

/// Creates (but does not start) a container named `name` in `sandbox`.
pub async fn create_container_in(
    endpoint: &str,
    sandbox: &Sandbox,
    name: &str,
    image: &str,
    command: Vec<String>,
) -> anyhow::Result<String> {
    let config = proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command,
        log_path: format!("{name}.log"),
        linux: Some(cri::container_linux()),
        ..Default::default()
    };
    let request = proto::CreateContainerRequest {
        pod_sandbox_id: sandbox.id.clone(),
        config: Some(config),
        sandbox_config: Some(sandbox.config.clone()),
    };
    let response = cri::runtime_call(endpoint, "CreateContainer", |mut runtime| async move {
        runtime.create_container(request).await
    })
    .await
    .with_context(|| {
        format!(
            "creating container {name} from {image} in sandbox {}",
            sandbox.id
        )
    })?;
    Ok(response.container_id)
}

/// Starts a created container.
pub async fn start_container(endpoint: &str, container_id: &str) -> anyhow::Result<()> {
    let request = proto::StartContainerRequest {
        container_id: container_id.to_string(),
    };
    cri::runtime_call(endpoint, "StartContainer", |mut runtime| async move {
        runtime.start_container(request).await
    })
    .await
    .with_context(|| format!("starting container {container_id}"))?;
    Ok(())
}

/// Stops a container at once (timeout 0: SIGKILL). Stopping a stopped container is fine.
pub async fn stop_container(endpoint: &str, container_id: &str) -> anyhow::Result<()> {
    let request = proto::StopContainerRequest {
        container_id: container_id.to_string(),
        timeout: 0,
    };
    cri::runtime_call(endpoint, "StopContainer", |mut runtime| async move {
        runtime.stop_container(request).await
    })
    .await
    .with_context(|| format!("stopping container {container_id}"))?;
    Ok(())
}

/// Removes a container (stopping it first if it runs).
pub async fn remove_container(endpoint: &str, container_id: &str) -> anyhow::Result<()> {
    let request = proto::RemoveContainerRequest {
        container_id: container_id.to_string(),
    };
    cri::runtime_call(endpoint, "RemoveContainer", |mut runtime| async move {
        runtime.remove_container(request).await
    })
    .await
    .with_context(|| format!("removing container {container_id}"))?;
    Ok(())
}

/// Stops a pod sandbox and all its containers.
pub async fn stop_pod(endpoint: &str, sandbox_id: &str) -> anyhow::Result<()> {
    let request = proto::StopPodSandboxRequest {
        pod_sandbox_id: sandbox_id.to_string(),
    };
    cri::runtime_call(endpoint, "StopPodSandbox", |mut runtime| async move {
        runtime.stop_pod_sandbox(request).await
    })
    .await
    .with_context(|| format!("stopping pod sandbox {sandbox_id}"))?;
    Ok(())
}

/// Removes a pod sandbox with its containers, and the log directory this module made for it.
pub async fn remove_pod(endpoint: &str, sandbox_id: &str) -> anyhow::Result<()> {
    let clients = Clients::connect(endpoint).await?;
    let mut runtime = clients.runtime.clone();
    let status = clients
        .call(
            "PodSandboxStatus",
            runtime.pod_sandbox_status(proto::PodSandboxStatusRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                verbose: false,
            }),
        )
        .await
        .ok();
    clients
        .call(
            "RemovePodSandbox",
            runtime.remove_pod_sandbox(proto::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            }),
        )
        .await
        .with_context(|| format!("removing pod sandbox {sandbox_id}"))?;
    let uid = status
        .and_then(|s| s.status)
        .and_then(|s| s.metadata)
        .map(|m| m.uid)
        .filter(|uid| !uid.is_empty() && !uid.contains('/') && !uid.starts_with('.'));
    if let Some(uid) = uid {
        let dir = logs_base(endpoint).join(uid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing pod logs {}", dir.display()));
            }
        }
    }
    Ok(())
}

/// Where pod log directories go: inside the instance directory when this process started
/// the runtime at `endpoint`, else under the temporary directory.
fn logs_base(endpoint: &str) -> PathBuf {
    endpoint
        .parse::<image_cleaner_cri::Endpoint>()
        .ok()
        .and_then(|e| crate::containerd::pod_log_dir(e.path()))
        .unwrap_or_else(|| crate::temp_base().join("imagecleaner-pod-logs"))
}

/// A pod UID unique across processes and calls.
fn unique_uid() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "testkit-{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
