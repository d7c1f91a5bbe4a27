//! The connected runtime: CRI always, containerd's own API when the runtime is containerd.

use image_cleaner_cri::containerd;
use image_cleaner_cri::{Client, Endpoint, Timeouts};

use crate::Result;

/// A runtime to inventory and clean.
#[derive(Debug)]
pub struct Runtime {
    /// The CRI client.
    pub cri: Client,
    /// containerd's own API on the same socket, when the runtime is containerd.
    pub containerd: Option<containerd::Client>,
}

impl Runtime {
    /// Connects to the endpoint; with containerd, also prepares its own API, using the
    /// snapshotter the CRI plugin is configured with.
    pub async fn connect(endpoint: &Endpoint, timeouts: Timeouts) -> Result<Runtime> {
        let cri = Client::connect(endpoint, timeouts).await?;
        let containerd = if cri.version().name == "containerd" {
            let config = cri.runtime_config().await?;
            let snapshotter = config
                .as_ref()
                .and_then(|c| c.pointer("/containerd/snapshotter"))
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("overlayfs")
                .to_string();
            Some(containerd::Client::new(
                endpoint,
                cri.channel(),
                &snapshotter,
                timeouts.call,
            ))
        } else {
            None
        };
        Ok(Runtime { cri, containerd })
    }
}
