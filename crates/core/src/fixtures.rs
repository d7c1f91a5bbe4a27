//! Builders shared by the unit tests, so each table states only what matters to it.

use std::time::{Duration, SystemTime};

use crate::inventory::{Container, ContainerState, Image, ImageId, PodSandbox, SandboxState};

/// A distinct, valid sha256 image ID per `n`.
pub(crate) fn id(n: u32) -> ImageId {
    ImageId::new(format!("sha256:{n:064x}"))
}

/// 64 hex digits for a repo digest, never equal to any [`id`].
pub(crate) fn digest_hex(n: u32) -> String {
    format!("d{n:063x}")
}

/// An image with ID [`id`]`(n)`, 1000 bytes of which 100 are its own.
pub(crate) fn image(n: u32, names: &[&str], digests: &[&str]) -> Image {
    Image {
        id: id(n),
        names: names.iter().map(|s| (*s).to_owned()).collect(),
        digests: digests.iter().map(|s| (*s).to_owned()).collect(),
        size_bytes: 1000,
        reclaimable_bytes: Some(100),
        pinned: false,
        pulled_at: None,
    }
}

/// A container naming its image by `image` only.
pub(crate) fn container(
    id: &str,
    image: &str,
    state: ContainerState,
    sandbox_id: &str,
) -> Container {
    Container {
        id: id.to_owned(),
        name: id.to_owned(),
        sandbox_id: sandbox_id.to_owned(),
        state,
        image: image.to_owned(),
        image_ref: String::new(),
        image_id: String::new(),
        created_at: None,
        started_at: None,
        finished_at: None,
    }
}

/// A pod sandbox.
pub(crate) fn sandbox(id: &str, state: SandboxState) -> PodSandbox {
    PodSandbox {
        id: id.to_owned(),
        name: id.to_owned(),
        namespace: "default".to_owned(),
        state,
        created_at: None,
    }
}

/// A fixed point in time, `secs` after the epoch.
pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}
