//! One run: collect, plan, and (for `clean`) remove and measure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use image_cleaner_core::{
    Decision, ImageId, LastSeen, Plan, PlanInput, Policy, Reason, References, usage,
};

use crate::inventory::{Collected, collect};
use crate::removal::{Outcome, remove_all};
use crate::report::{ImageReport, Report, RuntimeInfo, Summary};
use crate::state::StateFile;
use crate::{Result, Runtime};

/// What a run is asked to do.
#[derive(Clone, Debug)]
pub struct Options {
    /// Node name for the report.
    pub node: String,
    /// Exclusions, removal list, minimum unused age.
    pub policy: Policy,
    /// Images named by live pods bound to this node (empty outside a cluster).
    pub references: References,
    /// Image -> vulnerability IDs that condemn it, from a scan.
    pub vulnerable: BTreeMap<ImageId, Vec<String>>,
    /// Where last-use state is kept; `None` keeps none.
    pub state_dir: Option<PathBuf>,
    /// Removals in flight at once.
    pub concurrency: usize,
}

/// A plan made against the live runtime, ready to report or carry out.
#[derive(Debug)]
pub struct PlannedRun<'r> {
    runtime: &'r Runtime,
    options: Options,
    collected: Collected,
    plan: Plan,
    /// What removing the whole planned set frees; sized at plan time, before anything goes.
    reclaimable: Option<u64>,
    state: Option<(StateFile, LastSeen)>,
    warnings: Vec<String>,
}

/// Collects the inventory, updates last-use state and plans.
pub async fn plan<'r>(runtime: &'r Runtime, options: Options) -> Result<PlannedRun<'r>> {
    plan_at(runtime, options, SystemTime::now()).await
}

async fn plan_at<'r>(
    runtime: &'r Runtime,
    options: Options,
    now: SystemTime,
) -> Result<PlannedRun<'r>> {
    let collected = collect(runtime).await?;
    let inventory = &collected.inventory;
    let mut warnings = Vec::new();

    let state = options.state_dir.as_ref().map(|dir| {
        let file = StateFile::in_dir(dir);
        let (mut seen, warning) = file.load();
        if let Some(w) = warning {
            tracing::warn!("{w}");
            warnings.push(w.to_string());
        }
        // Forget images the node no longer has, so the file stays as small as its image list.
        seen.retain_present(inventory);
        seen.record(&usage::running_images(inventory), now);
        if let Err(w) = file.save(&seen) {
            tracing::warn!("{w}");
            warnings.push(w.to_string());
        }
        (file, seen)
    });

    let empty = LastSeen::default();
    let plan = image_cleaner_core::plan(
        &PlanInput {
            inventory,
            references: &options.references,
            last_seen: state.as_ref().map_or(&empty, |(_, seen)| seen),
            vulnerable: &options.vulnerable,
            now,
        },
        &options.policy,
    );
    let reclaimable = plan_reclaimable(runtime, &collected, &plan).await?;
    Ok(PlannedRun {
        runtime,
        options,
        collected,
        plan,
        reclaimable,
        state,
        warnings,
    })
}

impl PlannedRun<'_> {
    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Problems the run survived (state file unreadable, corrupt or unwritable).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The report of the plan alone: nothing removed, nothing freed.
    pub fn report(&self) -> Report {
        self.base_report(self.reclaimable)
    }

    /// Carries out the plan and reports what happened, with freed bytes as measured.
    pub async fn execute(self, dry_run: bool) -> Result<Report> {
        let reclaimable = self.reclaimable;
        let targets: Vec<_> = self.plan.to_remove().map(|e| e.image.clone()).collect();
        let fs_before = if self.runtime.containerd.is_none() && !dry_run {
            Some(self.runtime.cri.image_fs_used_bytes().await?)
        } else {
            None
        };

        let outcomes = remove_all(
            self.runtime,
            &targets,
            &self.collected.inventory.sandbox_images,
            self.options.concurrency,
            dry_run,
        )
        .await;
        let outcomes: BTreeMap<ImageId, Outcome> = outcomes.into_iter().collect();
        let removed: BTreeSet<ImageId> = outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Removed)
            .map(|(id, _)| id.clone())
            .collect();

        let freed = if removed.is_empty() {
            0
        } else {
            self.measure_freed(&removed, fs_before).await?
        };

        let mut report = self.base_report(reclaimable);
        for image in &mut report.images {
            let id = ImageId::new(image.id.clone());
            match outcomes.get(&id) {
                Some(Outcome::Removed) => image.removed = true,
                Some(Outcome::BecameRunning) => {
                    image.decision = Decision::Keep;
                    image.reason = Reason::Running;
                }
                Some(Outcome::Failed(why)) => image.error = Some(why.clone()),
                Some(Outcome::DryRun) | None => {}
            }
        }
        report.summary = summarize(&report.images, reclaimable, freed);

        if let Some((file, mut seen)) = self.state {
            seen.0.retain(|id, _| !removed.contains(id));
            if let Err(w) = file.save(&seen) {
                tracing::warn!("{w}");
            }
        }
        Ok(report)
    }

    /// With containerd: the bytes of the removed images' blobs and snapshots that are gone
    /// now, sized before removal. Otherwise: the drop in the image filesystem's usage.
    async fn measure_freed(
        &self,
        removed: &BTreeSet<ImageId>,
        fs_before: Option<u64>,
    ) -> Result<u64> {
        if let (Some(containerd), Some(graph)) = (&self.runtime.containerd, &self.collected.content)
        {
            let candidates = graph.exclusive_to(removed);
            let present = containerd.present().await?;
            let gone = candidates
                .into_iter()
                .filter(|item| !present.contains(item))
                .collect();
            return Ok(containerd.bytes_of(graph, &gone).await?);
        }
        let after = self.runtime.cri.image_fs_used_bytes().await?;
        Ok(fs_before.map_or(0, |before| before.saturating_sub(after)))
    }

    fn base_report(&self, reclaimable: Option<u64>) -> Report {
        let version = self.runtime.cri.version();
        let images: Vec<ImageReport> = self
            .plan
            .entries
            .iter()
            .map(|e| ImageReport {
                id: e.image.id.to_string(),
                names: e.image.names.clone(),
                digests: e.image.digests.clone(),
                size_bytes: e.image.size_bytes,
                reclaimable_bytes: e.image.reclaimable_bytes,
                decision: e.decision(),
                reason: e.reason,
                removed: false,
                error: None,
                vulnerabilities: match (e.reason, &e.matched) {
                    (Reason::Vulnerable, Some(ids)) => ids.split(',').map(str::to_string).collect(),
                    _ => Vec::new(),
                },
            })
            .collect();
        Report {
            node: self.options.node.clone(),
            runtime: RuntimeInfo {
                name: version.name.clone(),
                version: version.version.clone(),
                endpoint: self.runtime.cri.endpoint().to_string(),
            },
            summary: summarize(&images, reclaimable, 0),
            images,
        }
    }
}

fn summarize(images: &[ImageReport], reclaimable: Option<u64>, freed: u64) -> Summary {
    let remove = images
        .iter()
        .filter(|i| i.decision == Decision::Remove)
        .count();
    Summary {
        images: images.len(),
        remove,
        keep: images.len() - remove,
        removed: images.iter().filter(|i| i.removed).count(),
        failed: images.iter().filter(|i| i.error.is_some()).count(),
        reclaimable_bytes: reclaimable,
        freed_bytes: freed,
    }
}

/// Bytes that removing the whole planned set frees: layers shared only among planned images
/// count once, which per-image figures cannot show.
async fn plan_reclaimable(
    runtime: &Runtime,
    collected: &Collected,
    plan: &Plan,
) -> Result<Option<u64>> {
    let (Some(containerd), Some(graph)) = (&runtime.containerd, &collected.content) else {
        return Ok(None);
    };
    let set: BTreeSet<ImageId> = plan.to_remove().map(|e| e.image.id.clone()).collect();
    let items = graph.exclusive_to(&set);
    Ok(Some(containerd.bytes_of(graph, &items).await?))
}
