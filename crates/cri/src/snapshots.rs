//! Reading an image's files through containerd without exporting or unpacking anything.
//!
//! The CRI plugin unpacks every pulled image into its snapshotter, one directory per layer.
//! A vulnerability scan needs a few small files from those directories, so the cheapest way
//! to read them is to ask containerd for a read-only view of the image's top snapshot and
//! read the layer directories that view names (the `lowerdir=` list of an overlay mount, or
//! the source of a bind mount for a one-layer image). That is milliseconds per image, and it
//! works where the compressed layers were discarded after unpacking
//! (`discard_unpacked_layers`), where exporting the image would fail.
//!
//! The view lives inside a lease, so containerd's garbage collector keeps the layers while
//! they are read even if the image is removed meanwhile. The lease carries
//! `containerd.io/gc.expire`, so a scanner that dies mid-scan leaks nothing for long. Release
//! the [`ImageView`] explicitly with [`ImageView::release`]; dropping it releases in the
//! background on a best-effort basis.
//!
//! When an image has no snapshot (not unpacked, or a snapshotter without one directory per
//! layer), [`Snapshots::image_layers`] and [`Snapshots::open_blob`] stream its compressed
//! layers from the content store instead.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1 as api;
use containerd_client::services::v1::snapshots as snap;
use image_cleaner_core::ImageId;
use serde::Deserialize;
use tonic::transport::Channel;

use crate::client::call;
use crate::containerd::chain_ids;
use crate::oci::{ImageConfig, Manifest, request};
use crate::{Endpoint, Error, Result};

/// Label that makes containerd collect a lease after the given RFC 3339 time.
pub const LEASE_EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// How long a scan lease lives if it is never released.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(600);
/// Chunks of a blob buffered ahead of the reader.
const BLOB_CHUNKS_AHEAD: usize = 8;

/// containerd's snapshot, lease and content services, for reading images' files.
pub struct Snapshots {
    endpoint: Endpoint,
    channel: Channel,
    snapshotter: String,
    timeout: Duration,
    lease_ttl: Duration,
    manifests: Mutex<Option<HashMap<String, ManifestInfo>>>,
}

/// An image's layers as its manifest and config list them, bottom first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageLayers {
    /// Compressed layer blobs (digest, media type).
    pub blobs: Vec<(String, String)>,
    /// Uncompressed layer digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// Chain IDs: the snapshot keys the unpacked layers are committed under.
    pub chain_ids: Vec<String>,
}

#[derive(Clone, Debug)]
struct ManifestInfo {
    layers: Vec<(String, String)>,
}

/// How a view exposes the image's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewMount {
    /// Layer directories, top layer first (an overlay mount's `lowerdir=`).
    Overlay(Vec<PathBuf>),
    /// One directory holding the whole image (a bind mount's source).
    Bind(PathBuf),
}

/// A read-only view of an image held under a lease. Call [`ImageView::release`] when done.
pub struct ImageView {
    /// The lease, when the view owns it (made by [`Snapshots::view`]); views made in a
    /// shared [`ScanLease`] leave it to its owner.
    lease: Option<String>,
    key: String,
    mount: ViewMount,
    releaser: Option<Releaser>,
}

/// A lease under which many views are taken, so a scan of many images pays for one lease.
/// Call [`ScanLease::release`] when done; its expiry label covers a crash.
pub struct ScanLease {
    id: String,
    releaser: Option<Releaser>,
}

struct Releaser {
    endpoint: Endpoint,
    channel: Channel,
    snapshotter: String,
    timeout: Duration,
}

/// A name no other scan (in this or another process) uses.
fn unique_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "imagecleaner-scan-{kind}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// RFC 3339 UTC (`2026-01-02T03:04:05Z`) of a time.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl Snapshots {
    /// Over the runtime's channel; `snapshotter` is the CRI plugin's (normally `overlayfs`).
    pub fn new(
        endpoint: &Endpoint,
        channel: Channel,
        snapshotter: &str,
        timeout: Duration,
    ) -> Self {
        Snapshots {
            endpoint: endpoint.clone(),
            channel,
            snapshotter: snapshotter.to_string(),
            timeout,
            lease_ttl: DEFAULT_LEASE_TTL,
            manifests: Mutex::new(None),
        }
    }

    /// How long a lease outlives a scanner that never releases it.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The snapshotter in use.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }

    fn api(&self) -> containerd_client::Client {
        containerd_client::Client::from(self.channel.clone())
    }

    fn protocol(&self, call: &'static str, why: String) -> Error {
        Error::Protocol {
            endpoint: self.endpoint.to_string(),
            call,
            why,
        }
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut content = self.api().content();
        let message = api::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let read = async {
            let mut stream = content.read(request(message, None)).await?.into_inner();
            let mut data = Vec::new();
            while let Some(chunk) = stream.message().await? {
                data.extend_from_slice(&chunk.data);
            }
            Ok::<_, tonic::Status>(tonic::Response::new(data))
        };
        call(&self.endpoint, "Content.Read", self.timeout, read).await
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, digest: &str) -> Result<T> {
        let bytes = self.read_blob(digest).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            self.protocol(
                "Content.Read",
                format!("blob {digest} is not the JSON expected: {e}"),
            )
        })
    }

    /// The manifest layers of the image with config digest `config`.
    async fn manifest_layers(&self, config: &str) -> Result<Vec<(String, String)>> {
        let cached = |this: &Self| {
            this.manifests.lock().ok().and_then(|guard| {
                guard
                    .as_ref()
                    .map(|m| m.get(config).map(|i| i.layers.clone()))
            })
        };
        if let Some(found) = cached(self) {
            return Ok(found.unwrap_or_default());
        }
        let map = self.manifests().await?;
        Ok(map
            .get(config)
            .map(|i| i.layers.clone())
            .unwrap_or_default())
    }

    /// Config digest -> manifest layers, for every image record, read once and remembered.
    async fn manifests(&self) -> Result<HashMap<String, ManifestInfo>> {
        if let Ok(guard) = self.manifests.lock()
            && let Some(map) = guard.as_ref()
        {
            return Ok(map.clone());
        }
        let mut images = self.api().images();
        let records = call(&self.endpoint, "Images.List", self.timeout, async {
            images
                .list(request(api::ListImagesRequest::default(), None))
                .await
        })
        .await?
        .images;
        let mut map = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut pending: Vec<(String, usize)> = records
            .into_iter()
            .filter_map(|r| r.target.map(|t| (t.digest, 0)))
            .collect();
        while let Some((digest, depth)) = pending.pop() {
            if depth > 8 || !seen.insert(digest.clone()) {
                continue;
            }
            // Other platforms of an index are usually absent: skip what cannot be read.
            let manifest: Manifest = match self.read_json(&digest).await {
                Ok(m) => m,
                Err(Error::Call { status, .. }) if status.code() == tonic::Code::NotFound => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !manifest.manifests.is_empty() {
                pending.extend(
                    manifest
                        .manifests
                        .into_iter()
                        .map(|d| (d.digest, depth + 1)),
                );
                continue;
            }
            if let Some(config) = manifest.config {
                map.insert(
                    config.digest,
                    ManifestInfo {
                        layers: manifest
                            .layers
                            .into_iter()
                            .map(|l| (l.digest, l.media_type))
                            .collect(),
                    },
                );
            }
        }
        if let Ok(mut guard) = self.manifests.lock() {
            *guard = Some(map.clone());
        }
        Ok(map)
    }

    /// The image's compressed layer blobs (digest, media type), bottom first, from its
    /// manifest alone: what streaming its layers needs, without reading its config.
    pub async fn image_blobs(&self, image: &ImageId) -> Result<Vec<(String, String)>> {
        self.manifest_layers(image.as_str()).await
    }

    /// The image's layers: diff IDs and chain IDs from its config (the image ID is the config
    /// digest), compressed blobs from its manifest.
    pub async fn image_layers(&self, image: &ImageId) -> Result<ImageLayers> {
        let config: ImageConfig = self.read_json(image.as_str()).await?;
        let diff_ids = config.diff_ids();
        let blobs = self.manifest_layers(image.as_str()).await?;
        Ok(ImageLayers {
            chain_ids: chain_ids(&diff_ids),
            diff_ids,
            blobs,
        })
    }

    fn releaser(&self) -> Releaser {
        Releaser {
            endpoint: self.endpoint.clone(),
            channel: self.channel.clone(),
            snapshotter: self.snapshotter.clone(),
            timeout: self.timeout,
        }
    }

    /// A lease to take many views in (see [`Snapshots::view_in`]).
    pub async fn lease(&self) -> Result<ScanLease> {
        Ok(ScanLease {
            id: self.create_lease().await?,
            releaser: Some(self.releaser()),
        })
    }

    /// A read-only view of the image's unpacked layers under its own lease, or `None` when
    /// containerd holds no snapshot for it (then stream its layers instead).
    pub async fn view(&self, image: &ImageId) -> Result<Option<ImageView>> {
        let layers = self.image_layers(image).await?;
        if layers.chain_ids.is_empty() {
            return Ok(None);
        }
        let lease = self.create_lease().await?;
        let view = self.view_of(&layers, &lease).await;
        match view {
            Ok(Some(mut view)) => {
                view.lease = Some(lease);
                Ok(Some(view))
            }
            other => {
                let _ = self.releaser().delete_lease(&lease).await;
                other
            }
        }
    }

    /// Like [`Snapshots::view`], inside a shared lease: releasing the view removes only the
    /// view.
    pub async fn view_in(&self, lease: &ScanLease, image: &ImageId) -> Result<Option<ImageView>> {
        let layers = self.image_layers(image).await?;
        self.view_of(&layers, &lease.id).await
    }

    async fn view_of(&self, layers: &ImageLayers, lease: &str) -> Result<Option<ImageView>> {
        let Some(top) = layers.chain_ids.last() else {
            return Ok(None);
        };
        let releaser = self.releaser();
        let key = unique_name("view");
        let mut snapshots = self.api().snapshots();
        let message = snap::ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.clone(),
            parent: top.clone(),
            labels: HashMap::new(),
        };
        let answer = call(&self.endpoint, "Snapshots.View", self.timeout, async {
            snapshots.view(request(message, Some(lease))).await
        })
        .await;
        let mounts = match answer {
            Ok(response) => response.mounts,
            Err(e) => {
                return match e {
                    Error::Call { status, .. } if status.code() == tonic::Code::NotFound => {
                        Ok(None)
                    }
                    other => Err(other),
                };
            }
        };
        let view_mount = mounts.iter().find_map(|m| match m.r#type.as_str() {
            "overlay" => m
                .options
                .iter()
                .find_map(|o| o.strip_prefix("lowerdir="))
                .map(|dirs| ViewMount::Overlay(dirs.split(':').map(PathBuf::from).collect())),
            "bind" | "rbind" => Some(ViewMount::Bind(PathBuf::from(&m.source))),
            _ => None,
        });
        let Some(mount) = view_mount else {
            let _ = releaser.remove_view(&key).await;
            let kinds: Vec<&str> = mounts.iter().map(|m| m.r#type.as_str()).collect();
            return Err(self.protocol(
                "Snapshots.View",
                format!(
                    "snapshotter {} gave mounts {kinds:?}, not overlay or bind",
                    self.snapshotter
                ),
            ));
        };
        Ok(Some(ImageView {
            lease: None,
            key,
            mount,
            releaser: Some(releaser),
        }))
    }

    async fn create_lease(&self) -> Result<String> {
        let mut leases = self.api().leases();
        let id = unique_name("lease");
        let labels = HashMap::from([(
            LEASE_EXPIRE_LABEL.to_string(),
            rfc3339(SystemTime::now() + self.lease_ttl),
        )]);
        let message = api::CreateRequest {
            id: id.clone(),
            labels,
        };
        call(&self.endpoint, "Leases.Create", self.timeout, async {
            leases.create(request(message, None)).await
        })
        .await?;
        Ok(id)
    }

    /// A blocking reader over a blob of the content store, streamed in chunks. Create it
    /// inside the async runtime, read it on a blocking thread (`spawn_blocking`); dropping
    /// it stops the transfer.
    pub fn open_blob(&self, digest: &str) -> BlobReader {
        let (sender, receiver) = tokio::sync::mpsc::channel(BLOB_CHUNKS_AHEAD);
        let mut content = self.api().content();
        let message = api::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        };
        let endpoint = self.endpoint.clone();
        let timeout = self.timeout;
        let digest = digest.to_string();
        tokio::spawn(async move {
            let opened = tokio::time::timeout(timeout, content.read(request(message, None))).await;
            let mut stream = match opened {
                Ok(Ok(response)) => response.into_inner(),
                Ok(Err(status)) => {
                    let _ = sender
                        .send(Err(io::Error::other(format!(
                            "Content.Read {digest} on {endpoint}: {status}"
                        ))))
                        .await;
                    return;
                }
                Err(_) => {
                    let _ = sender
                        .send(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "Content.Read {digest} on {endpoint}: no answer within {timeout:?}"
                            ),
                        )))
                        .await;
                    return;
                }
            };
            loop {
                let next = tokio::time::timeout(timeout, stream.message()).await;
                let item = match next {
                    Ok(Ok(Some(chunk))) => Ok(chunk.data),
                    Ok(Ok(None)) => return,
                    Ok(Err(status)) => Err(io::Error::other(format!(
                        "Content.Read {digest} on {endpoint}: {status}"
                    ))),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("Content.Read {digest} on {endpoint}: stalled for {timeout:?}"),
                    )),
                };
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    // The reader went away (it has what it needs), or the stream broke.
                    return;
                }
            }
        });
        BlobReader {
            receiver,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots")
            .field("endpoint", &self.endpoint)
            .field("snapshotter", &self.snapshotter)
            .finish_non_exhaustive()
    }
}

/// A content-store blob as a blocking [`Read`].
pub struct BlobReader {
    receiver: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Releaser {
    async fn remove_view(&self, key: &str) -> Result<()> {
        let mut snapshots = containerd_client::Client::from(self.channel.clone()).snapshots();
        let message = snap::RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        };
        match call(&self.endpoint, "Snapshots.Remove", self.timeout, async {
            snapshots.remove(request(message, None)).await
        })
        .await
        {
            Err(Error::Call { status, .. }) if status.code() == tonic::Code::NotFound => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn delete_lease(&self, lease: &str) -> Result<()> {
        let mut leases = containerd_client::Client::from(self.channel.clone()).leases();
        let message = api::DeleteRequest {
            id: lease.to_string(),
            sync: false,
        };
        match call(&self.endpoint, "Leases.Delete", self.timeout, async {
            leases.delete(request(message, None)).await
        })
        .await
        {
            Err(Error::Call { status, .. }) if status.code() == tonic::Code::NotFound => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

impl ImageView {
    /// How the view exposes the image.
    pub fn mount(&self) -> &ViewMount {
        &self.mount
    }

    /// The directories to read, top layer first.
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        match &self.mount {
            ViewMount::Overlay(dirs) => dirs.clone(),
            ViewMount::Bind(dir) => vec![dir.clone()],
        }
    }

    /// The lease the view owns, if it owns one.
    pub fn lease(&self) -> Option<&str> {
        self.lease.as_deref()
    }

    /// Removes the view and deletes its own lease, if it has one.
    pub async fn release(mut self) -> Result<()> {
        let Some(releaser) = self.releaser.take() else {
            return Ok(());
        };
        let removed = releaser.remove_view(&self.key).await;
        let deleted = match &self.lease {
            Some(lease) => releaser.delete_lease(lease).await,
            None => Ok(()),
        };
        removed.and(deleted)
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        let Some(releaser) = self.releaser.take() else {
            return;
        };
        let (key, lease) = (self.key.clone(), self.lease.clone());
        // Best effort; the lease's expiry label covers the case where this cannot run.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = releaser.remove_view(&key).await;
                if let Some(lease) = lease {
                    let _ = releaser.delete_lease(&lease).await;
                }
            });
        }
    }
}

impl ScanLease {
    /// The lease ID.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Deletes the lease. Views still in it become garbage for containerd to collect.
    pub async fn release(mut self) -> Result<()> {
        match self.releaser.take() {
            Some(releaser) => releaser.delete_lease(&self.id).await,
            None => Ok(()),
        }
    }
}

impl Drop for ScanLease {
    fn drop(&mut self) {
        let Some(releaser) = self.releaser.take() else {
            return;
        };
        let lease = self.id.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = releaser.delete_lease(&lease).await;
            });
        }
    }
}

impl std::fmt::Debug for ScanLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanLease").field("id", &self.id).finish()
    }
}

impl std::fmt::Debug for ImageView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageView")
            .field("lease", &self.lease)
            .field("key", &self.key)
            .field("mount", &self.mount)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_709_251_199)),
            "2024-02-29T23:59:59Z"
        );
    }
}
