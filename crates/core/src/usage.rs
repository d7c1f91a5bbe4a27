//! Which images are in use, and when each was last used, decided from the runtime's own view.
//!
//! Use is never left to the runtime: containerd removes an image that a container uses without
//! complaint. These functions read every way a container names its image and resolve each one,
//! keeping every image a string could name, because missing one would let it be removed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::inventory::{
    Container, ContainerState, ImageId, ImageIndex, Inventory, Resolution, SandboxState,
};

/// The last time the cleaner saw each image in use; kept in node-local state so that it
/// survives restarts and container garbage collection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen(pub BTreeMap<ImageId, SystemTime>);

impl LastSeen {
    /// Records that `images` were in use at `when`, keeping later records that are already there.
    pub fn record<'a>(&mut self, images: impl IntoIterator<Item = &'a ImageId>, when: SystemTime) {
        for image in images {
            let seen = self.0.entry(image.clone()).or_insert(when);
            if *seen < when {
                *seen = when;
            }
        }
    }

    /// Forgets images that are no longer in `inventory`, so the state does not grow forever.
    pub fn retain_present(&mut self, inventory: &Inventory) {
        let present: BTreeSet<&ImageId> = inventory.images.iter().map(|image| &image.id).collect();
        self.0.retain(|id, _| present.contains(id));
    }

    /// When `image` was last seen in use.
    pub fn get(&self, image: &ImageId) -> Option<SystemTime> {
        self.0.get(image).copied()
    }
}

/// Images a container that counts as running uses: a container that is not Exited, or any
/// container whose pod sandbox is in the inventory and Ready. Resolved from `image`,
/// `image_ref` and `image_id` (all three).
pub fn running_images(inventory: &Inventory) -> BTreeSet<ImageId> {
    let index = ImageIndex::new(inventory);
    ids_of(&index, &running_mask(&index, inventory))
}

/// Images of the runtime's sandbox image refs and of every pod sandbox (pinned ones separately
/// via `Image.pinned`).
///
/// CRI does not list the container of a pod sandbox, so the sandbox image is known only from
/// the runtime's configuration, given here as `Inventory::sandbox_images`.
pub fn sandbox_images(inventory: &Inventory) -> BTreeSet<ImageId> {
    let index = ImageIndex::new(inventory);
    ids_of(&index, &sandbox_mask(&index, inventory))
}

/// Last use per image: the latest of `pulled_at`, created/started/finished times of every
/// container (any state) that used it, and `seen_in_use`. Images with no known time are absent.
pub fn last_use(inventory: &Inventory, seen_in_use: &LastSeen) -> BTreeMap<ImageId, SystemTime> {
    let index = ImageIndex::new(inventory);
    let mut result: BTreeMap<ImageId, SystemTime> = BTreeMap::new();
    for (image, time) in
        index
            .images()
            .iter()
            .zip(last_use_per_image(&index, inventory, seen_in_use))
    {
        if let Some(time) = time {
            let entry = result.entry(image.id.clone()).or_insert(time);
            *entry = (*entry).max(time);
        }
    }
    result
}

/// For each image position: whether a running container uses it.
pub(crate) fn running_mask(index: &ImageIndex<'_>, inventory: &Inventory) -> Vec<bool> {
    let mut ready_sandboxes: HashMap<&str, bool> = HashMap::new();
    for sandbox in &inventory.sandboxes {
        *ready_sandboxes.entry(sandbox.id.as_str()).or_default() |=
            sandbox.state == SandboxState::Ready;
    }
    let mut mask = vec![false; index.images().len()];
    for container in &inventory.containers {
        let in_ready_pod = ready_sandboxes
            .get(container.sandbox_id.as_str())
            .copied()
            .unwrap_or(false);
        if container.state != ContainerState::Exited || in_ready_pod {
            mark(&mut mask, container_positions(index, container));
        }
    }
    mask
}

/// For each image position: whether it is one of the runtime's sandbox images.
pub(crate) fn sandbox_mask(index: &ImageIndex<'_>, inventory: &Inventory) -> Vec<bool> {
    let mut mask = vec![false; index.images().len()];
    for reference in &inventory.sandbox_images {
        mark(&mut mask, index.positions(reference, Resolution::All));
    }
    mask
}

/// For each image position: the latest known use.
pub(crate) fn last_use_per_image(
    index: &ImageIndex<'_>,
    inventory: &Inventory,
    seen_in_use: &LastSeen,
) -> Vec<Option<SystemTime>> {
    let mut latest: Vec<Option<SystemTime>> = index
        .images()
        .iter()
        .map(|image| image.pulled_at.max(seen_in_use.get(&image.id)))
        .collect();
    for container in &inventory.containers {
        let used_at = container
            .created_at
            .max(container.started_at)
            .max(container.finished_at);
        if used_at.is_none() {
            continue;
        }
        for position in container_positions(index, container) {
            latest[position] = latest[position].max(used_at);
        }
    }
    latest
}

/// Every image position a container's three image fields could name.
fn container_positions(index: &ImageIndex<'_>, container: &Container) -> Vec<usize> {
    let mut positions: Vec<usize> = container
        .image_strings()
        .flat_map(|text| index.positions(text, Resolution::All))
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}

pub(crate) fn mark(mask: &mut [bool], positions: impl IntoIterator<Item = usize>) {
    for position in positions {
        mask[position] = true;
    }
}

fn ids_of(index: &ImageIndex<'_>, mask: &[bool]) -> BTreeSet<ImageId> {
    index
        .images()
        .iter()
        .zip(mask)
        .filter(|(_, marked)| **marked)
        .map(|(image, _)| image.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{at, container, digest_hex, id, image, sandbox};
    use ContainerState::{Created, Exited, Running, Unknown};
    use SandboxState::{NotReady, Ready};

    fn inventory_with(containers: Vec<Container>) -> Inventory {
        Inventory {
            images: vec![
                image(1, &["docker.io/library/nginx:latest"], &[]),
                image(
                    2,
                    &["quay.io/a/b:1"],
                    &[&format!("quay.io/a/b@sha256:{}", digest_hex(2))],
                ),
                image(3, &["registry.k8s.io/pause:3.9"], &[]),
            ],
            containers,
            sandboxes: vec![sandbox("ready", Ready), sandbox("stopped", NotReady)],
            sandbox_images: vec!["registry.k8s.io/pause:3.9".to_owned()],
        }
    }

    #[test]
    fn running_depends_on_container_and_pod_state() {
        let cases = [
            (Running, "stopped", true),
            (Created, "stopped", true),
            (Unknown, "stopped", true),
            (Exited, "stopped", false),
            (Exited, "gone", false),
            (Exited, "ready", true),
        ];
        for (state, pod, expected) in cases {
            let inventory = inventory_with(vec![container("c", "nginx", state, pod)]);
            assert_eq!(
                running_images(&inventory).contains(&id(1)),
                expected,
                "{state:?} in {pod}"
            );
        }
    }

    #[test]
    fn running_reads_all_three_image_fields() {
        let mut by_ref = container("a", "", Running, "stopped");
        by_ref.image_ref = format!("quay.io/a/b@sha256:{}", digest_hex(2));
        let mut by_id = container("b", "", Running, "stopped");
        by_id.image_id = id(3).to_string();
        let by_name = container("c", "nginx:latest", Running, "stopped");
        let inventory = inventory_with(vec![by_ref, by_id, by_name]);
        assert_eq!(
            running_images(&inventory),
            BTreeSet::from([id(1), id(2), id(3)])
        );
    }

    #[test]
    fn sandbox_images_resolve_any_form() {
        for reference in ["registry.k8s.io/pause:3.9", &id(3).to_string(), id(3).hex()] {
            let mut inventory = inventory_with(vec![]);
            inventory.sandbox_images = vec![reference.to_owned()];
            assert_eq!(
                sandbox_images(&inventory),
                BTreeSet::from([id(3)]),
                "{reference}"
            );
        }
    }

    #[test]
    fn last_use_is_the_latest_known_time() {
        let mut old = container("old", "nginx", Exited, "gone");
        old.created_at = Some(at(10));
        old.started_at = Some(at(20));
        old.finished_at = Some(at(30));
        let mut newer = container("new", "", Exited, "gone");
        newer.image_ref = id(1).to_string();
        newer.created_at = Some(at(25));
        let mut inventory = inventory_with(vec![old, newer]);
        inventory.images[1].pulled_at = Some(at(5));
        let mut seen = LastSeen::default();
        seen.record([&id(2)], at(50));
        seen.record([&id(2)], at(40));
        seen.record([&id(9)], at(70));
        let uses = last_use(&inventory, &seen);
        assert_eq!(uses, BTreeMap::from([(id(1), at(30)), (id(2), at(50))]));
        seen.retain_present(&inventory);
        assert_eq!(seen.0.len(), 1);
    }
}
