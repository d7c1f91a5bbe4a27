//! Lists: the seed's lists as written, Eraser's `imagelist` with `*`, tag aliases, and a
//! changed list starting a new job.

use std::time::Duration;

use image_cleaner_api::{JobPhase, ListAction, RoleSource};
use kube::ResourceExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_lists_act_as_written() {
    let env = Env::start(&TestConfig::default()).await;
    // As in the how-to: exclusions first, then the list of images to remove.
    env.create_list("excluded-images", &[KUBE_PROXY]).await;
    env.create_list("prepulled-exclusions", &[NGINX]).await;
    env.create_list("vulnerable-images", &[ALPINE, NGINX, KUBE_PROXY, "bad:*:*"])
        .await;
    // An exclusion list by its label, whose name alone would make it a removal list.
    env.create_list("held-images", &[REDIS]).await;
    env.label_list("held-images", Some("true")).await;
    let manager = env.manager("manager-a").await;

    let list = env.wait_list_done("vulnerable-images", 1).await;
    let status = list.status.clone().expect("status");
    assert_eq!((status.success, status.failed, status.skipped), (3, 0, 0));
    assert_eq!(status.action, Some(ListAction::Remove));
    assert_eq!(status.action_source, Some(RoleSource::Name));
    assert_eq!(status.malformed_count, Some(1), "{status:#?}");
    let nodes = env.nodes().to_vec();
    env.wait_images("alpine gone, the excluded images kept", &nodes, |images| {
        !images.contains(ALPINE) && images.contains(NGINX) && images.contains(KUBE_PROXY)
    })
    .await;
    for name in ["excluded-images", "prepulled-exclusions"] {
        let list = wait_for(&format!("{name} to be resolved"), || async {
            let list = env.list(name).await?;
            list.status.as_ref()?.action.is_some().then_some(list)
        })
        .await;
        let status = list.status.expect("status");
        assert_eq!(status.action, Some(ListAction::Exclude), "{name}");
        assert_eq!(status.action_source, Some(RoleSource::Name), "{name}");
    }
    // The role inferred from each name is announced; the malformed entry too.
    wait_for("the Events about the lists", || async {
        let events = env.events_about("vulnerable-images").await;
        let inferred = events.iter().any(|(reason, _)| reason == "RoleInferred");
        let malformed = events
            .iter()
            .any(|(reason, note)| reason == "MalformedEntries" && note.contains("bad:*:*"));
        let excluded = env
            .events_about("prepulled-exclusions")
            .await
            .iter()
            .any(|(reason, note)| reason == "RoleInferred" && note.contains("exclusion"));
        (inferred && malformed && excluded).then_some(())
    })
    .await;

    // The label goes: the same generation, now a removal list that has never run; it runs.
    let held = env.list("held-images").await.expect("held-images");
    assert_eq!(
        held.status.as_ref().and_then(|s| s.action),
        Some(ListAction::Exclude)
    );
    assert!(env.images_on(&nodes[0]).await.contains(REDIS));
    env.label_list("held-images", None).await;
    let list = env.wait_list_done("held-images", 1).await;
    let status = list.status.clone().expect("status");
    assert_eq!(status.action, Some(ListAction::Remove), "{status:#?}");
    env.wait_images(
        "redis removed once its list became a removal list",
        &nodes,
        |images| !images.contains(REDIS),
    )
    .await;
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasers_imagelist_with_a_star_removes_every_image_not_running() {
    let env = Env::start(&TestConfig::default()).await;
    for (i, node) in env.nodes().to_vec().iter().enumerate() {
        env.create_pod(running_pod(&format!("redis-{i}"), node, REDIS))
            .await;
    }
    for i in 0..env.nodes().len() {
        env.wait_pod_phase(&format!("redis-{i}"), "Running").await;
    }
    let manager = env.manager("manager-a").await;
    env.create_list("imagelist", &["*"]).await;
    let list = env.wait_list_done("imagelist", 1).await;
    assert_eq!(list.status.as_ref().map(|s| s.success), Some(3));
    let nodes = env.nodes().to_vec();
    env.wait_images(
        "only the running image and the sandbox left",
        &nodes,
        |images| {
            images.contains(REDIS)
                && images.iter().any(|i| i.contains("pause"))
                && [ALPINE, NGINX, BUSYBOX, APP, KUBE_PROXY, WEB_ONE, WEB_TWO]
                    .iter()
                    .all(|gone| !images.contains(*gone))
        },
    )
    .await;
    let pods = env.worker_pods().await;
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| p.labels().get("eraser.sh/type").map(String::as_str) == Some("manual"))
    );
    // The list ran once: an unchanged list does not start another job.
    never(
        "a second job for an unchanged list",
        Duration::from_secs(2),
        || async { env.jobs().await.len() > 1 },
    )
    .await;
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_aliases_go_together_and_a_changed_list_starts_a_new_job() {
    let env = Env::start(&TestConfig::default()).await;
    let manager = env.manager("manager-a").await;
    let nodes = env.nodes().to_vec();
    // One tag of an image with two names: the image goes, under both names.
    env.create_list("imagelist", &[WEB_TWO]).await;
    env.wait_list_done("imagelist", 1).await;
    env.wait_images("both web tags gone, alpine kept", &nodes, |images| {
        !images.contains(WEB_ONE) && !images.contains(WEB_TWO) && images.contains(ALPINE)
    })
    .await;
    // Changing the list starts a new job.
    env.update_list("imagelist", &[ALPINE]).await;
    env.wait_list_done("imagelist", 2).await;
    env.wait_images("alpine gone", &nodes, |images| !images.contains(ALPINE))
        .await;
    let jobs = env.jobs().await;
    assert_eq!(jobs.len(), 2, "one job per generation");
    assert!(
        jobs.iter()
            .all(|j| j.status.as_ref().and_then(|s| s.phase) == Some(JobPhase::Completed))
    );
    manager.stop().await.expect("the manager stops");
    env.finish().await;
}
