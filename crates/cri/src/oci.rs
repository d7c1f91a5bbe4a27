//! The few fields of OCI (and Docker v2) manifests, indexes and image configs that the
//! runtime client reads from containerd's content store, and the request metadata every
//! containerd call carries.

use serde::Deserialize;

use crate::containerd::NAMESPACE;

/// A manifest or an index: which of the two is told by which lists are present.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// A content descriptor.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub media_type: String,
}

/// An image config: only the layer diff IDs matter here.
#[derive(Deserialize)]
pub(crate) struct ImageConfig {
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The uncompressed layer digests, bottom first.
#[derive(Deserialize)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The diff IDs, empty when the config has none.
    pub fn diff_ids(self) -> Vec<String> {
        self.rootfs.map(|r| r.diff_ids).unwrap_or_default()
    }
}

/// A request in CRI's containerd namespace, inside `lease` when given: containerd needs the
/// namespace on every call, and the lease keeps what a call creates from garbage collection.
pub(crate) fn request<T>(message: T, lease: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(NAMESPACE),
    );
    if let Some(lease) = lease
        && let Ok(value) = tonic::metadata::MetadataValue::try_from(lease)
    {
        request.metadata_mut().insert("containerd-lease", value);
    }
    request
}
