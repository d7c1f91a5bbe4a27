//! Small CRI helpers shared by the modules that drive the runtime: connect with a deadline
//! and run one call with a deadline, naming the endpoint in every error.

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use image_cleaner_cri::Endpoint;
use image_cleaner_cri::proto::image_service_client::ImageServiceClient;
use image_cleaner_cri::proto::runtime_service_client::RuntimeServiceClient;
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
