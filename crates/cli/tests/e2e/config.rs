//! The config: hot reload without a restart, a broken edit that keeps the last good config,
//! a custom runtime socket, and the metrics after a run.

use image_cleaner_api::constants::MANAGER_CONFIG_MAP;
use kube::ResourceExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_apply_at_once_and_a_broken_edit_keeps_the_last_good_config() {
    let env = Env::start(&TestConfig::default()).await;
    let manager = env.manager("manager-a").await;
    env.wait_reloads(&manager, "applied", 1.0).await;

    let labelled = TestConfig {
        additional_pod_labels: [("team".to_string(), "platform".to_string())].into(),
        pull_secrets: vec!["testsecret"],
        ..TestConfig::default()
    };
    env.set_config(&labelled.yaml()).await;
    env.wait_reloads(&manager, "applied", 2.0).await;
    env.create_list("imagelist", &[ALPINE]).await;
    env.wait_list_done("imagelist", 1).await;
    let pods = env.worker_pods().await;
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.labels().get("team").map(String::as_str) == Some("platform"))
    );
    // Eraser's helm_pull_secret test: every worker carries the pull secret.
    assert!(pods.iter().all(|p| {
        p.spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .is_some_and(|secrets| secrets.iter().any(|s| s.name == "testsecret"))
    }));

    // A broken edit: rejected as a whole, said so, and the last good config stays.
    let broken = labelled
        .yaml()
        .replace("repeatInterval: 1h", "repeatInterval: 2 days");
    env.set_config(&broken).await;
    let metrics = env.wait_reloads(&manager, "rejected", 1.0).await;
    assert_eq!(
        metric(&metrics, "imagecleaner_config_last_reload_successful"),
        Some(0.0)
    );
    wait_for("an Event on the ConfigMap", || async {
        env.events_about(MANAGER_CONFIG_MAP)
            .await
            .into_iter()
            .find(|(reason, note)| reason == "InvalidConfig" && note.contains("repeatInterval"))
    })
    .await;
    env.update_list("imagelist", &[NGINX]).await;
    env.wait_list_done("imagelist", 2).await;
    let pods = env.worker_pods().await;
    assert_eq!(pods.len(), 6);
    assert!(
        pods.iter()
            .all(|p| p.labels().get("team").map(String::as_str) == Some("platform")),
        "the last good config was used"
    );
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_runtime_socket_address_works() {
    let socket = "/fake/socket/address.sock";
    let env = Env::start_with(
        &TestConfig {
            runtime_address: format!("unix://{socket}"),
            ..TestConfig::default()
        },
        EnvOptions {
            runtime_socket: Some(socket),
            ..EnvOptions::default()
        },
    )
    .await;
    let manager = env.manager("manager-a").await;
    env.create_list("imagelist", &[ALPINE]).await;
    let list = env.wait_list_done("imagelist", 1).await;
    assert_eq!(list.status.map(|s| (s.success, s.failed)), Some((3, 0)));
    let nodes = env.nodes().to_vec();
    env.wait_images("alpine gone", &nodes, |i| !i.contains(ALPINE))
        .await;
    let pods = env.worker_pods().await;
    let paths: Vec<String> = pods
        .iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| s.volumes.iter().flatten()))
        .filter_map(|v| v.host_path.as_ref().map(|h| h.path.clone()))
        .collect();
    assert!(
        paths.iter().filter(|p| p.as_str() == socket).count() == 3,
        "{paths:?}"
    );
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_run_count_every_node_exactly() {
    let env = Env::start(&TestConfig::default()).await;
    let manager = env.manager("manager-a").await;
    env.create_list("imagelist", &[ALPINE]).await;
    env.wait_list_done("imagelist", 1).await;
    let metrics = wait_for("the job's metrics", || async {
        let metrics = env.metrics(&manager).await;
        metric(&metrics, "images_removed_run_total")
            .is_some_and(|v| v > 0.0)
            .then_some(metrics)
    })
    .await;
    for (name, value) in [
        ("images_removed_run_total", 3.0),
        ("pods_completed_run_total", 3.0),
        ("pods_failed_run_total", 0.0),
        ("imagejob_run_total{phase=\"Completed\",kind=\"list\"}", 1.0),
        ("imagejob_duration_run_seconds_count", 1.0),
        ("vulnerable_images_run_total", 0.0),
        ("imagecleaner_pods_created_total", 3.0),
    ] {
        assert_eq!(metric(&metrics, name), Some(value), "{name} in\n{metrics}");
    }
    assert!(metric(&metrics, "imagecleaner_bytes_freed_total").is_some_and(|b| b > 0.0));
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}
