//! The race between plan and removal, on a real containerd: a container that starts using an
//! image after the plan was made must keep that image.

use std::collections::BTreeMap;
use std::time::Duration;

use image_cleaner_core::{Decision, ListKind, PatternSet, Policy, Reason, References};
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::{Options, Runtime};
use image_cleaner_testkit::fixtures::{APP_1_0, WEB_2};
use image_cleaner_testkit::{Containerd, pods, sample_node};

fn options(remove: &[&str]) -> Options {
    Options {
        node: "race".into(),
        policy: Policy {
            exclusions: PatternSet::default(),
            removal: Some(PatternSet::parse_strict(ListKind::Removal, remove).unwrap()),
            min_unused: Duration::ZERO,
        },
        references: References::default(),
        vulnerable: BTreeMap::new(),
        state_dir: None,
        concurrency: 2,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_started_after_the_plan_keeps_its_image() {
    let containerd = Containerd::start().await.unwrap();
    let node = sample_node(&containerd).await.unwrap();
    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();

    let planned = image_cleaner_node::plan(&runtime, options(&[APP_1_0, WEB_2]))
        .await
        .unwrap();
    let planned_ids: Vec<_> = planned
        .plan()
        .to_remove()
        .map(|e| e.image.id.to_string())
        .collect();
    assert!(planned_ids.contains(&node.app_1_0.id) && planned_ids.contains(&node.web.id));

    // Between plan and removal, a pod starts that uses app:1.0 (by tag, as a user would).
    pods::run_pod(
        &containerd.endpoint(),
        "late",
        "default",
        APP_1_0,
        vec!["/bin/sleep".into(), "3600".into()],
    )
    .await
    .unwrap();

    let report = planned.execute(false).await.unwrap();
    let app = report
        .images
        .iter()
        .find(|i| i.id == node.app_1_0.id)
        .unwrap();
    assert_eq!(app.reason, Reason::Running);
    assert_eq!(app.decision, Decision::Keep);
    assert!(!app.removed);
    let web = report.images.iter().find(|i| i.id == node.web.id).unwrap();
    assert!(web.removed, "the other planned removal still happens");
    assert_eq!(report.summary.removed, 1);

    let left: Vec<String> = containerd
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(left.contains(&node.app_1_0.id));
    assert!(!left.contains(&node.web.id));
    containerd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_removes_nothing() {
    let containerd = Containerd::start().await.unwrap();
    sample_node(&containerd).await.unwrap();
    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let before = containerd.list_images().await.unwrap().len();
    let planned = image_cleaner_node::plan(&runtime, options(&["*"]))
        .await
        .unwrap();
    let report = planned.execute(true).await.unwrap();
    assert!(report.summary.remove >= 4);
    assert_eq!(report.summary.removed, 0);
    assert_eq!(report.summary.freed_bytes, 0);
    assert_eq!(containerd.list_images().await.unwrap().len(), before);
    containerd.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_removal_is_reported_and_does_not_stop_the_others() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let containerd = Containerd::start().await.unwrap();
    let node = sample_node(&containerd).await.unwrap();
    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        call: Duration::from_secs(3),
    };
    let runtime = Runtime::connect(&endpoint, timeouts).await.unwrap();
    let mut opts = options(&[APP_1_0, WEB_2]);
    opts.concurrency = 1;
    let planned = image_cleaner_node::plan(&runtime, opts).await.unwrap();

    // Freeze the runtime for longer than one call's deadline (4.5 s against 3 s): the first
    // removal's re-check times out; the runtime then thaws while the next removal's re-check
    // still has 1.5 s to be answered, so it goes through. The margins are wide on purpose:
    // the suite runs on busy machines.
    let pid = Pid::from_raw(i32::try_from(containerd.pid()).unwrap());
    kill(pid, Signal::SIGSTOP).unwrap();
    let thaw = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        kill(pid, Signal::SIGCONT).unwrap();
    });
    let report = planned.execute(false).await.unwrap();
    thaw.await.unwrap();

    let first = report
        .images
        .iter()
        .find(|i| i.id == node.app_1_0.id)
        .unwrap();
    let second = report.images.iter().find(|i| i.id == node.web.id).unwrap();
    assert!(second.removed, "{second:?}");
    let left: Vec<String> = containerd
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    // The report tells the truth about the first image. Usually its re-check times out, so
    // RemoveImage is never sent and the image stays. On a machine so loaded that the timer
    // fires only after the thaw, RemoveImage itself may time out while the runtime still
    // completes it: the engine then asks the runtime and reports it removed.
    if first.removed {
        assert!(
            !left.contains(&node.app_1_0.id),
            "reported removed but still there"
        );
        assert_eq!((report.summary.failed, report.summary.removed), (0, 2));
    } else {
        let error = first.error.as_deref().unwrap_or_default();
        assert!(error.contains("did not answer"), "{first:?}");
        assert_eq!((report.summary.failed, report.summary.removed), (1, 1));
        if error.starts_with("re-checking containers") {
            assert!(
                left.contains(&node.app_1_0.id),
                "a failure before RemoveImage leaves the image"
            );
        }
    }
    containerd.shutdown().await.unwrap();
}

/// What the engine asks after a failed RemoveImage: whether the runtime still holds the image.
#[tokio::test(flavor = "multi_thread")]
async fn image_status_tells_whether_an_image_is_still_there() {
    let containerd = Containerd::start().await.unwrap();
    let node = sample_node(&containerd).await.unwrap();
    let endpoint: Endpoint = containerd.endpoint().parse().unwrap();
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .unwrap();
    let id = image_cleaner_core::ImageId::new(node.web.id.clone());
    assert!(runtime.cri.image_exists(&id).await.unwrap());
    runtime.cri.remove_image(&id).await.unwrap();
    assert!(!runtime.cri.image_exists(&id).await.unwrap());
    let unknown = image_cleaner_core::ImageId::new(format!("sha256:{}", "e".repeat(64)));
    assert!(!runtime.cri.image_exists(&unknown).await.unwrap());
    containerd.shutdown().await.unwrap();
}
