//! Reading the node's inventory from the runtime.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt, stream};
use image_cleaner_core::{ContainerState, Inventory};
use image_cleaner_cri::containerd::ContentGraph;

use crate::{Result, Runtime};

/// How many per-container and per-image lookups run at once.
const CONCURRENCY: usize = 16;

/// The inventory, and with containerd the content graph it was sized from.
#[derive(Clone, Debug)]
pub struct Collected {
    /// Images, containers, sandboxes and the sandbox image.
    pub inventory: Inventory,
    /// Who shares which blobs and snapshots; `None` when the runtime cannot tell layers.
    pub content: Option<ContentGraph>,
}

/// Reads everything the policy needs. With containerd, each image's `reclaimable_bytes` is
/// the size of the blobs and snapshots no other image uses, and `pulled_at` its latest
/// pull; other runtimes leave both unknown rather than guess.
pub async fn collect(runtime: &Runtime) -> Result<Collected> {
    let cri = &runtime.cri;
    let (mut images, containers, sandboxes, sandbox_image) = tokio::try_join!(
        cri.list_images(),
        cri.list_containers(),
        cri.list_sandboxes(),
        cri.sandbox_image(),
    )?;

    // Start and finish times matter for last use of containers that are not running (a
    // running one keeps its image anyway), and CRI gives them only one container at a time.
    let containers = stream::iter(containers.into_iter().map(|mut c| async move {
        if c.state != ContainerState::Running {
            let times = cri.container_times(&c.id).await?;
            c.started_at = times.started_at;
            c.finished_at = times.finished_at;
        }
        Ok::<_, crate::Error>(c)
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;

    let content = match &runtime.containerd {
        Some(containerd) => {
            let graph = containerd.content_graph().await?;
            for image in &mut images {
                if let Some(c) = graph.image(&image.id) {
                    image.pulled_at = c.pulled_at;
                }
            }
            let sizes: Vec<Option<u64>> = stream::iter(images.iter().map(|image| {
                let graph = &graph;
                async move {
                    if graph.image(&image.id).is_none() {
                        return Ok::<_, crate::Error>(None);
                    }
                    let own = graph.exclusive_to(&BTreeSet::from([image.id.clone()]));
                    Ok(Some(containerd.bytes_of(graph, &own).await?))
                }
            }))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
            for (image, size) in images.iter_mut().zip(sizes) {
                image.reclaimable_bytes = size;
            }
            Some(graph)
        }
        None => None,
    };

    // Runtimes list images in no stable order; reports read better, and compare across
    // runs, sorted by name.
    images.sort_by(|a, b| {
        let key = |i: &image_cleaner_core::Image| {
            (i.names.first().or(i.digests.first()).cloned(), i.id.clone())
        };
        key(a).cmp(&key(b))
    });

    Ok(Collected {
        inventory: Inventory {
            images,
            containers,
            sandboxes,
            sandbox_images: sandbox_image.into_iter().collect(),
        },
        content,
    })
}
