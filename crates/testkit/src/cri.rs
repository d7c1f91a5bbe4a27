//! Small CRI helpers shared by the modules that drive the runtime: connect with a deadline
//! and run one call with a deadline, naming the endpoint in every error; and the pod and
//! container configs every test pod gets (host network, so no CNI is needed).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use image_cleaner_cri::proto::image_service_client::ImageServiceClient;
use image_cleaner_cri::proto::runtime_service_client::RuntimeServiceClient;
use image_cleaner_cri::{Endpoint, proto};
use tonic::transport::Channel;

/// How long connecting to a runtime socket may take.
pub(crate) const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How long one CRI call may take.
pub(crate) const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Runtime and image clients over one channel.
pub(crate) struct Clients {
    pub endpoint: String,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Clients {
    /// Connects to `endpoint` (`unix:///path` or an absolute path).
    pub(crate) async fn connect(endpoint: &str) -> anyhow::Result<Clients> {
        Self::connect_within(endpoint, CONNECT_DEADLINE).await
    }

    /// Connects to `endpoint`, failing after `deadline`.
    pub(crate) async fn connect_within(
        endpoint: &str,
        deadline: Duration,
    ) -> anyhow::Result<Clients> {
        let parsed: Endpoint = endpoint
            .parse()
            .with_context(|| format!("parsing runtime endpoint {endpoint}"))?;
        let channel = parsed
            .connect(deadline)
            .await
            .with_context(|| format!("connecting to {endpoint}"))?;
        Ok(Clients {
            endpoint: endpoint.to_string(),
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// Awaits one call with [`CALL_DEADLINE`]; errors name the call and the endpoint.
    pub(crate) async fn call<T, F>(&self, what: &str, fut: F) -> anyhow::Result<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        within(CALL_DEADLINE, what, &self.endpoint, fut).await
    }
}

/// Awaits `fut` for at most `deadline`.
pub(crate) async fn within<T, F>(
    deadline: Duration,
    what: &str,
    endpoint: &str,
    fut: F,
) -> anyhow::Result<T>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(anyhow::anyhow!(
            "{what} on {endpoint} failed: {} ({:?})",
            status.message(),
            status.code()
        )),
        Err(_) => Err(anyhow::anyhow!(
            "{what} on {endpoint} did not answer within {deadline:?}"
        )),
    }
}

/// Runs one call of the runtime service on a fresh connection to `endpoint`.
pub(crate) async fn runtime_call<T, F, Fut>(
    endpoint: &str,
    what: &str,
    call: F,
) -> anyhow::Result<T>
where
    F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let clients = Clients::connect(endpoint).await?;
    clients.call(what, call(clients.runtime.clone())).await
}

/// The namespaces of test pods: the host's network, their own PIDs, the pod's IPC.
pub(crate) fn host_namespaces() -> proto::NamespaceOption {
    proto::NamespaceOption {
        network: proto::NamespaceMode::Node as i32,
        pid: proto::NamespaceMode::Container as i32,
        ipc: proto::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The sandbox config of pod `namespace/name`.
pub(crate) fn sandbox_config(
    name: &str,
    namespace: &str,
    uid: &str,
    log_directory: &str,
    labels: HashMap<String, String>,
) -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: namespace.to_string(),
            attempt: 0,
        }),
        hostname: String::new(),
        log_directory: log_directory.to_string(),
        labels,
        linux: Some(proto::LinuxPodSandboxConfig {
            security_context: Some(proto::LinuxSandboxSecurityContext {
                namespace_options: Some(host_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Linux part of a container config: the pod's namespaces.
pub(crate) fn container_linux() -> proto::LinuxContainerConfig {
    proto::LinuxContainerConfig {
        security_context: Some(proto::LinuxContainerSecurityContext {
            namespace_options: Some(host_namespaces()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
