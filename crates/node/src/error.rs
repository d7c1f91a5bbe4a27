//! Errors of a node run: the runtime failing as a whole. A single image failing to be
//! removed is not an error of the run; it is in the report.

/// A node run error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container runtime could not be used.
    #[error(transparent)]
    Runtime(#[from] image_cleaner_cri::Error),
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Runtime(e) => e.metric_label(),
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
