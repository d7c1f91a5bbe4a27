//! Errors of the scanner. Each names the image or file it is about, so one line in a report
//! says what could not be read and where.

use std::io;
use std::path::PathBuf;

/// A scanner error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the image could not be read.
    #[error("{image}: cannot read /{path}")]
    ReadFile {
        /// The image or filesystem (e.g. `rootfs /srv/x`, `sha256:ab…`).
        image: String,
        /// The path inside it.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Symbolic links inside the image loop or nest too deep.
    #[error("{image}: too many levels of symbolic links resolving /{path}")]
    SymlinkLoop {
        /// The image.
        image: String,
        /// The path being resolved.
        path: String,
    },
    /// A package database of the image is not in a format this scanner reads.
    #[error("{image}: package database /{path} is unreadable: {reason}")]
    PackageDb {
        /// The image.
        image: String,
        /// The database file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host file (archive, database, layer) could not be opened or read.
    #[error("cannot read {}", path.display())]
    Host {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An image layer could not be decompressed or is not a tar stream.
    #[error("{image}: layer {layer} is unreadable")]
    Layer {
        /// The image.
        image: String,
        /// The layer digest or archive path.
        layer: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An image archive is not an OCI layout or `docker save` archive, or is inconsistent.
    #[error("{}: not a usable image archive: {reason}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The vulnerability database file is damaged or not one.
    #[error("{}: not a usable vulnerability database: {reason}", path.display())]
    CorruptDatabase {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The vulnerability database was written by an incompatible version.
    #[error("{}: vulnerability database format {found} is not supported (this build reads {supported}); rebuild it with `imagecleaner db build`", path.display())]
    DatabaseVersion {
        /// The database file.
        path: PathBuf,
        /// The format version in the file.
        found: u32,
        /// The format version this build reads.
        supported: u32,
    },
    /// An OSV source record could not be parsed.
    #[error("{source_name}: invalid OSV record")]
    OsvRecord {
        /// The file (or zip member) it came from.
        source_name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The external Trivy scanner could not be used for an image.
    #[error("{image}: trivy: {reason}")]
    Trivy {
        /// The image.
        image: String,
        /// What went wrong (missing binary, non-zero exit with its stderr, bad JSON).
        reason: String,
    },
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadFile { .. } | Error::SymlinkLoop { .. } => "read_file",
            Error::PackageDb { .. } => "package_db",
            Error::Host { .. } => "host_file",
            Error::Layer { .. } => "layer",
            Error::Archive { .. } => "archive",
            Error::CorruptDatabase { .. } | Error::DatabaseVersion { .. } => "database",
            Error::OsvRecord { .. } => "osv_record",
            Error::Trivy { .. } => "trivy",
        }
    }
}

/// Result with the scanner's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
