//! Vulnerability scanning of container images for Image Cleaner, natively and offline.
//!
//! Eraser runs Trivy on every node on every run: each node downloads a large database, the
//! scanner needs hundreds of megabytes, and each image's layers are exported and
//! decompressed again. What a scan needs is tiny: the OS release file and the package
//! database. This crate reads just those files from wherever the image already is and
//! matches the installed packages against a compact, compiled copy of the OSV records that
//! the cluster keeps once.
//!
//! ```text
//! fs::{rootfs, overlay, layers, archive}  ─ an image's files (symlinks resolved inside it,
//!                                            whiteouts and opaque directories honoured)
//!   └─> os::detect + packages::read_installed   (os-release; dpkg, apk, rpm databases)
//!         └─> scan::scan  ─ db::Database::lookup(release, source package)
//!                          ─ matching::applies  (version::{debian, apk, rpm} ordering)
//!               └─> ImageScan { findings } ─ ScanPolicy::condemning_ids
//! trivy  ─ the same ImageScan from an external `trivy` run
//! ```
//!
//! Reading containerd's snapshots or content store is the caller's business (the node
//! crate): this crate sees directories and byte streams only, and depends on nothing but
//! `image-cleaner-core` among the project's crates. No async runtime, no network.

#![forbid(unsafe_code)]

pub mod db;
mod error;
pub mod finding;
pub mod fs;
pub mod matching;
pub mod os;
pub mod packages;
pub mod scan;
pub mod trivy;
pub mod version;

pub use db::Database;
pub use error::{Error, Result};
pub use finding::{Finding, Severity, Status};
pub use os::{Family, Os};
pub use scan::{ImageScan, ScanPolicy, scan, wanted};
