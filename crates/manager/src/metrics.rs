//! The manager's Prometheus metrics, served on `/metrics`. The only file that knows
//! prometheus-client.
//!
//! Eraser pushes its metrics through OTLP under these names; they are exposed here under the
//! same names (`images_removed_run_total`, `vulnerable_images_run_total`,
//! `imagejob_duration_run_seconds`, `pods_completed_run_total`, `pods_failed_run_total`,
//! `imagejob_run_total`) as cluster-wide totals folded from the workers' reports, so the
//! queries of Eraser's dashboards keep working. Image Cleaner's own metrics are prefixed
//! `imagecleaner_`. Every label comes from a fixed set (phase, job kind, keep reason, failure
//! cause, error kind): never a node, image or pod name.

use std::sync::Arc;

use image_cleaner_api::constants::{
    METRIC_IMAGEJOB_DURATION, METRIC_IMAGEJOBS, METRIC_IMAGES_REMOVED, METRIC_PODS_COMPLETED,
    METRIC_PODS_FAILED, METRIC_VULNERABLE_IMAGES,
};
use image_cleaner_core::Reason;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::report::Cause;

/// Prefix of Image Cleaner's own metrics.
pub const PREFIX: &str = "imagecleaner";

/// Buckets of the job duration histogram, in seconds: Eraser's (10 s steps to a minute), then
/// up to a day, since scheduled runs with scanning take hours.
const DURATION_BUCKETS: [f64; 14] = [
    10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
    86400.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    phase: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    controller: &'static str,
    error: &'static str,
}

/// A finished job, as the metrics see it.
#[derive(Clone, Debug, Default)]
pub struct JobOutcome {
    /// `scheduled` or `list`.
    pub kind: &'static str,
    /// `Completed` or `Failed`.
    pub phase: &'static str,
    /// Seconds from the first pod to the end.
    pub duration_seconds: f64,
    /// Nodes that succeeded.
    pub succeeded: u64,
    /// Nodes that failed.
    pub failed: u64,
    /// Images removed on all nodes.
    pub removed: u64,
    /// Bytes freed on all nodes.
    pub freed_bytes: u64,
    /// Images found vulnerable on all nodes.
    pub vulnerable: u64,
    /// Images kept, by reason.
    pub kept: Vec<(Reason, u64)>,
    /// Failed nodes by cause.
    pub causes: Vec<(Cause, u64)>,
}

/// Every metric of the manager.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    images_removed: Counter,
    vulnerable_images: Counter,
    job_duration: Histogram,
    pods_completed: Counter,
    pods_failed: Counter,
    jobs: Family<JobLabels, Counter>,
    bytes_freed: Counter,
    images_kept: Family<ReasonLabels, Counter>,
    node_failures: Family<CauseLabels, Counter>,
    jobs_started: Family<KindLabels, Counter>,
    pods_created: Counter,
    config_reloads: Family<ResultLabels, Counter>,
    config_valid: Gauge,
    leader: Gauge,
    errors: Family<ErrorLabels, Counter>,
    database_age: Gauge,
    database_refreshes: Family<ResultLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Registers a counter under an Eraser name, which already ends in `_total` (the client
/// adds that suffix itself).
fn eraser_counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(
        name.strip_suffix("_total").unwrap_or(name),
        help,
        counter.clone(),
    );
    counter
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let images_removed = eraser_counter(
            &mut registry,
            METRIC_IMAGES_REMOVED,
            "Images removed by finished jobs, on all nodes",
        );
        let vulnerable_images = eraser_counter(
            &mut registry,
            METRIC_VULNERABLE_IMAGES,
            "Images found vulnerable by finished jobs, on all nodes",
        );
        let job_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            METRIC_IMAGEJOB_DURATION,
            "Duration of finished ImageJobs, in seconds",
            job_duration.clone(),
        );
        let pods_completed = eraser_counter(
            &mut registry,
            METRIC_PODS_COMPLETED,
            "Worker pods (nodes) that succeeded in finished jobs",
        );
        let pods_failed = eraser_counter(
            &mut registry,
            METRIC_PODS_FAILED,
            "Worker pods (nodes) that failed or did not finish in time in finished jobs",
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            METRIC_IMAGEJOBS
                .strip_suffix("_total")
                .unwrap_or(METRIC_IMAGEJOBS),
            "Finished ImageJobs, by phase and kind",
            jobs.clone(),
        );

        let ours = registry.sub_registry_with_prefix(PREFIX);
        let bytes_freed = Counter::default();
        ours.register(
            "bytes_freed",
            "Bytes freed on all nodes by finished jobs",
            bytes_freed.clone(),
        );
        let images_kept = Family::<ReasonLabels, Counter>::default();
        ours.register(
            "images_kept",
            "Images kept by finished jobs, on all nodes, by reason",
            images_kept.clone(),
        );
        let node_failures = Family::<CauseLabels, Counter>::default();
        ours.register(
            "node_failures",
            "Nodes that failed in finished jobs, by cause",
            node_failures.clone(),
        );
        let jobs_started = Family::<KindLabels, Counter>::default();
        ours.register(
            "jobs_started",
            "ImageJobs started, by kind",
            jobs_started.clone(),
        );
        let pods_created = Counter::default();
        ours.register("pods_created", "Worker pods created", pods_created.clone());
        let config_reloads = Family::<ResultLabels, Counter>::default();
        ours.register(
            "config_reloads",
            "Config changes read, by result (applied, rejected)",
            config_reloads.clone(),
        );
        let config_valid = Gauge::default();
        ours.register(
            "config_last_reload_successful",
            "1 when the last config change was applied, 0 when it was rejected (the previous config stays in force)",
            config_valid.clone(),
        );
        let leader = Gauge::default();
        ours.register(
            "leader",
            "1 while this manager holds the leader Lease",
            leader.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        ours.register(
            "reconcile_errors",
            "Failed reconciliations, by controller and error kind",
            errors.clone(),
        );
        let database_age = Gauge::default();
        ours.register(
            "vulnerability_database_age_seconds",
            "Age of the vulnerability database the manager hands to workers (from its build time); -1 while none is held",
            database_age.clone(),
        );
        database_age.set(-1);
        let database_refreshes = Family::<ResultLabels, Counter>::default();
        ours.register(
            "vulnerability_database_refreshes",
            "Attempts to get the vulnerability database from its source, by result (ok, failed)",
            database_refreshes.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            images_removed,
            vulnerable_images,
            job_duration,
            pods_completed,
            pods_failed,
            jobs,
            bytes_freed,
            images_kept,
            node_failures,
            jobs_started,
            pods_created,
            config_reloads,
            config_valid,
            leader,
            errors,
            database_age,
            database_refreshes,
        }
    }

    /// Records a finished job (once per job: by the manager that ended it).
    pub fn job_finished(&self, outcome: &JobOutcome) {
        self.jobs
            .get_or_create(&JobLabels {
                phase: outcome.phase,
                kind: outcome.kind,
            })
            .inc();
        self.job_duration.observe(outcome.duration_seconds.max(0.0));
        self.pods_completed.inc_by(outcome.succeeded);
        self.pods_failed.inc_by(outcome.failed);
        self.images_removed.inc_by(outcome.removed);
        self.vulnerable_images.inc_by(outcome.vulnerable);
        self.bytes_freed.inc_by(outcome.freed_bytes);
        for (reason, count) in &outcome.kept {
            self.images_kept
                .get_or_create(&ReasonLabels {
                    reason: reason.as_str(),
                })
                .inc_by(*count);
        }
        for (cause, count) in &outcome.causes {
            self.node_failures
                .get_or_create(&CauseLabels {
                    cause: cause.as_str(),
                })
                .inc_by(*count);
        }
    }

    /// Records a job start.
    pub fn job_started(&self, kind: &'static str) {
        self.jobs_started.get_or_create(&KindLabels { kind }).inc();
    }

    /// Records created worker pods.
    pub fn pods_created(&self, count: u64) {
        self.pods_created.inc_by(count);
    }

    /// Records a config change: applied or rejected.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.config_reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.config_valid.set(i64::from(applied));
    }

    /// Records a refresh of the vulnerability database: the held copy's age, and whether the
    /// source answered.
    pub fn database(&self, age: Option<std::time::Duration>, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.database_refreshes
            .get_or_create(&ResultLabels { result })
            .inc();
        self.database_age
            .set(age.map_or(-1, |age| i64::try_from(age.as_secs()).unwrap_or(i64::MAX)));
    }

    /// Records whether this manager leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Records a failed reconciliation.
    pub fn error(&self, controller: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasers_names_and_ours() {
        let metrics = Metrics::new();
        metrics.job_finished(&JobOutcome {
            kind: "list",
            phase: "Completed",
            duration_seconds: 12.0,
            succeeded: 3,
            failed: 0,
            removed: 3,
            freed_bytes: 1024,
            vulnerable: 0,
            kept: vec![(Reason::Running, 4)],
            causes: vec![],
        });
        metrics.config_reload(false);
        let text = metrics.encode();
        for line in [
            "images_removed_run_total 3",
            "pods_completed_run_total 3",
            "pods_failed_run_total 0",
            "imagejob_run_total{phase=\"Completed\",kind=\"list\"} 1",
            "imagejob_duration_run_seconds_count 1",
            "vulnerable_images_run_total 0",
            "imagecleaner_bytes_freed_total 1024",
            "imagecleaner_images_kept_total{reason=\"running\"} 4",
            "imagecleaner_config_reloads_total{result=\"rejected\"} 1",
            "imagecleaner_config_last_reload_successful 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
