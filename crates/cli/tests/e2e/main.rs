//! End-to-end tests on the test cluster: 3 nodes, each with its own real containerd, the
//! generated RBAC loaded and enforced, the manager running as its service account, and the
//! real `imagecleaner worker` on every node. The scenarios follow Eraser's e2e suite and the
//! operator guide; each test has its own cluster and ends by asserting that no request was
//! ever forbidden.

mod support;

#[path = "../../../scanner/tests/support/debian.rs"]
mod debian;

mod config;
mod lists;
mod nodes;
mod restart;
mod scanning;
mod scheduled;
