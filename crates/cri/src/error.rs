//! Errors of the runtime client. Each names the endpoint, so an operator knows which socket
//! to look at, and says what to do next where that is clear.

use std::time::Duration;

/// A runtime client error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint string is not a usable socket address.
    #[error("invalid runtime endpoint \"{endpoint}\": {why}")]
    InvalidEndpoint {
        /// The value as given.
        endpoint: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The socket could not be reached.
    #[error(
        "cannot connect to the container runtime at {endpoint} (is the runtime running, and is this its socket?)"
    )]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The socket answered, but not as a CRI v1 runtime.
    #[error(
        "the socket at {endpoint} does not answer as a CRI v1 runtime (is this the runtime's CRI socket, and is its CRI plugin enabled?)"
    )]
    NotCri {
        /// The endpoint.
        endpoint: String,
        /// What the Version call returned.
        #[source]
        status: Box<tonic::Status>,
    },
    /// A call (or connecting) did not finish in time.
    #[error(
        "the container runtime at {endpoint} did not answer {call} within {after:?} (is it hung, or not a CRI socket?)"
    )]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The call that timed out.
        call: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The runtime answered with a gRPC error.
    #[error("{call} on the container runtime at {endpoint} failed: {status}")]
    Call {
        /// The endpoint.
        endpoint: String,
        /// The call.
        call: &'static str,
        /// The status the runtime returned.
        #[source]
        status: Box<tonic::Status>,
    },
    /// The runtime answered something this client cannot use.
    #[error("unexpected answer to {call} from the container runtime at {endpoint}: {why}")]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// The call.
        call: &'static str,
        /// What was wrong.
        why: String,
    },
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidEndpoint { .. } => "invalid_endpoint",
            Error::Connect { .. } => "connect",
            Error::NotCri { .. } => "not_cri",
            Error::Timeout { .. } => "timeout",
            Error::Call { .. } => "call",
            Error::Protocol { .. } => "protocol",
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
