//! What reading a config can report: warnings (never fatal) and errors (the config is not
//! used), each naming the full key path.

use std::fmt;
use std::sync::Arc;

use super::runtime::AddressError;
use crate::duration::DurationError;
use crate::selector::SelectorError;

/// A dotted path to a key in the config: `manager.nodeFilter.selectors[1]`. Keys that are not
/// plain identifiers are quoted: `manager.additionalPodLabels["app.kubernetes.io/name"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(String);

impl KeyPath {
    /// The document root.
    pub fn root() -> KeyPath {
        KeyPath(String::new())
    }

    /// The path of `key` inside this object.
    pub fn key(&self, key: &str) -> KeyPath {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        KeyPath(match (self.0.is_empty(), plain) {
            (true, true) => key.to_owned(),
            (false, true) => format!("{}.{key}", self.0),
            (_, false) => format!("{}[{key:?}]", self.0),
        })
    }

    /// The path of item `index` inside this list.
    pub fn index(&self, index: usize) -> KeyPath {
        KeyPath(format!("{}[{index}]", self.0))
    }

    /// The path as text; empty for the root.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("(document)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// Something in the config that is not used as written; the rest of the config applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Where.
    pub path: KeyPath,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

/// Kinds of warnings.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key neither Eraser nor Image Cleaner reads at this place (often a typo).
    UnknownKey {
        /// The full path of a known key it is probably a typo of.
        suggestion: Option<KeyPath>,
        /// Why the key is not read here, when it is known elsewhere.
        hint: Option<&'static str>,
    },
    /// A known key that has no effect where it is.
    Ignored {
        /// Why.
        reason: &'static str,
    },
    /// A node filter selector without requirements, which matches every node.
    SelectsEveryNode,
    /// An additional pod label that the manager sets itself, so this value is overridden.
    ReservedLabel,
    /// `kind` is missing; `EraserConfig` is assumed.
    MissingKind,
    /// The scanner is on with the native engine but names no database to scan with.
    ScannerWithoutDatabase,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::UnknownKey { suggestion, hint } => {
                f.write_str("unknown key, ignored")?;
                if let Some(hint) = hint {
                    write!(f, " ({hint})")?;
                } else if let Some(suggestion) = suggestion {
                    write!(f, " (did you mean {suggestion}?)")?;
                }
                Ok(())
            }
            WarningKind::Ignored { reason } => write!(f, "ignored: {reason}"),
            WarningKind::SelectsEveryNode => f.write_str("an empty selector matches every node"),
            WarningKind::ScannerWithoutDatabase => f.write_str(
                "the scanner is enabled but names no vulnerability database: images will not be scanned (set db with path, configMap or url, or engine: trivy)",
            ),
            WarningKind::ReservedLabel => {
                f.write_str("the manager sets this label itself; the value here is overridden")
            }
            WarningKind::MissingKind => f.write_str("missing kind; assuming EraserConfig"),
        }
    }
}

/// A value that cannot be used. One config can have many; all are reported together.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ConfigError {
    /// Where.
    pub path: KeyPath,
    /// What.
    #[source]
    pub kind: ErrorKind,
}

/// Kinds of errors.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The text is not YAML.
    #[error("not valid YAML: {0}")]
    Yaml(#[source] Arc<serde_yaml::Error>),
    /// A value of the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: &'static str,
        /// What was written.
        found: &'static str,
    },
    /// A value outside a fixed set.
    #[error("{value:?} is not one of {}", .allowed.join(", "))]
    NotOneOf {
        /// The value as written.
        value: String,
        /// The values allowed.
        allowed: &'static [&'static str],
    },
    /// A required key is absent.
    #[error("missing; {what}")]
    Missing {
        /// What to write.
        what: &'static str,
    },
    /// A Go duration that does not parse.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A duration that must be positive is zero.
    #[error("must be greater than 0s")]
    NotPositive,
    /// A number out of range.
    #[error("{value} is out of range; allowed: {range}")]
    OutOfRange {
        /// The value as written.
        value: String,
        /// The range allowed.
        range: &'static str,
    },
    /// A label selector that does not parse.
    #[error(transparent)]
    Selector(#[from] SelectorError),
    /// A runtime address that cannot be used.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// A resource quantity that does not parse.
    #[error("{value:?} is not a resource quantity (such as 25Mi, 500m, 1.5, 2Gi)")]
    Quantity {
        /// The value as written.
        value: String,
    },
    /// A cron expression that does not parse.
    #[error(
        "{value:?} is not a cron schedule (five fields: minute hour day-of-month month \
         day-of-week, or @hourly, @daily, @weekly, @monthly, @yearly): {reason}"
    )]
    Cron {
        /// The value as written.
        value: String,
        /// The parser's explanation.
        reason: String,
    },
    /// A label key that is not a qualified name.
    #[error("{key:?} is not a valid label key")]
    LabelKey {
        /// The key as written.
        key: String,
    },
    /// A label value that is not valid.
    #[error("{value:?} is not a valid label value (up to 63 letters, digits, '-', '_', '.')")]
    LabelValue {
        /// The value as written.
        value: String,
    },
    /// A name that is not a DNS subdomain (Kubernetes object names).
    #[error("{value:?} is not a valid Kubernetes object name")]
    ObjectName {
        /// The value as written.
        value: String,
    },
    /// A list that must not be empty.
    #[error("must not be empty; {what}")]
    Empty {
        /// What to do instead.
        what: &'static str,
    },
    /// Keys that exclude each other.
    #[error("set exactly one of {}", .keys.join(", "))]
    ExactlyOne {
        /// The keys.
        keys: &'static [&'static str],
    },
    /// A path that must be absolute.
    #[error("{value:?} is not an absolute path")]
    RelativePath {
        /// The value as written.
        value: String,
    },
    /// A URL that is not http or https.
    #[error("{value:?} is not an http:// or https:// URL")]
    HttpUrl {
        /// The value as written.
        value: String,
    },
    /// A volume that is not a Kubernetes volume.
    #[error("not a Kubernetes volume: {0}")]
    Volume(#[source] Arc<serde_json::Error>),
    /// The file is a ConfigMap without the config key.
    #[error("the ConfigMap has no key controller_manager_config.yaml")]
    MissingConfigKey,
    /// The file holds YAML documents, none of which is a config.
    #[error("no EraserConfig or ConfigMap holding controller_manager_config.yaml in the file")]
    NoConfigDocument,
}

impl ErrorKind {
    /// A short, stable name for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Yaml(_) => "yaml",
            ErrorKind::WrongType { .. } => "wrong_type",
            ErrorKind::NotOneOf { .. } => "not_one_of",
            ErrorKind::Missing { .. } => "missing",
            ErrorKind::Duration(_) => "duration",
            ErrorKind::NotPositive => "not_positive",
            ErrorKind::OutOfRange { .. } => "out_of_range",
            ErrorKind::Selector(_) => "selector",
            ErrorKind::Address(_) => "address",
            ErrorKind::Quantity { .. } => "quantity",
            ErrorKind::Cron { .. } => "cron",
            ErrorKind::LabelKey { .. } => "label_key",
            ErrorKind::LabelValue { .. } => "label_value",
            ErrorKind::ObjectName { .. } => "object_name",
            ErrorKind::Empty { .. } => "empty",
            ErrorKind::ExactlyOne { .. } => "exactly_one",
            ErrorKind::RelativePath { .. } => "relative_path",
            ErrorKind::HttpUrl { .. } => "http_url",
            ErrorKind::Volume(_) => "volume",
            ErrorKind::MissingConfigKey => "missing_config_key",
            ErrorKind::NoConfigDocument => "no_config_document",
        }
    }
}

/// Every error found in a config, and the warnings found alongside them.
#[derive(Clone, Debug)]
pub struct ConfigErrors {
    /// The errors, in document order; never empty.
    pub errors: Vec<ConfigError>,
    /// Warnings, which would have been reported with a good config too.
    pub warnings: Vec<ConfigWarning>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.len() {
            1 => f.write_str("1 error in the config")?,
            n => write!(f, "{n} errors in the config")?,
        }
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors and warnings while a config is read, so all are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Diagnostics {
    pub(crate) errors: Vec<ConfigError>,
    pub(crate) warnings: Vec<ConfigWarning>,
}

impl Diagnostics {
    pub(crate) fn error(&mut self, path: &KeyPath, kind: impl Into<ErrorKind>) {
        self.errors.push(ConfigError {
            path: path.clone(),
            kind: kind.into(),
        });
    }

    pub(crate) fn warn(&mut self, path: &KeyPath, kind: WarningKind) {
        self.warnings.push(ConfigWarning {
            path: path.clone(),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        let root = KeyPath::root();
        assert_eq!(root.to_string(), "(document)");
        let labels = root.key("manager").key("additionalPodLabels");
        assert_eq!(labels.as_str(), "manager.additionalPodLabels");
        assert_eq!(
            labels.key("app.kubernetes.io/name").as_str(),
            "manager.additionalPodLabels[\"app.kubernetes.io/name\"]"
        );
        assert_eq!(
            root.key("manager")
                .key("nodeFilter")
                .key("selectors")
                .index(1)
                .as_str(),
            "manager.nodeFilter.selectors[1]"
        );
    }

    #[test]
    fn errors_name_the_path_and_the_allowed_values() {
        let error = ConfigError {
            path: KeyPath::root().key("manager").key("nodeFilter").key("type"),
            kind: ErrorKind::NotOneOf {
                value: "both".into(),
                allowed: &["exclude", "include"],
            },
        };
        assert_eq!(
            error.to_string(),
            "manager.nodeFilter.type: \"both\" is not one of exclude, include"
        );
    }
}
