//! Cached views of ImageJobs, ImageLists and exclusion ConfigMaps, each kept by a watch and
//! waking the job controller on every change.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// A store of `K` and the task that keeps it (run it until cancelled).
pub fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    notify: Arc<Notify>,
    metrics: Metrics,
    cancel: CancellationToken,
) -> (
    Store<K>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config.timeout(crate::WATCH_TIMEOUT_SECS))
        .default_backoff()
        .modify(|object: &mut K| object.meta_mut().managed_fields = None)
        .reflect(writer);
    let task = async move {
        let mut stream = stream.boxed();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = stream.next() => event,
            };
            match event {
                None => return,
                Some(Ok(_)) => notify.notify_one(),
                Some(Err(error)) => {
                    metrics.error(what, "watch");
                    tracing::warn!(%error, "watching {what}");
                }
            }
        }
    };
    (reader, task)
}
