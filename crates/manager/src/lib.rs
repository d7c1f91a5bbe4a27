//! The Image Cleaner manager: Eraser's controller-manager, without its known faults.
//!
//! It runs as a Deployment in the cleaner's namespace, reads its config from the
//! `eraser-manager-config` ConfigMap (hot-reloaded), and on a schedule, or when a removal
//! ImageList is created or changed, runs an ImageJob: one worker pod per eligible node, whose
//! reports it folds into the job's status, the list's status, Events and metrics.
//!
//! ```text
//!                      ┌──────────── leader (Lease) ─────────────┐
//!  ConfigMap config ──>│ config_watch ──> ConfigState            │
//!  ImageLists ────────>│ list_status (controller: role, Valid)   │
//!  ImageLists, Eraser  │ stores ─┐                               │
//!   exclusion CMs ────>│         ├──> coordinator ──> ImageJob, ConfigMap, PodTemplate,
//!  ImageJobs ─────────>│         │     (schedule,      worker pods (fanout), status,
//!  worker pods ───────>│ podindex┘      jobs)          Events, metrics
//!                      └──────────────────────────────────────────┘
//!  /metrics /healthz /readyz (server) on every replica
//! ```
//!
//! Pure decisions live in their own modules and are table-tested without a cluster:
//! [`schedule`] (when), [`lists`] (what), [`nodes`] (where), [`pods`] (the worker pod),
//! [`report`] (from pods to a job's status), [`list_status::plan`] and
//! [`config_watch::apply`]. The manager depends on the API types and the policy core,
//! never on the runtime client: it does not link tonic.

#![forbid(unsafe_code)]

pub mod config_watch;
pub mod context;
pub mod coordinator;
mod error;
pub mod events;
pub mod fanout;
pub mod jobs;
pub mod leader;
pub mod list_status;
pub mod lists;
pub mod manifests;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod podindex;
pub mod pods;
pub mod readiness;
pub mod report;
pub mod schedule;
pub mod server;
pub mod settings;
pub mod state;
pub mod stores;
#[cfg(test)]
mod verifier;
pub mod vulndb;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use image_cleaner_api::constants::{EXCLUDE_LIST_LABEL, EXCLUDE_LIST_LABEL_VALUE};
use image_cleaner_api::{ImageJob, ImageList};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::error::{Error, Result};
pub use crate::metrics::Metrics;
pub use crate::readiness::Readiness;
pub use crate::report::WorkerTimeouts;
pub use crate::settings::{LeaseSettings, Settings};

use crate::context::Context;
use crate::coordinator::{Coordinator, Sources};
use crate::podindex::PodIndex;

/// Server-side timeout of every watch, in seconds (the client's read timeout must exceed it).
pub const WATCH_TIMEOUT_SECS: u32 = 120;

/// A manager that runs.
#[derive(Debug)]
pub struct Running {
    /// Where `/metrics` is served.
    pub metrics_address: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    pub health_address: SocketAddr,
    /// Cancels the manager (it stops its controllers and releases the Lease).
    pub shutdown: CancellationToken,
    task: JoinHandle<Result<()>>,
}

impl Running {
    /// Waits until the manager has stopped.
    pub async fn wait(self) -> Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Stops the manager gracefully and waits for it.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Stops the manager abruptly, as a crash would: nothing is cleaned up or released.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Checks that the API server serves the CRDs, binds the endpoints, and starts competing for
/// the leadership.
pub async fn start(client: Client, settings: Settings) -> Result<Running> {
    check_crds(&client, &settings).await?;
    let settings = Arc::new(settings);
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();

    let database = Arc::new(vulndb::Keeper::new(settings.database.clone()));
    let served = server::Served {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        shelf: database.shelf(),
    };
    let metrics_listener = server::bind(settings.metrics_address).await?;
    let metrics_address = local_address(&metrics_listener, settings.metrics_address);
    let database_url = database_base_url(settings.advertise_ip, metrics_address);
    let health_address = if settings.health_address == settings.metrics_address {
        metrics_address
    } else {
        let health_listener = server::bind(settings.health_address).await?;
        let address = local_address(&health_listener, settings.health_address);
        tokio::spawn(server::serve(
            health_listener,
            served.clone(),
            shutdown.clone(),
        ));
        address
    };
    tokio::spawn(server::serve(metrics_listener, served, shutdown.clone()));

    let started = Timestamp::now();
    let task = {
        let shutdown = shutdown.clone();
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            // A standby replica is ready: it is healthy and waits for the Lease.
            readiness.set_ready();
            let ctx = Arc::new(Context::new(
                client.clone(),
                settings.clone(),
                metrics.clone(),
                started,
                database,
                database_url,
            ));
            let result = leader::run(client, &settings, &metrics, shutdown.clone(), |cancel| {
                term(ctx.clone(), readiness.clone(), cancel)
            })
            .await;
            shutdown.cancel();
            result
        })
    };
    Ok(Running {
        metrics_address,
        health_address,
        shutdown,
        task,
    })
}

fn local_address(listener: &tokio::net::TcpListener, fallback: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(fallback)
}

/// Where workers reach this manager: the pod's IP (`POD_IP`) on the metrics port, else the
/// bound address when it names one host (a manager run outside a pod, as in tests).
fn database_base_url(advertise: Option<IpAddr>, bound: SocketAddr) -> Option<String> {
    match advertise {
        Some(ip) => Some(format!("http://{}", SocketAddr::new(ip, bound.port()))),
        None if bound.ip().is_unspecified() => None,
        None => Some(format!("http://{bound}")),
    }
}

/// Fails early, and clearly, when the CRDs are not installed.
async fn check_crds(client: &Client, settings: &Settings) -> Result<()> {
    let api: Api<ImageJob> = Api::all(client.clone());
    match tokio::time::timeout(
        settings.api_timeout,
        api.list(&ListParams::default().limit(1)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(Error::NotServed {
            what: "imagejobs.eraser.sh",
            source: kube::Error::Api(status),
        }),
        Ok(Err(source)) => Err(Error::Kube {
            action: "listing ImageJobs".into(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            action: "listing ImageJobs".into(),
            timeout: settings.api_timeout,
        }),
    }
}

/// One leadership term: every watch and controller, until cancelled.
async fn term(ctx: Arc<Context>, readiness: Readiness, cancel: CancellationToken) {
    let notify = Arc::new(Notify::new());
    let client = ctx.client.clone();
    let namespace = ctx.settings.namespace.clone();
    let (config_sender, config) = config_watch::channel();
    let (jobs, jobs_task) = stores::reflect(
        Api::<ImageJob>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{}={}",
            jobs::MANAGED_BY_LABEL,
            jobs::MANAGED_BY
        )),
        "imagejobs",
        notify.clone(),
        ctx.metrics.clone(),
        cancel.clone(),
    );
    let (lists, lists_task) = stores::reflect(
        Api::<ImageList>::all(client.clone()),
        watcher::Config::default(),
        "imagelists",
        notify.clone(),
        ctx.metrics.clone(),
        cancel.clone(),
    );
    let (exclusion_maps, maps_task) = stores::reflect(
        Api::<ConfigMap>::namespaced(client.clone(), &namespace),
        watcher::Config::default()
            .labels(&format!("{EXCLUDE_LIST_LABEL}={EXCLUDE_LIST_LABEL_VALUE}")),
        "exclusion configmaps",
        notify.clone(),
        ctx.metrics.clone(),
        cancel.clone(),
    );
    let pods = Arc::new(PodIndex::default());
    let coordinator = Coordinator::new(
        ctx.clone(),
        Sources {
            jobs,
            lists,
            exclusion_maps,
            pods: pods.clone(),
            config,
            notify: notify.clone(),
        },
        readiness,
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(jobs_task);
    tasks.spawn(lists_task);
    tasks.spawn(maps_task);
    tasks.spawn(config_watch::run(
        ctx.clone(),
        config_sender,
        cancel.clone(),
    ));
    tasks.spawn(podindex::run(ctx.clone(), pods, notify, cancel.clone()));
    tasks.spawn(list_status::run(ctx.clone(), cancel.clone()));
    tasks.spawn(coordinator.run(cancel.clone()));
    cancel.cancelled().await;
    while tasks.join_next().await.is_some() {}
}
