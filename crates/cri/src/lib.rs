//! Container runtime client for Image Cleaner.
//!
//! Speaks CRI v1 over a node-local unix socket (containerd, CRI-O, cri-dockerd or any custom
//! address such as k3s or MicroK8s) and, when the runtime is containerd, its own API on the
//! same socket for what CRI does not say: which content blobs and snapshots each image holds
//! (so a plan can state what a removal really frees) and when an image was pulled.
//!
//! Every call has a deadline: a missing, hung or non-CRI socket is an error naming the
//! endpoint, never a hang. Answers are converted to `image-cleaner-core` types at this
//! boundary, so nothing above this crate sees tonic or protobuf types.

#![forbid(unsafe_code)]

mod client;
pub mod containerd;
pub mod endpoint;
mod error;
mod oci;
pub mod snapshots;

pub use client::{Client, ContainerTimes, RuntimeVersion, Timeouts};
pub use endpoint::Endpoint;
pub use error::{Error, Result};

/// Re-exported so test support can drive the runtime with the same generated types.
pub use k8s_cri::v1 as proto;
