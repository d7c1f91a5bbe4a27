//! The Eraser-compatible API of Image Cleaner: the `eraser.sh` custom resources (ImageList,
//! ImageJob), the `EraserConfig` file, and every name, label and path Eraser's users rely on.
//!
//! Image Cleaner is a drop-in replacement for Eraser, so its API is Eraser's, to the field
//! name: an ImageList or a config file written for Eraser is read here unchanged, and the CRDs
//! printed from these types replace Eraser's. What Image Cleaner adds is optional (a list's
//! `spec.action`, per-node results in a job's status, a cron schedule in the config), so
//! Eraser-era objects stay valid. Everything in this crate is data and pure functions: the
//! manager, the worker and the CLI share one reading of the API, and the rules that decide
//! behaviour (a list's role, the node filter, the config's defaults and checks) are testable
//! without a cluster.
//!
//! ```text
//! constants      every Eraser-compatible string (labels, names, paths, metric names)
//! crd            v1 and v1alpha1 ImageList / ImageJob, all_crds(), CRD YAML
//! imagelist      ListAction, resolve_role(), ImageListStatus
//! imagejob       JobPhase, ImageJobStatus with bounded per-node results
//! config         EraserConfig v1alpha1|2|3 -> Config (newest form), warnings, errors
//! selector       label selectors for the node filter
//! duration       Go duration strings
//! ```
//!
//! ```
//! use image_cleaner_api::{Config, ListAction, resolve_role};
//!
//! let parsed = Config::from_yaml(
//!     "apiVersion: eraser.sh/v1alpha2\nkind: EraserConfig\nmanager: {runtime: crio}\n",
//! )?;
//! assert_eq!(parsed.config.manager.runtime.address.socket_path(), "/run/crio/crio.sock");
//! assert!(parsed.warnings.is_empty());
//! assert_eq!(resolve_role("excluded-images", None, None).action, ListAction::Exclude);
//! # Ok::<(), image_cleaner_api::ConfigErrors>(())
//! ```
//!
//! This crate depends on `image-cleaner-core` (to validate list entries with the one pattern
//! parser) and on Kubernetes type crates, never on the node engine, the runtime client or
//! the manager.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod config;
pub mod constants;
pub mod crd;
pub mod duration;
pub mod imagejob;
pub mod imagelist;
pub mod selector;

pub use config::{Config, ConfigError, ConfigErrors, ConfigWarning, Parsed};
pub use crd::{all_crds, all_crds_yaml, crd_file_name, crd_yaml, v1, v1alpha1};
pub use duration::{DurationError, GoDuration};
pub use imagejob::{ImageJobStatus, JobPhase, NodeOutcome, NodeResult};
pub use imagelist::{ImageListStatus, ListAction, MalformedEntry, Role, RoleSource, resolve_role};
pub use selector::{LabelSelector, SelectorError};
pub use v1::{ImageJob, ImageJobSpec, ImageList, ImageListSpec};
