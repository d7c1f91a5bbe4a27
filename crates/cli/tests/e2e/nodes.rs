//! Which nodes a job runs on, and what happens when a node's worker fails or never starts.

use std::time::Duration;

use image_cleaner_api::{JobPhase, NodeOutcome};
use image_cleaner_testkit::Fault;

use kube::ResourceExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_filter_excludes_and_includes_by_label() {
    let env = Env::start(&TestConfig::default()).await;
    let nodes = env.nodes().to_vec();
    let (labelled, other, windows) = (nodes[1].clone(), nodes[0].clone(), nodes[2].clone());
    env.label_node(&labelled, "eraser.sh/cleanup.filter", "true")
        .await;
    // A Windows node is never cleaned, whatever the filter says.
    env.label_node(&windows, "kubernetes.io/os", "windows")
        .await;
    let manager = env.manager("manager-a").await;

    // exclude (the default): the labelled node is skipped, and the Windows node.
    env.create_list("imagelist", &[ALPINE]).await;
    let list = env.wait_list_done("imagelist", 1).await;
    let status = list.status.expect("status");
    assert_eq!((status.success, status.failed, status.skipped), (1, 0, 2));
    env.wait_images("alpine gone elsewhere", std::slice::from_ref(&other), |i| {
        !i.contains(ALPINE)
    })
    .await;
    assert!(env.images_on(&labelled).await.contains(ALPINE));
    assert!(env.images_on(&windows).await.contains(ALPINE));
    let job = env.jobs().await.into_iter().next().expect("the job");
    let events = env.events_about(&job.name_any()).await;
    assert!(
        events
            .iter()
            .any(|(reason, note)| reason == "WindowsNodesSkipped" && note.contains(&windows)),
        "{events:?}"
    );

    // include: only the labelled node.
    env.set_config(
        &TestConfig {
            filter_type: "include",
            ..TestConfig::default()
        }
        .yaml(),
    )
    .await;
    env.wait_reloads(&manager, "applied", 2.0).await;
    env.update_list("imagelist", &[NGINX]).await;
    let list = env.wait_list_done("imagelist", 2).await;
    let status = list.status.expect("status");
    assert_eq!((status.success, status.failed, status.skipped), (1, 0, 2));
    env.wait_images(
        "nginx gone on the labelled node",
        std::slice::from_ref(&labelled),
        |i| !i.contains(NGINX),
    )
    .await;
    for node in [&other, &windows] {
        assert!(env.images_on(node).await.contains(NGINX), "{node}");
    }
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_and_failed_workers_never_stick_a_job() {
    let env = Env::start(&TestConfig::default()).await;
    let nodes = env.nodes().to_vec();
    let manager = env
        .manager_with("manager-a", |settings| {
            settings.timeouts.start = Duration::from_secs(10);
        })
        .await;

    // A node whose worker never starts: it fails the job (success ratio 1.0) at the deadline.
    env.fault(&nodes[2], Fault::PendingForever);
    env.create_list("imagelist", &[ALPINE]).await;
    let job = env.wait_job("the first job to end", |_| true).await;
    let status = job.status.expect("status");
    assert_eq!(status.phase, Some(JobPhase::Failed), "{status:#?}");
    assert_eq!((status.succeeded, status.failed), (2, 1));
    let stuck = status
        .nodes
        .iter()
        .find(|n| n.node == nodes[2])
        .expect("the stuck node's result");
    assert_eq!(stuck.outcome, NodeOutcome::Failed);
    assert!(
        stuck
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("did not start"),
        "{stuck:?}"
    );
    // Its pod does not linger (it would remove images after the job).
    wait_for("the stuck worker pod to be deleted", || async {
        let pods = env.worker_pods().await;
        (!pods.iter().any(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(nodes[2].as_str())
        }))
        .then_some(())
    })
    .await;
    env.wait_list_done("imagelist", 1).await;

    // One failed node with successRatio 0.5: the job completes.
    env.fault(&nodes[2], Fault::None);
    env.fault(&nodes[1], Fault::FailPods);
    env.set_config(
        &TestConfig {
            success_ratio: 0.5,
            ..TestConfig::default()
        }
        .yaml(),
    )
    .await;
    env.wait_reloads(&manager, "applied", 2.0).await;
    env.update_list("imagelist", &[NGINX]).await;
    let list = env.wait_list_done("imagelist", 2).await;
    let status = list.status.expect("status");
    assert_eq!((status.success, status.failed), (2, 1));
    let jobs = env.jobs().await;
    let second = jobs
        .iter()
        .find(|j| {
            j.status
                .as_ref()
                .is_some_and(|s| s.phase == Some(JobPhase::Completed))
        })
        .expect("the second job completed");
    assert_eq!(second.status.as_ref().map(|s| s.failed), Some(1));
    env.wait_images(
        "nginx gone where the worker ran",
        &[nodes[0].clone(), nodes[2].clone()],
        |i| !i.contains(NGINX),
    )
    .await;
    let metrics = env.metrics(&manager).await;
    assert_eq!(
        metric(
            &metrics,
            "imagecleaner_node_failures_total{cause=\"start_timeout\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "imagecleaner_node_failures_total{cause=\"worker_failed\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}
