//! The engine of Image Cleaner: image references, list patterns, the runtime's inventory as
//! plain data, and the pure removal policy.
//!
//! Everything here is a function of its inputs: no I/O, no clock, no Kubernetes, no gRPC, no
//! async runtime. The CRI client (`image-cleaner-cri`) fills an [`Inventory`]; the node side
//! collects [`References`] from pods and a [`LastSeen`] from its state file; [`plan`] turns
//! them, with a [`Policy`], into one [`Reason`] per image; the caller carries out the removals.
//! This crate must not depend on `kube`, `k8s-openapi`, `tonic` or `tokio`.
//!
//! ```text
//! "nginx" ──ImageRef──> docker.io/library/nginx:latest      (one parser, reference.rs)
//! list entries ──Pattern──> PatternSet                      (pattern.rs)
//! Inventory ──ImageIndex──> running / sandbox / last use    (inventory.rs, usage.rs)
//! PlanInput + Policy ──plan()──> Plan, one reason per image (policy.rs)
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod inventory;
pub mod pattern;
pub mod policy;
pub mod reference;
pub mod usage;

#[cfg(test)]
mod fixtures;

pub use inventory::{
    Container, ContainerState, Image, ImageId, ImageIndex, Inventory, PodSandbox, SandboxState,
};
pub use pattern::{ListKind, Pattern, PatternError, PatternSet};
pub use policy::{Decision, Plan, PlanEntry, PlanInput, Policy, Reason, References, plan};
pub use reference::{Digest, ImageRef, ReferenceError};
pub use usage::{LastSeen, last_use, running_images, sandbox_images};
