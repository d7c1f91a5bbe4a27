//! What a node's container runtime holds: images, containers and pod sandboxes, as plain data.
//!
//! The CRI client fills an [`Inventory`]; everything else reads it. [`ImageIndex`] answers
//! "which image does this string name?" once per string, after parsing every image name once,
//! so a plan over thousands of images and containers stays linear.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::reference::{Digest, ImageRef, is_lower_hex};

/// Shortest hex prefix accepted as an image ID (what `crictl images` shows).
pub(crate) const SHORT_ID_LEN: usize = 12;
/// Length of a full sha256 image ID in hex.
pub(crate) const FULL_ID_LEN: usize = 64;

/// An image ID as the runtime reports it, normally `sha256:<hex>` (the config digest);
/// CRI-O reports the bare hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ImageId(String);

impl ImageId {
    /// Wraps the ID exactly as given.
    pub fn new(id: impl Into<String>) -> Self {
        ImageId(id.into())
    }

    /// The ID as the runtime reported it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex digits, without an `algorithm:` prefix.
    pub fn hex(&self) -> &str {
        self.0
            .split_once(':')
            .map_or(self.0.as_str(), |(_, hex)| hex)
    }

    /// The first 12 hex digits, as `crictl images` shows them.
    pub fn short(&self) -> &str {
        let hex = self.hex();
        hex.get(..SHORT_ID_LEN).unwrap_or(hex)
    }

    /// Whether this ID is the image whose config digest is `digest`.
    pub fn is_digest(&self, digest: &Digest) -> bool {
        match self.0.split_once(':') {
            Some((algorithm, hex)) => algorithm == digest.algorithm() && hex == digest.hex(),
            // A bare ID (CRI-O) is a sha256 hex.
            None => digest.algorithm() == "sha256" && self.0 == digest.hex(),
        }
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for ImageId {
    fn from(id: String) -> Self {
        ImageId(id)
    }
}

impl From<&str> for ImageId {
    fn from(id: &str) -> Self {
        ImageId(id.to_owned())
    }
}

/// One image in the runtime's store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The runtime's image ID.
    pub id: ImageId,
    /// Repo tags as the runtime reports them, e.g. `docker.io/library/nginx:1.25`.
    pub names: Vec<String>,
    /// Repo digests, e.g. `docker.io/library/nginx@sha256:...`.
    pub digests: Vec<String>,
    /// Size of the image as the runtime reports it.
    pub size_bytes: u64,
    /// Bytes freed by removing this image alone (layers no other image uses); `None` when the
    /// runtime cannot tell layers.
    pub reclaimable_bytes: Option<u64>,
    /// The runtime pins this image (for example the sandbox image).
    pub pinned: bool,
    /// When the image was pulled, if known.
    pub pulled_at: Option<SystemTime>,
}

/// A container's state as CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not yet started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    Unknown,
}

/// One container known to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Container ID.
    pub id: String,
    /// Container name from its metadata.
    pub name: String,
    /// ID of the pod sandbox it belongs to.
    pub sandbox_id: String,
    /// Current state.
    pub state: ContainerState,
    /// CRI `Container.image.image`: an image ID or a name.
    pub image: String,
    /// CRI `Container.image_ref`: usually the image ID or a repo digest.
    pub image_ref: String,
    /// CRI `Container.image_id` (newer runtimes); may be empty.
    pub image_id: String,
    /// When the container was created, if known.
    pub created_at: Option<SystemTime>,
    /// When it started, if it did.
    pub started_at: Option<SystemTime>,
    /// When it finished, if it did.
    pub finished_at: Option<SystemTime>,
}

impl Container {
    /// The non-empty strings by which this container names its image.
    pub fn image_strings(&self) -> impl Iterator<Item = &str> {
        [&self.image, &self.image_ref, &self.image_id]
            .into_iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// A pod sandbox's state as CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// The pod is up.
    Ready,
    /// The pod is stopped or being torn down.
    NotReady,
}

/// One pod sandbox known to the runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandbox {
    /// Sandbox ID.
    pub id: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Current state.
    pub state: SandboxState,
    /// When the sandbox was created, if known.
    pub created_at: Option<SystemTime>,
}

/// Everything the runtime holds on one node, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Images, in the runtime's order.
    pub images: Vec<Image>,
    /// Containers in any state.
    pub containers: Vec<Container>,
    /// Pod sandboxes in any state.
    pub sandboxes: Vec<PodSandbox>,
    /// The runtime's configured sandbox (pause) image references, in any form.
    pub sandbox_images: Vec<String>,
}

impl Inventory {
    /// The image a free-form string names: a full ID (`sha256:<hex>`), a bare 64-hex or a
    /// unique prefix of at least 12 hex digits of an ID, a repo digest (`repo@sha256:..`,
    /// compared after normalisation), a bare digest matching an ID or a repo digest, or a
    /// name/tag compared after normalisation (`nginx` finds `docker.io/library/nginx:latest`).
    ///
    /// Builds an index on each call; to resolve many strings, use [`Inventory::index`].
    pub fn resolve(&self, reference: &str) -> Option<&ImageId> {
        self.index().resolve(reference)
    }

    /// An index over this inventory's images for repeated resolution and matching.
    pub fn index(&self) -> ImageIndex<'_> {
        ImageIndex::new(self)
    }

    /// The image with exactly this ID.
    pub fn image(&self, id: &ImageId) -> Option<&Image> {
        self.images.iter().find(|image| &image.id == id)
    }
}

/// An image name or repo digest, parsed once; names the parser refuses are kept verbatim and
/// compared literally.
#[derive(Clone, Debug)]
pub(crate) enum ParsedName<'a> {
    /// A name that parsed, with its repository precomputed for prefix and repository matching.
    Parsed {
        reference: ImageRef,
        repository: String,
    },
    /// A name that did not parse.
    Literal(&'a str),
}

impl<'a> ParsedName<'a> {
    fn new(text: &'a str) -> Self {
        match text.parse::<ImageRef>() {
            Ok(reference) => ParsedName::Parsed {
                repository: reference.repository(),
                reference,
            },
            Err(_) => ParsedName::Literal(text),
        }
    }
}

/// An image's names and repo digests, each parsed once.
#[derive(Clone, Debug)]
pub(crate) struct ParsedImage<'a> {
    pub(crate) names: Vec<ParsedName<'a>>,
    pub(crate) digests: Vec<ParsedName<'a>>,
}

impl<'a> ParsedImage<'a> {
    pub(crate) fn new(image: &'a Image) -> Self {
        ParsedImage {
            names: image.names.iter().map(|n| ParsedName::new(n)).collect(),
            digests: image.digests.iter().map(|d| ParsedName::new(d)).collect(),
        }
    }

    /// Names and repo digests together.
    pub(crate) fn all(&self) -> impl Iterator<Item = &ParsedName<'a>> {
        self.names.iter().chain(&self.digests)
    }
}

/// Lookup tables from every form an image can be named by to its position in the inventory.
///
/// Resolution of one string costs one parse and a few hash lookups, whatever the number of
/// images.
#[derive(Debug)]
pub struct ImageIndex<'a> {
    images: &'a [Image],
    parsed: Vec<ParsedImage<'a>>,
    by_id: HashMap<&'a str, Vec<usize>>,
    by_hex: HashMap<&'a str, Vec<usize>>,
    hex_sorted: Vec<(&'a str, usize)>,
    by_name: HashMap<ImageRef, Vec<usize>>,
    by_repo_digest: HashMap<(String, Digest), Vec<usize>>,
    by_digest: HashMap<Digest, Vec<usize>>,
    by_literal: HashMap<&'a str, Vec<usize>>,
}

impl<'a> ImageIndex<'a> {
    /// Parses every image name and digest of `inventory` once.
    pub fn new(inventory: &'a Inventory) -> Self {
        let images = inventory.images.as_slice();
        let mut index = ImageIndex {
            images,
            parsed: Vec::with_capacity(images.len()),
            by_id: HashMap::new(),
            by_hex: HashMap::new(),
            hex_sorted: Vec::with_capacity(images.len()),
            by_name: HashMap::new(),
            by_repo_digest: HashMap::new(),
            by_digest: HashMap::new(),
            by_literal: HashMap::new(),
        };
        for (position, image) in images.iter().enumerate() {
            index
                .by_id
                .entry(image.id.as_str())
                .or_default()
                .push(position);
            index
                .by_hex
                .entry(image.id.hex())
                .or_default()
                .push(position);
            index.hex_sorted.push((image.id.hex(), position));
            let parsed = ParsedImage::new(image);
            for name in &parsed.names {
                match name {
                    ParsedName::Parsed { reference, .. } => {
                        index
                            .by_name
                            .entry(reference.clone())
                            .or_default()
                            .push(position);
                    }
                    ParsedName::Literal(text) => {
                        index.by_literal.entry(text).or_default().push(position);
                    }
                }
            }
            for repo_digest in &parsed.digests {
                match repo_digest {
                    ParsedName::Parsed {
                        reference,
                        repository,
                    } => match reference.digest() {
                        Some(digest) => {
                            index
                                .by_repo_digest
                                .entry((repository.clone(), digest.clone()))
                                .or_default()
                                .push(position);
                            index
                                .by_digest
                                .entry(digest.clone())
                                .or_default()
                                .push(position);
                        }
                        // A "digest" without one is really a tag; let it resolve as a name.
                        None => index
                            .by_name
                            .entry(reference.clone())
                            .or_default()
                            .push(position),
                    },
                    ParsedName::Literal(text) => {
                        index.by_literal.entry(text).or_default().push(position);
                    }
                }
            }
            index.parsed.push(parsed);
        }
        index.hex_sorted.sort_unstable();
        index
    }

    /// The indexed images, in inventory order.
    pub fn images(&self) -> &'a [Image] {
        self.images
    }

    /// The best single match for `reference` (see [`Inventory::resolve`]): an exact ID first,
    /// then digests, then names, then a unique ID prefix.
    pub fn resolve(&self, reference: &str) -> Option<&'a ImageId> {
        self.positions(reference, Resolution::Best)
            .first()
            .map(|&position| &self.images[position].id)
    }

    /// Every image `reference` could name, in inventory order. Used where missing one would be
    /// unsafe (protecting images in use), so ambiguous ID prefixes and duplicate names yield all
    /// their images.
    pub fn resolve_all(&self, reference: &str) -> Vec<&'a ImageId> {
        self.positions(reference, Resolution::All)
            .into_iter()
            .map(|position| &self.images[position].id)
            .collect()
    }

    /// The parsed names of the image at `position`.
    pub(crate) fn parsed(&self, position: usize) -> &ParsedImage<'a> {
        &self.parsed[position]
    }

    /// Positions of the images `reference` names, sorted and without duplicates.
    pub(crate) fn positions(&self, reference: &str, resolution: Resolution) -> Vec<usize> {
        let mut found = Vec::new();
        if reference.is_empty() {
            return found;
        }
        let done = |found: &Vec<usize>| resolution == Resolution::Best && !found.is_empty();
        extend(&mut found, self.by_id.get(reference));
        if done(&found) {
            return found;
        }
        if let Ok(digest) = reference.parse::<Digest>() {
            self.extend_id_digest(&mut found, &digest);
            extend(&mut found, self.by_digest.get(&digest));
        } else if reference.len() == FULL_ID_LEN && is_lower_hex(reference) {
            extend(&mut found, self.by_hex.get(reference));
        } else {
            match reference.parse::<ImageRef>() {
                Ok(parsed) => match parsed.digest() {
                    Some(digest) => {
                        let key = (parsed.repository(), digest.clone());
                        extend(&mut found, self.by_repo_digest.get(&key));
                        self.extend_id_digest(&mut found, digest);
                    }
                    None => extend(&mut found, self.by_name.get(&parsed)),
                },
                Err(_) => extend(&mut found, self.by_literal.get(reference)),
            }
            if done(&found) {
                return found;
            }
            if (SHORT_ID_LEN..FULL_ID_LEN).contains(&reference.len()) && is_lower_hex(reference) {
                let prefixed = self.with_id_prefix(reference);
                let ambiguous = prefixed
                    .windows(2)
                    .any(|pair| self.images[pair[0]].id != self.images[pair[1]].id);
                if resolution == Resolution::All || !ambiguous {
                    found.extend(prefixed);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    fn extend_id_digest(&self, found: &mut Vec<usize>, digest: &Digest) {
        if let Some(positions) = self.by_hex.get(digest.hex()) {
            found.extend(
                positions
                    .iter()
                    .filter(|&&p| self.images[p].id.is_digest(digest)),
            );
        }
    }

    fn with_id_prefix(&self, prefix: &str) -> Vec<usize> {
        let start = self.hex_sorted.partition_point(|(hex, _)| *hex < prefix);
        self.hex_sorted[start..]
            .iter()
            .take_while(|(hex, _)| hex.starts_with(prefix))
            .map(|&(_, position)| position)
            .collect()
    }
}

/// How many images a lookup should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// Only the most specific kind of match, and no ambiguous ID prefix.
    Best,
    /// Every image the string could name.
    All,
}

fn extend(found: &mut Vec<usize>, positions: Option<&Vec<usize>>) {
    if let Some(positions) = positions {
        found.extend(positions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{digest_hex, id, image};

    #[test]
    fn image_id_parts() {
        let full = ImageId::new(format!("sha256:{}", "0123456789ab".repeat(5) + "cdef"));
        assert_eq!(full.hex().len(), 64);
        assert_eq!(full.short(), "0123456789ab");
        assert_eq!(full.to_string(), full.as_str());
        let bare = ImageId::new("abc");
        assert_eq!(bare.hex(), "abc");
        assert_eq!(bare.short(), "abc");
    }

    fn sample() -> Inventory {
        let nginx_digest = format!("docker.io/library/nginx@sha256:{}", digest_hex(1));
        let app_digest = format!("localhost:5000/app@sha256:{}", digest_hex(2));
        Inventory {
            images: vec![
                image(
                    1,
                    &[
                        "docker.io/library/nginx:latest",
                        "docker.io/library/nginx:1.25",
                    ],
                    &[&nginx_digest],
                ),
                image(2, &[], &[&app_digest]),
                image(3, &["quay.io/a/b:v1", "Not A Valid:Name"], &[]),
                // Shares its first 12 hex digits with image 4.
                Image {
                    id: ImageId::new(format!("sha256:abcdefabcdef{}", "1".repeat(52))),
                    ..image(0, &[], &[])
                },
                Image {
                    id: ImageId::new(format!("sha256:abcdefabcdef{}", "2".repeat(52))),
                    ..image(0, &[], &[])
                },
                // CRI-O style bare ID.
                Image {
                    id: ImageId::new("f".repeat(64)),
                    ..image(0, &["registry.k8s.io/pause:3.9"], &[])
                },
            ],
            ..Inventory::default()
        }
    }

    #[test]
    fn resolves_every_form() {
        let inventory = sample();
        let bare_id = "f".repeat(64);
        let cases: Vec<(String, Option<ImageId>)> = vec![
            (id(1).to_string(), Some(id(1))),
            (id(1).hex().to_owned(), Some(id(1))),
            (id(1).short().to_owned(), None), // short prefix shared by ids 1..3 (all zeros)
            (id(2).hex()[..20].to_owned(), None),
            ("nginx".into(), Some(id(1))),
            ("nginx:1.25".into(), Some(id(1))),
            ("docker.io/nginx:latest".into(), Some(id(1))),
            ("nginx:1.26".into(), None),
            (format!("nginx@sha256:{}", digest_hex(1)), Some(id(1))),
            (
                format!("docker.io/library/nginx:1.25@sha256:{}", digest_hex(1)),
                Some(id(1)),
            ),
            (format!("quay.io/other@sha256:{}", digest_hex(1)), None),
            (format!("sha256:{}", digest_hex(1)), Some(id(1))),
            (format!("sha256:{}", digest_hex(2)), Some(id(2))),
            (
                format!("localhost:5000/app@sha256:{}", digest_hex(2)),
                Some(id(2)),
            ),
            (format!("quay.io/x@{}", id(3)), Some(id(3))),
            ("quay.io/a/b:v1".into(), Some(id(3))),
            ("Not A Valid:Name".into(), Some(id(3))),
            ("abcdefabcdef".into(), None),
            ("abcdefabcdef1".into(), Some(inventory.images[3].id.clone())),
            (
                format!("sha256:{bare_id}"),
                Some(ImageId::new(bare_id.clone())),
            ),
            (bare_id.clone(), Some(ImageId::new(bare_id.clone()))),
            (
                "registry.k8s.io/pause:3.9".into(),
                Some(ImageId::new(bare_id.clone())),
            ),
            (String::new(), None),
            ("sha256:zz".into(), None),
        ];
        let index = inventory.index();
        for (reference, expected) in cases {
            assert_eq!(
                index.resolve(&reference),
                expected.as_ref(),
                "{reference:?}"
            );
            assert_eq!(
                inventory.resolve(&reference),
                expected.as_ref(),
                "{reference:?}"
            );
        }
    }

    #[test]
    fn resolve_all_keeps_ambiguous_matches() {
        let inventory = sample();
        let index = inventory.index();
        assert_eq!(
            index.resolve_all("abcdefabcdef"),
            vec![&inventory.images[3].id, &inventory.images[4].id]
        );
        let shared = Inventory {
            images: vec![
                image(1, &["app:1"], &[]),
                image(2, &["docker.io/library/app:1"], &[]),
            ],
            ..Inventory::default()
        };
        assert_eq!(shared.index().resolve_all("app:1"), vec![&id(1), &id(2)]);
        assert_eq!(shared.resolve("app:1"), Some(&id(1)));
    }

    #[test]
    fn container_image_strings_skip_empty() {
        let container = crate::fixtures::container("c", "nginx", ContainerState::Running, "s");
        assert_eq!(container.image_strings().collect::<Vec<_>>(), vec!["nginx"]);
    }
}
