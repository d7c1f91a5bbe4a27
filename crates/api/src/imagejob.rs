//! The status of an ImageJob: Eraser's counters and phase, then what Image Cleaner adds
//! (per-node results, bytes freed, start and completion times, conditions).
//!
//! An ImageJob has no spec (Eraser carries the pod template in a PodTemplate of the same
//! name). Per-node results are bounded ([`MAX_NODE_RESULTS`]) so a job on thousands of
//! nodes stays a small object: failures are kept in preference to successes, and the rest
//! are counted in `nodeResultsOmitted`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most this many nodes are listed in `status.nodes`. Each entry is a few hundred bytes
/// at most, so the list stays under ~64 KiB whatever the cluster size.
pub const MAX_NODE_RESULTS: usize = 100;
/// Longest message kept in a [`NodeResult`], in bytes.
pub const MAX_NODE_MESSAGE_LEN: usize = 256;

/// Condition type: the job finished and reached the success ratio.
pub const CONDITION_COMPLETE: &str = "Complete";
/// Condition type: the job finished below the success ratio.
pub const CONDITION_FAILED: &str = "Failed";

/// Running, Completed (finished at or above the success ratio) or Failed (finished below it),
/// as in Eraser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum JobPhase {
    /// Worker pods exist and not all have finished.
    Running,
    /// Finished, and the success ratio was reached.
    Completed,
    /// Finished below the success ratio.
    Failed,
}

impl JobPhase {
    /// Whether the job is over.
    pub fn is_finished(self) -> bool {
        matches!(self, JobPhase::Completed | JobPhase::Failed)
    }

    /// The name as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobPhase::Running => "Running",
            JobPhase::Completed => "Completed",
            JobPhase::Failed => "Failed",
        }
    }
}

/// How the node's part of the job ended: Succeeded, PartiallyFailed (some removals failed) or
/// Failed (the worker failed, or did not start or finish in time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum NodeOutcome {
    /// The worker finished and every removal it attempted succeeded.
    Succeeded,
    /// The worker finished, but some removals failed.
    PartiallyFailed,
    /// The worker failed, or did not start or finish in time.
    Failed,
}

impl NodeOutcome {
    /// Whether the node counts as failed for the success ratio.
    pub fn is_failure(self) -> bool {
        self == NodeOutcome::Failed
    }

    /// How much a result is worth keeping when the list is full: failures first.
    fn keep_rank(self) -> u8 {
        match self {
            NodeOutcome::Failed => 2,
            NodeOutcome::PartiallyFailed => 1,
            NodeOutcome::Succeeded => 0,
        }
    }
}

/// What happened on one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    /// Node name.
    pub node: String,
    /// How the node's part ended.
    pub outcome: NodeOutcome,
    /// Images removed on the node.
    #[serde(default)]
    pub images_removed: i64,
    /// Bytes freed on the node.
    #[serde(default)]
    pub bytes_freed: i64,
    /// Images found vulnerable on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerable_images: Option<i64>,
    /// Removals that failed on the node.
    #[serde(default)]
    pub removals_failed: i64,
    /// Why the node failed, when it did (cut at 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl NodeResult {
    /// Cuts the message to [`MAX_NODE_MESSAGE_LEN`] bytes on a character boundary.
    fn bounded(mut self) -> NodeResult {
        if let Some(message) = &mut self.message
            && message.len() > MAX_NODE_MESSAGE_LEN
        {
            let mut end = MAX_NODE_MESSAGE_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        self
    }
}

/// Progress and results of the job: Eraser's counters and phase, then totals, per-node
/// results and conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageJobStatus {
    /// Worker pods that failed (or nodes that did not start or finish in time).
    #[serde(default)]
    pub failed: i64,
    /// Worker pods that succeeded.
    #[serde(default)]
    pub succeeded: i64,
    /// Nodes in the cluster when the job started.
    #[serde(default)]
    pub desired: i64,
    /// Nodes skipped by the node filter (and Windows nodes).
    #[serde(default)]
    pub skipped: i64,
    /// Running, Completed or Failed; absent before the job starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,
    /// When the finished job is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after: Option<Time>,
    /// When the first worker pod was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Images removed on all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_removed: Option<i64>,
    /// Bytes freed on all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_freed: Option<i64>,
    /// Images found vulnerable on all nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerable_images: Option<i64>,
    /// Per-node results, at most 100, failures kept first, sorted by node name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["node"]))]
    pub nodes: Vec<NodeResult>,
    /// Node results not listed in `nodes` because of its bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_results_omitted: Option<i64>,
    /// Conditions: `Complete`, `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ImageJobStatus {
    /// Records one node's result and adds it to the job's totals. A node reported again
    /// replaces its earlier result (totals are adjusted). When [`MAX_NODE_RESULTS`] are
    /// listed, a result displaces the least important listed one (a success before a partial
    /// failure before a failure) if it is more important, and is otherwise only counted.
    /// Report each node once: a node whose earlier result was not listed is counted again.
    pub fn record_node(&mut self, result: NodeResult) {
        let result = result.bounded();
        if let Some(index) = self.nodes.iter().position(|n| n.node == result.node) {
            let previous = self.nodes.remove(index);
            self.add_totals(&previous, -1);
        }
        self.add_totals(&result, 1);
        if self.nodes.len() < MAX_NODE_RESULTS {
            self.nodes.push(result);
        } else {
            let weakest = self
                .nodes
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| n.outcome.keep_rank())
                .map(|(index, n)| (index, n.outcome.keep_rank()));
            match weakest {
                Some((index, rank)) if rank < result.outcome.keep_rank() => {
                    self.nodes[index] = result;
                }
                _ => {}
            }
            *self.node_results_omitted.get_or_insert(0) += 1;
        }
        self.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    }

    fn add_totals(&mut self, result: &NodeResult, sign: i64) {
        *self.images_removed.get_or_insert(0) += sign * result.images_removed;
        *self.bytes_freed.get_or_insert(0) += sign * result.bytes_freed;
        if let Some(vulnerable) = result.vulnerable_images {
            *self.vulnerable_images.get_or_insert(0) += sign * vulnerable;
        }
    }

    /// Succeeded plus skipped nodes over desired nodes, as a real ratio (Eraser divides
    /// integers, so any single failure makes its ratio 0). A job with no nodes has ratio 1.
    pub fn success_ratio(&self) -> f64 {
        if self.desired <= 0 {
            return 1.0;
        }
        (self.succeeded + self.skipped) as f64 / self.desired as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(node: &str, outcome: NodeOutcome, removed: i64) -> NodeResult {
        NodeResult {
            node: node.to_owned(),
            outcome,
            images_removed: removed,
            bytes_freed: removed * 1000,
            vulnerable_images: None,
            removals_failed: 0,
            message: None,
        }
    }

    #[test]
    fn totals_follow_recorded_nodes() {
        let mut status = ImageJobStatus::default();
        status.record_node(result("b", NodeOutcome::Succeeded, 2));
        status.record_node(result("a", NodeOutcome::Succeeded, 3));
        assert_eq!(status.images_removed, Some(5));
        assert_eq!(status.bytes_freed, Some(5000));
        status.record_node(result("a", NodeOutcome::Failed, 0));
        assert_eq!(status.images_removed, Some(2));
        let names: Vec<_> = status.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(status.node_results_omitted, None);
    }

    #[test]
    fn a_full_list_keeps_failures() {
        let mut status = ImageJobStatus::default();
        for i in 0..MAX_NODE_RESULTS {
            status.record_node(result(&format!("ok-{i:03}"), NodeOutcome::Succeeded, 1));
        }
        status.record_node(result("late-ok", NodeOutcome::Succeeded, 1));
        status.record_node(result("bad", NodeOutcome::Failed, 0));
        assert_eq!(status.nodes.len(), MAX_NODE_RESULTS);
        assert!(status.nodes.iter().any(|n| n.node == "bad"));
        assert!(!status.nodes.iter().any(|n| n.node == "late-ok"));
        assert_eq!(status.node_results_omitted, Some(2));
        assert_eq!(status.images_removed, Some(MAX_NODE_RESULTS as i64 + 1));
        for i in 0..MAX_NODE_RESULTS {
            status.record_node(result(&format!("bad-{i:03}"), NodeOutcome::Failed, 0));
        }
        assert!(
            status
                .nodes
                .iter()
                .all(|n| n.outcome == NodeOutcome::Failed)
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let mut status = ImageJobStatus::default();
        let mut node = result("a", NodeOutcome::Failed, 0);
        node.message = Some("ü".repeat(500));
        status.record_node(node);
        let message = status.nodes[0].message.as_deref().unwrap_or_default();
        assert!(message.len() <= MAX_NODE_MESSAGE_LEN + "…".len());
    }

    #[test]
    fn success_ratio_is_a_real_ratio() {
        let status = ImageJobStatus {
            desired: 273,
            succeeded: 272,
            failed: 1,
            ..Default::default()
        };
        assert!((status.success_ratio() - 272.0 / 273.0).abs() < 1e-12);
        let skipped = ImageJobStatus {
            desired: 4,
            succeeded: 2,
            skipped: 1,
            failed: 1,
            ..Default::default()
        };
        assert_eq!(skipped.success_ratio(), 0.75);
        assert_eq!(ImageJobStatus::default().success_ratio(), 1.0);
    }

    #[test]
    fn eraser_status_reads_without_our_fields() {
        let status: ImageJobStatus = serde_json::from_str(
            r#"{"desired":3,"succeeded":2,"failed":1,"skipped":0,"phase":"Completed",
                "deleteAfter":"2024-01-02T03:04:05Z"}"#,
        )
        .expect("parses");
        assert_eq!(status.phase, Some(JobPhase::Completed));
        assert!(status.delete_after.is_some());
        assert!(status.nodes.is_empty());
    }
}
