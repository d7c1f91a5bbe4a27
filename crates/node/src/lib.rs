//! The node engine of Image Cleaner.
//!
//! One run on one node: read the runtime's inventory (images, containers, sandboxes, the
//! sandbox image, and with containerd each image's content), fold in the node-local last-use
//! state, ask the pure policy in `image-cleaner-core` for a plan, then carry it out with
//! bounded concurrency, checking again right before each removal that no container has
//! started using the image meanwhile, and measure what was actually freed.
//!
//! No Kubernetes here: `imagecleaner node plan|clean`, the per-node worker and the demo all
//! drive this crate, each bringing its own lists and pod references.

#![forbid(unsafe_code)]

mod error;
pub mod inventory;
pub mod removal;
pub mod report;
mod run;
pub mod runtime;
pub mod scan;
pub mod state;

pub use error::{Error, Result};
pub use report::{ImageReport, Report, RuntimeInfo, Summary};
pub use run::{Options, PlannedRun, plan};
pub use runtime::Runtime;
