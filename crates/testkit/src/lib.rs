//! Test support for Image Cleaner: a private, real containerd, real OCI images, and a loopback
//! test cluster built on them.
//!
//! The cleaner's whole job is deciding what a container runtime may delete, so its tests must
//! face a real runtime: one whose `ListImages` reports real sizes and digests, whose
//! `RemoveImage` really frees shared and unshared layers, and whose running containers really
//! pin images. Mocks would only encode our own assumptions. This crate therefore
//!
//! - starts a private `containerd` per test ([`Containerd`]) with every path under one
//!   temporary directory, and tears it down completely (containers, shims, mounts, files);
//! - builds OCI image-layout archives in Rust ([`oci`]) with deterministic layers, so images
//!   built separately share base layers bit for bit, and imports them (no registry is needed);
//! - makes the CRI sandbox ("pause") image from a tiny static C program ([`pause`]);
//! - runs real pods and containers through CRI ([`pods`]);
//! - assembles a small sample node that tests and the `imagecleaner-devnode` demo share
//!   ([`fixtures`]);
//! - serves a loopback Kubernetes API faithful to the API conventions, with RBAC
//!   ([`apiserver`]), runs a fake kubelet per node over that node's real containerd
//!   ([`kubelet`]), and puts both together as a whole test cluster ([`TestCluster`], also
//!   started by hand with `imagecleaner-testcluster`).
//!
//! It needs root, `containerd`, `runc`, `ctr`, `gcc` (with a static libc) and a static
//! `/bin/busybox`. It is a dev-dependency only and never ships. Temporary files go under
//! `$IMAGECLEANER_TEST_TMP` when set, else the system temporary directory.
//!
//! Every wait has a deadline, and waits poll a condition rather than sleep a fixed time.

#![forbid(unsafe_code)]

pub mod apiserver;
pub mod cluster;
pub mod containerd;
mod cri;
pub mod fixtures;
pub mod kubelet;
pub mod oci;
pub mod pause;
pub mod pods;
mod procs;

pub use apiserver::{ApiServer, Forbidden, ServerOptions, UserInfo};
pub use cluster::{ClusterNode, ClusterOptions, TestCluster};
pub use containerd::{Containerd, Options};
pub use fixtures::{SampleNode, sample_node};
pub use kubelet::{Fault, LocalImage};
pub use oci::{BuiltImage, FileEntry, ImageSpec, Layer};
pub use pods::{RunningPod, Sandbox};

use std::path::PathBuf;

/// Environment variable naming the directory for temporary files (default: the system's).
pub const TMP_ENV: &str = "IMAGECLEANER_TEST_TMP";

/// The directory under which temporary directories and caches are made.
pub fn temp_base() -> PathBuf {
    match std::env::var_os(TMP_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir(),
    }
}
