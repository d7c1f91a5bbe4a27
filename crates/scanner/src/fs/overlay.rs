//! Layer directories stacked like overlayfs, read without mounting anything.
//!
//! containerd's overlayfs snapshotter keeps each unpacked layer as a directory; a view of an
//! image is the list of those directories, top layer first (the `lowerdir=` of its mount).
//! Reading a file means finding the topmost layer that has it, while honouring what upper
//! layers deleted: a whiteout is a character device 0:0 named like the deleted entry, and an
//! opaque directory (xattr `trusted.overlay.opaque=y`, or `user.overlay.opaque` for
//! unprivileged overlays) hides everything below it in lower layers. Layer directories that
//! were extracted naively from tarballs keep the tar spelling instead (`.wh.<name>` files and
//! `.wh..wh..opq` markers); both spellings are honoured. No mount is needed, so no
//! `CAP_SYS_ADMIN` for mounting; reading `trusted.*` xattrs does need it, and when that read
//! is refused the directory is taken as not opaque.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::rootfs::{lstat_node, sorted_names};
use super::{Filesystem, Node};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// An image as a stack of layer directories.
#[derive(Debug)]
pub struct Overlay {
    name: String,
    layers: Vec<PathBuf>,
    /// Lookups already made: resolving the wanted paths asks for the same ancestors
    /// (`var`, `var/lib`, `usr/lib`…) over and over.
    looked_up: Mutex<HashMap<String, Node>>,
}

/// What one layer says about one path.
enum InLayer {
    /// The layer has nothing there; look further down.
    Absent,
    /// The layer deletes it (or hides it behind a non-directory ancestor).
    Deleted,
    /// The layer has it.
    Present(Node),
}

impl Overlay {
    /// `layers` top first, as in an overlay `lowerdir=` option. `name` identifies the image
    /// in messages.
    pub fn new(name: impl Into<String>, layers: Vec<PathBuf>) -> Self {
        Overlay {
            name: name.into(),
            layers,
            looked_up: Mutex::new(HashMap::new()),
        }
    }

    /// The layer directories, top first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// Looks `path` up in one layer. Returns the finding and whether the layer hides the
    /// layers below it at `path` (an opaque ancestor or the path itself being opaque).
    fn in_layer(layer: &Path, path: &str) -> io::Result<(InLayer, bool)> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut hides_lower = false;
        for depth in 1..=parts.len() {
            let prefix = parts[..depth].join("/");
            let here = layer.join(&prefix);
            let last = depth == parts.len();
            if tar_whiteout(layer, &parts[..depth])? {
                return Ok((InLayer::Deleted, true));
            }
            let meta = match std::fs::symlink_metadata(&here) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok((InLayer::Absent, hides_lower));
                }
                Err(e) => return Err(e),
            };
            let kind = meta.file_type();
            if kind.is_char_device() && meta.rdev() == 0 {
                return Ok((InLayer::Deleted, true));
            }
            if kind.is_dir() {
                if is_opaque(&here)? {
                    hides_lower = true;
                }
                if last {
                    return Ok((InLayer::Present(Node::Dir), hides_lower));
                }
                continue;
            }
            if !last {
                // A file or link where the path needs a directory hides everything below.
                return Ok((InLayer::Deleted, true));
            }
            return Ok((InLayer::Present(lstat_node(&here)?), true));
        }
        Ok((InLayer::Absent, hides_lower))
    }

    /// The topmost layer holding `path` as a regular file.
    fn file_layer(&self, path: &str) -> io::Result<Option<&Path>> {
        for layer in &self.layers {
            match Self::in_layer(layer, path)? {
                (InLayer::Present(Node::File), _) => return Ok(Some(layer)),
                (InLayer::Present(_) | InLayer::Deleted, _) => return Ok(None),
                (InLayer::Absent, true) => return Ok(None),
                (InLayer::Absent, false) => {}
            }
        }
        Ok(None)
    }
}

/// Whether `layer` holds a tar-style whiteout for the last of `parts`.
fn tar_whiteout(layer: &Path, parts: &[&str]) -> io::Result<bool> {
    let Some((name, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let mut path = layer.to_path_buf();
    path.extend(parents);
    path.push(format!("{WHITEOUT_PREFIX}{name}"));
    match std::fs::symlink_metadata(&path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_opaque(dir: &Path) -> io::Result<bool> {
    for name in OPAQUE_XATTRS {
        match xattr::get(dir, name) {
            Ok(Some(value)) if value.as_slice() == b"y" => return Ok(true),
            Ok(_) => {}
            // Not permitted (no CAP_SYS_ADMIN) or not supported: cannot tell, assume not.
            Err(_) => {}
        }
    }
    Ok(dir.join(OPAQUE_MARKER).exists())
}

impl Filesystem for Overlay {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn lookup(&self, path: &str) -> io::Result<Node> {
        if let Some(node) = self
            .looked_up
            .lock()
            .ok()
            .and_then(|m| m.get(path).cloned())
        {
            return Ok(node);
        }
        let mut found = Node::Missing;
        for layer in &self.layers {
            match Self::in_layer(layer, path)? {
                (InLayer::Present(node), _) => {
                    found = node;
                    break;
                }
                (InLayer::Deleted, _) | (InLayer::Absent, true) => break,
                (InLayer::Absent, false) => {}
            }
        }
        if let Ok(mut memo) = self.looked_up.lock() {
            memo.insert(path.to_string(), found.clone());
        }
        Ok(found)
    }

    fn read_literal(&self, path: &str) -> io::Result<Vec<u8>> {
        match self.file_layer(path)? {
            Some(layer) => std::fs::read(layer.join(path)),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file in any layer",
            )),
        }
    }

    fn list_literal(&self, path: &str) -> io::Result<Vec<String>> {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut deleted: BTreeSet<String> = BTreeSet::new();
        for layer in &self.layers {
            let (found, hides_lower) = Self::in_layer(layer, path)?;
            match found {
                InLayer::Present(Node::Dir) => {
                    let dir = layer.join(path);
                    for name in sorted_names(&dir)? {
                        if name == OPAQUE_MARKER {
                            continue;
                        }
                        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
                            deleted.insert(target.to_string());
                            continue;
                        }
                        if seen.contains(&name) || deleted.contains(&name) {
                            continue;
                        }
                        let meta = std::fs::symlink_metadata(dir.join(&name))?;
                        if meta.file_type().is_char_device() && meta.rdev() == 0 {
                            deleted.insert(name);
                        } else {
                            seen.insert(name);
                        }
                    }
                }
                InLayer::Present(_) | InLayer::Deleted => break,
                InLayer::Absent => {}
            }
            if hides_lower {
                break;
            }
        }
        Ok(seen.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{list, read};

    fn write(path: PathBuf, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Tar-spelled whiteouts and opaque markers in plain directories (the device and xattr
    /// spellings are exercised against real containerd snapshots in the integration tests).
    #[test]
    fn upper_layers_win_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (top, mid, base) = (
            dir.path().join("3"),
            dir.path().join("2"),
            dir.path().join("1"),
        );
        write(base.join("etc/os-release"), "ID=debian\n");
        write(base.join("etc/gone"), "x");
        write(base.join("var/lib/dpkg/status.d/a"), "A");
        write(base.join("var/lib/dpkg/status.d/b"), "B");
        write(base.join("opt/app/old"), "old");
        write(mid.join("etc/.wh.gone"), "");
        write(mid.join("var/lib/dpkg/status.d/c"), "C");
        write(mid.join("var/lib/dpkg/status.d/.wh.a"), "");
        write(top.join("etc/os-release"), "ID=alpine\n");
        write(top.join("opt/app/.wh..wh..opq"), "");
        write(top.join("opt/app/new"), "new");
        let fs = Overlay::new("test", vec![top, mid, base]);
        assert_eq!(
            read(&fs, "etc/os-release").unwrap().unwrap(),
            b"ID=alpine\n"
        );
        assert!(read(&fs, "etc/gone").unwrap().is_none());
        assert_eq!(list(&fs, "var/lib/dpkg/status.d").unwrap(), ["b", "c"]);
        assert!(read(&fs, "var/lib/dpkg/status.d/a").unwrap().is_none());
        assert_eq!(list(&fs, "opt/app").unwrap(), ["new"]);
        assert!(read(&fs, "opt/app/old").unwrap().is_none());
    }
}
