//! The report of a node run: what was decided for each image, why, what was removed and
//! what that freed. Its JSON form is a contract other tools read (`node plan|clean -o json`,
//! the worker's log); keep field names and meanings stable.

use image_cleaner_core::{Decision, Reason};
use serde::{Deserialize, Serialize};

/// One node run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The node's name.
    pub node: String,
    /// The runtime that was cleaned.
    pub runtime: RuntimeInfo,
    /// Every image, in the runtime's order.
    pub images: Vec<ImageReport>,
    /// Totals.
    pub summary: Summary,
}

/// The runtime as it identified itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// e.g. `containerd`.
    pub name: String,
    /// e.g. `1.6.20`.
    pub version: String,
    /// e.g. `unix:///run/containerd/containerd.sock`.
    pub endpoint: String,
}

/// What happened to one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReport {
    /// Image ID (config digest).
    pub id: String,
    /// Tags.
    pub names: Vec<String>,
    /// Repo digests.
    pub digests: Vec<String>,
    /// Size as the runtime reports it (shared layers included).
    pub size_bytes: u64,
    /// What removing this image alone frees; `null` where the runtime cannot tell layers.
    pub reclaimable_bytes: Option<u64>,
    /// Keep or remove.
    pub decision: Decision,
    /// Why.
    pub reason: Reason,
    /// Whether it was removed in this run.
    pub removed: bool,
    /// Why removal failed, if it did.
    pub error: Option<String>,
    /// The vulnerability IDs that condemned it, when its reason is `vulnerable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vulnerabilities: Vec<String>,
}

/// Totals of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Images on the node when the run started.
    pub images: usize,
    /// Images decided for removal.
    pub remove: usize,
    /// Images kept.
    pub keep: usize,
    /// Images removed.
    pub removed: usize,
    /// Removals that failed.
    pub failed: usize,
    /// What removing every image decided for removal frees, counting layers that only those
    /// images share; `null` where the runtime cannot tell layers.
    pub reclaimable_bytes: Option<u64>,
    /// Bytes freed, as measured on the runtime after the removals.
    pub freed_bytes: u64,
}

impl Report {
    /// Images kept, counted by reason, in a stable order.
    pub fn kept_by_reason(&self) -> Vec<(Reason, usize)> {
        Reason::ALL
            .iter()
            .filter(|r| r.decision() == Decision::Keep)
            .map(|r| (*r, self.images.iter().filter(|i| i.reason == *r).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
