//! One pod's life on a fake node, as kubelet lives it: volumes are made (retried while a
//! ConfigMap or Secret is missing), init containers run one by one, then the containers run
//! together; exits are recorded with their termination message and restarted per
//! `restartPolicy` (with back-off); the phase follows (Pending → Running → Succeeded/Failed).
//! When the pod is deleted its containers are stopped within the grace period (capped, see
//! [`super::KubeletOptions::max_grace`]), the final status is reported, and the pod object is
//! removed (grace 0, UID precondition); then its sandbox and files go.
//!
//! Starting and following each container is [`super::containers`]' part.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::containers::{Ended, StartFailure, supervise};
use super::env::{ConfigError, Sources};
use super::sandbox::CriPod;
use super::status::{ContainerStatus, PodStatus, State};
use super::volumes::{Mounter, PodDir};
use super::{Fault, NodeCtx};

/// What the kubelet tells a pod worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Run,
    /// The pod is being deleted: stop within this many seconds.
    Terminate(u64),
    /// The pod object is gone (or the kubelet stops): kill at once, report nothing.
    Removed,
}

/// How often a blocked step (a missing ConfigMap, a missing image) is retried.
const RETRY: Duration = Duration::from_secs(1);
/// The first restart back-off (doubling up to [`MAX_BACKOFF`]); shorter than kubelet's 10 s so
/// restart tests stay quick.
const BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Worker {
    pub(super) ctx: Arc<NodeCtx>,
    pub(super) pod: Pod,
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) uid: String,
    pub(super) dir: PodDir,
    pub(super) signal: watch::Receiver<Signal>,
    pub(super) status: PodStatus,
    pub(super) cri: Option<CriPod>,
    pub(super) sources: Sources,
    pub(super) volumes: Vec<(String, PathBuf)>,
    pub(super) kubeconfig: Option<PathBuf>,
}

fn spec_containers(pod: &Pod, init: bool) -> Vec<Container> {
    let spec = pod.spec.clone().unwrap_or_default();
    if init {
        spec.init_containers.unwrap_or_default()
    } else {
        spec.containers
    }
}

pub(super) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Worker {
    pub fn new(ctx: Arc<NodeCtx>, pod: Pod, signal: watch::Receiver<Signal>) -> Worker {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dir = PodDir::of(&ctx.pods_root, &namespace, &name, &uid);
        let waiting = |c: &Container, reason: &str| {
            ContainerStatus::waiting(&c.name, c.image.as_deref().unwrap_or(""), reason)
        };
        let init: Vec<ContainerStatus> = spec_containers(&pod, true)
            .iter()
            .map(|c| waiting(c, "PodInitializing"))
            .collect();
        let containers: Vec<ContainerStatus> = spec_containers(&pod, false)
            .iter()
            .map(|c| {
                waiting(
                    c,
                    if init.is_empty() {
                        "ContainerCreating"
                    } else {
                        "PodInitializing"
                    },
                )
            })
            .collect();
        let status = PodStatus {
            phase: "Pending",
            start_time: now(),
            initialized: init.is_empty(),
            init,
            containers,
            reason: None,
            message: None,
        };
        let sources = Sources::new(ctx.client.clone(), &namespace);
        Worker {
            ctx,
            pod,
            name,
            namespace,
            uid,
            dir,
            signal,
            status,
            cri: None,
            sources,
            volumes: Vec::new(),
            kubeconfig: None,
        }
    }

    /// Lives the pod's life, then tears it down.
    pub async fn run(mut self) {
        let terminal = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let end = if terminal {
            self.until_stopped().await
        } else {
            self.live().await
        };
        self.teardown(end).await;
    }

    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    async fn publish(&self) {
        let patch = json!({"status": self.status.to_value(&now())});
        let result = self
            .api()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        if let Err(e) = result {
            tracing::debug!(pod = %self.name, "status update failed: {e}");
        }
    }

    pub(super) fn stopping(&self) -> Option<Signal> {
        let signal = *self.signal.borrow();
        (signal != Signal::Run).then_some(signal)
    }

    /// Waits until the pod is deleted.
    async fn until_stopped(&mut self) -> Signal {
        loop {
            if let Some(signal) = self.stopping() {
                return signal;
            }
            if self.signal.changed().await.is_err() {
                return Signal::Removed;
            }
        }
    }

    /// Sleeps `period` unless the pod is stopped first.
    async fn pause(&mut self, period: Duration) -> Option<Signal> {
        if let Some(signal) = self.stopping() {
            return Some(signal);
        }
        tokio::select! {
            () = tokio::time::sleep(period) => self.stopping(),
            changed = self.signal.changed() => match changed {
                Ok(()) => self.stopping(),
                Err(_) => Some(Signal::Removed),
            },
        }
    }

    async fn live(&mut self) -> Signal {
        let fault = self.ctx.fault();
        match fault {
            Fault::PendingForever => {
                self.publish().await;
                return self.until_stopped().await;
            }
            Fault::FailPods => {
                let at = now();
                for c in self
                    .status
                    .init
                    .iter_mut()
                    .chain(self.status.containers.iter_mut())
                {
                    c.state = State::Terminated {
                        exit_code: 1,
                        reason: "Error".into(),
                        message: Some(
                            "the test cluster fails this node's pods (fault injection)".into(),
                        ),
                        started_at: at.clone(),
                        finished_at: at.clone(),
                    };
                }
                self.status.phase = "Failed";
                self.publish().await;
                return self.until_stopped().await;
            }
            Fault::None => {}
        }
        if let Some(signal) = self.prepare().await {
            return signal;
        }
        if let Some(signal) = self.run_init().await {
            return signal;
        }
        self.run_main().await
    }

    /// Makes the volumes, retrying while a source is missing.
    async fn prepare(&mut self) -> Option<Signal> {
        loop {
            let mounter = Mounter {
                client: &self.ctx.client,
                host_root: &self.ctx.host_root,
            };
            let mounted = mounter
                .mount_all(&mut self.sources, &self.pod, &self.dir)
                .await;
            match mounted {
                Ok(volumes) => {
                    self.volumes = volumes;
                    self.write_kubeconfig();
                    return None;
                }
                Err(ConfigError(message)) => {
                    tracing::debug!(pod = %self.name, "mounting volumes: {message}");
                    self.status.message = Some(format!("MountVolume.SetUp failed: {message}"));
                    self.publish().await;
                    self.sources = Sources::new(self.ctx.client.clone(), &self.namespace);
                    if let Some(signal) = self.pause(RETRY).await {
                        return Some(signal);
                    }
                }
            }
        }
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    /// Runs the init containers one by one. `Some` when the pod stops or fails here.
    async fn run_init(&mut self) -> Option<Signal> {
        let init = spec_containers(&self.pod, true);
        for (i, container) in init.iter().enumerate() {
            let mut attempt = 0u32;
            let mut backoff = BACKOFF;
            loop {
                let (mut handle, id, image_id) = match self.start(container, attempt).await {
                    Ok(started) => started,
                    Err(StartFailure::Waiting { reason, message }) => {
                        self.status.init[i].state = State::Waiting {
                            reason,
                            message: Some(message),
                        };
                        self.publish().await;
                        if let Some(signal) = self.pause(RETRY).await {
                            return Some(signal);
                        }
                        continue;
                    }
                    Err(StartFailure::Failed { message }) => {
                        self.record_start_failure(true, i, message);
                        if self.restart_policy() == "Never" {
                            self.status.phase = "Failed";
                            self.publish().await;
                            return Some(self.until_stopped().await);
                        }
                        attempt += 1;
                        if let Some(signal) = self.pause(backoff).await {
                            return Some(signal);
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                };
                let started_at = now();
                self.status.init[i].container_id = id;
                self.status.init[i].image_id = image_id;
                self.status.init[i].state = State::Running {
                    started_at: started_at.clone(),
                };
                self.publish().await;
                let (tx, mut rx) = mpsc::unbounded_channel();
                let signal = self.signal.clone();
                let max_grace = self.ctx.max_grace;
                tokio::spawn(async move {
                    let ended = handle.wait_or_stop(signal, max_grace).await;
                    let _ = tx.send((0, ended));
                });
                let Some((_, ended)) = rx.recv().await else {
                    return Some(Signal::Removed);
                };
                let message = self.message(container, ended.code, attempt);
                self.status.init[i].state = State::Terminated {
                    exit_code: ended.code,
                    reason: ended.reason,
                    message,
                    started_at,
                    finished_at: now(),
                };
                if let Some(signal) = self.stopping() {
                    return Some(signal);
                }
                if ended.code == 0 {
                    break;
                }
                if self.restart_policy() == "Never" {
                    self.status.phase = "Failed";
                    for c in &mut self.status.containers {
                        c.state = State::Waiting {
                            reason: "PodInitializing".into(),
                            message: None,
                        };
                    }
                    self.publish().await;
                    return Some(self.until_stopped().await);
                }
                attempt += 1;
                self.status.init[i].restart_count += 1;
                self.publish().await;
                if let Some(signal) = self.pause(backoff).await {
                    return Some(signal);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.status.initialized = true;
        None
    }

    fn record_start_failure(&mut self, init: bool, i: usize, message: String) {
        let at = now();
        let status = if init {
            &mut self.status.init[i]
        } else {
            &mut self.status.containers[i]
        };
        status.state = State::Terminated {
            exit_code: 128,
            reason: "StartError".into(),
            message: Some(message),
            started_at: at.clone(),
            finished_at: at,
        };
    }

    /// Runs the containers until the pod is stopped.
    async fn run_main(&mut self) -> Signal {
        let containers = spec_containers(&self.pod, false);
        let n = containers.len();
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Ended)>();
        let mut running = vec![false; n];
        let mut started_at = vec![String::new(); n];
        let mut attempts = vec![0u32; n];
        let mut backoff = vec![BACKOFF; n];
        let mut done = vec![false; n];
        // When each container that waits to start may be tried again.
        let mut due: Vec<Option<tokio::time::Instant>> = vec![Some(tokio::time::Instant::now()); n];
        for c in &mut self.status.containers {
            c.state = State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            };
        }
        loop {
            // Start what is due.
            let now_instant = tokio::time::Instant::now();
            let mut changed = false;
            for i in 0..n {
                if self.stopping().is_some() {
                    break;
                }
                if running[i] || done[i] || due[i].is_none_or(|d| d > now_instant) {
                    continue;
                }
                due[i] = None;
                changed = true;
                match self.start(&containers[i], attempts[i]).await {
                    Ok((handle, id, image_id)) => {
                        running[i] = true;
                        started_at[i] = now();
                        self.status.containers[i].container_id = id;
                        self.status.containers[i].image_id = image_id;
                        self.status.containers[i].state = State::Running {
                            started_at: started_at[i].clone(),
                        };
                        tokio::spawn(supervise(
                            i,
                            handle,
                            self.signal.clone(),
                            self.ctx.max_grace,
                            tx.clone(),
                        ));
                    }
                    Err(StartFailure::Waiting { reason, message }) => {
                        self.status.containers[i].state = State::Waiting {
                            reason,
                            message: Some(message),
                        };
                        due[i] = Some(tokio::time::Instant::now() + RETRY);
                    }
                    Err(StartFailure::Failed { message }) => {
                        self.record_start_failure(false, i, message);
                        self.after_exit(i, 128, &mut attempts, &mut backoff, &mut done, &mut due);
                    }
                }
            }
            if changed {
                self.update_phase(&done);
                self.publish().await;
            }
            if running.iter().all(|r| !r) && done.iter().all(|d| *d) {
                return self.until_stopped().await;
            }
            let next_due = due.iter().flatten().min().copied();
            let stopping = self.stopping();
            if stopping.is_some() && running.iter().all(|r| !r) {
                return stopping.unwrap_or(Signal::Removed);
            }
            tokio::select! {
                Some((i, ended)) = rx.recv() => {
                    running[i] = false;
                    let message = self.message(&containers[i], ended.code, attempts[i]);
                    self.status.containers[i].state = State::Terminated {
                        exit_code: ended.code,
                        reason: ended.reason,
                        message,
                        started_at: started_at[i].clone(),
                        finished_at: now(),
                    };
                    if let Some(signal) = self.stopping() {
                        if running.iter().all(|r| !r) {
                            return signal;
                        }
                        continue;
                    }
                    self.after_exit(i, ended.code, &mut attempts, &mut backoff, &mut done, &mut due);
                    self.update_phase(&done);
                    self.publish().await;
                }
                () = async {
                    match next_due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if stopping.is_none() => {}
                changed = self.signal.changed(), if stopping.is_none() => {
                    if changed.is_err() {
                        return Signal::Removed;
                    }
                    // Running containers see the signal themselves and report their end.
                    if running.iter().all(|r| !r)
                        && let Some(signal) = self.stopping()
                    {
                        return signal;
                    }
                }
            }
        }
    }

    /// Decides what follows a container's exit: a restart after back-off, or the end.
    fn after_exit(
        &mut self,
        i: usize,
        code: i32,
        attempts: &mut [u32],
        backoff: &mut [Duration],
        done: &mut [bool],
        due: &mut [Option<tokio::time::Instant>],
    ) {
        let restart = match self.restart_policy().as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if !restart {
            done[i] = true;
            return;
        }
        let status = &mut self.status.containers[i];
        status.last_state = Some(status.state.clone());
        status.restart_count += 1;
        status.state = State::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some(format!(
                "back-off {:?} restarting failed container",
                backoff[i]
            )),
        };
        attempts[i] += 1;
        due[i] = Some(tokio::time::Instant::now() + backoff[i]);
        backoff[i] = (backoff[i] * 2).min(MAX_BACKOFF);
    }

    fn update_phase(&mut self, done: &[bool]) {
        let exits: Vec<Option<i32>> = self
            .status
            .containers
            .iter()
            .map(|c| match c.state {
                State::Terminated { exit_code, .. } => Some(exit_code),
                _ => None,
            })
            .collect();
        let all_done = done.iter().all(|d| *d);
        self.status.phase = if all_done {
            if exits.iter().all(|e| *e == Some(0)) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self.status.containers.iter().any(|c| {
            matches!(c.state, State::Running { .. })
                || c.restart_count > 0
                || matches!(c.state, State::Terminated { .. })
        }) {
            "Running"
        } else {
            "Pending"
        };
    }

    async fn teardown(&mut self, end: Signal) {
        if let Signal::Terminate(_) = end {
            // Containers have stopped; report, then let the object go.
            let at = now();
            for c in self
                .status
                .containers
                .iter_mut()
                .chain(self.status.init.iter_mut())
            {
                if let State::Running { started_at } = &c.state {
                    c.state = State::Terminated {
                        exit_code: 137,
                        reason: "Error".into(),
                        message: None,
                        started_at: started_at.clone(),
                        finished_at: at.clone(),
                    };
                }
            }
            if !matches!(self.status.phase, "Succeeded" | "Failed")
                && self.status.phase != "Pending"
            {
                let all_zero = self
                    .status
                    .containers
                    .iter()
                    .all(|c| matches!(c.state, State::Terminated { exit_code: 0, .. }));
                self.status.phase = if all_zero { "Succeeded" } else { "Failed" };
            }
            self.publish().await;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(self.uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = self.api().delete(&self.name, &params).await {
                tracing::debug!(pod = %self.name, "final delete: {e}");
            }
        }
        if let Some(cri) = self.cri.take()
            && let Err(e) = cri.remove().await
        {
            tracing::warn!(pod = %self.name, "removing the pod sandbox: {e:#}");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", self.dir.root.display());
        }
    }
}
