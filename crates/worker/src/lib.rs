//! The per-node worker: what runs in each worker pod (`imagecleaner worker`).
//!
//! ```text
//! /run/eraser.sh/job/job.json ──> WorkerJob (mode, exclusions, removal list)
//! pods bound to NODE_NAME (API, right before planning) ──> References
//! runtime socket ──> node engine: inventory, plan, re-checked removals, measured report
//!     ├─> stdout: the full per-image report (JSON), for `kubectl logs`
//!     └─> termination message: WorkerReport (≤ 4 KiB), for the manager
//! ```
//!
//! The manager has already merged the exclusion sources and validated every entry; the worker
//! parses them again (leniently: an entry it cannot read is logged and skipped) because the
//! engine wants patterns, not strings. Pods are read as late as possible, and only
//! non-terminal ones (Pending, Running, Unknown) count, with init, regular and ephemeral
//! containers and the image IDs their statuses report. In a scheduled run a worker that
//! cannot read the pods refuses to remove anything (it cannot know what pending pods need);
//! a removal list does not depend on pods, so it goes on.
//!
//! Exit status: 0 when the run was done (even if some removals failed: the report says
//! which), 1 when it could not be done; either way the termination message says what
//! happened. This crate links the runtime client; the manager never does.

#![forbid(unsafe_code)]

mod compact;
pub mod database;
mod pods;
pub mod scan;

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_cleaner_core::{ListKind, PatternSet, Policy};
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::{Options as EngineOptions, Report, Runtime};
use image_cleaner_protocol::{JobMode, MAX_TERMINATION_MESSAGE, WorkerJob, WorkerReport};

pub use compact::compact;
pub use pods::{images_of_pods, references};

/// Why a run could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The job file could not be read.
    #[error("reading the job {path}: {source}")]
    JobFile {
        /// Its path.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The job file is not a job.
    #[error("the job {path}: {source}")]
    Job {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: image_cleaner_protocol::Error,
    },
    /// The container runtime could not be used.
    #[error("container runtime: {0}")]
    Runtime(#[source] image_cleaner_node::Error),
    /// No API client could be made.
    #[error("connecting to the API server: {0}")]
    Client(#[source] kube::Error),
    /// No API client config could be found.
    #[error("finding the API server: {0}")]
    ClientConfig(#[source] kube::config::InferConfigError),
    /// The pods on the node could not be read.
    #[error("listing the pods on node {node}: {source}")]
    Pods {
        /// The node.
        node: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("listing the pods on node {node}: no answer within {timeout:?}")]
    PodsTimeout {
        /// The node.
        node: String,
        /// The limit.
        timeout: Duration,
    },
    /// The node's name is unknown.
    #[error("the node name is unknown: set NODE_NAME (the pod's spec.nodeName) or --node-name")]
    NoNodeName,
}

impl Error {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::JobFile { .. } => "job_unreadable",
            Error::Job { source, .. } => source.metric_label(),
            Error::Runtime(error) => error.metric_label(),
            Error::Client(_) | Error::ClientConfig(_) => "api_client",
            Error::Pods { .. } => "pods",
            Error::PodsTimeout { .. } => "pods_timeout",
            Error::NoNodeName => "no_node_name",
        }
    }
}

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The job (`job.json` from the job's ConfigMap).
    pub job_file: PathBuf,
    /// The manager's config as of the job (its scanner settings are used when scanning).
    pub config_file: Option<PathBuf>,
    /// The runtime's CRI endpoint.
    pub runtime_endpoint: Endpoint,
    /// Where the node's last-use state is kept.
    pub state_dir: Option<PathBuf>,
    /// This node.
    pub node_name: String,
    /// Where the compact report goes (the container's termination message path).
    pub termination_log: PathBuf,
    /// Longest time any API call may take.
    pub api_timeout: Duration,
    /// Removals in flight at once.
    pub concurrency: usize,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Done {
    /// The full per-image report.
    pub report: Report,
    /// The compact report for the manager.
    pub summary: WorkerReport,
}

/// Reads the job.
pub fn read_job(path: &Path) -> Result<WorkerJob, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::JobFile {
        path: path.to_owned(),
        source,
    })?;
    WorkerJob::from_json(&text).map_err(|source| Error::Job {
        path: path.to_owned(),
        source,
    })
}

/// The engine's policy for a job. Entries the engine cannot read are logged and skipped.
pub fn policy(job: &WorkerJob) -> Policy {
    let (exclusions, bad) = PatternSet::parse_lenient(ListKind::Exclusion, &job.exclusions);
    for error in bad {
        tracing::warn!("exclusion skipped: {error}");
    }
    let removal = match job.mode {
        JobMode::Scheduled => None,
        JobMode::List => {
            let (removal, bad) = PatternSet::parse_lenient(ListKind::Removal, &job.removal);
            for error in bad {
                tracing::warn!("removal entry skipped: {error}");
            }
            Some(removal)
        }
    };
    Policy {
        exclusions,
        removal,
        min_unused: Duration::from_secs(job.min_unused_seconds),
    }
}

/// An API client: the kubeconfig in `KUBECONFIG` when set, else the pod's service account.
pub async fn client(timeout: Duration) -> Result<kube::Client, Error> {
    let mut config = kube::Config::infer().await.map_err(Error::ClientConfig)?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    kube::Client::try_from(config).map_err(Error::Client)
}

/// Runs the job on this node. `client` reads the pods on the node: a scheduled run fails
/// without it, a removal list goes on.
pub async fn run(options: &Options, client: Result<kube::Client, Error>) -> Result<Done, Error> {
    if options.node_name.is_empty() {
        return Err(Error::NoNodeName);
    }
    let job = read_job(&options.job_file)?;
    tracing::info!(job = %job.job, mode = job.mode.as_str(), node = %options.node_name, "worker starting");
    let runtime = Runtime::connect(&options.runtime_endpoint, Timeouts::default())
        .await
        .map_err(Error::Runtime)?;
    // Scan first (it can take a while), so the pods read next are fresh.
    let mut stale_database = None;
    let (vulnerable, scan_problem) = if job.scan {
        match scan_settings(options, &job).await {
            Ok((settings, stale)) => {
                if let Some(age) = stale {
                    tracing::warn!(
                        age_hours = age.as_secs() / 3600,
                        "the vulnerability database is older than db.maxAge; scanning with it"
                    );
                    stale_database = Some(age.as_secs());
                }
                match scan::scan(&runtime, &settings).await {
                    Ok(vulnerable) => (vulnerable, None),
                    Err(error) => (Default::default(), Some(error.to_string())),
                }
            }
            Err(problem) => (Default::default(), Some(problem)),
        }
    } else {
        (Default::default(), None)
    };
    if let Some(problem) = &scan_problem {
        tracing::warn!("vulnerability scan skipped, removing by age only: {problem}");
    }
    // Read the pods as late as possible: right before planning.
    let references = match client {
        Ok(client) => references(&client, &options.node_name, options.api_timeout).await,
        Err(error) => Err(error),
    };
    let references = match (references, job.mode) {
        (Ok(references), _) => references,
        (Err(error), JobMode::List) => {
            tracing::warn!(%error, "pods unreadable; a removal list does not depend on them");
            Default::default()
        }
        (Err(error), JobMode::Scheduled) => return Err(error),
    };
    let planned = image_cleaner_node::plan(
        &runtime,
        EngineOptions {
            node: options.node_name.clone(),
            policy: policy(&job),
            references,
            vulnerable,
            state_dir: options.state_dir.clone(),
            concurrency: options.concurrency,
        },
    )
    .await
    .map_err(Error::Runtime)?;
    for warning in planned.warnings() {
        tracing::warn!("{warning}");
    }
    let report = planned.execute(job.dry_run).await.map_err(Error::Runtime)?;
    let mut summary = compact(&report, job.scan && scan_problem.is_none());
    summary.stale_database_age = stale_database;
    if let Some(problem) = scan_problem {
        summary.outcome = image_cleaner_protocol::ReportOutcome::Partial;
        summary.error = Some(format!("vulnerability scan skipped: {problem}"));
    }
    Ok(Done { report, summary })
}

/// Longest time the download of the cluster's database from the manager may take.
const DATABASE_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The scan settings from the job's config file, with the node's copy of the cluster's
/// database when the job hands one over; and the database's age when it is stale.
async fn scan_settings(
    options: &Options,
    job: &WorkerJob,
) -> Result<(image_cleaner_node::scan::Settings, Option<Duration>), String> {
    let path = options
        .config_file
        .as_deref()
        .ok_or("no --config: the scanner's settings are in the config")?;
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    let parsed =
        image_cleaner_api::Config::from_yaml(&text).map_err(|errors| errors.to_string())?;
    // Without a state directory the copy lives only as long as this run.
    let mut scratch = None;
    let kept = match &job.database {
        Some(handoff) => {
            let dir = match &options.state_dir {
                Some(dir) => dir.join("vulnerability-db"),
                None => {
                    let dir = tempfile::tempdir().map_err(|error| error.to_string())?;
                    scratch.insert(dir).path().to_owned()
                }
            };
            let (path, _) = database::fetch(handoff, &dir, DATABASE_DOWNLOAD_TIMEOUT)
                .await
                .map_err(|error| error.to_string())?;
            Some(path)
        }
        None => None,
    };
    let settings = scan::settings(&parsed.config.components.scanner.config, kept.as_deref())
        .map_err(|error| error.to_string());
    // The database is read whole when opened; the scratch copy can go now.
    drop(scratch);
    settings
}

/// Writes the compact report where the kubelet reads the termination message; a failure to
/// write is logged (the exit status still tells the manager what happened).
pub fn write_termination_message(path: &Path, report: &WorkerReport) {
    let text = report.encode_bounded(MAX_TERMINATION_MESSAGE);
    if let Err(error) = std::fs::write(path, text) {
        tracing::warn!(path = %path.display(), %error, "could not write the termination message");
    }
}

#[cfg(test)]
mod tests {
    use image_cleaner_protocol::PROTOCOL_VERSION;

    use super::*;

    fn job(mode: JobMode) -> WorkerJob {
        WorkerJob {
            version: PROTOCOL_VERSION,
            job: "imagejob-abcde".into(),
            mode,
            exclusions: vec!["docker.io/library/*".into(), "*".into()],
            removal: vec!["*".into(), "a*b".into()],
            min_unused_seconds: 90,
            scan: false,
            dry_run: false,
            database: None,
        }
    }

    #[test]
    fn policies() {
        let scheduled = policy(&job(JobMode::Scheduled));
        assert_eq!(
            scheduled.exclusions.len(),
            1,
            "a lone * is never an exclusion"
        );
        assert!(scheduled.removal.is_none());
        assert_eq!(scheduled.min_unused, Duration::from_secs(90));
        let list = policy(&job(JobMode::List));
        assert_eq!(list.removal.map(|r| r.len()), Some(1));
    }

    #[test]
    fn reads_jobs_and_says_why_not() {
        let dir = std::env::temp_dir().join(format!("worker-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("job.json");
        std::fs::write(&path, job(JobMode::List).to_json()).expect("write");
        assert_eq!(read_job(&path).expect("reads").mode, JobMode::List);
        std::fs::write(&path, "{}").expect("write");
        assert_eq!(
            read_job(&path).expect_err("invalid").metric_label(),
            "invalid_json"
        );
        let missing = read_job(&dir.join("nope.json")).expect_err("missing");
        assert_eq!(missing.metric_label(), "job_unreadable");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
