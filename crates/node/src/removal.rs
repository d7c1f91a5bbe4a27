//! Carrying out removals safely.
//!
//! containerd's RemoveImage deletes an image even while a container runs it, so the runtime
//! cannot be trusted to refuse. Right before each removal the cleaner re-reads containers
//! and sandboxes and skips an image that a container started using since the plan was made.

use futures::{StreamExt, stream};
use image_cleaner_core::{Image, ImageId, Inventory, usage};

use crate::Runtime;

/// Removals in flight at once: enough to hide per-call latency, few enough not to load the
/// runtime on a busy node.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// What became of one planned removal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Removed.
    Removed,
    /// Not removed: a container started using it after the plan.
    BecameRunning,
    /// Not removed: the runtime refused or failed.
    Failed(String),
    /// Not removed: dry run.
    DryRun,
}

/// Removes `targets` with at most `concurrency` removals in flight, re-checking each.
/// `sandbox_images` are the runtime's sandbox image refs, passed on to the re-check.
/// Results come back in the order of `targets`.
pub async fn remove_all(
    runtime: &Runtime,
    targets: &[Image],
    sandbox_images: &[String],
    concurrency: usize,
    dry_run: bool,
) -> Vec<(ImageId, Outcome)> {
    stream::iter(targets.iter().map(|image| async move {
        let outcome = if dry_run {
            Outcome::DryRun
        } else {
            remove_one(runtime, image, sandbox_images).await
        };
        (image.id.clone(), outcome)
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await
}

async fn remove_one(runtime: &Runtime, image: &Image, sandbox_images: &[String]) -> Outcome {
    match still_unused(runtime, image, sandbox_images).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(image = %image.id, "skipped: a container started using it after the plan");
            return Outcome::BecameRunning;
        }
        // Without a fresh view of the containers the image might be in use: do not remove.
        Err(e) => return Outcome::Failed(format!("re-checking containers before removal: {e}")),
    }
    match runtime.cri.remove_image(&image.id).await {
        Ok(()) => {
            tracing::info!(image = %image.id, names = ?image.names, "removed");
            Outcome::Removed
        }
        Err(e) => {
            // A call that timed out on our side may still have finished in the runtime: ask
            // before reporting a failure for an image that is gone.
            if let Ok(false) = runtime.cri.image_exists(&image.id).await {
                tracing::info!(image = %image.id, names = ?image.names, error = %e, "removed (the runtime finished after the call failed)");
                return Outcome::Removed;
            }
            tracing::warn!(image = %image.id, error = %e, "removal failed");
            Outcome::Failed(e.to_string())
        }
    }
}

/// Whether no container counts as running this image (nor the runtime's sandbox image is
/// it), judged on a fresh read of containers and sandboxes. Only this image is in the
/// inventory handed to the policy's usage rules, so the check costs the two list calls.
async fn still_unused(
    runtime: &Runtime,
    image: &Image,
    sandbox_images: &[String],
) -> image_cleaner_cri::Result<bool> {
    let (containers, sandboxes) =
        tokio::try_join!(runtime.cri.list_containers(), runtime.cri.list_sandboxes())?;
    let fresh = Inventory {
        images: vec![image.clone()],
        containers,
        sandboxes,
        sandbox_images: sandbox_images.to_vec(),
    };
    Ok(!usage::running_images(&fresh).contains(&image.id)
        && !usage::sandbox_images(&fresh).contains(&image.id))
}
