//! How this manager process runs: what the command line and the environment say, as opposed
//! to the cluster-wide config in the `eraser-manager-config` ConfigMap (which can change while
//! it runs).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use image_cleaner_api::constants::{DEFAULT_NAMESPACE, MANAGER_CONFIG_MAP};

use crate::names::{DEFAULT_IMAGE, HEALTH_PORT, LEASE_NAME, METRICS_PORT};
use crate::report::WorkerTimeouts;
use crate::vulndb::KeeperSettings;

/// Leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    /// Name of the Lease in the manager's namespace.
    pub name: String,
    /// How long a leader's claim lasts without renewal.
    pub duration: Duration,
    /// How long before expiry the leader renews its claim.
    pub grace: Duration,
}

impl Default for LeaseSettings {
    fn default() -> LeaseSettings {
        LeaseSettings {
            name: LEASE_NAME.into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }
}

/// The manager's process settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the manager, its config, exclusion ConfigMaps, workers and Lease.
    pub namespace: String,
    /// This manager's identity in the Lease and in Events (the pod name in a cluster).
    pub identity: String,
    /// The manager's own image, which workers run unless the config names another.
    pub image: String,
    /// Name of the config ConfigMap.
    pub config_map: String,
    /// Worker deadlines.
    pub timeouts: WorkerTimeouts,
    /// Leader election.
    pub lease: LeaseSettings,
    /// Worker pods created per second at most (the client's request-rate limit for the
    /// fan-out), and the burst allowed above it.
    pub pod_create_qps: f64,
    /// Burst of pod creations allowed above the rate.
    pub pod_create_burst: u32,
    /// Pod creations in flight at once.
    pub pod_create_concurrency: usize,
    /// Longest time any single API call may take.
    pub api_timeout: Duration,
    /// Extra image pull secrets for workers (`ERASER_PULL_SECRET_NAMES`).
    pub extra_pull_secrets: Vec<String>,
    /// Log filter passed to workers, if any.
    pub worker_log_level: Option<String>,
    /// Where `/metrics` is served.
    pub metrics_address: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    pub health_address: SocketAddr,
    /// Shortest time between two progress updates of a running job's status.
    pub status_interval: Duration,
    /// How the cluster's vulnerability database is fetched and kept.
    pub database: KeeperSettings,
    /// The address workers reach this manager at (the pod's IP), for the database.
    pub advertise_ip: Option<IpAddr>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            namespace: DEFAULT_NAMESPACE.into(),
            identity: "imagecleaner-manager".into(),
            image: DEFAULT_IMAGE.into(),
            config_map: MANAGER_CONFIG_MAP.into(),
            timeouts: WorkerTimeouts::default(),
            lease: LeaseSettings::default(),
            pod_create_qps: 50.0,
            pod_create_burst: 100,
            pod_create_concurrency: 16,
            api_timeout: Duration::from_secs(30),
            extra_pull_secrets: Vec::new(),
            worker_log_level: None,
            metrics_address: SocketAddr::from(([0, 0, 0, 0], METRICS_PORT)),
            health_address: SocketAddr::from(([0, 0, 0, 0], HEALTH_PORT)),
            status_interval: Duration::from_secs(2),
            database: KeeperSettings::default(),
            advertise_ip: None,
        }
    }
}

/// Pull secret names from `ERASER_PULL_SECRET_NAMES` (comma-separated, blanks ignored).
pub fn pull_secrets_from_env(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_secrets() {
        assert_eq!(pull_secrets_from_env(" a, ,b,"), vec!["a", "b"]);
        assert!(pull_secrets_from_env("").is_empty());
    }
}
