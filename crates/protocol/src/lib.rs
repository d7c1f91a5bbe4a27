//! The contract between the manager and the per-node workers, and nothing else.
//!
//! ```text
//! manager ──ConfigMap <job> (owned by the ImageJob, mounted at /run/eraser.sh/job)──> worker
//!            job.json                        : WorkerJob (mode, exclusions, removal list)
//!            controller_manager_config.yaml  : the manager's effective config, as of the job
//! worker  ──termination message (≤ 4 KiB)──> manager : WorkerReport (counts, bytes, failures)
//!         ──stdout──> logs                             : the full per-image report
//! ```
//!
//! Both sides are versioned by [`PROTOCOL_VERSION`]; a reader refuses a version it does not
//! know rather than misreading it. The report is bounded so it always fits the kubelet's
//! termination message limit: [`WorkerReport::encode_bounded`] drops per-image failures, then
//! shortens the error text, until it does. This crate depends on serde only, so the manager
//! (which must not link the runtime client) and the worker share it.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of [`WorkerJob`] and [`WorkerReport`].
pub const PROTOCOL_VERSION: u32 = 1;
/// Where the job ConfigMap is mounted in worker pods.
pub const JOB_MOUNT_PATH: &str = "/run/eraser.sh/job";
/// Key (and file name) of the [`WorkerJob`] in the job ConfigMap.
pub const JOB_FILE_NAME: &str = "job.json";
/// The kubelet keeps at most this many bytes of a termination message (per container).
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// Longest error text kept in a report, in bytes.
pub const MAX_ERROR_LEN: usize = 512;
/// Error texts are never cut below this, in bytes.
const MIN_ERROR_LEN: usize = 16;

/// Why a job or report could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not JSON of the expected shape.
    #[error("not a valid {what}")]
    Json {
        /// `job` or `report`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer (or older) peer.
    #[error("{what} version {found} is not supported (expected {PROTOCOL_VERSION})")]
    Version {
        /// `job` or `report`.
        what: &'static str,
        /// The version found.
        found: u32,
    },
}

impl Error {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Json { .. } => "invalid_json",
            Error::Version { .. } => "unsupported_version",
        }
    }
}

/// What kind of run a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobMode {
    /// A scheduled run: remove images that nothing uses and that have been unused long enough
    /// (and vulnerable ones when scanning is on).
    Scheduled,
    /// A removal list: remove exactly the listed images (`*` for all) that are not running.
    List,
}

impl JobMode {
    /// `scheduled` or `list`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Scheduled => "scheduled",
            JobMode::List => "list",
        }
    }
}

/// What one worker is asked to do. The manager has already merged every exclusion source
/// and dropped malformed entries (reporting them on their lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerJob {
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Name of the ImageJob.
    pub job: String,
    /// Scheduled run or removal list.
    pub mode: JobMode,
    /// Patterns of images never to remove.
    #[serde(default)]
    pub exclusions: Vec<String>,
    /// In [`JobMode::List`]: the patterns to remove.
    #[serde(default)]
    pub removal: Vec<String>,
    /// In [`JobMode::Scheduled`]: how long an image must have been unused, in seconds.
    #[serde(default)]
    pub min_unused_seconds: u64,
    /// Scan for vulnerabilities (scheduled runs with the scanner enabled).
    #[serde(default)]
    pub scan: bool,
    /// Plan and re-check, but remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The vulnerability database the manager keeps for the cluster (`db.configMap` or
    /// `db.url`), when the job scans with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseHandoff>,
}

/// Where a worker gets the cluster's copy of the vulnerability database. The manager fetched
/// it once (from a URL or a ConfigMap), checked it, and serves it by digest; a node keeps the
/// copy it downloaded and fetches again only when the digest changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseHandoff {
    /// Where to fetch it (the manager), when the manager holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Lower-case hex SHA-256 of the file.
    #[serde(default)]
    pub sha256: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// When it was built, seconds since the epoch.
    #[serde(default)]
    pub built_at: u64,
    /// Why the manager holds none (or holds an old one), when that is so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl WorkerJob {
    /// Reads a job, refusing other protocol versions.
    pub fn from_json(text: &str) -> Result<WorkerJob, Error> {
        let job: WorkerJob = serde_json::from_str(text).map_err(|source| Error::Json {
            what: "job",
            source,
        })?;
        if job.version != PROTOCOL_VERSION {
            return Err(Error::Version {
                what: "job",
                found: job.version,
            });
        }
        Ok(job)
    }

    /// The job as JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and booleans always serialises.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// How the worker's run ended, as it sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportOutcome {
    /// Every attempted removal succeeded.
    Succeeded,
    /// The run finished but some removals failed.
    Partial,
    /// The run could not be done (runtime unreachable, job unreadable, pods unreadable…).
    Failed,
}

/// One removal that failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The image (first name, else its ID).
    pub image: String,
    /// Why.
    pub error: String,
}

/// The compact report a worker leaves as its termination message, for the manager to fold
/// into the ImageJob's status, Events and metrics. The full per-image report goes to the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    /// [`PROTOCOL_VERSION`].
    #[serde(rename = "v")]
    pub version: u32,
    /// The node.
    pub node: String,
    /// How the run ended.
    pub outcome: ReportOutcome,
    /// Images on the node when the run started.
    #[serde(default)]
    pub images: u64,
    /// Images removed.
    #[serde(default)]
    pub removed: u64,
    /// Removals that failed.
    #[serde(default)]
    pub failed: u64,
    /// Bytes freed, as measured on the runtime.
    #[serde(default)]
    pub freed_bytes: u64,
    /// Images found vulnerable, when scanning ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vulnerable: Option<u64>,
    /// Age of the vulnerability database the scan used, in seconds, when it was older than
    /// the configured `db.maxAge` (the scan still ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_database_age: Option<u64>,
    /// Images kept, by reason (`running`, `excluded`, `referenced`…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kept: BTreeMap<String, u64>,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Some failed removals (all of them when they fit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
    /// Whether failures or text were left out to fit the size limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl WorkerReport {
    /// A report of a run that could not be done.
    pub fn failed(node: impl Into<String>, error: impl Into<String>) -> WorkerReport {
        WorkerReport {
            version: PROTOCOL_VERSION,
            node: node.into(),
            outcome: ReportOutcome::Failed,
            images: 0,
            removed: 0,
            failed: 0,
            freed_bytes: 0,
            vulnerable: None,
            stale_database_age: None,
            kept: BTreeMap::new(),
            error: Some(error.into()),
            failures: Vec::new(),
            truncated: false,
        }
    }

    /// Reads a report, refusing other protocol versions.
    pub fn from_json(text: &str) -> Result<WorkerReport, Error> {
        let report: WorkerReport = serde_json::from_str(text).map_err(|source| Error::Json {
            what: "report",
            source,
        })?;
        if report.version != PROTOCOL_VERSION {
            return Err(Error::Version {
                what: "report",
                found: report.version,
            });
        }
        Ok(report)
    }

    /// The report as one line of JSON of at most `max` bytes: failures are dropped from the
    /// end, then error texts shortened, until it fits (`truncated` says so). Counts are
    /// never changed. `max` below ~300 bytes may not fit a report with a long node name; the
    /// result is then the smallest form.
    pub fn encode_bounded(&self, max: usize) -> String {
        let mut report = self.clone();
        for failure in &mut report.failures {
            cut(&mut failure.image, MAX_ERROR_LEN);
            cut(&mut failure.error, MAX_ERROR_LEN);
        }
        if let Some(error) = &mut report.error {
            cut(error, MAX_ERROR_LEN);
        }
        if report.failures != self.failures || report.error != self.error {
            report.truncated = true;
        }
        loop {
            let text = report.encode();
            if text.len() <= max {
                return text;
            }
            report.truncated = true;
            if report.failures.pop().is_some() {
                continue;
            }
            match &mut report.error {
                Some(error) if error.len() > MIN_ERROR_LEN => {
                    // A few bytes more than the overflow, for the ellipsis and JSON escapes;
                    // each pass shortens the text, so this ends.
                    let overflow = text.len() - max + 8;
                    let target = error.len().saturating_sub(overflow).max(MIN_ERROR_LEN);
                    cut(error, target);
                }
                _ => return text,
            }
        }
    }

    fn encode(&self) -> String {
        // Strings, numbers and maps of strings always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut with `…`
/// (within the limit).
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let ellipsis = "…";
    let mut end = max.saturating_sub(ellipsis.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ellipsis);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(failures: usize, error_len: usize) -> WorkerReport {
        WorkerReport {
            version: PROTOCOL_VERSION,
            node: "node-1".into(),
            outcome: ReportOutcome::Partial,
            images: 40,
            removed: 12,
            failed: failures as u64,
            freed_bytes: 123_456_789,
            vulnerable: Some(2),
            stale_database_age: Some(9 * 24 * 3600),
            kept: [("running".to_string(), 3), ("excluded".to_string(), 1)].into(),
            error: (error_len > 0).then(|| "é".repeat(error_len)),
            failures: (0..failures)
                .map(|i| Failure {
                    image: format!("registry.example/team/app-{i}:v{i}"),
                    error: "rpc error: code = Unknown desc = failed to remove".repeat(3),
                })
                .collect(),
            truncated: false,
        }
    }

    #[test]
    fn small_reports_are_kept_whole() {
        let original = report(2, 0);
        let text = original.encode_bounded(MAX_TERMINATION_MESSAGE);
        assert_eq!(WorkerReport::from_json(&text).expect("parses"), original);
    }

    #[test]
    fn large_reports_fit_and_keep_counts() {
        for (failures, error_len) in [(500, 0), (0, 10_000), (300, 3000), (1, 1)] {
            let original = report(failures, error_len);
            for max in [MAX_TERMINATION_MESSAGE, 1024, 400] {
                let text = original.encode_bounded(max);
                assert!(
                    text.len() <= max,
                    "{failures}/{error_len}: {} > {max}",
                    text.len()
                );
                let back = WorkerReport::from_json(&text).expect("parses");
                assert_eq!(back.removed, original.removed);
                assert_eq!(back.failed, original.failed);
                assert_eq!(back.freed_bytes, original.freed_bytes);
                assert_eq!(back.kept, original.kept);
                if back.failures.len() < original.failures.len() || back.error != original.error {
                    assert!(back.truncated);
                }
            }
        }
    }

    #[test]
    fn cuts_on_character_boundaries() {
        let mut text = "ü".repeat(100);
        cut(&mut text, 51);
        assert!(text.len() <= 51);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn other_versions_are_refused() {
        let mut job = WorkerJob {
            version: PROTOCOL_VERSION,
            job: "imagejob-abc".into(),
            mode: JobMode::List,
            exclusions: vec!["docker.io/library/*".into()],
            removal: vec!["*".into()],
            min_unused_seconds: 0,
            scan: true,
            dry_run: false,
            database: Some(DatabaseHandoff {
                url: Some("http://10.0.0.7:8889/vulndb/ab12".into()),
                sha256: "ab12".into(),
                size: 4096,
                built_at: 1_700_000_000,
                problem: None,
            }),
        };
        assert_eq!(WorkerJob::from_json(&job.to_json()).expect("reads"), job);
        job.version = 2;
        let error = WorkerJob::from_json(&job.to_json()).expect_err("refused");
        assert_eq!(error.metric_label(), "unsupported_version");
        let error = WorkerReport::from_json("log tail, not json").expect_err("refused");
        assert_eq!(error.metric_label(), "invalid_json");
    }
}
