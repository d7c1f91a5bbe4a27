//! The CRI v1 client: the calls the cleaner makes, each under a deadline, answers converted
//! to core types.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use image_cleaner_core::{Container, ContainerState, Image, ImageId, PodSandbox, SandboxState};
use k8s_cri::v1 as proto;
use proto::image_service_client::ImageServiceClient;
use proto::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::endpoint::{DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
use crate::{Endpoint, Error, Result};

/// Deadlines for talking to a runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting and the first (Version) call.
    pub connect: Duration,
    /// Every later call.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: DEFAULT_CONNECT_TIMEOUT,
            call: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// What the runtime says it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeVersion {
    /// Runtime name, e.g. `containerd`.
    pub name: String,
    /// Runtime version, e.g. `1.6.20`.
    pub version: String,
    /// CRI API version the runtime speaks.
    pub api_version: String,
}

/// Times of one container that CRI gives only through ContainerStatus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerTimes {
    /// When it started, if it did.
    pub started_at: Option<SystemTime>,
    /// When it finished, if it did.
    pub finished_at: Option<SystemTime>,
}

/// A connected CRI client. Cheap to clone; clones share the connection.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    channel: Channel,
    timeouts: Timeouts,
    version: RuntimeVersion,
}

impl Client {
    /// Connects and asks the runtime its version, which proves the socket speaks CRI v1.
    pub async fn connect(endpoint: &Endpoint, timeouts: Timeouts) -> Result<Client> {
        let channel = endpoint.connect(timeouts.connect).await?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let version = call(endpoint, "Version", timeouts.connect, async {
            runtime.version(proto::VersionRequest::default()).await
        })
        .await
        .map_err(|e| match e {
            Error::Call {
                endpoint, status, ..
            } => Error::NotCri { endpoint, status },
            other => other,
        })?;
        let version = RuntimeVersion {
            name: version.runtime_name,
            version: version.runtime_version,
            api_version: version.runtime_api_version,
        };
        Ok(Client {
            endpoint: endpoint.clone(),
            images: ImageServiceClient::new(channel.clone()),
            runtime,
            channel,
            timeouts,
            version,
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The runtime's name and version, as read at connect time.
    pub fn version(&self) -> &RuntimeVersion {
        &self.version
    }

    /// The underlying channel, for the runtime's own API on the same socket.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The deadlines in force.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Every image the runtime holds. `reclaimable_bytes` and `pulled_at` are unknown to CRI.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let mut images = self.images.clone();
        let response = self
            .call("ListImages", async {
                images
                    .list_images(proto::ListImagesRequest::default())
                    .await
            })
            .await?;
        Ok(response.images.into_iter().map(image_from_proto).collect())
    }

    /// Every container the runtime knows, in any state. Start and finish times are not in
    /// this answer; see [`Client::container_times`].
    pub async fn list_containers(&self) -> Result<Vec<Container>> {
        let mut runtime = self.runtime.clone();
        let response = self
            .call("ListContainers", async {
                runtime
                    .list_containers(proto::ListContainersRequest::default())
                    .await
            })
            .await?;
        Ok(response
            .containers
            .into_iter()
            .map(container_from_proto)
            .collect())
    }

    /// Start and finish times of one container. A container gone since it was listed has none.
    pub async fn container_times(&self, container_id: &str) -> Result<ContainerTimes> {
        let mut runtime = self.runtime.clone();
        let request = proto::ContainerStatusRequest {
            container_id: container_id.to_string(),
            verbose: false,
        };
        let answer = call(
            &self.endpoint,
            "ContainerStatus",
            self.timeouts.call,
            async { runtime.container_status(request).await },
        )
        .await;
        match answer {
            Ok(response) => Ok(response
                .status
                .map(|s| ContainerTimes {
                    started_at: nanos_to_time(s.started_at),
                    finished_at: nanos_to_time(s.finished_at),
                })
                .unwrap_or_default()),
            Err(Error::Call { status, .. }) if status.code() == tonic::Code::NotFound => {
                Ok(ContainerTimes::default())
            }
            Err(other) => Err(other),
        }
    }

    /// Every pod sandbox the runtime knows, ready or not.
    pub async fn list_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        let mut runtime = self.runtime.clone();
        let response = self
            .call("ListPodSandbox", async {
                runtime
                    .list_pod_sandbox(proto::ListPodSandboxRequest::default())
                    .await
            })
            .await?;
        Ok(response.items.into_iter().map(sandbox_from_proto).collect())
    }

    /// The runtime's own configuration as it reports it in a verbose Status (containerd and
    /// CRI-O put a JSON document under the key `config`). `None` if it reports none.
    pub async fn runtime_config(&self) -> Result<Option<serde_json::Value>> {
        let mut runtime = self.runtime.clone();
        let response = self
            .call("Status", async {
                runtime.status(proto::StatusRequest { verbose: true }).await
            })
            .await?;
        Ok(response
            .info
            .get("config")
            .and_then(|raw| serde_json::from_str(raw).ok()))
    }

    /// The sandbox (pause) image the runtime is configured with, if it says.
    pub async fn sandbox_image(&self) -> Result<Option<String>> {
        Ok(self
            .runtime_config()
            .await?
            .as_ref()
            .and_then(sandbox_image_from_config))
    }

    /// Removes an image by ID. The runtime removes every tag and digest name of it, and
    /// answers OK for an image that is already gone.
    pub async fn remove_image(&self, id: &ImageId) -> Result<()> {
        let mut images = self.images.clone();
        let request = proto::RemoveImageRequest {
            image: Some(proto::ImageSpec {
                image: id.as_str().to_string(),
                ..Default::default()
            }),
        };
        self.call("RemoveImage", async { images.remove_image(request).await })
            .await?;
        Ok(())
    }

    /// Whether the runtime still holds the image (CRI `ImageStatus`: an image it does not
    /// have comes back empty, not as an error).
    pub async fn image_exists(&self, id: &ImageId) -> Result<bool> {
        let mut images = self.images.clone();
        let request = proto::ImageStatusRequest {
            image: Some(proto::ImageSpec {
                image: id.as_str().to_string(),
                ..Default::default()
            }),
            verbose: false,
        };
        let response = self
            .call("ImageStatus", async { images.image_status(request).await })
            .await?;
        Ok(response.image.is_some())
    }

    /// Bytes the runtime reports used on its image filesystems. Runtimes refresh this figure
    /// periodically, so it lags removals by up to that period.
    pub async fn image_fs_used_bytes(&self) -> Result<u64> {
        let mut images = self.images.clone();
        let response = self
            .call("ImageFsInfo", async {
                images
                    .image_fs_info(proto::ImageFsInfoRequest::default())
                    .await
            })
            .await?;
        Ok(response
            .image_filesystems
            .iter()
            .chain(response.container_filesystems.iter())
            .filter_map(|fs| fs.used_bytes.as_ref().map(|v| v.value))
            .sum())
    }

    async fn call<T>(
        &self,
        name: &'static str,
        request: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        call(&self.endpoint, name, self.timeouts.call, request).await
    }
}

/// Runs one gRPC call under a deadline and names the endpoint and call in any error.
pub(crate) async fn call<T>(
    endpoint: &Endpoint,
    name: &'static str,
    after: Duration,
    request: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(after, request).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(Error::Call {
            endpoint: endpoint.to_string(),
            call: name,
            status: Box::new(status),
        }),
        Err(_) => Err(Error::Timeout {
            endpoint: endpoint.to_string(),
            call: name,
            after,
        }),
    }
}

/// containerd reports `sandboxImage`; CRI-O reports `pause_image` under `crio.image`.
fn sandbox_image_from_config(config: &serde_json::Value) -> Option<String> {
    let candidates = [
        config.get("sandboxImage"),
        config.pointer("/crio/image/pause_image"),
        config.get("pause_image"),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

fn nanos_to_time(nanos: i64) -> Option<SystemTime> {
    // CRI uses 0 for "never"; negative values are nonsense from a runtime.
    u64::try_from(nanos)
        .ok()
        .filter(|n| *n > 0)
        .map(|n| UNIX_EPOCH + Duration::from_nanos(n))
}

fn image_from_proto(image: proto::Image) -> Image {
    Image {
        id: ImageId::new(image.id),
        names: image.repo_tags,
        digests: image.repo_digests,
        size_bytes: image.size,
        reclaimable_bytes: None,
        pinned: image.pinned,
        pulled_at: None,
    }
}

fn container_from_proto(c: proto::Container) -> Container {
    let state = match proto::ContainerState::try_from(c.state) {
        Ok(proto::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(proto::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(proto::ContainerState::ContainerExited) => ContainerState::Exited,
        Ok(proto::ContainerState::ContainerUnknown) | Err(_) => ContainerState::Unknown,
    };
    Container {
        id: c.id,
        name: c.metadata.map(|m| m.name).unwrap_or_default(),
        sandbox_id: c.pod_sandbox_id,
        state,
        image: c.image.map(|i| i.image).unwrap_or_default(),
        image_ref: c.image_ref,
        image_id: c.image_id,
        created_at: nanos_to_time(c.created_at),
        started_at: None,
        finished_at: None,
    }
}

fn sandbox_from_proto(s: proto::PodSandbox) -> PodSandbox {
    let state = match proto::PodSandboxState::try_from(s.state) {
        Ok(proto::PodSandboxState::SandboxReady) => SandboxState::Ready,
        _ => SandboxState::NotReady,
    };
    let (name, namespace) = s
        .metadata
        .map(|m| (m.name, m.namespace))
        .unwrap_or_default();
    PodSandbox {
        id: s.id,
        name,
        namespace,
        state,
        created_at: nanos_to_time(s.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_sandbox_image_of_containerd_and_crio() {
        let containerd = serde_json::json!({"sandboxImage": "registry.k8s.io/pause:3.9"});
        assert_eq!(
            sandbox_image_from_config(&containerd).as_deref(),
            Some("registry.k8s.io/pause:3.9")
        );
        let crio =
            serde_json::json!({"crio": {"image": {"pause_image": "registry.k8s.io/pause:3.10"}}});
        assert_eq!(
            sandbox_image_from_config(&crio).as_deref(),
            Some("registry.k8s.io/pause:3.10")
        );
        assert_eq!(sandbox_image_from_config(&serde_json::json!({})), None);
    }

    #[test]
    fn zero_and_negative_times_mean_never() {
        assert_eq!(nanos_to_time(0), None);
        assert_eq!(nanos_to_time(-5), None);
        assert_eq!(
            nanos_to_time(1_500_000_000),
            Some(UNIX_EPOCH + Duration::from_millis(1500))
        );
    }

    #[test]
    fn unknown_container_states_are_unknown() {
        let c = container_from_proto(proto::Container {
            state: 42,
            ..Default::default()
        });
        assert_eq!(c.state, ContainerState::Unknown);
    }
}
