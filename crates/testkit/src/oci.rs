//! OCI image-layout archives built in Rust, for importing with `ctr images import`.
//!
//! Layers are deterministic (sorted entries, mtime 0, owner 0:0, gzip header mtime 0), so the
//! same inputs always give the same blob digest: images built separately share base layers
//! bit for bit, exactly as images pulled from a registry do, and removal tests can check
//! which blobs a removal frees.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context as _;
use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Index annotation containerd reads an image's name from on import.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Standard OCI annotation for a reference's tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Creation time given to images that do not set one.
pub const DEFAULT_CREATED: &str = "2024-01-01T00:00:00Z";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One entry of a layer's file system. Paths are relative to the root (a leading `/` is
/// ignored); missing parent directories are added as `0755` directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileEntry {
    /// A regular file.
    File {
        /// Where.
        path: String,
        /// The bytes.
        contents: Vec<u8>,
        /// Permission bits, e.g. `0o644`.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Where.
        path: String,
        /// Permission bits, e.g. `0o755`.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where.
        path: String,
        /// What it points to.
        target: String,
    },
    /// A whiteout: deletes `path` from the layers below (written as `dir/.wh.name`).
    Whiteout {
        /// The deleted path.
        path: String,
    },
    /// An opaque-directory marker: hides everything below `dir` in lower layers (written as
    /// `dir/.wh..wh..opq`).
    Opaque {
        /// The directory made opaque.
        dir: String,
    },
}

impl FileEntry {
    /// A regular file with mode `0644`.
    pub fn file(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        FileEntry::File {
            path: path.into(),
            contents: contents.into(),
            mode: 0o644,
        }
    }

    /// A regular file with mode `0755`.
    pub fn executable(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        FileEntry::File {
            path: path.into(),
            contents: contents.into(),
            mode: 0o755,
        }
    }

    /// A directory with mode `0755`.
    pub fn dir(path: impl Into<String>) -> Self {
        FileEntry::Dir {
            path: path.into(),
            mode: 0o755,
        }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        FileEntry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// A whiteout deleting `path`.
    pub fn whiteout(path: impl Into<String>) -> Self {
        FileEntry::Whiteout { path: path.into() }
    }

    /// An opaque marker for `dir`.
    pub fn opaque(dir: impl Into<String>) -> Self {
        FileEntry::Opaque { dir: dir.into() }
    }

    /// Every file, directory and symbolic link under `root` (parents before children, in
    /// name order), with paths relative to it: a directory tree (say, unpacked `.deb`s) as
    /// layer entries. Modes of files follow the executable bit.
    pub fn tree(root: &Path) -> anyhow::Result<Vec<FileEntry>> {
        fn walk(root: &Path, dir: &Path, out: &mut Vec<FileEntry>) -> anyhow::Result<()> {
            let mut children = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()?;
            children.sort();
            for path in children {
                let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(&path)?;
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path)?;
                    out.push(FileEntry::symlink(relative, target.to_string_lossy()));
                } else if meta.is_dir() {
                    out.push(FileEntry::dir(relative));
                    walk(root, &path, out)?;
                } else {
                    let contents = std::fs::read(&path)?;
                    out.push(if meta.permissions().mode() & 0o111 != 0 {
                        FileEntry::executable(relative, contents)
                    } else {
                        FileEntry::file(relative, contents)
                    });
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(root, root, &mut out)?;
        Ok(out)
    }

    /// The path of the tar entry this becomes, without a leading `/`.
    fn tar_path(&self) -> String {
        let clean = |p: &str| p.trim_matches('/').to_string();
        match self {
            FileEntry::File { path, .. }
            | FileEntry::Dir { path, .. }
            | FileEntry::Symlink { path, .. } => clean(path),
            FileEntry::Whiteout { path } => {
                let path = clean(path);
                match path.rsplit_once('/') {
                    Some((dir, name)) => format!("{dir}/.wh.{name}"),
                    None => format!(".wh.{path}"),
                }
            }
            FileEntry::Opaque { dir } => {
                let dir = clean(dir);
                if dir.is_empty() {
                    ".wh..wh..opq".to_string()
                } else {
                    format!("{dir}/.wh..wh..opq")
                }
            }
        }
    }
}

/// A gzip-compressed layer with its digests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Layer {
    inner: Arc<LayerData>,
}

#[derive(Debug)]
struct LayerData {
    gzip: Vec<u8>,
    digest: String,
    diff_id: String,
    uncompressed_size: u64,
}

impl Layer {
    /// A layer holding exactly `entries` (plus their missing parent directories).
    pub fn from_files(entries: Vec<FileEntry>) -> anyhow::Result<Layer> {
        Self::build(entries, Compression::default())
    }

    /// A layer holding one file of `bytes` pseudo-random bytes generated from `seed`, at
    /// `/data/random-<seed>.bin`. The content does not compress, so the layer's size is
    /// `bytes` plus a little framing, and different seeds give different layers.
    pub fn random(seed: u64, bytes: usize) -> Layer {
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        if state == 0 {
            state = 0x2545_f491_4f6c_dd1d;
        }
        let mut contents = Vec::with_capacity(bytes + 8);
        while contents.len() < bytes {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            contents.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        contents.truncate(bytes);
        let entry = FileEntry::file(format!("data/random-{seed}.bin"), contents);
        // Random bytes do not compress; storing them keeps the build fast.
        Self::build(vec![entry], Compression::none())
            .expect("a single generated file always makes a valid layer")
    }

    /// A base layer with the static busybox of the machine at `/bin/busybox` and `/bin/sh`
    /// and `/bin/sleep` linked to it, so containers can run `sleep`. Built once per process.
    pub fn busybox() -> anyhow::Result<Layer> {
        static BUSYBOX: OnceLock<Layer> = OnceLock::new();
        if let Some(layer) = BUSYBOX.get() {
            return Ok(layer.clone());
        }
        let path = Path::new("/bin/busybox");
        let binary = std::fs::read(path)
            .with_context(|| format!("reading {} (install busybox-static)", path.display()))?;
        let layer = Self::from_files(vec![
            FileEntry::executable("bin/busybox", binary),
            FileEntry::symlink("bin/sh", "busybox"),
            FileEntry::symlink("bin/sleep", "busybox"),
            FileEntry::dir("tmp"),
            FileEntry::dir("etc"),
        ])?;
        Ok(BUSYBOX.get_or_init(|| layer).clone())
    }

    fn build(entries: Vec<FileEntry>, level: Compression) -> anyhow::Result<Layer> {
        let tar = tar_bytes(entries)?;
        let diff_id = sha256_digest(&tar);
        let mut encoder = GzBuilder::new().mtime(0).write(Vec::new(), level);
        encoder.write_all(&tar).context("compressing a layer")?;
        let gzip = encoder.finish().context("compressing a layer")?;
        Ok(Layer {
            inner: Arc::new(LayerData {
                digest: sha256_digest(&gzip),
                diff_id,
                uncompressed_size: tar.len() as u64,
                gzip,
            }),
        })
    }

    /// Digest of the compressed blob (`sha256:…`), as the manifest lists it.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Digest of the uncompressed tar (`sha256:…`), as the config's `rootfs.diff_ids` lists it.
    pub fn diff_id(&self) -> &str {
        &self.inner.diff_id
    }

    /// Size of the compressed blob in bytes.
    pub fn size(&self) -> u64 {
        self.inner.gzip.len() as u64
    }

    /// Size of the uncompressed tar in bytes.
    pub fn uncompressed_size(&self) -> u64 {
        self.inner.uncompressed_size
    }

    /// The compressed blob.
    pub fn blob(&self) -> &[u8] {
        &self.inner.gzip
    }
}

/// The tar stream of `entries`: sorted by path, parents added, all metadata fixed.
fn tar_bytes(entries: Vec<FileEntry>) -> anyhow::Result<Vec<u8>> {
    let mut by_path: BTreeMap<String, FileEntry> = BTreeMap::new();
    for entry in entries {
        let path = entry.tar_path();
        anyhow::ensure!(!path.is_empty(), "a layer entry needs a path: {entry:?}");
        anyhow::ensure!(
            !path.split('/').any(|c| c == ".." || c == "."),
            "layer paths must be normalised: {path}"
        );
        if let Some(old) = by_path.insert(path.clone(), entry) {
            anyhow::bail!("two layer entries for {path}: {old:?}");
        }
    }
    let parents: BTreeSet<String> = by_path
        .keys()
        .flat_map(|path| {
            let parts: Vec<&str> = path.split('/').collect();
            (1..parts.len())
                .map(|n| parts[..n].join("/"))
                .collect::<Vec<_>>()
        })
        .collect();
    for parent in parents {
        by_path
            .entry(parent.clone())
            .or_insert_with(|| FileEntry::dir(parent));
    }

    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in &by_path {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            FileEntry::File { contents, mode, .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(contents.len() as u64);
                builder.append_data(&mut header, path, contents.as_slice())?;
            }
            FileEntry::Dir { mode, .. } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            }
            FileEntry::Symlink { target, .. } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
            FileEntry::Whiteout { .. } | FileEntry::Opaque { .. } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
        }
    }
    builder.into_inner().context("finishing a layer tar")
}

/// What an image should contain and be called.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// Full references with a tag, e.g. `docker.io/library/app:1`. All name the same image.
    pub names: Vec<String>,
    /// A repository under which the image is known only by digest (`repo@sha256:…`), with no
    /// tag, e.g. `localhost:5000/tools/debug`.
    pub digest_only_repo: Option<String>,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// The config's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The config's `Cmd`.
    pub cmd: Vec<String>,
    /// The config's `Labels`.
    pub labels: BTreeMap<String, String>,
    /// The config's `created` (RFC 3339); [`DEFAULT_CREATED`] when `None`.
    pub created: Option<String>,
}

impl ImageSpec {
    /// An empty spec: add names and layers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tagged name (a full reference such as `docker.io/library/app:1`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// Makes the image known in `repo` by digest only.
    pub fn digest_only(mut self, repo: impl Into<String>) -> Self {
        self.digest_only_repo = Some(repo.into());
        self
    }

    /// Adds a layer on top.
    pub fn layer(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Sets the entrypoint.
    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the default command.
    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the creation time (RFC 3339).
    pub fn created(mut self, created: impl Into<String>) -> Self {
        self.created = Some(created.into());
        self
    }

    /// The config blob.
    fn config_json(&self) -> anyhow::Result<Vec<u8>> {
        let created = self.created.as_deref().unwrap_or(DEFAULT_CREATED);
        let mut config = serde_json::Map::new();
        config.insert(
            "Env".into(),
            json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        );
        if !self.entrypoint.is_empty() {
            config.insert("Entrypoint".into(), json!(self.entrypoint));
        }
        if !self.cmd.is_empty() {
            config.insert("Cmd".into(), json!(self.cmd));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), json!(self.labels));
        }
        let history: Vec<_> = self
            .layers
            .iter()
            .map(|l| json!({"created": created, "created_by": format!("layer {}", l.digest())}))
            .collect();
        let value = json!({
            "created": created,
            "architecture": oci_arch(),
            "os": "linux",
            "config": config,
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(Layer::diff_id).collect::<Vec<_>>(),
            },
            "history": history,
        });
        Ok(serde_json::to_vec(&value)?)
    }

    /// Writes an OCI image-layout tar archive to `path` for `ctr images import`.
    ///
    /// The index has one manifest entry per tagged name, plus one `repo@sha256:<manifest>`
    /// entry per repository (tagged or digest-only), so the runtime reports both repo tags
    /// and repo digests. Each entry carries `io.containerd.image.name` with the full name.
    pub fn write_archive(&self, path: &Path) -> anyhow::Result<BuiltImage> {
        anyhow::ensure!(
            !self.names.is_empty() || self.digest_only_repo.is_some(),
            "an image needs a name or a digest-only repository"
        );
        let config = self.config_json()?;
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": {
                "mediaType": MEDIA_TYPE_CONFIG,
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": MEDIA_TYPE_LAYER_GZIP,
                "digest": l.digest(),
                "size": l.size(),
            })).collect::<Vec<_>>(),
        }))?;
        let manifest_digest = sha256_digest(&manifest);

        let mut repos: Vec<String> = Vec::new();
        for name in &self.names {
            let (repo, tag) = split_tag(name)
                .with_context(|| format!("image name {name} needs a tag (repo:tag)"))?;
            anyhow::ensure!(!tag.is_empty(), "image name {name} has an empty tag");
            if !repos.contains(&repo.to_string()) {
                repos.push(repo.to_string());
            }
        }
        if let Some(repo) = &self.digest_only_repo
            && !repos.contains(repo)
        {
            repos.push(repo.clone());
        }
        let repo_digests: Vec<String> = repos
            .iter()
            .map(|r| format!("{r}@{manifest_digest}"))
            .collect();

        let platform = json!({"architecture": oci_arch(), "os": "linux"});
        let entry = |name: &str, tag: Option<&str>| {
            let mut annotations = serde_json::Map::new();
            annotations.insert(ANNOTATION_CONTAINERD_NAME.into(), json!(name));
            if let Some(tag) = tag {
                annotations.insert(ANNOTATION_REF_NAME.into(), json!(tag));
            }
            json!({
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": manifest_digest,
                "size": manifest.len(),
                "platform": platform,
                "annotations": annotations,
            })
        };
        let mut entries = Vec::new();
        for name in &self.names {
            entries.push(entry(name, split_tag(name).map(|(_, tag)| tag)));
        }
        for name in &repo_digests {
            entries.push(entry(name, None));
        }
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": entries,
        }))?;

        let file =
            File::create(path).with_context(|| format!("creating archive {}", path.display()))?;
        let mut archive = tar::Builder::new(BufWriter::new(file));
        let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_size(bytes.len() as u64);
            archive
                .append_data(&mut header, name, bytes)
                .with_context(|| format!("writing {name} into {}", path.display()))
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &index)?;
        let mut written = BTreeSet::new();
        let blob_name = |digest: &str| format!("blobs/sha256/{}", &digest["sha256:".len()..]);
        for layer in &self.layers {
            if written.insert(layer.digest().to_string()) {
                add(&blob_name(layer.digest()), layer.blob())?;
            }
        }
        add(&blob_name(&config_digest), &config)?;
        add(&blob_name(&manifest_digest), &manifest)?;
        archive
            .into_inner()
            .and_then(|mut w| w.flush())
            .with_context(|| format!("finishing archive {}", path.display()))?;

        let unique_layers: BTreeMap<&str, u64> =
            self.layers.iter().map(|l| (l.digest(), l.size())).collect();
        Ok(BuiltImage {
            id: config_digest,
            manifest_digest,
            names: self.names.clone(),
            repo_digests,
            layer_digests: self.layers.iter().map(|l| l.digest().to_string()).collect(),
            diff_ids: self
                .layers
                .iter()
                .map(|l| l.diff_id().to_string())
                .collect(),
            blob_bytes: unique_layers.values().sum::<u64>()
                + config.len() as u64
                + manifest.len() as u64,
        })
    }
}

/// What [`ImageSpec::write_archive`] built: the identities the runtime will report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// `sha256:<config digest>`: what CRI reports as `Image.id`.
    pub id: String,
    /// `sha256:<manifest digest>`.
    pub manifest_digest: String,
    /// The tagged names (CRI `repo_tags`), in the order given.
    pub names: Vec<String>,
    /// `repo@sha256:<manifest>` for each repository (CRI `repo_digests`).
    pub repo_digests: Vec<String>,
    /// Compressed layer digests, bottom first.
    pub layer_digests: Vec<String>,
    /// Uncompressed layer digests (`rootfs.diff_ids`), bottom first.
    pub diff_ids: Vec<String>,
    /// Bytes of the distinct compressed layers + config + manifest: what the image holds in
    /// the content store, and what CRI reports as `Image.size` (unless a layer repeats
    /// within the image, which containerd counts once per use).
    pub blob_bytes: u64,
}

impl BuiltImage {
    /// A name to refer to the image by: the first tag, else the first repo digest.
    pub fn reference(&self) -> &str {
        self.names
            .first()
            .or_else(|| self.repo_digests.first())
            .map(String::as_str)
            .unwrap_or(&self.id)
    }
}

/// Splits `repo:tag`, where the tag follows the last `:` after the last `/`.
fn split_tag(name: &str) -> Option<(&str, &str)> {
    let (repo, tag) = name.rsplit_once(':')?;
    if tag.contains('/') || repo.contains('@') {
        return None;
    }
    Some((repo, tag))
}

/// The OCI architecture name of this machine.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_paths(layer: &Layer) -> Vec<String> {
        let gz = flate2::read::GzDecoder::new(layer.blob());
        let mut archive = tar::Archive::new(gz);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn layers_are_deterministic() {
        let files = || {
            vec![
                FileEntry::file("/etc/b", "b"),
                FileEntry::file("etc/a", "a"),
                FileEntry::symlink("bin/x", "y"),
            ]
        };
        let a = Layer::from_files(files()).unwrap();
        let b = Layer::from_files(files().into_iter().rev().collect()).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.diff_id(), b.diff_id());
        assert_ne!(a.digest(), a.diff_id());
        assert_eq!(
            Layer::random(7, 1000).digest(),
            Layer::random(7, 1000).digest()
        );
        assert_ne!(
            Layer::random(7, 1000).digest(),
            Layer::random(8, 1000).digest()
        );
    }

    #[test]
    fn layers_hold_parents_whiteouts_and_opaque_markers() {
        let layer = Layer::from_files(vec![
            FileEntry::whiteout("/etc/old.conf"),
            FileEntry::opaque("/var/cache"),
            FileEntry::whiteout("toplevel"),
            FileEntry::file("a/b/c", "x"),
        ])
        .unwrap();
        assert_eq!(
            tar_paths(&layer),
            [
                ".wh.toplevel",
                "a/",
                "a/b/",
                "a/b/c",
                "etc/",
                "etc/.wh.old.conf",
                "var/",
                "var/cache/",
                "var/cache/.wh..wh..opq",
            ]
        );
    }

    #[test]
    fn random_layers_do_not_compress() {
        let layer = Layer::random(1, 100_000);
        assert!(layer.size() > 100_000, "{}", layer.size());
        assert!(layer.size() < 100_000 + 4096, "{}", layer.size());
    }

    #[test]
    fn archives_name_tags_and_digests() {
        let dir = tempfile::tempdir().unwrap();
        let layer = Layer::random(3, 10);
        let built = ImageSpec::new()
            .name("example.com/team/web:2")
            .name("example.com/team/web:stable")
            .layer(layer.clone())
            .layer(layer.clone())
            .write_archive(&dir.path().join("web.tar"))
            .unwrap();
        assert_eq!(
            built.repo_digests,
            [format!("example.com/team/web@{}", built.manifest_digest)]
        );
        assert_eq!(built.layer_digests.len(), 2);

        let mut archive = tar::Archive::new(File::open(dir.path().join("web.tar")).unwrap());
        let mut index = None;
        let mut blobs = 0u64;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "index.json" {
                index = Some(serde_json::from_reader::<_, serde_json::Value>(&mut entry).unwrap());
            } else if path.starts_with("blobs/") {
                blobs += entry.header().size().unwrap();
            }
        }
        // The repeated layer is stored once, and blob_bytes counts it once.
        assert_eq!(blobs, built.blob_bytes);
        let names: Vec<String> = index.unwrap()["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"][ANNOTATION_CONTAINERD_NAME]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "example.com/team/web:2".to_string(),
                "example.com/team/web:stable".to_string(),
                format!("example.com/team/web@{}", built.manifest_digest),
            ]
        );
    }

    #[test]
    fn digest_only_images_have_no_tag() {
        let dir = tempfile::tempdir().unwrap();
        let built = ImageSpec::new()
            .digest_only("localhost:5000/tools/debug")
            .layer(Layer::random(4, 10))
            .write_archive(&dir.path().join("d.tar"))
            .unwrap();
        assert!(built.names.is_empty());
        assert_eq!(built.reference(), built.repo_digests[0]);
        assert!(
            ImageSpec::new()
                .name("no-tag")
                .write_archive(&dir.path().join("x.tar"))
                .is_err()
        );
        assert!(split_tag("localhost:5000/x").is_none());
    }
}
