//! The manager's errors.

use std::time::Duration;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. `creating pod eraser-node-1-abcde`.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// An API call took too long.
    #[error("{action}: no answer within {timeout:?}")]
    Timeout {
        /// What was being done.
        action: String,
        /// The limit.
        timeout: Duration,
    },
    /// A value could not be encoded.
    #[error("encoding {what}: {source}")]
    Encode {
        /// What.
        what: &'static str,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The config could not be written for the workers.
    #[error("writing the config for the workers: {0}")]
    ConfigYaml(#[source] serde_yaml::Error),
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[source] kube_lease_manager::LeaseManagerError),
    /// A listening socket could not be opened.
    #[error("listening on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The API server does not serve what the manager needs (CRDs not installed…).
    #[error("{what} is not served by the API server: {source}")]
    NotServed {
        /// What.
        what: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A stable label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source {
                kube::Error::Api(status) if status.code == 403 => "forbidden",
                kube::Error::Api(status) if status.code == 404 => "not_found",
                kube::Error::Api(status) if status.code == 409 => "conflict",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
            Error::Timeout { .. } => "timeout",
            Error::Encode { .. } => "encode",
            Error::ConfigYaml(_) => "encode",
            Error::Lease(_) => "lease",
            Error::Bind { .. } => "bind",
            Error::NotServed { .. } => "not_served",
        }
    }

    /// Whether the API said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 404)
    }

    /// Whether the API said the object already exists (or changed meanwhile).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source: kube::Error::Api(status), .. } if status.code == 409)
    }
}

/// The manager's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
