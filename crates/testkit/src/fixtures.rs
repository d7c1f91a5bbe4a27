//! The sample node that integration tests and the `imagecleaner-devnode` demo share: a few
//! images covering the cases a cleaner must tell apart, sharing one busybox base layer, and
//! one running pod that pins an image.
//!
//! | name | what it shows |
//! |------|---------------|
//! | [`APP_1_0`] | an old version: unused, removable |
//! | [`APP_1_1`] | the same repository, in use by the running pod: must be kept |
//! | [`WEB_2`] and [`WEB_STABLE`] | one image under two tags |
//! | [`DEBUG_REPO`]`@sha256:…` | known only by digest, no tag |
//! | [`REDIS_7`] | a registry with a port in its name |
//! | [`crate::pause::IMAGE`] | the sandbox image of every pod |
//!
//! All images but pause share the busybox base layer; each adds its own random layer, so
//! each removal frees a known number of bytes. The total stays under 20 MiB.

use crate::containerd::Containerd;
use crate::oci::{BuiltImage, ImageSpec, Layer};
use crate::pods::{self, RunningPod};

/// An old application version nothing uses.
pub const APP_1_0: &str = "docker.io/library/app:1.0";
/// The current application version, run by [`SampleNode::pod`].
pub const APP_1_1: &str = "docker.io/library/app:1.1";
/// One tag of the web image.
pub const WEB_2: &str = "example.com/team/web:2";
/// The other tag of the same web image.
pub const WEB_STABLE: &str = "example.com/team/web:stable";
/// The repository of the digest-only debug image.
pub const DEBUG_REPO: &str = "localhost:5000/tools/debug";
/// An image from a registry with a port.
pub const REDIS_7: &str = "registry.local:5000/cache/redis:7";
/// The pod running [`APP_1_1`]: its name and namespace.
pub const POD_NAME: &str = "app";
/// The namespace of [`POD_NAME`].
pub const POD_NAMESPACE: &str = "default";

const MIB: usize = 1024 * 1024;

/// What [`sample_node`] made.
#[derive(Clone, Debug)]
pub struct SampleNode {
    /// The shared busybox base layer (compressed digest).
    pub base_layer: String,
    /// [`APP_1_0`]: unused.
    pub app_1_0: BuiltImage,
    /// [`APP_1_1`]: in use by [`SampleNode::pod`].
    pub app_1_1: BuiltImage,
    /// [`WEB_2`] and [`WEB_STABLE`]: one image, two tags.
    pub web: BuiltImage,
    /// [`DEBUG_REPO`] by digest only.
    pub debug: BuiltImage,
    /// [`REDIS_7`].
    pub redis: BuiltImage,
    /// The running pod (container `app` running `sleep 3600` from [`APP_1_1`]).
    pub pod: RunningPod,
}

impl SampleNode {
    /// The fixture images (not the sandbox image), in the order of the table above.
    pub fn images(&self) -> [&BuiltImage; 5] {
        [
            &self.app_1_0,
            &self.app_1_1,
            &self.web,
            &self.debug,
            &self.redis,
        ]
    }

    /// Every name of the fixture images: tags, then repo digests.
    pub fn names(&self) -> Vec<String> {
        let images = self.images();
        let tags = images.iter().flat_map(|i| i.names.iter().cloned());
        let digests = images.iter().flat_map(|i| i.repo_digests.iter().cloned());
        tags.chain(digests).collect()
    }
}

/// The spec of a sample image: the busybox base, then a random layer of `mib` MiB.
fn sample(seed: u64, mib: usize, created: &str) -> anyhow::Result<ImageSpec> {
    Ok(ImageSpec::new()
        .layer(Layer::busybox()?)
        .layer(Layer::random(seed, mib * MIB))
        .cmd(["/bin/sleep", "3600"])
        .created(created))
}

/// Imports the sample images into `containerd` and starts the pod that uses [`APP_1_1`].
pub async fn sample_node(containerd: &Containerd) -> anyhow::Result<SampleNode> {
    let app_1_0 = sample(10, 3, "2023-01-15T00:00:00Z")?.name(APP_1_0);
    let app_1_1 = sample(11, 3, "2024-03-01T00:00:00Z")?.name(APP_1_1);
    let web = sample(20, 2, "2024-02-01T00:00:00Z")?
        .name(WEB_2)
        .name(WEB_STABLE)
        .label("org.opencontainers.image.title", "web");
    let debug = sample(30, 1, "2022-06-01T00:00:00Z")?.digest_only(DEBUG_REPO);
    let redis = sample(40, 2, "2023-09-01T00:00:00Z")?.name(REDIS_7);

    let app_1_0 = containerd.load(&app_1_0).await?;
    let app_1_1 = containerd.load(&app_1_1).await?;
    let web = containerd.load(&web).await?;
    let debug = containerd.load(&debug).await?;
    let redis = containerd.load(&redis).await?;

    let command = ["/bin/sleep", "3600"].map(String::from).to_vec();
    let pod = pods::run_pod(
        &containerd.endpoint(),
        POD_NAME,
        POD_NAMESPACE,
        APP_1_1,
        command,
    )
    .await?;
    Ok(SampleNode {
        base_layer: Layer::busybox()?.digest().to_string(),
        app_1_0,
        app_1_1,
        web,
        debug,
        redis,
        pod,
    })
}
