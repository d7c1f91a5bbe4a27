//! From worker pods to a job's status, as pure functions.
//!
//! A pod is reduced to a [`PodView`] when it is watched (its worker's termination message
//! parsed once, nothing else kept), and [`fold`] turns the views of a job into its status:
//! per-node results, totals, Eraser's counters, and whether the job is over. The same pods
//! always give the same status, so a restarted manager recomputes exactly what the previous
//! one would have.
//!
//! Eraser waits on pods forever (eraser#911, #777); here a pod still pending after the start
//! timeout, or still running after the run timeout, counts as failed for its node, and the job
//! ends when every node has an outcome. A node whose pod vanished counts as failed too.
//! The success ratio is a real ratio ((succeeded + skipped) / desired), not Eraser's integer
//! division.

use std::collections::BTreeMap;
use std::time::Duration;

use image_cleaner_api::constants::REMOVER_CONTAINER;
use image_cleaner_api::imagejob::{CONDITION_COMPLETE, CONDITION_FAILED};
use image_cleaner_api::{ImageJobStatus, JobPhase, NodeOutcome, NodeResult};
use image_cleaner_core::Reason;
use image_cleaner_protocol::{ReportOutcome, WorkerReport};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::names::JOB_LABEL;

/// Longest text kept from a pod that left no report.
const MAX_MESSAGE: usize = 256;

/// How long a worker may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerTimeouts {
    /// From the pod's creation until its container runs.
    pub start: Duration,
    /// From the container's start until it ends.
    pub run: Duration,
}

impl Default for WorkerTimeouts {
    fn default() -> WorkerTimeouts {
        WorkerTimeouts {
            start: Duration::from_secs(5 * 60),
            run: Duration::from_secs(60 * 60),
        }
    }
}

/// A pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not all containers started.
    Pending,
    /// Running (or Unknown: the node stopped reporting).
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, or was rejected or evicted.
    Failed,
}

/// A worker's report, reduced to what the manager uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// How the worker saw its run.
    pub outcome: ReportOutcome,
    /// Images removed.
    pub removed: u64,
    /// Removals that failed.
    pub failed: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Images found vulnerable.
    pub vulnerable: Option<u64>,
    /// Images kept by reason (known reasons only, so metric labels stay bounded).
    pub kept: Vec<(Reason, u64)>,
    /// The worker's error, if any.
    pub error: Option<String>,
    /// Age in seconds of the vulnerability database the worker used, when it was stale.
    pub stale_database_age: Option<u64>,
}

impl From<WorkerReport> for Report {
    fn from(report: WorkerReport) -> Report {
        let kept = Reason::ALL
            .iter()
            .filter_map(|reason| {
                report
                    .kept
                    .get(reason.as_str())
                    .map(|count| (*reason, *count))
            })
            .collect();
        Report {
            outcome: report.outcome,
            removed: report.removed,
            failed: report.failed,
            freed_bytes: report.freed_bytes,
            vulnerable: report.vulnerable,
            kept,
            error: report.error.map(|e| short(&e)),
            stale_database_age: report.stale_database_age,
        }
    }
}

/// What the manager keeps of a worker pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// Its ImageJob.
    pub job: String,
    /// Its node.
    pub node: String,
    /// Creation time.
    pub created: Option<Timestamp>,
    /// When its container started running.
    pub started: Option<Timestamp>,
    /// Phase.
    pub phase: Phase,
    /// Whether it is being deleted.
    pub deleting: bool,
    /// The worker's exit code, once it exited.
    pub exit_code: Option<i32>,
    /// The worker's report, when its termination message holds one.
    pub report: Option<Report>,
    /// Otherwise, what the pod says about its end (reason, message or log tail).
    pub message: Option<String>,
}

impl PodView {
    /// The view of a worker pod; `None` for a pod without a job label or a node.
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let job = pod.metadata.labels.as_ref()?.get(JOB_LABEL)?.clone();
        let node = pod.spec.as_ref()?.node_name.clone()?;
        let status = pod.status.as_ref();
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") | Some("Unknown") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            _ => Phase::Pending,
        };
        let container = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|statuses| {
                statuses
                    .iter()
                    .find(|c| c.name == REMOVER_CONTAINER)
                    .or(statuses.first())
            });
        let state = container.and_then(|c| c.state.as_ref());
        let running_since = state
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.as_ref())
            .map(|t| t.0);
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let started = running_since
            .or_else(|| terminated.and_then(|t| t.started_at.as_ref()).map(|t| t.0))
            .or_else(|| {
                (phase != Phase::Pending)
                    .then(|| status.and_then(|s| s.start_time.as_ref()).map(|t| t.0))
                    .flatten()
            });
        let text = terminated
            .and_then(|t| t.message.clone())
            .unwrap_or_default();
        let report = WorkerReport::from_json(text.trim()).ok().map(Report::from);
        let message = if report.is_some() {
            None
        } else {
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .or_else(|| status.and_then(|s| s.reason.clone()));
            let detail = (!text.trim().is_empty())
                .then(|| text.trim().to_owned())
                .or_else(|| status.and_then(|s| s.message.clone()));
            match (reason, detail) {
                (Some(reason), Some(detail)) => Some(short(&format!("{reason}: {detail}"))),
                (Some(one), None) | (None, Some(one)) => Some(short(&one)),
                (None, None) => None,
            }
        };
        Some(PodView {
            name: pod.metadata.name.clone().unwrap_or_default(),
            job,
            node,
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            started,
            phase,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            exit_code: terminated.map(|t| t.exit_code),
            report,
            message,
        })
    }

    /// Whether the pod is done (or past its deadline) at `now`, and how.
    pub fn state(&self, now: Timestamp, timeouts: WorkerTimeouts) -> NodeState {
        match self.phase {
            Phase::Succeeded => NodeState::Done(self.result(None)),
            Phase::Failed => NodeState::Done(self.result(Some(Cause::WorkerFailed))),
            Phase::Pending => {
                let deadline = self.created.map(|c| plus(c, timeouts.start));
                match deadline {
                    Some(deadline) if now >= deadline => NodeState::TimedOut(self.timeout_result(
                        Cause::StartTimeout,
                        format!("worker did not start within {}", human(timeouts.start)),
                    )),
                    _ => NodeState::Waiting { deadline },
                }
            }
            Phase::Running => {
                let since = self.started.or(self.created);
                let deadline = since.map(|s| plus(s, timeouts.run));
                match deadline {
                    Some(deadline) if now >= deadline => NodeState::TimedOut(self.timeout_result(
                        Cause::RunTimeout,
                        format!("worker did not finish within {}", human(timeouts.run)),
                    )),
                    _ => NodeState::Waiting { deadline },
                }
            }
        }
    }

    fn result(&self, failed: Option<Cause>) -> Finished {
        let report = self.report.as_ref();
        let outcome = match (failed, report.map(|r| r.outcome)) {
            (Some(_), _) | (None, Some(ReportOutcome::Failed)) => NodeOutcome::Failed,
            (None, Some(ReportOutcome::Partial)) => NodeOutcome::PartiallyFailed,
            (None, Some(ReportOutcome::Succeeded)) if report.is_some_and(|r| r.failed > 0) => {
                NodeOutcome::PartiallyFailed
            }
            (None, _) => NodeOutcome::Succeeded,
        };
        let cause = match outcome {
            NodeOutcome::Failed => Some(Cause::WorkerFailed),
            _ => None,
        };
        let message = report.and_then(|r| r.error.clone()).or_else(|| {
            let exit = self.exit_code.filter(|code| *code != 0);
            match (&self.message, exit) {
                (Some(message), _) => Some(message.clone()),
                (None, Some(code)) => Some(format!("worker exited with code {code}")),
                (None, None) => None,
            }
        });
        Finished {
            result: NodeResult {
                node: self.node.clone(),
                outcome,
                images_removed: report.map_or(0, |r| r.removed as i64),
                bytes_freed: report.map_or(0, |r| r.freed_bytes.min(i64::MAX as u64) as i64),
                vulnerable_images: report.and_then(|r| r.vulnerable).map(|v| v as i64),
                removals_failed: report.map_or(0, |r| r.failed as i64),
                message: if outcome != NodeOutcome::Succeeded {
                    message
                } else {
                    report.and_then(|r| r.stale_database_age).map(|age| {
                        format!(
                            "scanned with a stale vulnerability database (built {} ago, older than db.maxAge)",
                            human(Duration::from_secs(age))
                        )
                    })
                },
            },
            cause,
            kept: report.map(|r| r.kept.clone()).unwrap_or_default(),
        }
    }

    fn timeout_result(&self, cause: Cause, message: String) -> Finished {
        Finished {
            result: NodeResult {
                node: self.node.clone(),
                outcome: NodeOutcome::Failed,
                images_removed: 0,
                bytes_freed: 0,
                vulnerable_images: None,
                removals_failed: 0,
                message: Some(message),
            },
            cause: Some(cause),
            kept: Vec::new(),
        }
    }
}

/// Why a node failed: a bounded set, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The pod did not start in time.
    StartTimeout,
    /// The worker did not finish in time.
    RunTimeout,
    /// The worker failed (or its pod was rejected or evicted).
    WorkerFailed,
    /// The pod could not be created.
    CreateFailed,
    /// The pod disappeared before it finished.
    Missing,
}

impl Cause {
    /// Stable name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::StartTimeout => "start_timeout",
            Cause::RunTimeout => "run_timeout",
            Cause::WorkerFailed => "worker_failed",
            Cause::CreateFailed => "create_failed",
            Cause::Missing => "missing",
        }
    }
}

/// A node's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// As shown in the job's status.
    pub result: NodeResult,
    /// Why it failed, when it did.
    pub cause: Option<Cause>,
    /// Images kept by reason.
    pub kept: Vec<(Reason, u64)>,
}

/// Where a node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Still expected to finish, by `deadline`.
    Waiting {
        /// When it times out.
        deadline: Option<Timestamp>,
    },
    /// Finished (succeeded or failed).
    Done(Finished),
    /// Past its deadline: failed, and its pod is to be deleted.
    TimedOut(Finished),
}

/// What a job's pods add up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    /// The status to write (phase Running, or the final phase when `finished`).
    pub status: ImageJobStatus,
    /// Whether every node has an outcome.
    pub finished: bool,
    /// The earliest time a waiting pod times out.
    pub next_deadline: Option<Timestamp>,
    /// Pods past their deadline, to delete when the job ends.
    pub timed_out: Vec<String>,
    /// Failed nodes by cause.
    pub causes: BTreeMap<Cause, u64>,
    /// Images kept on all nodes, by reason.
    pub kept: BTreeMap<Reason, u64>,
}

/// Inputs of [`fold`] besides the pods.
#[derive(Clone, Copy, Debug)]
pub struct FoldInputs<'a> {
    /// The job's current status (its `desired`, `skipped`, `startTime` and conditions are
    /// kept).
    pub current: &'a ImageJobStatus,
    /// Whether a pod was created (or tried) for every eligible node.
    pub workers_created: bool,
    /// Nodes whose pod could not be created, with why.
    pub create_failures: &'a BTreeMap<String, String>,
    /// `manager.imageJob.successRatio`.
    pub success_ratio: f64,
    /// Now.
    pub now: Timestamp,
    /// The workers' deadlines.
    pub timeouts: WorkerTimeouts,
}

/// The status of a job from its pods.
pub fn fold<'p>(inputs: FoldInputs<'_>, pods: impl IntoIterator<Item = &'p PodView>) -> Progress {
    let current = inputs.current;
    let mut status = ImageJobStatus {
        desired: current.desired,
        skipped: current.skipped,
        start_time: current.start_time.clone(),
        delete_after: current.delete_after.clone(),
        phase: Some(JobPhase::Running),
        conditions: current.conditions.clone(),
        images_removed: Some(0),
        bytes_freed: Some(0),
        ..ImageJobStatus::default()
    };
    let mut progress = Progress::default();
    let mut waiting = 0usize;
    let mut seen_nodes = std::collections::BTreeSet::new();
    for pod in pods {
        if !seen_nodes.insert(pod.node.clone()) {
            continue;
        }
        let finished = match pod.state(inputs.now, inputs.timeouts) {
            NodeState::Waiting { deadline } => {
                waiting += 1;
                if let Some(deadline) = deadline {
                    progress.next_deadline = Some(
                        progress
                            .next_deadline
                            .map_or(deadline, |earliest| earliest.min(deadline)),
                    );
                }
                continue;
            }
            NodeState::Done(finished) => finished,
            NodeState::TimedOut(finished) => {
                progress.timed_out.push(pod.name.clone());
                finished
            }
        };
        add(&mut status, &mut progress, finished);
    }
    for (node, why) in inputs.create_failures {
        if seen_nodes.contains(node) {
            continue;
        }
        add(
            &mut status,
            &mut progress,
            Finished {
                result: NodeResult {
                    node: node.clone(),
                    outcome: NodeOutcome::Failed,
                    images_removed: 0,
                    bytes_freed: 0,
                    vulnerable_images: None,
                    removals_failed: 0,
                    message: Some(short(&format!("worker pod not created: {why}"))),
                },
                cause: Some(Cause::CreateFailed),
                kept: Vec::new(),
            },
        );
    }
    progress.finished = inputs.workers_created && waiting == 0;
    if progress.finished {
        // Nodes that were to get a worker and have no outcome: their pod vanished.
        let expected = (status.desired - status.skipped).max(0);
        let missing = expected - status.succeeded - status.failed;
        if missing > 0 {
            status.failed += missing;
            *progress.causes.entry(Cause::Missing).or_default() += missing as u64;
        }
        let phase = if status.success_ratio() + 1e-9 >= inputs.success_ratio {
            JobPhase::Completed
        } else {
            JobPhase::Failed
        };
        status.phase = Some(phase);
        status.completion_time = Some(Time(inputs.now));
        let (kind, reason) = match phase {
            JobPhase::Failed => (CONDITION_FAILED, "BelowSuccessRatio"),
            _ => (CONDITION_COMPLETE, "SuccessRatioReached"),
        };
        let message = format!(
            "{} of {} nodes succeeded, {} skipped, {} failed; success ratio {:.3} (needed {})",
            status.succeeded,
            status.desired,
            status.skipped,
            status.failed,
            status.success_ratio(),
            inputs.success_ratio
        );
        set_condition(
            &mut status.conditions,
            condition(kind, true, reason, message, inputs.now),
        );
    }
    progress.status = status;
    progress
}

fn add(status: &mut ImageJobStatus, progress: &mut Progress, finished: Finished) {
    if finished.result.outcome.is_failure() {
        status.failed += 1;
    } else {
        status.succeeded += 1;
    }
    if let Some(cause) = finished.cause {
        *progress.causes.entry(cause).or_default() += 1;
    }
    for (reason, count) in finished.kept {
        *progress.kept.entry(reason).or_default() += count;
    }
    status.record_node(finished.result);
}

/// A condition, with `lastTransitionTime` now.
pub fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: kind.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: short_to(&message, 1024),
        last_transition_time: Time(now),
        observed_generation: None,
    }
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time: time,
                ..new
            };
        }
        None => conditions.push(new),
    }
}

/// Whether `conditions` has `kind` with status True.
pub fn has_condition(conditions: &[Condition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// `at + duration`, saturating.
pub fn plus(at: Timestamp, duration: Duration) -> Timestamp {
    SignedDuration::try_from(duration)
        .ok()
        .and_then(|d| at.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// A duration as operators read it (`5m`, `1h30m`, `45s`).
pub fn human(duration: Duration) -> String {
    let total = duration.as_secs();
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

fn short(text: &str) -> String {
    short_to(text, MAX_MESSAGE)
}

fn short_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use image_cleaner_protocol::PROTOCOL_VERSION;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, PodSpec,
        PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    const T0: &str = "2025-03-01T10:00:00Z";

    fn at(offset_secs: i64) -> Timestamp {
        let base: Timestamp = T0.parse().expect("time");
        base.checked_add(SignedDuration::from_secs(offset_secs))
            .expect("in range")
    }

    fn timeouts() -> WorkerTimeouts {
        WorkerTimeouts {
            start: Duration::from_secs(60),
            run: Duration::from_secs(600),
        }
    }

    fn report(outcome: ReportOutcome, removed: u64, failed: u64) -> String {
        let mut report = WorkerReport::failed("n", "x");
        report.version = PROTOCOL_VERSION;
        report.outcome = outcome;
        report.error = None;
        report.removed = removed;
        report.failed = failed;
        report.freed_bytes = removed * 1000;
        report.kept = [("running".to_string(), 2), ("bogus".to_string(), 9)].into();
        report.encode_bounded(4096)
    }

    fn pod(node: &str, phase: &str, terminated: Option<(i32, &str)>) -> Pod {
        let state = match terminated {
            Some((code, message)) => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    message: Some(message.into()),
                    started_at: Some(Time(at(5))),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None if phase == "Running" => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(at(5))),
                }),
                ..Default::default()
            },
            None => ContainerState::default(),
        };
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("eraser-{node}-abcde")),
                labels: Some([(JOB_LABEL.to_string(), "imagejob-abcde".to_string())].into()),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "remover".into(),
                    state: Some(state),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn view(pod: &Pod) -> PodView {
        PodView::from_pod(pod).expect("a worker pod")
    }

    fn current(desired: i64, skipped: i64) -> ImageJobStatus {
        ImageJobStatus {
            desired,
            skipped,
            phase: Some(JobPhase::Running),
            ..Default::default()
        }
    }

    fn inputs<'a>(
        current: &'a ImageJobStatus,
        failures: &'a BTreeMap<String, String>,
        ratio: f64,
        now: Timestamp,
    ) -> FoldInputs<'a> {
        FoldInputs {
            current,
            workers_created: true,
            create_failures: failures,
            success_ratio: ratio,
            now,
            timeouts: timeouts(),
        }
    }

    #[test]
    fn reads_the_termination_message() {
        let ok = view(&pod(
            "a",
            "Succeeded",
            Some((0, &report(ReportOutcome::Succeeded, 3, 0))),
        ));
        let parsed = ok.report.clone().expect("report");
        assert_eq!(parsed.removed, 3);
        assert_eq!(
            parsed.kept,
            vec![(Reason::Running, 2)],
            "unknown reasons dropped"
        );
        let NodeState::Done(finished) = ok.state(at(10), timeouts()) else {
            panic!("done");
        };
        assert_eq!(finished.result.outcome, NodeOutcome::Succeeded);
        assert_eq!(finished.result.bytes_freed, 3000);

        let partial = view(&pod(
            "a",
            "Succeeded",
            Some((0, &report(ReportOutcome::Partial, 3, 1))),
        ));
        let NodeState::Done(finished) = partial.state(at(10), timeouts()) else {
            panic!("done");
        };
        assert_eq!(finished.result.outcome, NodeOutcome::PartiallyFailed);

        let log_tail = view(&pod("a", "Failed", Some((1, "panic: cannot connect"))));
        let NodeState::Done(finished) = log_tail.state(at(10), timeouts()) else {
            panic!("done");
        };
        assert_eq!(finished.result.outcome, NodeOutcome::Failed);
        assert_eq!(
            finished.result.message.as_deref(),
            Some("panic: cannot connect")
        );
        assert_eq!(finished.cause, Some(Cause::WorkerFailed));
    }

    #[test]
    fn deadlines() {
        let pending = view(&pod("a", "Pending", None));
        assert_eq!(
            pending.state(at(59), timeouts()),
            NodeState::Waiting {
                deadline: Some(at(60))
            }
        );
        assert!(
            matches!(pending.state(at(60), timeouts()), NodeState::TimedOut(f)
            if f.cause == Some(Cause::StartTimeout))
        );
        let running = view(&pod("a", "Running", None));
        assert_eq!(
            running.state(at(600), timeouts()),
            NodeState::Waiting {
                deadline: Some(at(605))
            }
        );
        assert!(
            matches!(running.state(at(605), timeouts()), NodeState::TimedOut(f)
            if f.cause == Some(Cause::RunTimeout))
        );
    }

    #[test]
    fn a_job_ends_with_a_real_ratio() {
        let ok = report(ReportOutcome::Succeeded, 2, 0);
        let pods = [
            pod("a", "Succeeded", Some((0, &ok))),
            pod("b", "Succeeded", Some((0, &ok))),
            pod("c", "Failed", Some((1, "boom"))),
        ];
        let views: Vec<PodView> = pods.iter().map(view).collect();
        let status = current(4, 1);
        let none = BTreeMap::new();
        // 3 of 4 = 0.75 >= 0.5: Completed despite a failed node (Eraser: 3/4 = 0 < 0.5).
        let progress = fold(inputs(&status, &none, 0.5, at(30)), &views);
        assert!(progress.finished);
        assert_eq!(progress.status.phase, Some(JobPhase::Completed));
        assert_eq!(
            (
                progress.status.succeeded,
                progress.status.failed,
                progress.status.skipped
            ),
            (2, 1, 1)
        );
        assert_eq!(progress.status.images_removed, Some(4));
        assert_eq!(progress.status.nodes.len(), 3);
        assert_eq!(progress.kept.get(&Reason::Running), Some(&4));
        assert!(has_condition(
            &progress.status.conditions,
            CONDITION_COMPLETE
        ));
        // The default ratio 1.0: Failed.
        let progress = fold(inputs(&status, &none, 1.0, at(30)), &views);
        assert_eq!(progress.status.phase, Some(JobPhase::Failed));
        assert!(has_condition(&progress.status.conditions, CONDITION_FAILED));
    }

    #[test]
    fn a_job_waits_for_pods_but_not_forever() {
        let ok = report(ReportOutcome::Succeeded, 1, 0);
        let pods = [
            pod("a", "Succeeded", Some((0, &ok))),
            pod("b", "Pending", None),
        ];
        let views: Vec<PodView> = pods.iter().map(view).collect();
        let status = current(2, 0);
        let none = BTreeMap::new();
        let progress = fold(inputs(&status, &none, 0.5, at(30)), &views);
        assert!(!progress.finished);
        assert_eq!(progress.status.phase, Some(JobPhase::Running));
        assert_eq!(progress.next_deadline, Some(at(60)));
        let progress = fold(inputs(&status, &none, 0.5, at(61)), &views);
        assert!(progress.finished);
        assert_eq!(progress.status.phase, Some(JobPhase::Completed));
        assert_eq!(progress.timed_out, vec!["eraser-b-abcde".to_string()]);
        assert_eq!(progress.causes.get(&Cause::StartTimeout), Some(&1));
    }

    #[test]
    fn missing_pods_and_create_failures_count_as_failed() {
        let ok = report(ReportOutcome::Succeeded, 1, 0);
        let pods = [pod("a", "Succeeded", Some((0, &ok)))];
        let views: Vec<PodView> = pods.iter().map(view).collect();
        let status = current(4, 0);
        let failures: BTreeMap<String, String> =
            [("c".to_string(), "forbidden".to_string())].into();
        let progress = fold(inputs(&status, &failures, 0.0, at(30)), &views);
        assert!(progress.finished);
        // a succeeded, c failed to be created, b and d vanished.
        assert_eq!((progress.status.succeeded, progress.status.failed), (1, 3));
        assert_eq!(progress.causes.get(&Cause::CreateFailed), Some(&1));
        assert_eq!(progress.causes.get(&Cause::Missing), Some(&2));
        // Not finished before every pod is created.
        let mut unfinished = inputs(&status, &failures, 0.0, at(30));
        unfinished.workers_created = false;
        assert!(!fold(unfinished, &views).finished);
    }

    #[test]
    fn zero_nodes_complete_at_once() {
        let status = current(0, 0);
        let none = BTreeMap::new();
        let progress = fold(inputs(&status, &none, 1.0, at(0)), &[]);
        assert!(progress.finished);
        assert_eq!(progress.status.phase, Some(JobPhase::Completed));
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut conditions = vec![];
        set_condition(
            &mut conditions,
            condition("A", true, "R", "m".into(), at(0)),
        );
        set_condition(
            &mut conditions,
            condition("A", true, "R2", "m2".into(), at(10)),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(0)));
        assert_eq!(conditions[0].reason, "R2");
        set_condition(
            &mut conditions,
            condition("A", false, "R3", "m3".into(), at(20)),
        );
        assert_eq!(conditions[0].last_transition_time, Time(at(20)));
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_secs(0)), "0s");
    }
}
