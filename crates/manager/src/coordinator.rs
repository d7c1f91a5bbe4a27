//! The job controller: one loop that starts jobs (from removal lists and the schedule), fans
//! them out, follows them to the end, and cleans them up.
//!
//! One loop, so there is never more than one job at a time, whoever asks for it: a removal
//! list created or changed while a job runs waits for its end; a scheduled run that falls due
//! meanwhile starts after it. Before it starts a job, the loop asks the API server (not its
//! cache) whether one is in flight, so a new leader never starts a second job beside the one
//! its predecessor left. A job in flight, found at start, is adopted: its missing pods are
//! created, and it is followed like any other.
//!
//! Each pass is computed from the cluster's state (jobs, lists, worker pods, the config), so a
//! restart resumes exactly where the previous manager stopped:
//!
//! ```text
//! no job in flight ─┬─ a removal list waits ───────────> start a list job
//!                   └─ the schedule is due ────────────> start a scheduled job
//! job without WorkersCreated ──────────────────────────> list nodes, filter, create pods
//! job with pods ── fold(pods) ─┬─ all nodes have an outcome ─> final status, metrics,
//!                              │                              Events, list status
//!                              └─ else ──────────────────────> progress status, wake at
//!                                                              the next deadline
//! finished job ── deleteAfter passed ──────────────────> delete it (the GC takes the rest)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use image_cleaner_api::config::{DbLocation, ScanEngine};
use image_cleaner_api::constants::JOB_OWNER_LABEL;
use image_cleaner_api::{Config, ImageJob, ImageJobStatus, ImageList, JobPhase, ListAction};
use image_cleaner_protocol::{DatabaseHandoff, PROTOCOL_VERSION, WorkerJob};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplate, PodTemplateSpec};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config_watch::ConfigState;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::fanout::RateLimiter;
use crate::jobs::{self, JobKind, MANAGED_BY, MANAGED_BY_LABEL};
use crate::lists::{self, Problem};
use crate::names::FIELD_MANAGER;
use crate::podindex::PodIndex;
use crate::pods::{self, WorkerSpec};
use crate::readiness::Readiness;
use crate::schedule;
use crate::state;
use crate::vulndb;

mod tracking;

/// Longest sleep between passes when nothing is due.
const IDLE: Duration = Duration::from_secs(60);
/// Pause while a cache catches up with this term's own write.
const STALE: Duration = Duration::from_millis(500);
/// Pause after a failed pass.
const RETRY: Duration = Duration::from_secs(5);
/// Changes arriving within this time are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Extra time a scanning worker gets beyond the scanner's own total timeout.
const SCAN_MARGIN: Duration = Duration::from_secs(10 * 60);

/// The sources the loop reads.
pub struct Sources {
    /// ImageJobs.
    pub jobs: Store<ImageJob>,
    /// ImageLists.
    pub lists: Store<ImageList>,
    /// Eraser's exclusion ConfigMaps.
    pub exclusion_maps: Store<ConfigMap>,
    /// Worker pods.
    pub pods: Arc<PodIndex>,
    /// The config in force.
    pub config: watch::Receiver<ConfigState>,
    /// Woken on every change of the above.
    pub notify: Arc<Notify>,
}

/// The job controller's state between passes.
pub struct Coordinator {
    ctx: Arc<Context>,
    sources: Sources,
    readiness: Readiness,
    limiter: RateLimiter,
    templates: HashMap<String, Arc<PodTemplateSpec>>,
    create_failures: HashMap<String, BTreeMap<String, String>>,
    written: HashMap<String, (tokio::time::Instant, serde_json::Value)>,
    /// What this term has written but its caches may not show yet: jobs whose pods were
    /// all created, jobs it finished, and list generations it recorded. A pass never
    /// repeats those writes (a second fan-out, a job counted twice in the metrics, or a
    /// second job for a list that already ran) because a watch is a moment behind.
    fanned_out: HashSet<String>,
    ended: HashSet<String>,
    /// List UID → generation.
    recorded: HashMap<String, i64>,
    last_scheduled_start: Option<Timestamp>,
    state_loaded: bool,
}

impl Coordinator {
    /// A coordinator over `sources`.
    pub fn new(ctx: Arc<Context>, sources: Sources, readiness: Readiness) -> Coordinator {
        let limiter = RateLimiter::new(ctx.settings.pod_create_qps, ctx.settings.pod_create_burst);
        Coordinator {
            ctx,
            sources,
            readiness,
            limiter,
            templates: HashMap::new(),
            create_failures: HashMap::new(),
            written: HashMap::new(),
            fanned_out: HashSet::new(),
            ended: HashSet::new(),
            recorded: HashMap::new(),
            last_scheduled_start: None,
            state_loaded: false,
        }
    }

    /// Runs until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        if !self.wait_for_sources(&cancel).await {
            return;
        }
        let mut config_changes = self.sources.config.clone();
        loop {
            let wake = match self.pass().await {
                Ok(wake) => wake,
                Err(error) => {
                    self.ctx.metrics.error("jobs", error.metric_label());
                    tracing::warn!(%error, "job controller pass failed; retrying");
                    RETRY
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.sources.notify.notified() => {}
                changed = config_changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(wake) => {}
            }
            // Let a burst of changes (a fan-out's pod events) settle into one pass.
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(DEBOUNCE) => {}
            }
        }
    }

    async fn wait_for_sources(&mut self, cancel: &CancellationToken) -> bool {
        let stores = async {
            let _ = self.sources.jobs.wait_until_ready().await;
            let _ = self.sources.lists.wait_until_ready().await;
            let _ = self.sources.exclusion_maps.wait_until_ready().await;
            let mut config = self.sources.config.clone();
            let _ = config.wait_for(|state| state.synced).await;
            while !self.sources.pods.is_synced() {
                self.sources.notify.notified().await;
            }
        };
        tokio::select! {
            () = cancel.cancelled() => false,
            () = stores => true,
        }
    }

    /// One pass; returns how long to sleep unless something changes.
    async fn pass(&mut self) -> Result<Duration> {
        let now = Timestamp::now();
        let state = self.sources.config.borrow().clone();
        let Some(config) = state.config.clone() else {
            self.readiness.set_not_ready(format!(
                "the config is invalid and no earlier config was accepted: {}",
                state.rejected.as_deref().unwrap_or("unknown error")
            ));
            return Ok(IDLE);
        };
        self.readiness.set_ready();
        if !self.state_loaded {
            self.last_scheduled_start = state::last_scheduled_start(&self.ctx).await?;
            self.state_loaded = true;
        }
        let mut wake = IDLE;
        let mut in_flight = 0usize;
        let jobs: Vec<Arc<ImageJob>> = self
            .sources
            .jobs
            .state()
            .into_iter()
            .filter(|job| JobKind::of(job).is_some())
            .collect();
        for job in &jobs {
            let next = if is_finished(job) {
                self.finished(job, now).await?
            } else if self.ended.contains(&job.name_any()) {
                // Ended by this term; the cache has not caught up yet.
                STALE
            } else {
                in_flight += 1;
                self.track(job, &config, now).await?
            };
            wake = wake.min(next);
        }
        self.forget_gone_jobs(&jobs);
        if in_flight > 0 {
            return Ok(wake);
        }
        let lists = self.sources.lists.state();
        let pending = lists::pending_removal(&lists, &jobs).filter(|list| {
            let uid = list.metadata.uid.clone().unwrap_or_default();
            let recorded = self.recorded.get(&uid).copied().unwrap_or(0);
            list.metadata.generation.unwrap_or(0) > recorded
        });
        if let Some(list) = pending.cloned() {
            if self.none_in_flight().await? {
                self.start_list_job(&list, &config).await?;
            }
            return Ok(Duration::ZERO);
        }
        self.refresh_last_start(&jobs);
        let next = schedule::next_run(schedule::Inputs {
            scheduling: &config.manager.scheduling,
            enabled: config.components.collector.enabled,
            last_start: self.last_scheduled_start,
            manager_start: self.ctx.started,
        });
        if schedule::is_due(next, now) {
            if self.none_in_flight().await? {
                self.start_scheduled_job(&config, now).await?;
            }
            return Ok(Duration::ZERO);
        }
        if let Some(next) = next {
            wake = wake.min(until(now, next));
        }
        Ok(wake)
    }

    /// The newest scheduled job's creation also counts as a start (the state ConfigMap may be
    /// behind if the manager died right after creating the job).
    fn refresh_last_start(&mut self, jobs: &[Arc<ImageJob>]) {
        let newest = jobs
            .iter()
            .filter(|job| JobKind::of(job) == Some(JobKind::Scheduled))
            .filter_map(|job| job.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .max();
        if let Some(newest) = newest
            && self.last_scheduled_start.is_none_or(|last| newest > last)
        {
            self.last_scheduled_start = Some(newest);
        }
    }

    /// Asks the API server (not the cache) whether a job of ours is in flight.
    async fn none_in_flight(&self) -> Result<bool> {
        let api: Api<ImageJob> = Api::all(self.ctx.client.clone());
        let params = ListParams::default().labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{JOB_OWNER_LABEL}"
        ));
        let list = self
            .ctx
            .call(|| "listing ImageJobs".into(), api.list(&params))
            .await?;
        Ok(list.items.iter().all(job_finished))
    }

    fn forget_gone_jobs(&mut self, jobs: &[Arc<ImageJob>]) {
        let names: std::collections::HashSet<String> = jobs.iter().map(|j| j.name_any()).collect();
        self.templates.retain(|name, _| names.contains(name));
        self.create_failures.retain(|name, _| names.contains(name));
        self.written.retain(|name, _| names.contains(name));
        self.fanned_out.retain(|name| names.contains(name));
        self.ended.retain(|name| names.contains(name));
    }

    // --- starting jobs ---------------------------------------------------------------

    async fn start_list_job(&mut self, list: &ImageList, config: &Config) -> Result<()> {
        let name = list.name_any();
        let generation = list.metadata.generation.unwrap_or(0);
        let (patterns, _malformed) = list.spec.patterns(ListAction::Remove);
        if patterns.is_empty() {
            // Nothing valid to remove: record the generation as handled, and say why.
            self.patch_list_status(&name, json!({ "observedGeneration": generation }))
                .await?;
            self.ctx
                .events
                .publish(
                    list,
                    Kind::Warning,
                    "NothingToRemove",
                    "StartJob",
                    "The list has no valid entry; no job was started",
                )
                .await;
            return Ok(());
        }
        let removal = patterns
            .patterns()
            .iter()
            .map(ToString::to_string)
            .collect();
        let job = self
            .create_job(JobKind::List, Some(list), config, removal)
            .await?;
        self.ctx
            .events
            .publish(
                list,
                Kind::Normal,
                "JobStarted",
                "StartJob",
                &format!(
                    "Started removal job {} for generation {generation}",
                    job.name_any()
                ),
            )
            .await;
        Ok(())
    }

    async fn start_scheduled_job(&mut self, config: &Config, now: Timestamp) -> Result<()> {
        self.create_job(JobKind::Scheduled, None, config, Vec::new())
            .await?;
        self.last_scheduled_start = Some(now);
        if let Err(error) = state::record_scheduled_start(&self.ctx, now).await {
            // The job's own creation time also records the start; the ConfigMap only helps
            // once the job is gone.
            tracing::warn!(%error, "could not record the scheduled start");
        }
        Ok(())
    }

    /// Creates the ImageJob, then its ConfigMap and PodTemplate. Pods follow in the next pass.
    async fn create_job(
        &mut self,
        kind: JobKind,
        list: Option<&ImageList>,
        config: &Config,
        removal: Vec<String>,
    ) -> Result<ImageJob> {
        let api: Api<ImageJob> = Api::all(self.ctx.client.clone());
        let job = self
            .ctx
            .call(
                || "creating an ImageJob".into(),
                api.create(&post_params(), &jobs::new_job(kind, list)),
            )
            .await?;
        let name = job.name_any();
        self.ctx.metrics.job_started(kind.as_str());
        tracing::info!(job = %name, kind = kind.as_str(), "job started");
        self.create_job_objects(&job, kind, config, removal).await?;
        self.ctx
            .events
            .publish(
                &job,
                Kind::Normal,
                "Started",
                "StartJob",
                &match list {
                    Some(list) => format!("Removal job for ImageList {}", list.name_any()),
                    None => "Scheduled run".to_owned(),
                },
            )
            .await;
        Ok(job)
    }

    async fn create_job_objects(
        &mut self,
        job: &ImageJob,
        kind: JobKind,
        config: &Config,
        removal: Vec<String>,
    ) -> Result<Arc<PodTemplateSpec>> {
        let name = job.name_any();
        let namespace = self.ctx.settings.namespace.clone();
        let owner = jobs::owner(job);
        let exclusions = self.exclusions().await;
        let scan = kind == JobKind::Scheduled && config.components.scanner.enabled;
        let database = if scan {
            self.prepare_database(job, config).await
        } else {
            None
        };
        let worker_job = WorkerJob {
            version: PROTOCOL_VERSION,
            job: name.clone(),
            mode: kind.mode(),
            exclusions,
            removal,
            min_unused_seconds: config
                .manager
                .scheduling
                .min_unused()
                .as_duration()
                .as_secs(),
            scan,
            dry_run: false,
            database,
        };
        let config_yaml = config.to_yaml().map_err(Error::ConfigYaml)?;
        let config_map = jobs::job_config_map(&owner, &namespace, &worker_job, config_yaml);
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &namespace);
        ignore_conflict(
            self.ctx
                .call(
                    || format!("creating ConfigMap {name}"),
                    api.create(&post_params(), &config_map),
                )
                .await,
        )?;
        let (image, warning) = pods::worker_image(config, &self.ctx.settings.image);
        if let Some(warning) = warning {
            tracing::warn!(job = %name, "{warning}");
        }
        let template = pods::template(&WorkerSpec {
            job: &name,
            mode: kind.mode(),
            scan,
            config,
            image: &image,
            extra_pull_secrets: &self.ctx.settings.extra_pull_secrets,
            log_level: self.ctx.settings.worker_log_level.as_deref(),
        });
        let api: Api<PodTemplate> = Api::namespaced(self.ctx.client.clone(), &namespace);
        ignore_conflict(
            self.ctx
                .call(
                    || format!("creating PodTemplate {name}"),
                    api.create(
                        &post_params(),
                        &jobs::pod_template(&owner, &namespace, template.clone()),
                    ),
                )
                .await,
        )?;
        let template = Arc::new(template);
        self.templates.insert(name, template.clone());
        Ok(template)
    }

    /// The cluster's copy of the vulnerability database for a scanning job, when the native
    /// scanner takes it from a ConfigMap or a URL; problems and staleness become Warning
    /// Events on the job.
    async fn prepare_database(&self, job: &ImageJob, config: &Config) -> Option<DatabaseHandoff> {
        let scanner = &config.components.scanner.config;
        let source = scanner.db.as_ref()?;
        if scanner.engine != ScanEngine::Native || matches!(source.location, DbLocation::Path(_)) {
            return None;
        }
        let now = std::time::SystemTime::now();
        let prepared = self
            .ctx
            .database
            .prepare(
                &self.ctx.client,
                &self.ctx.settings.namespace,
                source,
                self.ctx.database_url.as_deref(),
                now,
            )
            .await;
        self.ctx.metrics.database(
            prepared.copy.as_ref().map(|c| c.age(now)),
            prepared.handoff.problem.is_none(),
        );
        if let Some(problem) = &prepared.handoff.problem {
            self.ctx
                .events
                .publish(
                    job,
                    Kind::Warning,
                    "VulnerabilityDatabase",
                    "FetchDatabase",
                    problem,
                )
                .await;
        }
        if let (true, Some(copy)) = (prepared.stale, &prepared.copy) {
            let note = format!(
                "The vulnerability database was built {} ago, more than db.maxAge {}: scans still use it, but miss what was published since; update its source",
                vulndb::humanize(copy.age(now)),
                source.max_age
            );
            tracing::warn!(job = %job.name_any(), "{note}");
            self.ctx
                .events
                .publish(
                    job,
                    Kind::Warning,
                    "StaleVulnerabilityDatabase",
                    "FetchDatabase",
                    &note,
                )
                .await;
        }
        Some(prepared.handoff)
    }

    /// The merged exclusions, reporting bad sources.
    async fn exclusions(&self) -> Vec<String> {
        let lists = self.sources.lists.state();
        let maps = self.sources.exclusion_maps.state();
        let merged = lists::exclusions(&lists, &maps);
        for problem in &merged.problems {
            let (name, note) = match problem {
                Problem::ConfigMap { name, error } => {
                    (name, format!("Exclusion ConfigMap not used: {error}"))
                }
                Problem::ConfigMapEntries { name, errors } => (
                    name,
                    format!(
                        "{} malformed exclusion entries skipped (the rest applies): {}",
                        errors.len(),
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ),
            };
            tracing::warn!(config_map = %name, "{note}");
            if let Some(cm) = maps.iter().find(|cm| &cm.name_any() == name) {
                self.ctx
                    .events
                    .publish(
                        cm.as_ref(),
                        Kind::Warning,
                        "MalformedExclusions",
                        "StartJob",
                        &note,
                    )
                    .await;
            }
        }
        merged.entries()
    }

    // --- writes ----------------------------------------------------------------------------

    async fn patch_job_status(&self, name: &str, status: &serde_json::Value) -> Result<()> {
        let api: Api<ImageJob> = Api::all(self.ctx.client.clone());
        let patch = json!({ "status": status });
        self.ctx
            .call(
                || format!("updating the status of ImageJob {name}"),
                api.patch_status(name, &patch_params(), &Patch::Merge(&patch)),
            )
            .await
            .map(|_| ())
    }

    async fn patch_list_status(&self, name: &str, status: serde_json::Value) -> Result<()> {
        let api: Api<ImageList> = Api::all(self.ctx.client.clone());
        let patch = json!({ "status": status });
        self.ctx
            .call(
                || format!("updating the status of ImageList {name}"),
                api.patch_status(name, &patch_params(), &Patch::Merge(&patch)),
            )
            .await
            .map(|_| ())
    }
}

fn is_finished(job: &Arc<ImageJob>) -> bool {
    job_finished(job)
}

fn job_finished(job: &ImageJob) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(JobPhase::is_finished)
}

fn to_value(status: &ImageJobStatus) -> Result<serde_json::Value> {
    serde_json::to_value(status).map_err(|source| Error::Encode {
        what: "a job status",
        source,
    })
}

fn ignore_conflict<T>(result: Result<T>) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.is_conflict() => Ok(()),
        Err(error) => Err(error),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    }
}

/// Time from `now` until `at` (zero when past).
fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// The first few names, then how many more.
fn abbreviate(names: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::plus;

    #[test]
    fn abbreviates_long_lists() {
        let names: Vec<String> = (0..12).map(|i| format!("n{i}")).collect();
        assert_eq!(abbreviate(&names[..2]), "n0, n1");
        assert!(abbreviate(&names).ends_with("n9 and 2 more"));
    }

    #[test]
    fn until_is_never_negative() {
        let now = Timestamp::now();
        assert_eq!(until(now, now), Duration::ZERO);
        let later = plus(now, Duration::from_secs(5));
        assert_eq!(until(later, now), Duration::ZERO);
        assert_eq!(until(now, later), Duration::from_secs(5));
    }
}
