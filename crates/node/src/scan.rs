//! Scanning the images of a node for vulnerabilities, and turning the results into the
//! policy's `vulnerable` input.
//!
//! Each image is read the cheapest way the runtime allows: with containerd, a read-only view
//! of its unpacked snapshots (a few `stat`s and a small read per image); when it has no
//! snapshot, its compressed layers streamed from the content store, top layer first, each
//! layer parsed once per run even when many images share it. An image that cannot be
//! scanned is reported with the reason and kept, unless the operator asked Eraser's
//! `deleteFailedImages`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, stream};
use image_cleaner_core::{Image, ImageId};
use image_cleaner_cri::snapshots::{ScanLease, Snapshots};
use image_cleaner_scanner::fs::layers::{FileTree, LayerFiles, read_layer};
use image_cleaner_scanner::fs::overlay::Overlay;
use image_cleaner_scanner::trivy::{Target, Trivy};
use image_cleaner_scanner::{Database, ImageScan, ScanPolicy};
use serde::{Deserialize, Serialize};

use crate::Runtime;

/// The ID reported for an image removed because it could not be scanned.
pub const SCAN_FAILED_ID: &str = "SCAN-FAILED";
/// Parsed layers kept for sharing between images, in bytes of kept files.
const LAYER_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Which scanner runs.
#[derive(Clone, Debug)]
pub enum Scanner {
    /// The built-in scanner against a compiled OSV database.
    Native(Arc<Database>),
    /// An external Trivy per image.
    Trivy(Trivy),
}

/// How to scan.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The scanner.
    pub scanner: Scanner,
    /// Which findings condemn an image.
    pub policy: ScanPolicy,
    /// Condemn images that could not be scanned (Eraser's `deleteFailedImages`).
    pub delete_failed: bool,
    /// Longest time for one image.
    pub per_image_timeout: Duration,
    /// Longest time for the whole scan; images not reached are reported as failed.
    pub total_timeout: Duration,
    /// Images scanned at once.
    pub concurrency: usize,
    /// Read snapshots when they exist (the fast path); `false` always streams layers.
    pub use_snapshots: bool,
}

impl Settings {
    /// Defaults for a scanner: Eraser's timeouts (1 h per image, 23 h in total), two at once.
    pub fn new(scanner: Scanner) -> Self {
        Settings {
            scanner,
            policy: ScanPolicy::default(),
            delete_failed: false,
            per_image_timeout: Duration::from_secs(3600),
            total_timeout: Duration::from_secs(23 * 3600),
            concurrency: 2,
            use_snapshots: true,
        }
    }
}

/// How an image's files were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// containerd's unpacked snapshots.
    Snapshot,
    /// Compressed layers from the content store.
    Layers,
    /// The external Trivy.
    Trivy,
    /// A root filesystem directory.
    Rootfs,
    /// An image archive file.
    Archive,
}

/// The scan of one image.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageResult {
    /// Image ID.
    pub id: String,
    /// Its tags.
    pub names: Vec<String>,
    /// How it was read, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Time taken.
    pub millis: u64,
    /// The scan, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ImageScan>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Progress callback: (images done, images in total).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

/// Scans `images` on the runtime. One image failing never stops the others.
pub async fn scan_images(
    runtime: &Runtime,
    images: &[Image],
    settings: &Settings,
    progress: Progress<'_>,
) -> Vec<ImageResult> {
    let snapshots = snapshots_of(runtime).await;
    // One lease for every view of the run: two metadata writes fewer per image.
    let lease = match (&snapshots, &settings.scanner) {
        (Some(snapshots), Scanner::Native(_)) if settings.use_snapshots => {
            snapshots.lease().await.ok()
        }
        _ => None,
    };
    let cache = LayerCache::default();
    let started = Instant::now();
    let total = images.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let socket = runtime.cri.endpoint().to_string();
    let results = stream::iter(images.iter())
        .map(|image| {
            let (snapshots, cache, done, socket) = (&snapshots, &cache, &done, &socket);
            let lease = lease.as_ref();
            async move {
                let began = Instant::now();
                let remaining = settings.total_timeout.saturating_sub(started.elapsed());
                let limit = settings.per_image_timeout.min(remaining);
                let attempt = scan_one(image, snapshots.as_ref(), lease, cache, settings, socket);
                let outcome = match tokio::time::timeout(limit, attempt).await {
                    Ok(outcome) => outcome,
                    Err(_) if remaining <= settings.per_image_timeout => Err((
                        None,
                        format!(
                            "the scan's total time limit ({:?}) was reached",
                            settings.total_timeout
                        ),
                    )),
                    Err(_) => Err((None, format!("not scanned within {limit:?}"))),
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress(n, total);
                let (method, scan, error) = match outcome {
                    Ok((method, scan)) => (Some(method), Some(scan), None),
                    Err((method, why)) => (method, None, Some(why)),
                };
                ImageResult {
                    id: image.id.to_string(),
                    names: image.names.clone(),
                    method,
                    millis: began.elapsed().as_millis() as u64,
                    scan,
                    error,
                }
            }
        })
        .buffered(settings.concurrency.max(1))
        .collect()
        .await;
    if let Some(lease) = lease
        && let Err(e) = lease.release().await
    {
        tracing::warn!("releasing the scan lease: {e}");
    }
    results
}

/// Image → IDs that condemn it, for [`crate::Options::vulnerable`].
pub fn vulnerable(results: &[ImageResult], settings: &Settings) -> BTreeMap<ImageId, Vec<String>> {
    let mut out = BTreeMap::new();
    for result in results {
        let ids = match (&result.scan, &result.error) {
            (Some(scan), _) => scan.condemning_ids(&settings.policy),
            (None, Some(_)) if settings.delete_failed => vec![SCAN_FAILED_ID.to_string()],
            _ => Vec::new(),
        };
        if !ids.is_empty() {
            out.insert(ImageId::new(result.id.clone()), ids);
        }
    }
    out
}

async fn snapshots_of(runtime: &Runtime) -> Option<Snapshots> {
    runtime.containerd.as_ref()?;
    let config = runtime.cri.runtime_config().await.ok().flatten();
    let snapshotter = config
        .as_ref()
        .and_then(|c| c.pointer("/containerd/snapshotter"))
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("overlayfs")
        .to_string();
    Some(Snapshots::new(
        runtime.cri.endpoint(),
        runtime.cri.channel(),
        &snapshotter,
        runtime.cri.timeouts().call,
    ))
}

type Failure = (Option<Method>, String);

async fn scan_one(
    image: &Image,
    snapshots: Option<&Snapshots>,
    lease: Option<&ScanLease>,
    cache: &LayerCache,
    settings: &Settings,
    endpoint: &str,
) -> Result<(Method, ImageScan), Failure> {
    let label = image
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.to_string());
    let db = match &settings.scanner {
        Scanner::Trivy(trivy) => {
            let trivy = trivy.clone();
            // Trivy resolves containerd images by reference; the ID only when there is none.
            let reference = image
                .names
                .first()
                .or(image.digests.first())
                .cloned()
                .unwrap_or_else(|| image.id.to_string());
            let address = endpoint.trim_start_matches("unix://").to_string();
            let scanned = tokio::task::spawn_blocking(move || {
                trivy.scan(&Target::ContainerdImage {
                    image: &reference,
                    address: std::path::Path::new(&address),
                })
            })
            .await
            .map_err(|e| (Some(Method::Trivy), format!("scan task failed: {e}")))?;
            return scanned
                .map(|s| (Method::Trivy, s))
                .map_err(|e| (Some(Method::Trivy), e.to_string()));
        }
        Scanner::Native(db) => db.clone(),
    };
    let Some(snapshots) = snapshots else {
        return Err((
            None,
            "the runtime is not containerd: its image files cannot be read".to_string(),
        ));
    };
    if settings.use_snapshots {
        let view = match lease {
            Some(lease) => snapshots.view_in(lease, &image.id).await,
            None => snapshots.view(&image.id).await,
        }
        .map_err(|e| (Some(Method::Snapshot), e.to_string()))?;
        if let Some(view) = view {
            let overlay = Overlay::new(label.clone(), view.layer_dirs());
            let db2 = db.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                image_cleaner_scanner::scan(&overlay, &db2, SystemTime::now())
            })
            .await;
            let released = view.release().await;
            if let Err(e) = released {
                tracing::warn!(image = %label, "releasing the scan view: {e}");
            }
            return match scanned {
                Ok(Ok(scan)) => Ok((Method::Snapshot, scan)),
                Ok(Err(e)) => Err((Some(Method::Snapshot), e.to_string())),
                Err(e) => Err((Some(Method::Snapshot), format!("scan task failed: {e}"))),
            };
        }
    }
    let (tree, contributing) = stream_layers(image, &label, snapshots, cache)
        .await
        .map_err(|why| (Some(Method::Layers), why))?;
    // Images whose wanted files come from the same layers have the same scan.
    if let Some(scan) = cache.scanned(&contributing) {
        return Ok((Method::Layers, scan));
    }
    let scanned = tokio::task::spawn_blocking(move || {
        image_cleaner_scanner::scan(&tree, &db, SystemTime::now())
    })
    .await;
    match scanned {
        Ok(Ok(scan)) => {
            cache.remember_scan(contributing, &scan);
            Ok((Method::Layers, scan))
        }
        Ok(Err(e)) => Err((Some(Method::Layers), e.to_string())),
        Err(e) => Err((Some(Method::Layers), format!("scan task failed: {e}"))),
    }
}

/// Streams the image's layers from the content store, top first, until upper layers decide
/// every file the scan reads. Also returns the digests of the layers that contributed to
/// what was read (kept files, whiteouts, opaque directories), top first: the merged tree is
/// a function of those alone.
async fn stream_layers(
    image: &Image,
    label: &str,
    snapshots: &Snapshots,
    cache: &LayerCache,
) -> Result<(FileTree, Vec<String>), String> {
    let blobs = snapshots
        .image_blobs(&image.id)
        .await
        .map_err(|e| e.to_string())?;
    if blobs.is_empty() {
        return Err("containerd holds neither a snapshot nor a manifest with layers for it".into());
    }
    let wanted = Arc::new(image_cleaner_scanner::wanted());
    let mut tree = FileTree::new(label);
    let mut contributing = Vec::new();
    for (digest, _media_type) in blobs.iter().rev() {
        let files = match cache.get(digest) {
            Some(files) => files,
            None => {
                let reader = snapshots.open_blob(digest);
                let wanted = wanted.clone();
                let parsed = tokio::task::spawn_blocking(move || read_layer(reader, &wanted))
                    .await
                    .map_err(|e| format!("layer task failed: {e}"))?
                    .map_err(|e| format!("layer {digest} is unreadable: {e}"))?;
                cache.put(digest, parsed)
            }
        };
        if !(files.entries.is_empty() && files.whiteouts.is_empty() && files.opaque.is_empty()) {
            contributing.push(digest.clone());
        }
        tree.add_lower(&files);
        if tree.decides(&wanted) {
            break;
        }
    }
    Ok((tree, contributing))
}

/// Parsed layers shared between the images of one run, within a byte budget (oldest out
/// first).
#[derive(Default)]
struct LayerCache {
    inner: Mutex<CachedLayers>,
}

#[derive(Default)]
struct CachedLayers {
    by_digest: HashMap<String, Arc<LayerFiles>>,
    oldest_first: VecDeque<String>,
    held_bytes: usize,
    /// Scans by the layers their files came from.
    scans: HashMap<Vec<String>, ImageScan>,
}

/// Scans remembered per run; each is small (findings only), so a count bound suffices.
const REMEMBERED_SCANS: usize = 4096;

impl LayerCache {
    fn scanned(&self, contributing: &[String]) -> Option<ImageScan> {
        if contributing.is_empty() {
            return None;
        }
        self.inner.lock().ok()?.scans.get(contributing).cloned()
    }

    fn remember_scan(&self, contributing: Vec<String>, scan: &ImageScan) {
        if let Ok(mut cache) = self.inner.lock()
            && !contributing.is_empty()
            && cache.scans.len() < REMEMBERED_SCANS
        {
            cache.scans.insert(contributing, scan.clone());
        }
    }

    fn get(&self, digest: &str) -> Option<Arc<LayerFiles>> {
        self.inner.lock().ok()?.by_digest.get(digest).cloned()
    }

    fn put(&self, digest: &str, files: LayerFiles) -> Arc<LayerFiles> {
        let files = Arc::new(files);
        let size = files.held_bytes();
        if let Ok(mut cache) = self.inner.lock()
            && size <= LAYER_CACHE_BYTES
            && !cache.by_digest.contains_key(digest)
        {
            while cache.held_bytes + size > LAYER_CACHE_BYTES {
                let Some(old) = cache.oldest_first.pop_front() else {
                    break;
                };
                if let Some(gone) = cache.by_digest.remove(&old) {
                    cache.held_bytes -= gone.held_bytes();
                }
            }
            cache.by_digest.insert(digest.to_string(), files.clone());
            cache.oldest_first.push_back(digest.to_string());
            cache.held_bytes += size;
        }
        files
    }
}
