//! A plain root filesystem directory (an unpacked image, a `debootstrap` tree, a mounted
//! container filesystem). Symlinks are never followed by the host: [`super::resolve`] walks
//! them inside the root, so an absolute link cannot reach the scanning machine's files.

use std::io;
use std::path::{Path, PathBuf};

use super::{Filesystem, Node};

/// A directory holding an image's merged filesystem.
#[derive(Clone, Debug)]
pub struct RootDir {
    root: PathBuf,
}

impl RootDir {
    /// The tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RootDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// What a host path is, without following a final symlink.
pub(crate) fn lstat_node(path: &Path) -> io::Result<Node> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            Ok(if kind.is_symlink() {
                Node::Symlink(std::fs::read_link(path)?.to_string_lossy().into_owned())
            } else if kind.is_dir() {
                Node::Dir
            } else if kind.is_file() {
                Node::File
            } else {
                // Devices, fifos, sockets: nothing a scan reads.
                Node::Missing
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Node::Missing),
        Err(e) => Err(e),
    }
}

pub(crate) fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

impl Filesystem for RootDir {
    fn describe(&self) -> String {
        format!("rootfs {}", self.root.display())
    }

    fn lookup(&self, path: &str) -> io::Result<Node> {
        lstat_node(&self.root.join(path))
    }

    fn read_literal(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.root.join(path))
    }

    fn list_literal(&self, path: &str) -> io::Result<Vec<String>> {
        sorted_names(&self.root.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{list, read};

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        // An absolute link must resolve inside the root, not on the host.
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let fs = RootDir::new(root);
        assert_eq!(
            read(&fs, "etc/os-release").unwrap().unwrap(),
            b"ID=debian\n"
        );
        assert_eq!(
            read(&fs, "lib/os-release").unwrap().unwrap(),
            b"ID=debian\n"
        );
        assert_eq!(list(&fs, "lib").unwrap(), ["os-release"]);
        assert!(read(&fs, "etc/missing").unwrap().is_none());
        assert!(read(&fs, "etc/os-release/x").unwrap().is_none());
        let err = read(&fs, "loop").unwrap_err().to_string();
        assert!(
            err.contains("symbolic links") && err.contains("/loop"),
            "{err}"
        );
    }
}
