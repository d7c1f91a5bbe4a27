//! Layer tarballs (gzip, zstd or plain), streamed once, keeping only the files a scan needs.
//!
//! When no unpacked snapshot is available the layers themselves must be read, and a
//! compressed layer can only be read front to back. Each layer is therefore parsed on its
//! own into a small [`LayerFiles`] (the wanted files it adds, the paths it deletes, the
//! directories it makes opaque), which does not depend on the other layers and so can be
//! cached by layer digest and shared between images built on the same base. The layers are
//! then merged top-down into a [`FileTree`]; once every wanted path is decided by upper
//! layers, lower layers are not read at all.
//!
//! Within a layer the tar order decides: `var/` sorts after `etc/` and `usr/`, so the dpkg
//! database is usually near the end and a layer holding it is read almost entirely.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read};

use super::{Filesystem, Node, normalize};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Which paths a scan reads: exact files, and directories whose whole content it reads.
#[derive(Clone, Debug, Default)]
pub struct Wanted {
    files: BTreeSet<String>,
    dirs: BTreeSet<String>,
}

impl Wanted {
    /// Files read by exact path and directories read whole (their direct entries).
    pub fn new<'a>(
        files: impl IntoIterator<Item = &'a str>,
        dirs: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Wanted {
            files: files.into_iter().filter_map(normalize).collect(),
            dirs: dirs.into_iter().filter_map(normalize).collect(),
        }
    }

    /// Whether a tar entry at `path` is worth keeping: a wanted file, an entry of a wanted
    /// directory, or anything on the way to one (a symlinked `/var/lib/rpm` must be seen).
    fn keeps(&self, path: &str) -> bool {
        if self.files.contains(path) || self.dirs.contains(path) {
            return true;
        }
        if let Some((parent, _)) = path.rsplit_once('/')
            && self.dirs.contains(parent)
        {
            return true;
        }
        let is_ancestor = |p: &String| {
            p.len() > path.len() && p.starts_with(path) && p.as_bytes()[path.len()] == b'/'
        };
        self.files.iter().any(is_ancestor) || self.dirs.iter().any(is_ancestor)
    }
}

/// One kept entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target.
    Symlink(String),
    /// A hard link to another path of the same layer.
    HardLink(String),
}

/// What one layer contributes, independent of the layers around it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerFiles {
    /// Kept entries by normalised path.
    pub entries: BTreeMap<String, Entry>,
    /// Paths this layer deletes from the layers below.
    pub whiteouts: BTreeSet<String>,
    /// Directories whose lower-layer content this layer hides.
    pub opaque: BTreeSet<String>,
    /// Uncompressed bytes read from the layer.
    pub bytes_read: u64,
}

impl LayerFiles {
    /// Bytes held, for cache budgets.
    pub fn held_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        Entry::File(b) => b.len(),
                        Entry::Symlink(t) | Entry::HardLink(t) => t.len(),
                        Entry::Dir => 0,
                    }
            })
            .sum()
    }
}

/// Compression of a layer stream, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`1f 8b`).
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// An uncompressed tar.
    None,
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let head = buffered.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok((
            Compression::Gzip,
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok((
            Compression::Zstd,
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        ))
    } else {
        Ok((Compression::None, Box::new(buffered)))
    }
}

/// Counts bytes passing through.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads one layer stream (compressed or not) and keeps what `wanted` asks for.
pub fn read_layer(reader: impl Read, wanted: &Wanted) -> io::Result<LayerFiles> {
    let (_, decompressed) = decompress(reader)?;
    let mut counting = Counting {
        inner: decompressed,
        count: 0,
    };
    let mut out = LayerFiles::default();
    {
        let mut archive = tar::Archive::new(&mut counting);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            let Some(path) = normalize(&raw) else {
                continue;
            };
            let (parent, name) = match path.rsplit_once('/') {
                Some((p, n)) => (Some(p), n),
                None => (None, path.as_str()),
            };
            if name == OPAQUE_MARKER {
                out.opaque.insert(parent.unwrap_or_default().to_string());
                continue;
            }
            if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX) {
                let deleted = match parent {
                    Some(p) => format!("{p}/{deleted}"),
                    None => deleted.to_string(),
                };
                out.whiteouts.insert(deleted);
                continue;
            }
            if !wanted.keeps(&path) {
                continue;
            }
            let kind = entry.header().entry_type();
            let kept = if kind.is_dir() {
                Entry::Dir
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()?
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Entry::Symlink(target)
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name()?
                    .and_then(|t| normalize(&t.to_string_lossy()))
                    .unwrap_or_default();
                Entry::HardLink(target)
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                entry.read_to_end(&mut bytes)?;
                Entry::File(bytes)
            } else {
                continue;
            };
            out.entries.insert(path, kept);
        }
    }
    // Drain what the tar reader left (padding, trailing blocks) so the count is the layer's.
    io::copy(&mut counting, &mut io::sink())?;
    out.bytes_read = counting.count;
    // Hard links point at files of the same layer: give them the bytes.
    let links: Vec<(String, String)> = out
        .entries
        .iter()
        .filter_map(|(p, e)| match e {
            Entry::HardLink(t) => Some((p.clone(), t.clone())),
            _ => None,
        })
        .collect();
    for (path, target) in links {
        if let Some(Entry::File(bytes)) = out.entries.get(&target).cloned() {
            out.entries.insert(path, Entry::File(bytes));
        }
    }
    Ok(out)
}

/// The merged view of an image's layers, restricted to the wanted paths.
#[derive(Clone, Debug, Default)]
pub struct FileTree {
    name: String,
    entries: BTreeMap<String, Entry>,
    /// Paths (and everything under them) that upper layers deleted or made opaque, for the
    /// layers not merged yet.
    hidden: BTreeSet<String>,
}

impl FileTree {
    /// An empty tree; add layers top first with [`FileTree::add_lower`].
    pub fn new(name: impl Into<String>) -> Self {
        FileTree {
            name: name.into(),
            ..Default::default()
        }
    }

    fn is_hidden(&self, path: &str) -> bool {
        let mut prefix = path;
        loop {
            if self.hidden.contains(prefix) {
                return true;
            }
            match prefix.rsplit_once('/') {
                Some((parent, _)) => prefix = parent,
                None => return false,
            }
        }
    }

    /// Whether an upper layer already put a non-directory on the way to `path`.
    fn shadowed(&self, path: &str) -> bool {
        let mut prefix = path;
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if matches!(self.entries.get(parent), Some(e) if *e != Entry::Dir) {
                return true;
            }
            prefix = parent;
        }
        false
    }

    /// Merges the next lower layer under what is there.
    pub fn add_lower(&mut self, layer: &LayerFiles) {
        for (path, entry) in &layer.entries {
            if self.entries.contains_key(path) || self.is_hidden(path) || self.shadowed(path) {
                continue;
            }
            self.entries.insert(path.clone(), entry.clone());
        }
        // This layer's deletions apply to the layers below it only.
        self.hidden.extend(layer.whiteouts.iter().cloned());
        self.hidden.extend(layer.opaque.iter().cloned());
        // A file or link in this layer hides a directory of the same name below.
        for (path, entry) in &layer.entries {
            if *entry != Entry::Dir {
                self.hidden.insert(path.clone());
            }
        }
    }

    /// Whether the layers merged so far decide every wanted path, so lower layers cannot
    /// change what a scan reads.
    pub fn decides(&self, wanted: &Wanted) -> bool {
        wanted
            .files
            .iter()
            .all(|f| self.entries.contains_key(f) || self.is_hidden(f) || self.shadowed(f))
            && wanted
                .dirs
                .iter()
                .all(|d| self.is_hidden(d) || self.shadowed(d))
    }
}

impl Filesystem for FileTree {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn lookup(&self, path: &str) -> io::Result<Node> {
        Ok(match self.entries.get(path) {
            Some(Entry::File(_)) => Node::File,
            Some(Entry::Dir) => Node::Dir,
            Some(Entry::Symlink(t)) => Node::Symlink(t.clone()),
            Some(Entry::HardLink(_)) => Node::Missing,
            None => {
                // Parent directories of kept entries need not have been kept themselves.
                let prefix = format!("{path}/");
                if self
                    .entries
                    .range(prefix.clone()..)
                    .next()
                    .is_some_and(|(k, _)| k.starts_with(&prefix))
                {
                    Node::Dir
                } else {
                    Node::Missing
                }
            }
        })
    }

    fn read_literal(&self, path: &str) -> io::Result<Vec<u8>> {
        match self.entries.get(path) {
            Some(Entry::File(bytes)) => Ok(bytes.clone()),
            _ => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            )),
        }
    }

    fn list_literal(&self, path: &str) -> io::Result<Vec<String>> {
        let prefix = format!("{path}/");
        let names: BTreeSet<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k[prefix.len()..].split('/').next().map(str::to_string))
            .collect();
        Ok(names.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{list, read};
    use std::io::Write as _;

    fn tar(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in entries {
            let mut header = tar::Header::new_gnu();
            match contents {
                Some(text) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(text.len() as u64);
                    header.set_mode(0o644);
                    builder
                        .append_data(&mut header, path, text.as_bytes())
                        .unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    builder.append_data(&mut header, path, io::empty()).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn wanted() -> Wanted {
        Wanted::new(
            ["etc/os-release", "var/lib/dpkg/status"],
            ["var/lib/dpkg/status.d"],
        )
    }

    #[test]
    fn merges_layers_top_down_with_whiteouts_and_opaque_dirs() {
        let base = tar(&[
            ("etc/", None),
            ("etc/os-release", Some("ID=debian\n")),
            ("usr/bin/big", Some("ignored")),
            ("var/lib/dpkg/status", Some("Package: a\n")),
            ("var/lib/dpkg/status.d/a", Some("A")),
            ("var/lib/dpkg/status.d/b", Some("B")),
        ]);
        let mid = tar(&[
            ("var/lib/dpkg/.wh.status", Some("")),
            ("var/lib/dpkg/status.d/.wh.a", Some("")),
        ]);
        let top = tar(&[
            ("var/lib/dpkg/status.d/.wh..wh..opq", Some("")),
            ("var/lib/dpkg/status.d/c", Some("C")),
        ]);
        let zstd_mid = zstd::encode_all(mid.as_slice(), 3).unwrap();
        let layers = [
            read_layer(top.as_slice(), &wanted()).unwrap(),
            read_layer(zstd_mid.as_slice(), &wanted()).unwrap(),
            read_layer(gzip(&base).as_slice(), &wanted()).unwrap(),
        ];
        assert!(!layers[2].entries.contains_key("usr/bin/big"));
        assert_eq!(layers[2].bytes_read, base.len() as u64);
        let mut tree = FileTree::new("test");
        for layer in &layers {
            tree.add_lower(layer);
        }
        assert_eq!(
            read(&tree, "etc/os-release").unwrap().unwrap(),
            b"ID=debian\n"
        );
        assert!(read(&tree, "var/lib/dpkg/status").unwrap().is_none());
        assert_eq!(list(&tree, "var/lib/dpkg/status.d").unwrap(), ["c"]);
    }

    #[test]
    fn stops_when_upper_layers_decide_everything() {
        let top = tar(&[
            ("etc/os-release", Some("ID=debian\n")),
            ("var/lib/dpkg/status", Some("Package: a\n")),
            ("var/lib/dpkg/status.d/.wh..wh..opq", Some("")),
        ]);
        let mut tree = FileTree::new("test");
        tree.add_lower(&read_layer(top.as_slice(), &wanted()).unwrap());
        assert!(tree.decides(&wanted()));
        let partial = tar(&[("etc/os-release", Some("ID=debian\n"))]);
        let mut tree = FileTree::new("test");
        tree.add_lower(&read_layer(partial.as_slice(), &wanted()).unwrap());
        assert!(!tree.decides(&wanted()));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let garbage = [0x1f, 0x8b, 1, 2, 3, 4, 5];
        assert!(read_layer(garbage.as_slice(), &wanted()).is_err());
    }
}
