//! `imagecleaner manager`: the cluster manager (the Deployment's one process).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use image_cleaner_api::constants::{
    DEFAULT_NAMESPACE, ENV_CONFIG_MAP_NAME, ENV_POD_NAMESPACE, ENV_PULL_SECRET_NAMES,
    MANAGER_CONFIG_MAP,
};
use image_cleaner_manager::names::{
    CACHE_PATH, DEFAULT_IMAGE, ENV_IMAGE, ENV_POD_IP, ENV_POD_NAME,
};
use image_cleaner_manager::settings::pull_secrets_from_env;
use image_cleaner_manager::vulndb::KeeperSettings;
use image_cleaner_manager::{LeaseSettings, Settings, WATCH_TIMEOUT_SECS, WorkerTimeouts};

use crate::exit::{self, Failure};

#[derive(Debug, Args)]
pub struct ManagerArgs {
    /// Kubeconfig to use; in a pod, the service account is used.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the manager, its config, exclusion ConfigMaps and workers.
    #[arg(long, env = ENV_POD_NAMESPACE, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// This manager's identity for leader election (default: POD_NAME, else host and pid).
    #[arg(long, env = ENV_POD_NAME)]
    pub identity: Option<String>,
    /// Image the workers run unless the config names one.
    #[arg(long, env = ENV_IMAGE, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Name of the config ConfigMap.
    #[arg(long, env = ENV_CONFIG_MAP_NAME, default_value = MANAGER_CONFIG_MAP)]
    pub config_map: String,
    /// Eraser's flag, accepted for compatibility: the config is read from the ConfigMap
    /// through the API (and reloaded on change), not from a file.
    #[arg(long, value_name = "FILE", hide = true)]
    pub config: Option<PathBuf>,
    /// Address of /metrics.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8889")]
    pub metrics_bind_address: SocketAddr,
    /// Address of /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8081")]
    pub health_probe_bind_address: SocketAddr,
    /// A worker pod not running after this counts as failed for its node.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub worker_start_timeout: Duration,
    /// A worker still running after this counts as failed for its node (scanning runs get
    /// at least the scanner's total timeout).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub worker_run_timeout: Duration,
    /// How long the leader's Lease lasts without renewal.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// How long before the Lease expires the leader renews it.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub lease_renew_before: Duration,
    /// Worker pods created per second at most.
    #[arg(long, value_name = "N", default_value_t = 50.0)]
    pub pod_create_qps: f64,
    /// Pod creations allowed in a burst above that rate.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub pod_create_burst: u32,
    /// Longest time a single API call may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,
    /// Log filter passed to the workers.
    #[arg(long, value_name = "FILTER")]
    pub worker_log_level: Option<String>,
    /// Where the cluster's copy of the vulnerability database is kept (from a configMap or
    /// url db source).
    #[arg(long, value_name = "DIR", default_value = CACHE_PATH)]
    pub cache_dir: PathBuf,
    /// Longest time getting the vulnerability database from its source may take.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub database_fetch_timeout: Duration,
    /// Largest OSV export (zip) the manager compiles itself; compiling takes 4–5 times its
    /// size in memory. Larger exports are compiled with `imagecleaner db build` first.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub database_compile_limit: u64,
    /// This pod's IP, where workers fetch the vulnerability database from the manager.
    #[arg(long, env = ENV_POD_IP, value_name = "IP")]
    pub pod_ip: Option<IpAddr>,
    /// Shortest time between two progress updates of a running job's status.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration, hide = true)]
    pub status_interval: Duration,
}

impl ManagerArgs {
    fn settings(&self) -> Settings {
        let identity = self.identity.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "imagecleaner".into());
            format!("{host}-{}", std::process::id())
        });
        Settings {
            namespace: self.namespace.clone(),
            identity,
            image: self.image.clone(),
            config_map: self.config_map.clone(),
            timeouts: WorkerTimeouts {
                start: self.worker_start_timeout,
                run: self.worker_run_timeout,
            },
            lease: LeaseSettings {
                duration: self.lease_duration,
                grace: self.lease_renew_before,
                ..LeaseSettings::default()
            },
            pod_create_qps: self.pod_create_qps,
            pod_create_burst: self.pod_create_burst,
            api_timeout: self.api_timeout,
            extra_pull_secrets: std::env::var(ENV_PULL_SECRET_NAMES)
                .map(|value| pull_secrets_from_env(&value))
                .unwrap_or_default(),
            worker_log_level: self.worker_log_level.clone(),
            metrics_address: self.metrics_bind_address,
            health_address: self.health_probe_bind_address,
            status_interval: self.status_interval,
            database: KeeperSettings {
                dir: self.cache_dir.clone(),
                timeout: self.database_fetch_timeout,
                max_compile: self.database_compile_limit,
                ..KeeperSettings::default()
            },
            advertise_ip: self.pod_ip,
            ..Settings::default()
        }
    }
}

/// A client from `--kubeconfig`, else the in-cluster service account, else the usual
/// kubeconfig; its read timeout outlasts a watch.
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    connect: Duration,
) -> anyhow::Result<kube::Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => kube::Config::infer().await.context(
                "no --kubeconfig, no in-cluster service account and no usable kubeconfig",
            )?,
        },
    };
    config.connect_timeout = Some(connect);
    config.read_timeout = Some(Duration::from_secs(u64::from(WATCH_TIMEOUT_SECS) + 30));
    config.write_timeout = Some(connect);
    kube::Client::try_from(config).context("building the API client")
}

pub async fn run(args: ManagerArgs) -> Result<ExitCode, Failure> {
    if args.config.is_some() {
        tracing::info!(
            "--config is ignored: the config is read from the ConfigMap through the API"
        );
    }
    if args.lease_renew_before >= args.lease_duration {
        return Err(Failure::bad_input(anyhow!(
            "--lease-renew-before must be shorter than --lease-duration"
        )));
    }
    let client = client(args.kubeconfig.as_ref(), args.api_timeout)
        .await
        .map_err(Failure::bad_input)?;
    let settings = args.settings();
    let running = image_cleaner_manager::start(client, settings)
        .await
        .context("starting the manager")
        .map_err(Failure::operational)?;
    tracing::info!(
        metrics = %running.metrics_address,
        health = %running.health_address,
        "manager running"
    );
    let shutdown = running.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping");
        shutdown.cancel();
    });
    running
        .wait()
        .await
        .context("the manager stopped")
        .map_err(Failure::operational)?;
    Ok(ExitCode::from(exit::OK))
}

async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
