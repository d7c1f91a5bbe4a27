//! Image archives on disk: OCI image layouts (`index.json`, `blobs/sha256/…`) and
//! `docker save` tarballs (`manifest.json` naming each image's config and layer files), as
//! plain uncompressed tars.
//!
//! The outer tar is indexed once (entry names to byte ranges, seeking past the data), so
//! each layer can then be streamed on its own, top layer first, without unpacking the
//! archive anywhere.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::layers::{FileTree, LayerFiles, Wanted, read_layer};
use crate::{Error, Result};

/// One image found in an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// The config digest (`sha256:…`): the image ID a runtime would report.
    pub id: String,
    /// Names the archive gives it.
    pub names: Vec<String>,
    /// Layer entries in the archive, bottom first.
    pub layers: Vec<String>,
}

/// An indexed image archive.
#[derive(Debug)]
pub struct Archive {
    path: PathBuf,
    entries: HashMap<String, (u64, u64)>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

impl Archive {
    /// Indexes the archive's entries.
    pub fn open(path: &Path) -> Result<Archive> {
        let host = |source| Error::Host {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(host)?;
        let mut archive = tar::Archive::new(file);
        let mut entries = HashMap::new();
        for entry in archive.entries_with_seek().map_err(host)? {
            let entry = entry.map_err(host)?;
            let name = entry.path().map_err(host)?.to_string_lossy().into_owned();
            if let Some(name) = super::normalize(&name) {
                entries.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Archive {
            path: path.to_path_buf(),
            entries,
        })
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::Archive {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// A reader over one entry's bytes.
    pub fn entry_reader(&self, name: &str) -> Result<impl Read + use<>> {
        let &(offset, size) = self
            .entries
            .get(name)
            .ok_or_else(|| self.bad(format!("it has no entry {name}")))?;
        let host = |source| Error::Host {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(host)?;
        file.seek(SeekFrom::Start(offset)).map_err(host)?;
        Ok(file.take(size))
    }

    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.entry_reader(name)?
            .take(16 * 1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|source| Error::Host {
                path: self.path.clone(),
                source,
            })?;
        Ok(bytes)
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<T> {
        serde_json::from_slice(&self.read_small(name)?)
            .map_err(|e| self.bad(format!("{name} is not valid JSON: {e}")))
    }

    fn blob_name(digest: &str) -> String {
        format!("blobs/{}", digest.replacen(':', "/", 1))
    }

    /// Every image in the archive.
    pub fn images(&self) -> Result<Vec<ArchiveImage>> {
        if self.entries.contains_key("index.json") {
            return self.oci_images();
        }
        if self.entries.contains_key("manifest.json") {
            return self.docker_images();
        }
        Err(self.bad("it has neither index.json (OCI layout) nor manifest.json (docker save)"))
    }

    fn oci_images(&self) -> Result<Vec<ArchiveImage>> {
        let index: Index = self.json("index.json")?;
        let mut by_manifest: Vec<(String, Vec<String>)> = Vec::new();
        let mut pending: Vec<(Descriptor, usize)> =
            index.manifests.into_iter().map(|d| (d, 0)).collect();
        let mut images: Vec<ArchiveImage> = Vec::new();
        while let Some((descriptor, depth)) = pending.pop() {
            if depth > 8 {
                return Err(self.bad("image indexes nest too deep"));
            }
            let name = descriptor
                .annotations
                .get("io.containerd.image.name")
                .or_else(|| {
                    descriptor
                        .annotations
                        .get("org.opencontainers.image.ref.name")
                })
                .cloned();
            let blob = Self::blob_name(&descriptor.digest);
            if !self.entries.contains_key(&blob) {
                // Other platforms of a multi-platform index are often left out.
                continue;
            }
            let manifest: OciManifest = self.json(&blob)?;
            if !manifest.manifests.is_empty() || descriptor.media_type.contains("index") {
                pending.extend(manifest.manifests.into_iter().map(|d| (d, depth + 1)));
                continue;
            }
            let Some(config) = manifest.config else {
                continue;
            };
            if let Some((_, names)) = by_manifest
                .iter_mut()
                .find(|(d, _)| *d == descriptor.digest)
            {
                names.extend(name);
                continue;
            }
            by_manifest.push((descriptor.digest.clone(), name.into_iter().collect()));
            images.push(ArchiveImage {
                id: config.digest.clone(),
                names: Vec::new(),
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| Self::blob_name(&l.digest))
                    .collect(),
            });
        }
        for (image, (_, names)) in images.iter_mut().zip(by_manifest) {
            image.names = names;
        }
        Ok(images)
    }

    fn docker_images(&self) -> Result<Vec<ArchiveImage>> {
        let manifests: Vec<DockerManifest> = self.json("manifest.json")?;
        manifests
            .into_iter()
            .map(|m| {
                let config = super::normalize(&m.config).unwrap_or_default();
                let id = match config.rsplit('/').next() {
                    Some(file) if config.starts_with("blobs/sha256/") => format!("sha256:{file}"),
                    Some(file) => format!("sha256:{}", file.trim_end_matches(".json")),
                    None => return Err(self.bad("a manifest.json entry has no Config")),
                };
                Ok(ArchiveImage {
                    id,
                    names: m.repo_tags.unwrap_or_default(),
                    layers: m
                        .layers
                        .iter()
                        .filter_map(|l| super::normalize(l))
                        .collect(),
                })
            })
            .collect()
    }

    /// Reads one image's wanted files, top layer first, stopping once upper layers decide
    /// everything.
    pub fn file_tree(&self, image: &ArchiveImage, wanted: &Wanted) -> Result<FileTree> {
        let label = image
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let mut tree = FileTree::new(label.clone());
        for layer in image.layers.iter().rev() {
            let files: LayerFiles =
                read_layer(self.entry_reader(layer)?, wanted).map_err(|source| Error::Layer {
                    image: label.clone(),
                    layer: layer.clone(),
                    source,
                })?;
            tree.add_lower(&files);
            if tree.decides(wanted) {
                break;
            }
        }
        Ok(tree)
    }
}
