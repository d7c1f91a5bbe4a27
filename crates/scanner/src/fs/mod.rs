//! An image's files, wherever they are: a plain root directory, containerd's unpacked
//! overlay snapshots, layer tarballs streamed from a content store, or an image archive.
//!
//! A scan needs only a handful of files (release files and package databases), so every
//! source answers three questions about one literal path: what is there ([`Node`]), its
//! bytes, and a directory's names. Symbolic links are resolved here, inside the image, never
//! on the host: `etc/os-release -> ../usr/lib/os-release` and `/lib -> usr/lib` must not
//! escape to the scanning machine's own files.

pub mod archive;
pub mod layers;
pub mod overlay;
pub mod rootfs;

use crate::{Error, Result};

/// Symbolic links followed while resolving one path before giving up (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// What a literal path (no symlink followed in its last component) names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// Nothing, or a deleted (whited-out) entry.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link with its target.
    Symlink(String),
}

/// A read-only view of one image's merged filesystem. Paths are relative to the image root,
/// `/`-separated, without `.` or `..` components; callers use [`read`] and [`list`], which
/// resolve symbolic links first.
pub trait Filesystem {
    /// Names the image for messages (`rootfs /srv/root`, `sha256:…`).
    fn describe(&self) -> String;

    /// What `path` names, not following a symlink in its last component. Ancestors are
    /// directories in the merged view when this is called.
    fn lookup(&self, path: &str) -> std::io::Result<Node>;

    /// The bytes of the regular file at literal `path`.
    fn read_literal(&self, path: &str) -> std::io::Result<Vec<u8>>;

    /// The names in the directory at literal `path`, sorted, whiteouts applied.
    fn list_literal(&self, path: &str) -> std::io::Result<Vec<String>>;
}

/// Splits a path into normal components.
fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Resolves every symlink in `path` inside the image. `Ok(None)` when something on the way
/// is missing or not a directory.
pub fn resolve(fs: &dyn Filesystem, path: &str) -> Result<Option<(String, Node)>> {
    let io_error = |source| Error::ReadFile {
        image: fs.describe(),
        path: path.to_string(),
        source,
    };
    let mut pending: Vec<String> = components(path).rev().map(str::to_string).collect();
    let mut resolved: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut last = Node::Dir;
    while let Some(component) = pending.pop() {
        if component == ".." {
            resolved.pop();
            last = Node::Dir;
            continue;
        }
        if !matches!(last, Node::Dir) {
            return Ok(None);
        }
        resolved.push(component);
        let here = resolved.join("/");
        match fs.lookup(&here).map_err(io_error)? {
            Node::Missing => return Ok(None),
            Node::Symlink(target) => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(Error::SymlinkLoop {
                        image: fs.describe(),
                        path: path.to_string(),
                    });
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(components(&target).rev().map(str::to_string));
                last = Node::Dir;
            }
            node => last = node,
        }
    }
    Ok(Some((resolved.join("/"), last)))
}

/// The bytes of the regular file at `path`, following symlinks inside the image; `None` if
/// there is none (missing or deleted). A directory where a file is expected is an error: the
/// file is there but cannot be read as one.
pub fn read(fs: &dyn Filesystem, path: &str) -> Result<Option<Vec<u8>>> {
    let error = |source| Error::ReadFile {
        image: fs.describe(),
        path: path.to_string(),
        source,
    };
    match resolve(fs, path)? {
        Some((literal, Node::File)) => fs.read_literal(&literal).map(Some).map_err(error),
        Some((_, Node::Dir)) => Err(error(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory, not a file",
        ))),
        _ => Ok(None),
    }
}

/// The names in directory `path`, following symlinks; empty if it is not a directory.
pub fn list(fs: &dyn Filesystem, path: &str) -> Result<Vec<String>> {
    match resolve(fs, path)? {
        Some((literal, Node::Dir)) => fs.list_literal(&literal).map_err(|source| Error::ReadFile {
            image: fs.describe(),
            path: path.to_string(),
            source,
        }),
        _ => Ok(Vec::new()),
    }
}

/// Normalises a tar or user path to the form [`Filesystem`] uses: no leading `/` or `./`,
/// no `.` components, `..` applied. `None` for the root itself or paths escaping it.
pub fn normalize(path: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in components(path) {
        if c == ".." {
            out.pop()?;
        } else {
            out.push(c);
        }
    }
    (!out.is_empty()).then(|| out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_tar_paths() {
        assert_eq!(
            normalize("./etc/os-release").as_deref(),
            Some("etc/os-release")
        );
        assert_eq!(
            normalize("/var//lib/./dpkg/").as_deref(),
            Some("var/lib/dpkg")
        );
        assert_eq!(normalize("a/../b").as_deref(), Some("b"));
        assert_eq!(normalize("./"), None);
        assert_eq!(normalize("../x"), None);
    }
}
