//! Following a job: fan-out, progress, the end, and cleanup.

use std::sync::Arc;
use std::time::Duration;

use image_cleaner_api::{Config, ImageJob, ImageJobStatus, JobPhase, ListAction};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplate, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use serde_json::json;

use super::{Coordinator, IDLE, SCAN_MARGIN, abbreviate, to_value, until};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::fanout;
use crate::jobs::{self, JobKind};
use crate::lists;
use crate::metrics::JobOutcome;
use crate::names::CONDITION_WORKERS_CREATED;
use crate::nodes;
use crate::report::{self, FoldInputs, Phase, WorkerTimeouts, condition, has_condition, plus};

impl Coordinator {
    // --- jobs in flight ----------------------------------------------------------------

    pub(super) async fn track(
        &mut self,
        job: &ImageJob,
        config: &Config,
        now: Timestamp,
    ) -> Result<Duration> {
        let name = job.name_any();
        let Some(kind) = JobKind::of(job) else {
            return Ok(IDLE);
        };
        let status = job.status.clone().unwrap_or_default();
        if !has_condition(&status.conditions, CONDITION_WORKERS_CREATED)
            && !self.fanned_out.contains(&name)
        {
            self.fan_out(job, kind, config, status, now).await?;
            return Ok(Duration::ZERO);
        }
        let timeouts = self.timeouts(kind, config);
        let failures = self.create_failures.get(&name).cloned().unwrap_or_default();
        let progress = self.sources.pods.with_job(&name, |pods| {
            report::fold(
                FoldInputs {
                    current: &status,
                    workers_created: true,
                    create_failures: &failures,
                    success_ratio: config.manager.image_job.success_ratio,
                    now,
                    timeouts,
                },
                pods,
            )
        });
        if progress.finished {
            self.finish(job, kind, config, progress, now).await?;
            return Ok(Duration::ZERO);
        }
        let mut wake = progress
            .next_deadline
            .map_or(IDLE, |deadline| until(now, deadline));
        if let Some(wait) = self.write_progress(&name, &progress.status).await? {
            wake = wake.min(wait);
        }
        Ok(wake)
    }

    fn timeouts(&self, kind: JobKind, config: &Config) -> WorkerTimeouts {
        let mut timeouts = self.ctx.settings.timeouts;
        if kind == JobKind::Scheduled && config.components.scanner.enabled {
            let total = config.components.scanner.config.timeout.total.as_duration();
            timeouts.run = timeouts.run.max(total + SCAN_MARGIN);
        }
        timeouts
    }

    /// Writes a running job's progress, at most every `status_interval`; returns when to try
    /// again if a write was held back.
    async fn write_progress(
        &mut self,
        name: &str,
        status: &ImageJobStatus,
    ) -> Result<Option<Duration>> {
        let value = serde_json::to_value(status).map_err(|source| Error::Encode {
            what: "a job status",
            source,
        })?;
        let interval = self.ctx.settings.status_interval;
        if let Some((at, last)) = self.written.get(name) {
            if *last == value {
                return Ok(None);
            }
            let elapsed = at.elapsed();
            if elapsed < interval {
                return Ok(Some(interval - elapsed));
            }
        }
        self.patch_job_status(name, &value).await?;
        self.written
            .insert(name.to_owned(), (tokio::time::Instant::now(), value));
        Ok(None)
    }

    async fn fan_out(
        &mut self,
        job: &ImageJob,
        kind: JobKind,
        config: &Config,
        mut status: ImageJobStatus,
        now: Timestamp,
    ) -> Result<()> {
        let name = job.name_any();
        let template = self.template(job, kind, config).await?;
        let all = fanout::list_nodes(&self.ctx).await?;
        let selection = nodes::select(&all, &config.manager.node_filter);
        status.desired = selection.total as i64;
        status.skipped = selection.skipped() as i64;
        status.phase = Some(JobPhase::Running);
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        self.patch_job_status(&name, &to_value(&status)?).await?;
        if !selection.windows.is_empty() {
            self.ctx
                .events
                .publish(
                    job,
                    Kind::Normal,
                    "WindowsNodesSkipped",
                    "FanOut",
                    &format!(
                        "{} Windows nodes skipped (not supported): {}",
                        selection.windows.len(),
                        abbreviate(&selection.windows)
                    ),
                )
                .await;
        }
        let have = self.sources.pods.nodes_of(&name);
        let started = tokio::time::Instant::now();
        let fan_out = fanout::create_pods(
            &self.ctx,
            &self.limiter,
            &template,
            &jobs::owner(job),
            &selection.eligible,
            &have,
        )
        .await;
        self.ctx.metrics.pods_created(fan_out.created as u64);
        tracing::info!(
            job = %name,
            nodes = selection.total,
            eligible = selection.eligible.len(),
            created = fan_out.created,
            existing = fan_out.existing,
            failed = fan_out.failures.len(),
            seconds = started.elapsed().as_secs_f64(),
            "worker pods created"
        );
        let note = format!(
            "{} worker pods for {} nodes ({} skipped by the node filter, {} Windows){}",
            fan_out.created + fan_out.existing,
            selection.total,
            selection.filtered.len(),
            selection.windows.len(),
            if fan_out.failures.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} could not be created: {}",
                    fan_out.failures.len(),
                    abbreviate(&fan_out.failures.keys().cloned().collect::<Vec<_>>())
                )
            }
        );
        self.create_failures
            .entry(name.clone())
            .or_default()
            .extend(fan_out.failures);
        report::set_condition(
            &mut status.conditions,
            condition(
                CONDITION_WORKERS_CREATED,
                true,
                "PodsCreated",
                note.clone(),
                Timestamp::now(),
            ),
        );
        self.patch_job_status(&name, &to_value(&status)?).await?;
        self.fanned_out.insert(name.clone());
        self.ctx
            .events
            .publish(job, Kind::Normal, "WorkersCreated", "FanOut", &note)
            .await;
        Ok(())
    }

    /// The job's pod template: cached, else read back, else made again (the previous manager
    /// died before creating it).
    async fn template(
        &mut self,
        job: &ImageJob,
        kind: JobKind,
        config: &Config,
    ) -> Result<Arc<PodTemplateSpec>> {
        let name = job.name_any();
        if let Some(template) = self.templates.get(&name) {
            return Ok(template.clone());
        }
        let api: Api<PodTemplate> =
            Api::namespaced(self.ctx.client.clone(), &self.ctx.settings.namespace);
        let stored = self
            .ctx
            .call(|| format!("reading PodTemplate {name}"), api.get_opt(&name))
            .await?;
        if let Some(template) = stored.and_then(|t| t.template) {
            let template = Arc::new(template);
            self.templates.insert(name, template.clone());
            return Ok(template);
        }
        let removal = match kind {
            JobKind::Scheduled => Vec::new(),
            JobKind::List => {
                let list = lists::job_list_generation(job).and_then(|(list, _)| {
                    self.sources
                        .lists
                        .state()
                        .into_iter()
                        .find(|l| l.name_any() == list)
                });
                list.map(|l| {
                    l.spec
                        .patterns(ListAction::Remove)
                        .0
                        .patterns()
                        .iter()
                        .map(ToString::to_string)
                        .collect()
                })
                .unwrap_or_default()
            }
        };
        self.create_job_objects(job, kind, config, removal).await
    }

    async fn finish(
        &mut self,
        job: &ImageJob,
        kind: JobKind,
        config: &Config,
        progress: report::Progress,
        now: Timestamp,
    ) -> Result<()> {
        let name = job.name_any();
        let mut status = progress.status;
        let phase = status.phase.unwrap_or(JobPhase::Completed);
        let cleanup = &config.manager.image_job.cleanup;
        let delay = match phase {
            JobPhase::Failed => cleanup.delay_on_failure,
            _ => cleanup.delay_on_success,
        };
        status.delete_after = Some(Time(plus(now, delay.as_duration())));
        self.patch_job_status(&name, &to_value(&status)?).await?;
        self.ended.insert(name.clone());
        let start = status.start_time.as_ref().map(|t| t.0).or(job
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0));
        let duration = start.map_or(0.0, |s| now.duration_since(s).as_secs_f64());
        self.ctx.metrics.job_finished(&JobOutcome {
            kind: kind.as_str(),
            phase: phase.as_str(),
            duration_seconds: duration,
            succeeded: status.succeeded.max(0) as u64,
            failed: status.failed.max(0) as u64,
            removed: status.images_removed.unwrap_or(0).max(0) as u64,
            freed_bytes: status.bytes_freed.unwrap_or(0).max(0) as u64,
            vulnerable: status.vulnerable_images.unwrap_or(0).max(0) as u64,
            kept: progress.kept.into_iter().collect(),
            causes: progress.causes.into_iter().collect(),
        });
        let summary = format!(
            "{}: {} of {} nodes succeeded, {} failed, {} skipped; {} images removed, {} bytes freed",
            phase.as_str(),
            status.succeeded,
            status.desired,
            status.failed,
            status.skipped,
            status.images_removed.unwrap_or(0),
            status.bytes_freed.unwrap_or(0),
        );
        tracing::info!(job = %name, "{summary}");
        let kind_of_event = if phase == JobPhase::Failed {
            Kind::Warning
        } else {
            Kind::Normal
        };
        self.ctx
            .events
            .publish(job, kind_of_event, phase.as_str(), "Finish", &summary)
            .await;
        let mut finished = job.clone();
        finished.status = Some(status);
        self.delete_stragglers(&name).await;
        if kind == JobKind::List {
            self.record_on_list(&finished).await?;
        }
        Ok(())
    }

    /// Deletes the job's pods that have not ended (timed out), so none acts after the job.
    async fn delete_stragglers(&self, job: &str) {
        let stragglers: Vec<String> = self.sources.pods.with_job(job, |pods| {
            pods.filter(|p| matches!(p.phase, Phase::Pending | Phase::Running) && !p.deleting)
                .map(|p| p.name.clone())
                .collect()
        });
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.ctx.settings.namespace);
        for pod in stragglers {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            match self
                .ctx
                .call(|| format!("deleting pod {pod}"), api.delete(&pod, &params))
                .await
            {
                Ok(_) => tracing::info!(pod = %pod, "deleted a worker pod past its deadline"),
                Err(error) if error.is_not_found() => {}
                Err(error) => tracing::warn!(pod = %pod, %error, "could not delete a worker pod"),
            }
        }
    }

    /// Copies a removal job's result to its ImageList (Eraser's fields), once.
    async fn record_on_list(&mut self, job: &ImageJob) -> Result<()> {
        let Some((list_name, generation)) = lists::job_list_generation(job) else {
            return Ok(());
        };
        let lists = self.sources.lists.state();
        let Some(list) = lists.iter().find(|l| l.name_any() == list_name) else {
            return Ok(());
        };
        let list_uid = list.metadata.uid.clone().unwrap_or_default();
        let owned = job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| Some(&o.uid) == list.metadata.uid.as_ref());
        let observed = list
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0)
            .max(self.recorded.get(&list_uid).copied().unwrap_or(0));
        if !owned || observed >= generation {
            return Ok(());
        }
        let status = job.status.clone().unwrap_or_default();
        let timestamp = status
            .completion_time
            .clone()
            .map_or_else(|| Timestamp::now().to_string(), |t| t.0.to_string());
        self.patch_list_status(
            &list_name,
            json!({
                "timestamp": timestamp,
                "success": status.succeeded,
                "failed": status.failed,
                "skipped": status.skipped,
                "observedGeneration": generation,
            }),
        )
        .await?;
        self.recorded.insert(list_uid, generation);
        let phase = status.phase.unwrap_or(JobPhase::Completed);
        let kind = if phase == JobPhase::Failed {
            Kind::Warning
        } else {
            Kind::Normal
        };
        self.ctx
            .events
            .publish(
                list.as_ref(),
                kind,
                if phase == JobPhase::Failed {
                    "JobFailed"
                } else {
                    "JobCompleted"
                },
                "Finish",
                &format!(
                    "Job {} {}: {} nodes succeeded, {} failed, {} skipped; {} images removed",
                    job.name_any(),
                    phase.as_str(),
                    status.succeeded,
                    status.failed,
                    status.skipped,
                    status.images_removed.unwrap_or(0)
                ),
            )
            .await;
        Ok(())
    }

    // --- finished jobs -------------------------------------------------------------------

    pub(super) async fn finished(&mut self, job: &ImageJob, now: Timestamp) -> Result<Duration> {
        let name = job.name_any();
        if JobKind::of(job) == Some(JobKind::List) {
            self.record_on_list(job).await?;
        }
        self.delete_stragglers(&name).await;
        let delete_after = job
            .status
            .as_ref()
            .and_then(|s| s.delete_after.as_ref())
            .map(|t| t.0);
        let Some(delete_after) = delete_after else {
            let value = json!({ "deleteAfter": now.to_string() });
            self.patch_job_status(&name, &value).await?;
            return Ok(Duration::ZERO);
        };
        if delete_after > now {
            return Ok(until(now, delete_after));
        }
        let api: Api<ImageJob> = Api::all(self.ctx.client.clone());
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match self
            .ctx
            .call(
                || format!("deleting ImageJob {name}"),
                api.delete(&name, &params),
            )
            .await
        {
            Ok(_) => tracing::info!(job = %name, "finished job deleted"),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        Ok(IDLE)
    }
}
