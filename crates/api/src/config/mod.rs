//! The manager's config: Eraser's `EraserConfig` file (ConfigMap `eraser-manager-config`, key
//! `controller_manager_config.yaml`), in any of its versions, read into one typed [`Config`].
//!
//! Eraser reads `eraser.sh/v1alpha1`, `v1alpha2` and `v1alpha3` by unmarshalling the YAML over
//! the Go defaults of that version and converting to its newest form; so does
//! [`Config::from_yaml`], with the same defaults (eraser.md §3.3, the Go column). It differs
//! where Eraser fails silently:
//!
//! - an unknown key (a typo such as `manager.schedulng`) is a warning naming its full path and
//!   the key it probably meant, not silently dropped;
//! - a bad value is an error naming its path and the allowed values, and every error in the
//!   file is reported at once; a config with errors is not used at all;
//! - values Eraser accepts and then misbehaves on are refused: a `tcp://` runtime address, a
//!   zero repeat interval, a success ratio outside `[0, 1]`, a node filter selector that
//!   does not parse.
//!
//! Additions, all optional: `manager.scheduling.schedule` (cron), `manager.scheduling.minUnused`
//! (how long an image must be unused; by default the repeat interval), and in the scanner's
//! config `engine` and `db` (see [`scanner`]). [`Config::to_yaml`] writes the newest form,
//! `eraser.sh/v1alpha3`, which Eraser itself can read.

mod diagnostics;
mod read;
pub mod runtime;
pub mod scanner;
pub mod schedule;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::Volume;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Serialize, Serializer};
use serde_json::Value;

pub use self::diagnostics::{
    ConfigError, ConfigErrors, ConfigWarning, ErrorKind, KeyPath, WarningKind,
};
pub use self::runtime::{AddressError, RuntimeAddress, RuntimeName, RuntimeSpec};
pub use self::scanner::{
    DbLocation, DbSource, ScanEngine, ScanTimeouts, ScannerConfig, Severity, VulnerabilityConfig,
};
pub use self::schedule::{CronError, CronSchedule};

use self::diagnostics::Diagnostics;
use self::read::{Fields, type_name};
use crate::constants::{
    APP_LABEL, CLEANUP_FILTER_LABEL, CONFIG_KIND, MANAGER_CONFIG_KEY, POD_TYPE_LABEL,
};
use crate::duration::GoDuration;
pub(crate) use crate::selector::is_dns_subdomain;
use crate::selector::{LabelSelector, is_label_key, is_label_value};

/// Log levels the config accepts (zap's names; the last three mean error).
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error", "dpanic", "panic", "fatal"];
/// Node filter types.
pub const NODE_FILTER_TYPES: &[&str] = &["exclude", "include"];

const HELM_ONLY: &str = "a key of Eraser's Helm chart that neither Eraser nor Image Cleaner reads";
const TOP_KEYS: &[&str] = &["apiVersion", "kind", "manager", "components"];
const TOP_HINTS: &[(&str, &str)] = &[
    ("health", HELM_ONLY),
    ("metrics", HELM_ONLY),
    ("webhook", HELM_ONLY),
    ("leaderElection", HELM_ONLY),
];
const MANAGER_KEYS_V1ALPHA3: &[&str] = &[
    "runtime",
    "otlpEndpoint",
    "logLevel",
    "scheduling",
    "profile",
    "imageJob",
    "pullSecrets",
    "nodeFilter",
    "priorityClassName",
    "additionalPodLabels",
];
const MANAGER_KEYS_OLDER: &[&str] = &[
    "runtime",
    "otlpEndpoint",
    "logLevel",
    "scheduling",
    "profile",
    "imageJob",
    "pullSecrets",
    "nodeFilter",
    "priorityClassName",
];
const MANAGER_HINTS_OLDER: &[(&str, &str)] = &[(
    "additionalPodLabels",
    "additionalPodLabels is read only in eraser.sh/v1alpha3",
)];
const SCHEDULING_KEYS: &[&str] = &[
    "repeatInterval",
    "beginImmediately",
    "schedule",
    "minUnused",
];
const PROFILE_KEYS: &[&str] = &["enabled", "port"];
const IMAGE_JOB_KEYS: &[&str] = &["successRatio", "cleanup"];
const CLEANUP_KEYS: &[&str] = &["delayOnSuccess", "delayOnFailure"];
const NODE_FILTER_KEYS: &[&str] = &["type", "selectors"];
const RUNTIME_KEYS: &[&str] = &["name", "address"];
const COMPONENTS_KEYS: &[&str] = &["collector", "scanner", "remover"];
const COMPONENTS_HINTS: &[(&str, &str)] = &[(
    "eraser",
    "components.eraser is the eraser.sh/v1alpha1 name; use components.remover",
)];
const COMPONENTS_KEYS_V1ALPHA1: &[&str] = &["collector", "scanner", "eraser"];
const COMPONENTS_HINTS_V1ALPHA1: &[(&str, &str)] = &[(
    "remover",
    "eraser.sh/v1alpha1 calls it components.eraser; components.remover needs v1alpha2 or later",
)];
const OPTIONAL_CONTAINER_KEYS: &[&str] =
    &["enabled", "image", "request", "limit", "config", "volumes"];
const CONTAINER_KEYS: &[&str] = &["image", "request", "limit", "config", "volumes"];
const REMOVER_HINTS: &[(&str, &str)] = &[("enabled", "the remover always runs")];
const IMAGE_KEYS: &[&str] = &["repo", "tag"];
const RESOURCE_KEYS: &[&str] = &["mem", "cpu"];

/// Labels the manager puts on worker pods itself.
const RESERVED_POD_LABELS: &[&str] = &[APP_LABEL, POD_TYPE_LABEL];

/// A version of the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ApiVersion {
    /// Runtime as a name, `components.eraser`.
    V1alpha1,
    /// Runtime as a name, `components.remover`.
    V1alpha2,
    /// Runtime as `{name, address}`, `additionalPodLabels`. The newest, and what is written.
    V1alpha3,
}

impl ApiVersion {
    /// Every version, oldest first.
    pub const ALL: [&'static str; 3] = crate::constants::CONFIG_API_VERSIONS;

    /// The `apiVersion` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1alpha1 => Self::ALL[0],
            ApiVersion::V1alpha2 => Self::ALL[1],
            ApiVersion::V1alpha3 => Self::ALL[2],
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiVersion {
    type Err = ();

    fn from_str(text: &str) -> Result<ApiVersion, ()> {
        match text {
            "eraser.sh/v1alpha1" => Ok(ApiVersion::V1alpha1),
            "eraser.sh/v1alpha2" => Ok(ApiVersion::V1alpha2),
            "eraser.sh/v1alpha3" => Ok(ApiVersion::V1alpha3),
            _ => Err(()),
        }
    }
}

/// The effective config, in the newest form, with every default applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    /// `manager`: how and when jobs run.
    pub manager: ManagerConfig,
    /// `components`: the worker containers.
    pub components: Components,
}

/// `manager`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagerConfig {
    /// The nodes' container runtime and its socket.
    pub runtime: RuntimeSpec,
    /// OTLP/HTTP endpoint (`host:port`) metrics are pushed to; empty disables pushing.
    pub otlp_endpoint: String,
    /// Log level, lower case.
    pub log_level: String,
    /// When jobs run.
    pub scheduling: SchedulingConfig,
    /// pprof.
    pub profile: ProfileConfig,
    /// Job success and cleanup.
    pub image_job: ImageJobConfig,
    /// Image pull secrets of the worker pods.
    pub pull_secrets: Vec<String>,
    /// Priority class of the worker pods; empty for none.
    pub priority_class_name: String,
    /// Extra labels on worker pods.
    pub additional_pod_labels: BTreeMap<String, String>,
    /// Which nodes are cleaned.
    pub node_filter: NodeFilterConfig,
}

impl Default for ManagerConfig {
    fn default() -> ManagerConfig {
        ManagerConfig {
            runtime: RuntimeSpec::default(),
            otlp_endpoint: String::new(),
            log_level: "info".into(),
            scheduling: SchedulingConfig::default(),
            profile: ProfileConfig::default(),
            image_job: ImageJobConfig::default(),
            pull_secrets: Vec::new(),
            priority_class_name: String::new(),
            additional_pod_labels: BTreeMap::new(),
            node_filter: NodeFilterConfig::default(),
        }
    }
}

/// `manager.scheduling`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingConfig {
    /// Time from the end of one scheduled run to the start of the next (Eraser's model).
    pub repeat_interval: GoDuration,
    /// Run once at start-up rather than after the first interval.
    pub begin_immediately: bool,
    /// Cron schedule (UTC); when set, scheduled runs follow it instead of `repeatInterval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CronSchedule>,
    /// How long an image must have been unused to be removed by a scheduled run; `None`
    /// means the repeat interval (see [`SchedulingConfig::min_unused`]).
    #[serde(rename = "minUnused", skip_serializing_if = "Option::is_none")]
    pub min_unused_setting: Option<GoDuration>,
}

impl SchedulingConfig {
    /// The minimum unused age in effect: `minUnused`, else the repeat interval.
    pub fn min_unused(&self) -> GoDuration {
        self.min_unused_setting.unwrap_or(self.repeat_interval)
    }
}

impl Default for SchedulingConfig {
    fn default() -> SchedulingConfig {
        SchedulingConfig {
            repeat_interval: GoDuration::from_hours(24),
            begin_immediately: true,
            schedule: None,
            min_unused_setting: None,
        }
    }
}

/// `manager.profile`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileConfig {
    /// Serve profiling data on localhost.
    pub enabled: bool,
    /// Its port.
    pub port: u16,
}

impl Default for ProfileConfig {
    fn default() -> ProfileConfig {
        ProfileConfig {
            enabled: false,
            port: 6060,
        }
    }
}

/// `manager.imageJob`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageJobConfig {
    /// Fraction of nodes (succeeded plus skipped over all) a job needs to be Completed;
    /// compared as a real ratio, in `[0, 1]`.
    pub success_ratio: f64,
    /// When finished jobs are deleted.
    pub cleanup: CleanupConfig,
}

impl Default for ImageJobConfig {
    fn default() -> ImageJobConfig {
        ImageJobConfig {
            success_ratio: 1.0,
            cleanup: CleanupConfig::default(),
        }
    }
}

/// `manager.imageJob.cleanup`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupConfig {
    /// How long a Completed job (and its pods) is kept.
    pub delay_on_success: GoDuration,
    /// How long a Failed job (and its pods) is kept.
    pub delay_on_failure: GoDuration,
}

impl Default for CleanupConfig {
    fn default() -> CleanupConfig {
        CleanupConfig {
            delay_on_success: GoDuration::ZERO,
            delay_on_failure: GoDuration::from_hours(24),
        }
    }
}

/// `manager.nodeFilter.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeFilterType {
    /// Skip the nodes matching any selector.
    #[default]
    Exclude,
    /// Clean only the nodes matching any selector.
    Include,
}

/// `manager.nodeFilter`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFilterConfig {
    /// Exclude or include.
    #[serde(rename = "type")]
    pub filter_type: NodeFilterType,
    /// Label selectors, as written. `eraser.sh/cleanup.filter` is always added when the
    /// filter is applied ([`NodeFilterConfig::admits`]), as Eraser does.
    pub selectors: Vec<LabelSelector>,
}

impl Default for NodeFilterConfig {
    fn default() -> NodeFilterConfig {
        NodeFilterConfig {
            filter_type: NodeFilterType::Exclude,
            selectors: vec![cleanup_filter_selector()],
        }
    }
}

fn cleanup_filter_selector() -> LabelSelector {
    // A constant key is a valid selector; the test of the defaults parses it too.
    CLEANUP_FILTER_LABEL
        .parse()
        .expect("the cleanup filter label is a valid selector")
}

impl NodeFilterConfig {
    /// Whether a node with these labels is cleaned: with `exclude`, unless it matches any
    /// selector; with `include`, only if it matches one. `eraser.sh/cleanup.filter` is always
    /// one of the selectors. (Windows nodes are the caller's to skip.)
    pub fn admits(&self, node_labels: &BTreeMap<String, String>) -> bool {
        let matches_any = node_labels.contains_key(CLEANUP_FILTER_LABEL)
            || self.selectors.iter().any(|s| s.matches(node_labels));
        match self.filter_type {
            NodeFilterType::Exclude => !matches_any,
            NodeFilterType::Include => matches_any,
        }
    }
}

/// `components`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Components {
    /// Scheduled runs: when disabled, only removal lists start jobs (as in Eraser).
    pub collector: CollectorComponent,
    /// Vulnerability scanning in scheduled runs.
    pub scanner: ScannerComponent,
    /// The container that removes images (`components.eraser` in v1alpha1).
    pub remover: ContainerConfig,
}

impl Default for Components {
    fn default() -> Components {
        Components {
            collector: CollectorComponent::default(),
            scanner: ScannerComponent::default(),
            remover: ContainerConfig::remover_default(),
        }
    }
}

/// `components.collector`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CollectorComponent {
    /// Whether scheduled runs happen.
    pub enabled: bool,
    /// The container.
    #[serde(flatten)]
    pub container: ContainerConfig,
}

impl Default for CollectorComponent {
    fn default() -> CollectorComponent {
        CollectorComponent {
            enabled: false,
            container: ContainerConfig::with_resources(("25Mi", "7m"), (Some("500Mi"), None)),
        }
    }
}

/// `components.scanner`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScannerComponent {
    /// Whether scheduled runs scan for vulnerabilities.
    pub enabled: bool,
    /// The container.
    #[serde(flatten)]
    pub container: ContainerConfig,
    /// The scanner's settings, written back as the YAML string Eraser keeps here.
    #[serde(serialize_with = "scanner_config_as_string")]
    pub config: ScannerConfig,
    /// Volumes mounted read-only into the scanner at their host paths (hostPath only).
    pub volumes: Vec<Volume>,
}

impl Default for ScannerComponent {
    fn default() -> ScannerComponent {
        ScannerComponent {
            enabled: false,
            container: ContainerConfig::with_resources(
                ("500Mi", "1000m"),
                (Some("2Gi"), Some("1500m")),
            ),
            config: ScannerConfig::default(),
            volumes: Vec::new(),
        }
    }
}

fn scanner_config_as_string<S: Serializer>(
    config: &ScannerConfig,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let text = config.to_yaml_string().map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// A worker container's image and resources.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerConfig {
    /// The image; empty parts mean the manager's own image.
    pub image: ImageConfig,
    /// Resource requests.
    pub request: ResourceConfig,
    /// Resource limits.
    pub limit: ResourceConfig,
}

impl ContainerConfig {
    /// Eraser's defaults for the remover: requests 25Mi and 7m, a 30Mi memory limit.
    pub fn remover_default() -> ContainerConfig {
        ContainerConfig::with_resources(("25Mi", "7m"), (Some("30Mi"), None))
    }

    fn with_resources(request: (&str, &str), limit: (Option<&str>, Option<&str>)) -> Self {
        let quantity = |text: &str| Quantity(text.to_owned());
        ContainerConfig {
            image: ImageConfig::default(),
            request: ResourceConfig {
                mem: Some(quantity(request.0)),
                cpu: Some(quantity(request.1)),
            },
            limit: ResourceConfig {
                mem: limit.0.map(quantity),
                cpu: limit.1.map(quantity),
            },
        }
    }
}

/// `image: {repo, tag}`. Eraser's defaults name its own images, which do not run Image
/// Cleaner; here an absent part means "the manager's own image". Images under
/// [`crate::constants::ERASER_IMAGE_REPO_PREFIX`] are Eraser's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageConfig {
    /// Repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `{mem, cpu}` quantities, as written (`0` included: Eraser's shipped config writes
/// `cpu: 0` where it means "none").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResourceConfig {
    /// Memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<Quantity>,
    /// CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
}

/// A config read without errors.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// The effective config.
    pub config: Config,
    /// The version it was written in.
    pub api_version: ApiVersion,
    /// What was not used as written.
    pub warnings: Vec<ConfigWarning>,
}

impl Serialize for Config {
    /// The `eraser.sh/v1alpha3` document, with Image Cleaner's additions where set.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Document<'a> {
            api_version: &'static str,
            kind: &'static str,
            manager: &'a ManagerConfig,
            components: &'a Components,
        }
        Document {
            api_version: ApiVersion::V1alpha3.as_str(),
            kind: CONFIG_KIND,
            manager: &self.manager,
            components: &self.components,
        }
        .serialize(serializer)
    }
}

impl Config {
    /// Reads an `EraserConfig` document.
    pub fn from_yaml(text: &str) -> Result<Parsed, ConfigErrors> {
        let mut diagnostics = Diagnostics::default();
        let value: Value = match serde_yaml::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                diagnostics.error(&KeyPath::root(), ErrorKind::Yaml(error.into()));
                return Err(finish_errors(diagnostics));
            }
        };
        read_document(diagnostics, &value)
    }

    /// Reads the config from a ConfigMap's `data` (key `controller_manager_config.yaml`).
    pub fn from_config_map_data(data: &BTreeMap<String, String>) -> Result<Parsed, ConfigErrors> {
        match data.get(MANAGER_CONFIG_KEY) {
            Some(text) => Config::from_yaml(text),
            None => {
                let mut diagnostics = Diagnostics::default();
                diagnostics.error(&KeyPath::root(), ErrorKind::MissingConfigKey);
                Err(finish_errors(diagnostics))
            }
        }
    }

    /// Reads a file holding either the `EraserConfig` itself or a ConfigMap manifest with it
    /// under `controller_manager_config.yaml`; in a multi-document file, the first such
    /// document is used.
    pub fn from_file_text(text: &str) -> Result<Parsed, ConfigErrors> {
        let mut documents: Vec<Value> = Vec::new();
        for document in serde_yaml::Deserializer::from_str(text) {
            match serde::Deserialize::deserialize(document) {
                Ok(value) => documents.push(value),
                Err(error) => {
                    let mut diagnostics = Diagnostics::default();
                    diagnostics.error(&KeyPath::root(), ErrorKind::Yaml(error.into()));
                    return Err(finish_errors(diagnostics));
                }
            }
        }
        documents.retain(|document| !document.is_null());
        let kind = |document: &Value| {
            document
                .get("kind")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let chosen = if documents.len() == 1 {
            documents.first()
        } else {
            documents.iter().find(|document| {
                let kind = kind(document);
                kind.as_deref() == Some(CONFIG_KIND)
                    || (kind.as_deref() == Some("ConfigMap")
                        && document
                            .get("data")
                            .and_then(|data| data.get(MANAGER_CONFIG_KEY))
                            .is_some())
            })
        };
        let Some(document) = chosen else {
            let mut diagnostics = Diagnostics::default();
            diagnostics.error(&KeyPath::root(), ErrorKind::NoConfigDocument);
            return Err(finish_errors(diagnostics));
        };
        if kind(document).as_deref() != Some("ConfigMap") {
            return read_document(Diagnostics::default(), document);
        }
        match document
            .get("data")
            .and_then(|data| data.get(MANAGER_CONFIG_KEY))
        {
            Some(Value::String(text)) => Config::from_yaml(text),
            Some(other) => {
                let mut diagnostics = Diagnostics::default();
                let path = KeyPath::root().key("data").key(MANAGER_CONFIG_KEY);
                diagnostics.error(
                    &path,
                    ErrorKind::WrongType {
                        expected: "a string holding the config",
                        found: type_name(other),
                    },
                );
                Err(finish_errors(diagnostics))
            }
            None => {
                let mut diagnostics = Diagnostics::default();
                diagnostics.error(&KeyPath::root().key("data"), ErrorKind::MissingConfigKey);
                Err(finish_errors(diagnostics))
            }
        }
    }

    /// The config as an `eraser.sh/v1alpha3` YAML document.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }

    /// The config as JSON, in the same shape as [`Config::to_yaml`].
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// A copy with the defaults that depend on other keys written out (`minUnused`), to show
    /// what is in effect. Not for storing: a stored value no longer follows its source key.
    pub fn with_derived_defaults(&self) -> Config {
        let mut config = self.clone();
        let scheduling = &mut config.manager.scheduling;
        scheduling.min_unused_setting = Some(scheduling.min_unused());
        config
    }
}

fn finish_errors(diagnostics: Diagnostics) -> ConfigErrors {
    ConfigErrors {
        errors: diagnostics.errors,
        warnings: diagnostics.warnings,
    }
}

fn read_document(mut diagnostics: Diagnostics, value: &Value) -> Result<Parsed, ConfigErrors> {
    let root = KeyPath::root();
    let top = Fields::new(&mut diagnostics, root, Some(value), TOP_KEYS, TOP_HINTS);
    // An empty document reads as an empty mapping, which then lacks its apiVersion.
    if !matches!(value, Value::Object(_) | Value::Null) {
        return Err(finish_errors(diagnostics));
    }
    match top.string(&mut diagnostics, "kind") {
        Some(kind) if kind == CONFIG_KIND => {}
        Some(kind) => diagnostics.error(
            &top.path("kind"),
            ErrorKind::NotOneOf {
                value: kind,
                allowed: &[CONFIG_KIND],
            },
        ),
        None if !top.has("kind") => diagnostics.warn(&top.path("kind"), WarningKind::MissingKind),
        None => {}
    }
    let api_version = match top.string(&mut diagnostics, "apiVersion") {
        Some(text) => match text.parse::<ApiVersion>() {
            Ok(version) => version,
            Err(()) => {
                diagnostics.error(
                    &top.path("apiVersion"),
                    ErrorKind::NotOneOf {
                        value: text,
                        allowed: &ApiVersion::ALL,
                    },
                );
                return Err(finish_errors(diagnostics));
            }
        },
        None => {
            if !top.has("apiVersion") {
                diagnostics.error(
                    &top.path("apiVersion"),
                    ErrorKind::Missing {
                        what: "one of eraser.sh/v1alpha1, eraser.sh/v1alpha2, eraser.sh/v1alpha3",
                    },
                );
            }
            return Err(finish_errors(diagnostics));
        }
    };
    let manager = read_manager(&mut diagnostics, &top, api_version);
    let components = read_components(&mut diagnostics, &top, api_version);
    if diagnostics.errors.is_empty() {
        Ok(Parsed {
            config: Config {
                manager,
                components,
            },
            api_version,
            warnings: diagnostics.warnings,
        })
    } else {
        Err(finish_errors(diagnostics))
    }
}

fn read_manager(d: &mut Diagnostics, top: &Fields<'_>, version: ApiVersion) -> ManagerConfig {
    let (keys, hints) = match version {
        ApiVersion::V1alpha3 => (MANAGER_KEYS_V1ALPHA3, &[][..]),
        _ => (MANAGER_KEYS_OLDER, MANAGER_HINTS_OLDER),
    };
    let fields = top.object(d, "manager", keys, hints);
    let mut manager = ManagerConfig {
        runtime: read_runtime(d, &fields, version),
        ..ManagerConfig::default()
    };
    if let Some(endpoint) = fields.string(d, "otlpEndpoint") {
        manager.otlp_endpoint = endpoint;
    }
    if let Some(level) = fields.string(d, "logLevel") {
        let lower = level.to_ascii_lowercase();
        if LOG_LEVELS.contains(&lower.as_str()) {
            manager.log_level = lower;
        } else {
            d.error(
                &fields.path("logLevel"),
                ErrorKind::NotOneOf {
                    value: level,
                    allowed: LOG_LEVELS,
                },
            );
        }
    }

    let scheduling = fields.object(d, "scheduling", SCHEDULING_KEYS, &[]);
    if let Some(interval) = positive(d, &scheduling, "repeatInterval") {
        manager.scheduling.repeat_interval = interval;
    }
    if let Some(begin) = scheduling.bool(d, "beginImmediately") {
        manager.scheduling.begin_immediately = begin;
    }
    if let Some(text) = scheduling.string(d, "schedule")
        && !text.trim().is_empty()
    {
        match text.parse::<CronSchedule>() {
            Ok(schedule) => manager.scheduling.schedule = Some(schedule),
            Err(error) => d.error(
                &scheduling.path("schedule"),
                ErrorKind::Cron {
                    value: text,
                    reason: error.reason,
                },
            ),
        }
    }
    manager.scheduling.min_unused_setting = scheduling.duration(d, "minUnused");

    let profile = fields.object(d, "profile", PROFILE_KEYS, &[]);
    if let Some(enabled) = profile.bool(d, "enabled") {
        manager.profile.enabled = enabled;
    }
    if let Some(port) = profile.integer(d, "port") {
        match u16::try_from(port) {
            Ok(port) if port > 0 => manager.profile.port = port,
            _ => d.error(
                &profile.path("port"),
                ErrorKind::OutOfRange {
                    value: port.to_string(),
                    range: "1 to 65535",
                },
            ),
        }
    }

    let image_job = fields.object(d, "imageJob", IMAGE_JOB_KEYS, &[]);
    if let Some(ratio) = image_job.number(d, "successRatio") {
        if (0.0..=1.0).contains(&ratio) {
            manager.image_job.success_ratio = ratio;
        } else {
            d.error(
                &image_job.path("successRatio"),
                ErrorKind::OutOfRange {
                    value: ratio.to_string(),
                    range: "0 to 1",
                },
            );
        }
    }
    let cleanup = image_job.object(d, "cleanup", CLEANUP_KEYS, &[]);
    if let Some(delay) = cleanup.duration(d, "delayOnSuccess") {
        manager.image_job.cleanup.delay_on_success = delay;
    }
    if let Some(delay) = cleanup.duration(d, "delayOnFailure") {
        manager.image_job.cleanup.delay_on_failure = delay;
    }

    if let Some(secrets) = fields.strings(d, "pullSecrets") {
        manager.pull_secrets = Vec::with_capacity(secrets.len());
        for (path, secret) in secrets {
            if is_dns_subdomain(&secret) {
                manager.pull_secrets.push(secret);
            } else {
                d.error(&path, ErrorKind::ObjectName { value: secret });
            }
        }
    }
    if let Some(class) = fields.string(d, "priorityClassName") {
        if class.is_empty() || is_dns_subdomain(&class) {
            manager.priority_class_name = class;
        } else {
            d.error(
                &fields.path("priorityClassName"),
                ErrorKind::ObjectName { value: class },
            );
        }
    }
    if version == ApiVersion::V1alpha3
        && let Some(labels) = fields.string_map(d, "additionalPodLabels")
    {
        for (path, key, value) in labels {
            if !is_label_key(&key) {
                d.error(&path, ErrorKind::LabelKey { key });
            } else if !is_label_value(&value) {
                d.error(&path, ErrorKind::LabelValue { value });
            } else {
                if RESERVED_POD_LABELS.contains(&key.as_str()) {
                    d.warn(&path, WarningKind::ReservedLabel);
                }
                manager.additional_pod_labels.insert(key, value);
            }
        }
    }

    let node_filter = fields.object(d, "nodeFilter", NODE_FILTER_KEYS, &[]);
    if let Some(filter_type) = node_filter.one_of(d, "type", NODE_FILTER_TYPES) {
        manager.node_filter.filter_type = match filter_type {
            "include" => NodeFilterType::Include,
            _ => NodeFilterType::Exclude,
        };
    }
    if let Some(selectors) = node_filter.strings(d, "selectors") {
        manager.node_filter.selectors = Vec::with_capacity(selectors.len());
        for (path, text) in selectors {
            match text.parse::<LabelSelector>() {
                Ok(selector) => {
                    if selector.is_empty() {
                        d.warn(&path, WarningKind::SelectsEveryNode);
                    }
                    manager.node_filter.selectors.push(selector);
                }
                Err(error) => d.error(&path, ErrorKind::Selector(error)),
            }
        }
    }
    manager
}

fn read_runtime(d: &mut Diagnostics, manager: &Fields<'_>, version: ApiVersion) -> RuntimeSpec {
    let path = manager.path("runtime");
    let Some(value) = manager.value("runtime") else {
        return RuntimeSpec::default();
    };
    if version != ApiVersion::V1alpha3 {
        let Value::String(name) = value else {
            d.error(
                &path,
                ErrorKind::WrongType {
                    expected: "a runtime name (containerd, dockershim or crio); \
                               {name, address} needs apiVersion eraser.sh/v1alpha3",
                    found: type_name(value),
                },
            );
            return RuntimeSpec::default();
        };
        return match name.parse::<RuntimeName>() {
            Ok(name) => RuntimeSpec::for_name(name),
            Err(()) => {
                d.error(
                    &path,
                    ErrorKind::NotOneOf {
                        value: name.clone(),
                        allowed: runtime::RUNTIME_NAMES,
                    },
                );
                RuntimeSpec::default()
            }
        };
    }
    if let Value::String(_) = value {
        d.error(
            &path,
            ErrorKind::WrongType {
                expected: "a mapping {name, address} in eraser.sh/v1alpha3 \
                           (a plain runtime name is the v1alpha1 and v1alpha2 form)",
                found: "a string",
            },
        );
        return RuntimeSpec::default();
    }
    let fields = manager.object(d, "runtime", RUNTIME_KEYS, &[]);
    let name = fields.string(d, "name").filter(|n| !n.is_empty());
    let address = fields.string(d, "address").filter(|a| !a.is_empty());
    let name = match name {
        None => None,
        Some(text) => match text.parse::<RuntimeName>() {
            Ok(name) => Some(name),
            Err(()) => {
                d.error(
                    &fields.path("name"),
                    ErrorKind::NotOneOf {
                        value: text,
                        allowed: runtime::RUNTIME_NAMES,
                    },
                );
                return RuntimeSpec::default();
            }
        },
    };
    match (name, address) {
        (None, None) => RuntimeSpec::default(),
        (Some(name), None) => RuntimeSpec::for_name(name),
        (None, Some(_)) => {
            d.error(
                &fields.path("name"),
                ErrorKind::Missing {
                    what: "a runtime address needs the runtime's name (containerd, dockershim or crio)",
                },
            );
            RuntimeSpec::default()
        }
        (Some(name), Some(address)) => match address.parse::<RuntimeAddress>() {
            Ok(address) => RuntimeSpec { name, address },
            Err(error) => {
                d.error(&fields.path("address"), ErrorKind::Address(error));
                RuntimeSpec::for_name(name)
            }
        },
    }
}

fn read_components(d: &mut Diagnostics, top: &Fields<'_>, version: ApiVersion) -> Components {
    let (keys, hints, remover_key) = match version {
        ApiVersion::V1alpha1 => (
            COMPONENTS_KEYS_V1ALPHA1,
            COMPONENTS_HINTS_V1ALPHA1,
            "eraser",
        ),
        _ => (COMPONENTS_KEYS, COMPONENTS_HINTS, "remover"),
    };
    let fields = top.object(d, "components", keys, hints);
    let mut components = Components::default();

    let collector = fields.object(d, "collector", OPTIONAL_CONTAINER_KEYS, &[]);
    if let Some(enabled) = collector.bool(d, "enabled") {
        components.collector.enabled = enabled;
    }
    read_container(d, &collector, &mut components.collector.container, false);

    let scanner = fields.object(d, "scanner", OPTIONAL_CONTAINER_KEYS, &[]);
    if let Some(enabled) = scanner.bool(d, "enabled") {
        components.scanner.enabled = enabled;
    }
    read_container(d, &scanner, &mut components.scanner.container, true);
    if let Some(text) = scanner.string(d, "config") {
        components.scanner.config = scanner::read(d, &scanner.path("config"), &text);
    }
    if let Some(volumes) = scanner.list(d, "volumes") {
        for (path, value) in volumes {
            match serde_json::from_value::<Volume>(value.clone()) {
                Ok(volume) => {
                    if volume.host_path.is_none() {
                        d.warn(
                            &path,
                            WarningKind::Ignored {
                                reason: "only hostPath volumes are mounted into the scanner",
                            },
                        );
                    } else {
                        components.scanner.volumes.push(volume);
                    }
                }
                Err(error) => d.error(&path, ErrorKind::Volume(error.into())),
            }
        }
    }
    let scanner_config = &components.scanner.config;
    if components.scanner.enabled
        && scanner_config.engine == ScanEngine::Native
        && scanner_config.db.is_none()
    {
        d.warn(&scanner.path("config"), WarningKind::ScannerWithoutDatabase);
    }

    let remover = fields.object(d, remover_key, CONTAINER_KEYS, REMOVER_HINTS);
    read_container(d, &remover, &mut components.remover, false);
    components
}

/// Image and resources of one container. `config` and `volumes` are Eraser keys of every
/// container that only the scanner uses.
fn read_container(
    d: &mut Diagnostics,
    fields: &Fields<'_>,
    container: &mut ContainerConfig,
    is_scanner: bool,
) {
    if !is_scanner {
        for key in ["config", "volumes"] {
            if fields.has(key) {
                d.warn(
                    &fields.path(key),
                    WarningKind::Ignored {
                        reason: "only the scanner reads it",
                    },
                );
            }
        }
    }
    let image = fields.object(d, "image", IMAGE_KEYS, &[]);
    if let Some(repo) = image.string(d, "repo").filter(|r| !r.is_empty()) {
        container.image.repo = Some(repo);
    }
    if let Some(tag) = image.string(d, "tag").filter(|t| !t.is_empty()) {
        container.image.tag = Some(tag);
    }
    for (key, resources) in [
        ("request", &mut container.request),
        ("limit", &mut container.limit),
    ] {
        let fields = fields.object(d, key, RESOURCE_KEYS, &[]);
        for (resource, slot) in [("mem", &mut resources.mem), ("cpu", &mut resources.cpu)] {
            if let Some(quantity) = quantity(d, &fields, resource) {
                *slot = Some(quantity);
            }
        }
    }
}

/// A resource quantity, written as a string or a number (`cpu: 0`).
fn quantity(d: &mut Diagnostics, fields: &Fields<'_>, key: &str) -> Option<Quantity> {
    let text = match fields.value(key)? {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => {
            d.error(
                &fields.path(key),
                ErrorKind::WrongType {
                    expected: "a resource quantity",
                    found: type_name(other),
                },
            );
            return None;
        }
    };
    if is_quantity(&text) {
        Some(Quantity(text))
    } else {
        d.error(&fields.path(key), ErrorKind::Quantity { value: text });
        None
    }
}

/// Kubernetes' quantity grammar, non-negative: a decimal number, then nothing, a binary
/// suffix (`Ki`..`Ei`), a decimal suffix (`n`, `u`, `m`, `k`, `M`..`E`) or an exponent.
fn is_quantity(text: &str) -> bool {
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_len = text
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = text.split_at(number_len);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let dots = number.len() - digits;
    if digits == 0 || dots > 1 {
        return false;
    }
    match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => {
            let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            !exponent.is_empty() && exponent.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// A duration that must be greater than zero.
pub(crate) fn positive(d: &mut Diagnostics, fields: &Fields<'_>, key: &str) -> Option<GoDuration> {
    let duration = fields.duration(d, key)?;
    if duration.is_zero() {
        d.error(&fields.path(key), ErrorKind::NotPositive);
        return None;
    }
    Some(duration)
}
