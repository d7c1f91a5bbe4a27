//! containerd's own API, for what CRI cannot say.
//!
//! CRI reports one size per image: the compressed size of all its blobs, shared or not. To
//! state what removing an image really frees, the cleaner needs each image's content (the
//! manifest, config and layer blobs in the content store, and the unpacked layer snapshots)
//! and who else shares it. containerd serves that on the same socket as CRI. Everything here
//! reads; the cleaner only ever removes through CRI.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use futures::{StreamExt, TryStreamExt, stream};
use image_cleaner_core::ImageId;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;

use crate::client::call;
use crate::oci::{self, ImageConfig, Manifest};
use crate::{Endpoint, Error, Result};

/// The containerd namespace CRI works in; other namespaces are invisible to kubelet.
pub const NAMESPACE: &str = "k8s.io";

/// How many content reads run at once while mapping images to their content.
const READ_CONCURRENCY: usize = 16;

/// A blob or an unpacked layer: a thing on disk that images share.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Item {
    /// A content-store blob, by digest.
    Blob(String),
    /// A committed snapshot, by key (the layer's chain ID).
    Snapshot(String),
}

/// What one image holds on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageContent {
    /// Its blobs and snapshots.
    pub items: BTreeSet<Item>,
    /// When the image was last pulled or imported under any of its names.
    pub pulled_at: Option<SystemTime>,
}

/// Every image's content, and so who shares what.
#[derive(Clone, Debug, Default)]
pub struct ContentGraph {
    images: BTreeMap<ImageId, ImageContent>,
    blob_sizes: HashMap<String, u64>,
    /// How many images use each item: computed once, so exclusivity is a lookup.
    users: HashMap<Item, usize>,
}

impl ContentGraph {
    /// The content of one image, if containerd knows it.
    pub fn image(&self, id: &ImageId) -> Option<&ImageContent> {
        self.images.get(id)
    }

    /// Items that images in `set` use and no image outside it uses: what removing exactly
    /// that set frees. Images of the set that containerd does not know contribute nothing.
    pub fn exclusive_to(&self, set: &BTreeSet<ImageId>) -> BTreeSet<Item> {
        let mut inside: HashMap<&Item, usize> = HashMap::new();
        for content in set.iter().filter_map(|id| self.images.get(id)) {
            for item in &content.items {
                *inside.entry(item).or_default() += 1;
            }
        }
        inside
            .into_iter()
            .filter(|(item, n)| self.users.get(*item) == Some(n))
            .map(|(item, _)| item.clone())
            .collect()
    }

    fn count_users(&mut self) {
        self.users.clear();
        for content in self.images.values() {
            for item in &content.items {
                *self.users.entry(item.clone()).or_default() += 1;
            }
        }
    }

    /// Blob size as listed in the content store.
    pub fn blob_size(&self, digest: &str) -> Option<u64> {
        self.blob_sizes.get(digest).copied()
    }
}

/// What is on disk right now, for before/after comparisons.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Present {
    /// Blob digests with their sizes.
    pub blobs: HashMap<String, u64>,
    /// Committed snapshot keys.
    pub snapshots: HashSet<String>,
}

impl Present {
    /// Whether an item is on disk.
    pub fn contains(&self, item: &Item) -> bool {
        match item {
            Item::Blob(d) => self.blobs.contains_key(d),
            Item::Snapshot(k) => self.snapshots.contains(k),
        }
    }
}

/// A client of containerd's content, image and snapshot services.
pub struct Client {
    endpoint: Endpoint,
    channel: Channel,
    snapshotter: String,
    timeout: Duration,
    usage_cache: Mutex<HashMap<String, u64>>,
}

impl Client {
    /// A client over an existing channel (the CRI one: containerd serves both on one socket).
    /// `snapshotter` is the CRI plugin's snapshotter, normally `overlayfs`.
    pub fn new(
        endpoint: &Endpoint,
        channel: Channel,
        snapshotter: &str,
        timeout: Duration,
    ) -> Self {
        Client {
            endpoint: endpoint.clone(),
            channel,
            snapshotter: snapshotter.to_string(),
            timeout,
            usage_cache: Mutex::new(HashMap::new()),
        }
    }

    fn api(&self) -> containerd_client::Client {
        containerd_client::Client::from(self.channel.clone())
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        oci::request(message, None)
    }

    /// Maps every image to its blobs and snapshots. Manifests and configs are tiny and read
    /// concurrently; layer blobs are never read.
    pub async fn content_graph(&self) -> Result<ContentGraph> {
        let mut images_api = self.api().images();
        let records = call(&self.endpoint, "Images.List", self.timeout, async {
            images_api
                .list(self.request(api::ListImagesRequest::default()))
                .await
        })
        .await?
        .images;
        let present = self.present().await?;

        // Several records (tags, digests, CRI's own `sha256:` record) share one target.
        let mut targets: BTreeMap<String, Option<SystemTime>> = BTreeMap::new();
        for record in &records {
            let Some(target) = &record.target else {
                continue;
            };
            let created = record.created_at.as_ref().and_then(timestamp_to_time);
            let latest = targets.entry(target.digest.clone()).or_insert(None);
            *latest = (*latest).max(created);
        }

        let present = &present;
        let resolved: Vec<(String, Option<SystemTime>, Vec<ResolvedManifest>)> =
            stream::iter(targets.into_iter().map(|(digest, pulled)| async move {
                let manifests = self.resolve_target(&digest, present).await?;
                Ok::<_, Error>((digest, pulled, manifests))
            }))
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;

        let mut graph = ContentGraph {
            blob_sizes: present.blobs.clone(),
            ..ContentGraph::default()
        };
        for (target, pulled, manifests) in resolved {
            for m in manifests {
                let entry = graph
                    .images
                    .entry(ImageId::new(m.config.clone()))
                    .or_default();
                entry.pulled_at = entry.pulled_at.max(pulled);
                entry.items.insert(Item::Blob(target.clone()));
                entry.items.insert(Item::Blob(m.digest));
                entry.items.insert(Item::Blob(m.config));
                for layer in m
                    .layers
                    .into_iter()
                    .filter(|l| present.blobs.contains_key(l))
                {
                    entry.items.insert(Item::Blob(layer));
                }
                for chain in chain_ids(&m.diff_ids)
                    .into_iter()
                    .filter(|c| present.snapshots.contains(c))
                {
                    entry.items.insert(Item::Snapshot(chain));
                }
            }
        }
        graph.count_users();
        Ok(graph)
    }

    /// Follows a target (a manifest, or an index of manifests) to the manifests whose blobs
    /// are present: a multi-platform image holds only its own platform's manifest.
    async fn resolve_target(
        &self,
        digest: &str,
        present: &Present,
    ) -> Result<Vec<ResolvedManifest>> {
        let mut out = Vec::new();
        let mut pending = vec![digest.to_string()];
        let mut depth = 0;
        while let Some(next) = pending.pop() {
            depth += 1;
            if depth > 64 || !present.blobs.contains_key(&next) {
                continue;
            }
            let manifest: Manifest = self.read_json(&next).await?;
            if !manifest.manifests.is_empty() {
                pending.extend(manifest.manifests.into_iter().map(|d| d.digest));
                continue;
            }
            let Some(config) = manifest.config else {
                continue;
            };
            let diff_ids = if present.blobs.contains_key(&config.digest) {
                let image_config: ImageConfig = self.read_json(&config.digest).await?;
                image_config.diff_ids()
            } else {
                Vec::new()
            };
            out.push(ResolvedManifest {
                digest: next,
                config: config.digest,
                layers: manifest.layers.into_iter().map(|l| l.digest).collect(),
                diff_ids,
            });
        }
        Ok(out)
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, digest: &str) -> Result<T> {
        let bytes = self.read_blob(digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            endpoint: self.endpoint.to_string(),
            call: "Content.Read",
            why: format!("blob {digest} is not the JSON expected: {e}"),
        })
    }

    /// Reads a whole (small) blob.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut content = self.api().content();
        let request = self.request(api::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let read = async {
            let mut stream = content.read(request).await?.into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = stream.message().await? {
                data.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(tonic::Response::new(data))
        };
        call(&self.endpoint, "Content.Read", self.timeout, read).await
    }

    /// Every blob and committed snapshot present now: two streaming calls.
    pub async fn present(&self) -> Result<Present> {
        let mut content = self.api().content();
        let blobs = async {
            let mut stream = content
                .list(self.request(api::ListContentRequest::default()))
                .await?
                .into_inner();
            let mut blobs = HashMap::new();
            while let Some(page) = stream.message().await? {
                for info in page.info {
                    blobs.insert(info.digest, u64::try_from(info.size).unwrap_or(0));
                }
            }
            Ok::<_, tonic::Status>(tonic::Response::new(blobs))
        };
        let blobs = call(&self.endpoint, "Content.List", self.timeout, blobs).await?;

        let mut snapshots_api = self.api().snapshots();
        let snapshotter = self.snapshotter.clone();
        let snapshots = async {
            let mut stream = snapshots_api
                .list(self.request(snap::ListSnapshotsRequest {
                    snapshotter,
                    filters: Vec::new(),
                }))
                .await?
                .into_inner();
            let mut keys = HashSet::new();
            while let Some(page) = stream.message().await? {
                for info in page.info {
                    // Only committed snapshots are image layers; active ones are containers' or views.
                    if info.kind == snap::Kind::Committed as i32 {
                        keys.insert(info.name);
                    }
                }
            }
            Ok::<_, tonic::Status>(tonic::Response::new(keys))
        };
        let snapshots = call(&self.endpoint, "Snapshots.List", self.timeout, snapshots).await?;
        Ok(Present { blobs, snapshots })
    }

    /// Bytes on disk of the given items: blob sizes from the content store, snapshot disk usage
    /// from the snapshotter (measured once per snapshot and remembered).
    pub async fn bytes_of(&self, graph: &ContentGraph, items: &BTreeSet<Item>) -> Result<u64> {
        let mut total = 0u64;
        let mut to_measure = Vec::new();
        for item in items {
            match item {
                Item::Blob(d) => total += graph.blob_size(d).unwrap_or(0),
                Item::Snapshot(key) => match self.cached_usage(key) {
                    Some(size) => total += size,
                    None => to_measure.push(key.clone()),
                },
            }
        }
        let measured: Vec<u64> = stream::iter(
            to_measure
                .into_iter()
                .map(|key| async move { self.snapshot_usage(&key).await }),
        )
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
        Ok(total + measured.into_iter().sum::<u64>())
    }

    fn cached_usage(&self, key: &str) -> Option<u64> {
        self.usage_cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(key).copied())
    }

    async fn snapshot_usage(&self, key: &str) -> Result<u64> {
        let mut snapshots = self.api().snapshots();
        let request = self.request(snap::UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        });
        let answer = call(&self.endpoint, "Snapshots.Usage", self.timeout, async {
            snapshots.usage(request).await
        })
        .await;
        let size = match answer {
            Ok(usage) => u64::try_from(usage.size).unwrap_or(0),
            // Gone since it was listed: it occupies nothing.
            Err(Error::Call { status, .. }) if status.code() == tonic::Code::NotFound => 0,
            Err(other) => return Err(other),
        };
        if let Ok(mut cache) = self.usage_cache.lock() {
            cache.insert(key.to_string(), size);
        }
        Ok(size)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("containerd::Client")
            .field("endpoint", &self.endpoint)
            .field("snapshotter", &self.snapshotter)
            .finish_non_exhaustive()
    }
}

struct ResolvedManifest {
    digest: String,
    config: String,
    layers: Vec<String>,
    diff_ids: Vec<String>,
}

/// Chain IDs of a layer stack: the keys under which containerd commits unpacked layers.
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => {
                let mut hasher = Sha256::new();
                hasher.update(parent.as_bytes());
                hasher.update(b" ");
                hasher.update(diff.as_bytes());
                format!("sha256:{}", hex::encode(hasher.finalize()))
            }
        };
        out.push(next);
    }
    out
}

fn timestamp_to_time(ts: &prost_types::Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let expected = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aaaa sha256:bbbb"))
        );
        assert_eq!(ids[1], expected);
        assert!(chain_ids(&[]).is_empty());
    }

    fn id(s: &str) -> ImageId {
        ImageId::new(s)
    }

    #[test]
    fn exclusive_items_leave_out_what_others_share() {
        let base = Item::Blob("sha256:base".into());
        let mut graph = ContentGraph::default();
        graph.images.insert(
            id("sha256:a"),
            ImageContent {
                items: [base.clone(), Item::Blob("sha256:a1".into())].into(),
                pulled_at: None,
            },
        );
        graph.images.insert(
            id("sha256:b"),
            ImageContent {
                items: [base.clone(), Item::Snapshot("sha256:b1".into())].into(),
                pulled_at: None,
            },
        );
        graph.count_users();
        let only_a = graph.exclusive_to(&[id("sha256:a")].into());
        assert_eq!(only_a, [Item::Blob("sha256:a1".into())].into());
        let both = graph.exclusive_to(&[id("sha256:a"), id("sha256:b")].into());
        assert!(both.contains(&base));
        assert_eq!(both.len(), 3);
        assert!(
            graph
                .exclusive_to(&[id("sha256:unknown")].into())
                .is_empty()
        );
    }
}
