//! Which nodes a job runs on: Eraser's node filter (`exclude`/`include` label selectors, with
//! `eraser.sh/cleanup.filter` always one of them), Windows nodes never (and said so), nodes
//! being deleted never.

use std::collections::BTreeMap;

use image_cleaner_api::config::NodeFilterConfig;
use image_cleaner_api::constants::{NODE_OS_LABEL, NODE_OS_WINDOWS};
use k8s_openapi::api::core::v1::Node;

/// What the manager keeps of a node: enough to filter it, nothing more (a Node's status can
/// be large, and a cluster can have thousands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `status.nodeInfo.operatingSystem`, when reported.
    pub os: Option<String>,
    /// Whether the node is being deleted.
    pub deleting: bool,
}

impl From<Node> for NodeInfo {
    fn from(node: Node) -> NodeInfo {
        NodeInfo {
            name: node.metadata.name.unwrap_or_default(),
            labels: node.metadata.labels.unwrap_or_default(),
            os: node
                .status
                .and_then(|status| status.node_info)
                .map(|info| info.operating_system),
            deleting: node.metadata.deletion_timestamp.is_some(),
        }
    }
}

impl NodeInfo {
    fn is_windows(&self) -> bool {
        self.labels.get(NODE_OS_LABEL).map(String::as_str) == Some(NODE_OS_WINDOWS)
            || self.os.as_deref() == Some(NODE_OS_WINDOWS)
    }
}

/// The nodes of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Every node (Eraser's `desired`).
    pub total: usize,
    /// Nodes that get a worker, sorted.
    pub eligible: Vec<String>,
    /// Nodes left out by the node filter (or being deleted).
    pub filtered: Vec<String>,
    /// Windows nodes, left out always.
    pub windows: Vec<String>,
}

impl Selection {
    /// Nodes skipped for any reason (Eraser's `skipped`).
    pub fn skipped(&self) -> usize {
        self.filtered.len() + self.windows.len()
    }
}

/// Splits the nodes by the filter.
pub fn select(nodes: &[NodeInfo], filter: &NodeFilterConfig) -> Selection {
    let mut selection = Selection {
        total: nodes.len(),
        ..Selection::default()
    };
    for node in nodes {
        if node.name.is_empty() {
            continue;
        }
        if node.is_windows() {
            selection.windows.push(node.name.clone());
        } else if node.deleting || !filter.admits(&node.labels) {
            selection.filtered.push(node.name.clone());
        } else {
            selection.eligible.push(node.name.clone());
        }
    }
    selection.eligible.sort();
    selection.filtered.sort();
    selection.windows.sort();
    selection
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::config::NodeFilterType;
    use image_cleaner_api::constants::CLEANUP_FILTER_LABEL;

    use super::*;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            os: None,
            deleting: false,
        }
    }

    fn filter(kind: NodeFilterType, selectors: &[&str]) -> NodeFilterConfig {
        NodeFilterConfig {
            filter_type: kind,
            selectors: selectors
                .iter()
                .map(|s| s.parse().expect("selector"))
                .collect(),
        }
    }

    #[test]
    fn exclude_and_include_with_the_cleanup_label_always_added() {
        let nodes = vec![
            node("a", &[]),
            node("b", &[(CLEANUP_FILTER_LABEL, "true")]),
            node("c", &[("pool", "gpu")]),
            node("w", &[(NODE_OS_LABEL, NODE_OS_WINDOWS)]),
        ];
        let excluded = select(&nodes, &filter(NodeFilterType::Exclude, &["pool=gpu"]));
        assert_eq!(excluded.eligible, vec!["a"]);
        assert_eq!(excluded.filtered, vec!["b", "c"]);
        assert_eq!(excluded.windows, vec!["w"]);
        assert_eq!((excluded.total, excluded.skipped()), (4, 3));

        // Include: only nodes matching a selector, the cleanup label among them, and never
        // Windows even when it matches.
        let included = select(&nodes, &filter(NodeFilterType::Include, &[]));
        assert_eq!(included.eligible, vec!["b"]);
        let mut windows_labelled = nodes.clone();
        windows_labelled[3]
            .labels
            .insert(CLEANUP_FILTER_LABEL.into(), "true".into());
        let included = select(&windows_labelled, &filter(NodeFilterType::Include, &[]));
        assert_eq!(included.eligible, vec!["b"]);
        assert_eq!(included.windows, vec!["w"]);
    }

    #[test]
    fn windows_by_reported_os_and_deleting_nodes_are_skipped() {
        let mut windows = node("win", &[]);
        windows.os = Some("windows".into());
        let mut going = node("going", &[]);
        going.deleting = true;
        let selection = select(
            &[windows, going, node("ok", &[])],
            &NodeFilterConfig::default(),
        );
        assert_eq!(selection.eligible, vec!["ok"]);
        assert_eq!(selection.windows, vec!["win"]);
        assert_eq!(selection.filtered, vec!["going"]);
    }
}
