//! Restarts and replicas: a restarted manager adopts the job in flight (no second job, no
//! orphan pods), and of two managers only the leader acts.

use std::time::Duration;

use image_cleaner_api::JobPhase;
use image_cleaner_testkit::Fault;
use kube::ResourceExt;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_manager_adopts_the_job_in_flight() {
    let env = Env::start(&TestConfig {
        delay_on_success: "1s",
        ..TestConfig::default()
    })
    .await;
    let nodes = env.nodes().to_vec();
    // One node's worker stays pending, so the job is still running when the manager dies.
    env.fault(&nodes[2], Fault::PendingForever);
    let start_timeout = Duration::from_secs(12);
    // The first manager is the real binary, as in a pod.
    let mut first = env
        .manager_process("manager-a", &["--worker-start-timeout", "12s"])
        .await;
    env.create_list("imagelist", &[ALPINE]).await;
    let job = wait_for("the job's worker pods", || async {
        let pods = env.worker_pods().await;
        let jobs = env.jobs().await;
        (pods.len() == 3 && jobs.len() == 1).then(|| jobs[0].name_any())
    })
    .await;
    // Killed mid-job (SIGKILL, like an OOM): nothing released, nothing cleaned up.
    first.start_kill().expect("killing the manager");
    first.wait().await.expect("the manager is gone");

    let second = env
        .manager_with("manager-b", |s| s.timeouts.start = start_timeout)
        .await;
    let finished = env.wait_job("the adopted job to end", |_| true).await;
    assert_eq!(finished.name_any(), job, "the same job, adopted");
    let status = finished.status.expect("status");
    assert_eq!((status.succeeded, status.failed), (2, 1), "{status:#?}");
    assert_eq!(status.phase, Some(JobPhase::Failed));
    env.wait_list_done("imagelist", 1).await;
    let metrics = env.metrics(&second).await;
    assert_eq!(
        metric(&metrics, "imagecleaner_jobs_started_total{kind=\"list\"}"),
        None,
        "the second manager started no job: {metrics}"
    );
    // Cleanup deletes the job, and the garbage collector its pods, ConfigMap and template.
    wait_for("the job and its pods to be gone", || async {
        (env.jobs().await.is_empty() && env.worker_pods().await.is_empty()).then_some(())
    })
    .await;
    second.stop().await.expect("the manager stops");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_managers_only_the_leader_acts() {
    let env = Env::start(&TestConfig::default()).await;
    let a = env.manager("manager-a").await;
    let b = env.manager("manager-b").await;
    let leader_of = |metrics: &str| metric(metrics, "imagecleaner_leader");
    let which = wait_for("one leader", || async {
        let la = leader_of(&env.metrics(&a).await);
        let lb = leader_of(&env.metrics(&b).await);
        match (la, lb) {
            (Some(1.0), Some(0.0)) => Some('a'),
            (Some(0.0), Some(1.0)) => Some('b'),
            _ => None,
        }
    })
    .await;
    let (leader, standby) = if which == 'a' { (a, b) } else { (b, a) };
    env.create_list("imagelist", &[ALPINE]).await;
    env.wait_list_done("imagelist", 1).await;
    assert_eq!(env.jobs().await.len(), 1);
    let started = |metrics: &str| metric(metrics, "imagecleaner_jobs_started_total{kind=\"list\"}");
    assert_eq!(started(&env.metrics(&leader).await), Some(1.0));
    assert_eq!(started(&env.metrics(&standby).await), None);

    // The leader goes (releasing the Lease); the other takes over and acts.
    leader.stop().await.expect("the leader stops");
    wait_for("the standby to lead", || async {
        (leader_of(&env.metrics(&standby).await) == Some(1.0)).then_some(())
    })
    .await;
    env.update_list("imagelist", &[NGINX]).await;
    env.wait_list_done("imagelist", 2).await;
    assert_eq!(started(&env.metrics(&standby).await), Some(1.0));
    assert_eq!(env.jobs().await.len(), 2);
    standby.stop().await.expect("the manager stops");
    env.finish().await;
}
