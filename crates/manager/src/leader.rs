//! Leader election on a Lease: however many managers run, one acts.
//!
//! Eraser has leader election switched off and must run as one replica; two replicas would
//! both schedule jobs. Here every manager competes for the Lease; the holder runs the
//! controllers (one "term"), the others wait and serve only health and metrics. A leader that
//! loses the Lease stops its term at once; a leader that shuts down releases the Lease so
//! another takes over without waiting for it to expire.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::Settings;

/// How long a term gets to stop, and the Lease to be released, on the way out.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Competes for the Lease until `shutdown`; runs `term(cancel)` while leading.
pub async fn run<F, Fut>(
    client: Client,
    settings: &Settings,
    metrics: &Metrics,
    shutdown: CancellationToken,
    term: F,
) -> Result<()>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let lease = &settings.lease;
    let manager = tokio::time::timeout(
        settings.api_timeout,
        LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(lease.duration.as_secs().max(2))
            .with_grace(lease.grace.as_secs().max(1))
            .build(),
    )
    .await
    .map_err(|_| Error::Timeout {
        action: format!("setting up Lease {}", lease.name),
        timeout: settings.api_timeout,
    })?
    .map_err(Error::Lease)?;
    let (mut leading, watcher) = manager.watch().await;
    let mut current: Option<(CancellationToken, JoinHandle<()>)> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = leading.changed() => {
                if changed.is_err() {
                    tracing::error!("leader election stopped");
                    break;
                }
            }
        }
        let is_leader = *leading.borrow_and_update();
        metrics.set_leader(is_leader);
        match (is_leader, current.is_some()) {
            (true, false) => {
                tracing::info!(identity = %settings.identity, "became the leader");
                let cancel = shutdown.child_token();
                let handle = tokio::spawn(term(cancel.clone()));
                current = Some((cancel, handle));
            }
            (false, true) => {
                tracing::warn!(identity = %settings.identity, "lost the leadership; stopping");
                stop(current.take()).await;
            }
            _ => {}
        }
    }
    stop(current.take()).await;
    metrics.set_leader(false);
    // Closing the channel makes the watcher release the Lease.
    drop(leading);
    match tokio::time::timeout(STOP_TIMEOUT, watcher).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the Lease"),
        Ok(Err(error)) => tracing::warn!(%error, "the leader election task failed"),
        Err(_) => tracing::warn!("releasing the Lease timed out"),
    }
    Ok(())
}

async fn stop(term: Option<(CancellationToken, JoinHandle<()>)>) {
    let Some((cancel, mut handle)) = term else {
        return;
    };
    cancel.cancel();
    if tokio::time::timeout(STOP_TIMEOUT, &mut handle)
        .await
        .is_err()
    {
        tracing::warn!("the controllers did not stop in time; aborting them");
        handle.abort();
    }
}
