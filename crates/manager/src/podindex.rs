//! The worker pods of every job, kept small.
//!
//! A reflector would keep whole Pod objects (several KiB each, times thousands of nodes);
//! only a [`PodView`] per pod is kept here: the node, the phase, the times that decide
//! deadlines, and the worker's report, parsed once when the pod ends. Only pods labelled as
//! workers of a job (`app=eraser`, `eraser.sh/imagejob`) in the manager's namespace are
//! watched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use image_cleaner_api::constants::{APP_LABEL, APP_WORKER};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::names::JOB_LABEL;
use crate::report::PodView;

/// Pods by job, then by pod name.
#[derive(Debug, Default)]
pub struct PodIndex {
    jobs: RwLock<HashMap<String, HashMap<String, PodView>>>,
    synced: AtomicBool,
}

impl PodIndex {
    /// Whether the first listing is in.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Calls `f` with the pods of `job`.
    pub fn with_job<T>(
        &self,
        job: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &PodView>) -> T,
    ) -> T {
        let jobs = match self.jobs.read() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        };
        match jobs.get(job) {
            Some(pods) => f(&mut pods.values()),
            None => f(&mut std::iter::empty()),
        }
    }

    /// The nodes that have a pod of `job`.
    pub fn nodes_of(&self, job: &str) -> std::collections::HashSet<String> {
        self.with_job(job, |pods| pods.map(|p| p.node.clone()).collect())
    }

    /// Names of the pods of `job`.
    pub fn names_of(&self, job: &str) -> Vec<String> {
        self.with_job(job, |pods| pods.map(|p| p.name.clone()).collect())
    }

    /// Jobs that have pods.
    pub fn jobs(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Number of pods indexed.
    pub fn len(&self) -> usize {
        self.read().values().map(HashMap::len).sum()
    }

    /// Whether no pod is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, HashMap<String, PodView>>> {
        match self.jobs.read() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, HashMap<String, PodView>>> {
        match self.jobs.write() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds or replaces a pod.
    pub fn apply(&self, view: PodView) {
        self.write()
            .entry(view.job.clone())
            .or_default()
            .insert(view.name.clone(), view);
    }

    /// Removes a pod.
    pub fn delete(&self, job: &str, name: &str) {
        let mut jobs = self.write();
        if let Some(pods) = jobs.get_mut(job) {
            pods.remove(name);
            if pods.is_empty() {
                jobs.remove(job);
            }
        }
    }

    /// Replaces everything (after a full listing).
    pub fn replace(&self, views: Vec<PodView>) {
        let mut fresh: HashMap<String, HashMap<String, PodView>> = HashMap::new();
        for view in views {
            fresh
                .entry(view.job.clone())
                .or_default()
                .insert(view.name.clone(), view);
        }
        *self.write() = fresh;
        self.synced.store(true, Ordering::Release);
    }
}

/// The label selector of worker pods.
pub fn worker_selector() -> String {
    format!("{APP_LABEL}={APP_WORKER},{JOB_LABEL}")
}

/// Keeps `index` in step with the worker pods until cancelled, waking `notify` on changes.
pub async fn run(
    ctx: Arc<Context>,
    index: Arc<PodIndex>,
    notify: Arc<Notify>,
    cancel: CancellationToken,
) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let config = watcher::Config::default()
        .labels(&worker_selector())
        .timeout(crate::WATCH_TIMEOUT_SECS);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer: Vec<PodView> = Vec::new();
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(pod)) => buffer.extend(PodView::from_pod(&pod)),
            Ok(Event::InitDone) => {
                index.replace(std::mem::take(&mut buffer));
                notify.notify_one();
            }
            Ok(Event::Apply(pod)) => {
                if let Some(view) = PodView::from_pod(&pod) {
                    index.apply(view);
                    notify.notify_one();
                }
            }
            Ok(Event::Delete(pod)) => {
                if let Some(view) = PodView::from_pod(&pod) {
                    index.delete(&view.job, &view.name);
                    notify.notify_one();
                }
            }
            Err(error) => {
                ctx.metrics.error("pods", "watch");
                tracing::warn!(%error, "watching worker pods");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Phase;

    fn view(job: &str, name: &str, node: &str) -> PodView {
        PodView {
            name: name.into(),
            job: job.into(),
            node: node.into(),
            created: None,
            started: None,
            phase: Phase::Pending,
            deleting: false,
            exit_code: None,
            report: None,
            message: None,
        }
    }

    #[test]
    fn indexes_by_job() {
        let index = PodIndex::default();
        assert!(!index.is_synced());
        index.replace(vec![
            view("j1", "p1", "a"),
            view("j1", "p2", "b"),
            view("j2", "p3", "a"),
        ]);
        assert!(index.is_synced());
        assert_eq!(index.len(), 3);
        let mut nodes: Vec<String> = index.nodes_of("j1").into_iter().collect();
        nodes.sort();
        assert_eq!(nodes, vec!["a", "b"]);
        index.delete("j2", "p3");
        let mut jobs = index.jobs();
        jobs.sort();
        assert_eq!(jobs, vec!["j1"]);
        index.apply(view("j1", "p1", "c"));
        assert_eq!(index.with_job("j1", |pods| pods.count()), 2);
        assert_eq!(index.with_job("nope", |pods| pods.count()), 0);
    }
}
