//! A scheduled run removes what nothing uses, on every node, and keeps what runs, what a
//! pending pod (behind its init container) needs, the sandbox image and what is excluded;
//! and the next run follows on the wall clock.

use image_cleaner_api::JobPhase;
use image_cleaner_api::constants::{JOB_OWNER_COLLECTOR, JOB_OWNER_LABEL};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_removes_unused_images_and_keeps_the_rest() {
    let env = Env::start(&TestConfig {
        collector: true,
        begin_immediately: true,
        repeat_interval: "15s",
        ..TestConfig::default()
    })
    .await;
    // Eraser's exclusion ConfigMap, as the docs create it.
    let excluded: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "excluded", "namespace": NS,
                     "labels": {"eraser.sh/exclude.list": "true"}},
        "data": {"sample.json": r#"{"excluded": ["mcr.microsoft.com/*"]}"#}
    }))
    .expect("a ConfigMap");
    Api::<ConfigMap>::namespaced(env.admin.clone(), NS)
        .create(&PostParams::default(), &excluded)
        .await
        .expect("creating the exclusion ConfigMap");
    for (i, node) in env.nodes().to_vec().iter().enumerate() {
        env.create_pod(running_pod(&format!("redis-{i}"), node, REDIS))
            .await;
        env.create_pod(pending_pod(&format!("app-{i}"), node, BUSYBOX, APP))
            .await;
    }
    for i in 0..env.nodes().len() {
        env.wait_pod_phase(&format!("redis-{i}"), "Running").await;
        env.wait_init_running(&format!("app-{i}")).await;
    }

    let manager = env.manager("manager-a").await;
    let job = env
        .wait_job("the scheduled job to finish", |job| {
            job.labels().get(JOB_OWNER_LABEL).map(String::as_str) == Some(JOB_OWNER_COLLECTOR)
        })
        .await;
    let status = job.status.clone().expect("status");
    assert_eq!(status.phase, Some(JobPhase::Completed), "{status:#?}");
    assert_eq!((status.desired, status.succeeded, status.failed), (3, 3, 0));
    // alpine, nginx and web (one image, two tags) on each node.
    assert_eq!(status.images_removed, Some(9), "{status:#?}");
    assert!(status.bytes_freed.unwrap_or(0) > 0);
    assert_eq!(status.nodes.len(), 3);

    let nodes = env.nodes().to_vec();
    for node in &nodes {
        let images = env.images_on(node).await;
        for gone in [ALPINE, NGINX, WEB_ONE, WEB_TWO] {
            assert!(!images.contains(gone), "{gone} still on {node}: {images:?}");
        }
        for kept in [REDIS, BUSYBOX, APP, KUBE_PROXY] {
            assert!(
                images.contains(kept),
                "{kept} removed from {node}: {images:?}"
            );
        }
        assert!(
            images.iter().any(|i| i.contains("pause")),
            "the sandbox image was removed from {node}: {images:?}"
        );
    }

    // The workers were Eraser's collector pods, on every node.
    let pods: Vec<_> = env
        .worker_pods()
        .await
        .into_iter()
        .filter(|p| p.labels().get("eraser.sh/imagejob") == Some(&job.name_any()))
        .collect();
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(
            pod.labels().get("eraser.sh/type").map(String::as_str),
            Some("collector")
        );
        assert!(pod.name_any().starts_with("eraser-node-"));
    }

    let metrics = env.metrics(&manager).await;
    assert_eq!(
        metric(&metrics, "images_removed_run_total"),
        Some(9.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "imagecleaner_images_kept_total{reason=\"running\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "imagecleaner_images_kept_total{reason=\"referenced\"}"
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "imagecleaner_images_kept_total{reason=\"excluded\"}"
        ),
        Some(3.0),
        "{metrics}"
    );

    // And the schedule goes on: the next run starts one interval after the previous START
    // (Eraser waits an interval after the previous end).
    let second = wait_for("the next scheduled run", || async {
        env.jobs()
            .await
            .into_iter()
            .find(|j| j.name_any() != job.name_any())
    })
    .await;
    let started = |j: &image_cleaner_api::ImageJob| {
        j.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .expect("created")
    };
    let gap = started(&second).duration_since(started(&job)).as_secs_f64();
    // On time, unless the first run was still going when the second fell due (one job at a
    // time): then right after it.
    let first_end = job
        .status
        .as_ref()
        .and_then(|s| s.completion_time.as_ref())
        .map(|t| t.0.duration_since(started(&job)).as_secs_f64())
        .unwrap_or_default();
    assert!(
        gap >= 14.0 && (gap < 18.0 || first_end >= 15.0),
        "runs {gap} s apart, not 15 s (the first ran {first_end} s)"
    );

    manager.stop().await.expect("the manager stops");
    env.finish().await;
}
