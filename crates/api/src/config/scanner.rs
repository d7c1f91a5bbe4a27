//! The scanner's settings: `components.scanner.config`, a YAML document inside a string in
//! Eraser's format, read with Eraser's key names into typed settings.
//!
//! Eraser's trivy-scanner unmarshals that string over its own defaults; the keys and their
//! meaning are kept. Two defaults differ on purpose: `deleteFailedImages` is false (an image
//! that could not be scanned is kept; Eraser deletes it) and `severities` is CRITICAL, HIGH.
//! Image Cleaner adds `engine` (its own scanner, or Trivy as a plug-in) and `db`, where the
//! cluster keeps the offline vulnerability database so that no node downloads it per run.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::diagnostics::{Diagnostics, ErrorKind, KeyPath, WarningKind};
use super::read::Fields;
use super::{is_dns_subdomain, positive};
use crate::duration::GoDuration;

/// Severity names, lowest first.
pub const SEVERITIES: &[&str] = &["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"];
/// Package types Trivy scans.
pub const PACKAGE_TYPES: &[&str] = &["os", "library"];
/// Trivy's scanners (`securityChecks`).
pub const SECURITY_CHECKS: &[&str] = &["vuln", "misconfig", "secret", "license"];
/// Vulnerability statuses that can be ignored.
pub const VULNERABILITY_STATUSES: &[&str] = &[
    "unknown",
    "not_affected",
    "affected",
    "fixed",
    "under_investigation",
    "will_not_fix",
    "fix_deferred",
    "end_of_life",
];
/// Scan engines.
pub const ENGINES: &[&str] = &["native", "trivy"];

const KEYS: &[&str] = &[
    "runtime",
    "cacheDir",
    "dbRepo",
    "deleteFailedImages",
    "deleteEOLImages",
    "vulnerabilities",
    "timeout",
    "engine",
    "db",
];
const VULNERABILITY_KEYS: &[&str] = &[
    "ignoreUnfixed",
    "types",
    "securityChecks",
    "severities",
    "ignoredStatuses",
];
const TIMEOUT_KEYS: &[&str] = &["total", "perImage"];
const DB_KEYS: &[&str] = &["path", "configMap", "url", "maxAge"];
const DB_SOURCES: &[&str] = &["path", "configMap", "url"];
const CONFIG_MAP_KEYS: &[&str] = &["name", "key"];

/// How bad a vulnerability is, in Trivy's and OSV's common scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Not rated.
    Unknown,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    fn from_name(name: &str) -> Option<Severity> {
        match name {
            "UNKNOWN" => Some(Severity::Unknown),
            "LOW" => Some(Severity::Low),
            "MEDIUM" => Some(Severity::Medium),
            "HIGH" => Some(Severity::High),
            "CRITICAL" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl Serialize for Severity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Which scanner runs on the nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanEngine {
    /// Image Cleaner's own scanner over the offline database (`db`).
    #[default]
    Native,
    /// The `trivy` binary, per image, with `cacheDir` and `dbRepo`.
    Trivy,
}

/// Where the offline vulnerability database comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbLocation {
    /// A file at this absolute path in the worker (on a volume from `components.scanner.volumes`).
    Path(String),
    /// A key of a ConfigMap in the manager's namespace, handed to the workers.
    ConfigMap {
        /// ConfigMap name.
        name: String,
        /// Key holding the database.
        key: String,
    },
    /// An http(s) URL the manager fetches and hands to the workers.
    Url(String),
}

/// `db`: the vulnerability database and how old it may be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbSource {
    /// Where it is.
    pub location: DbLocation,
    /// Older than this, the database is reported as stale (still used).
    pub max_age: GoDuration,
}

impl DbSource {
    /// Default for `db.maxAge`.
    pub const DEFAULT_MAX_AGE: GoDuration = GoDuration::from_hours(7 * 24);
}

impl Serialize for DbSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct ConfigMapRef<'a> {
            name: &'a str,
            key: &'a str,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            path: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            config_map: Option<ConfigMapRef<'a>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            url: Option<&'a str>,
            max_age: GoDuration,
        }
        let mut wire = Wire {
            path: None,
            config_map: None,
            url: None,
            max_age: self.max_age,
        };
        match &self.location {
            DbLocation::Path(path) => wire.path = Some(path),
            DbLocation::ConfigMap { name, key } => {
                wire.config_map = Some(ConfigMapRef { name, key })
            }
            DbLocation::Url(url) => wire.url = Some(url),
        }
        wire.serialize(serializer)
    }
}

/// `vulnerabilities`: what counts as vulnerable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VulnerabilityConfig {
    /// Ignore vulnerabilities without a fixed version.
    pub ignore_unfixed: bool,
    /// Package types to scan (Trivy's `--pkg-types`).
    pub types: Vec<String>,
    /// Trivy's `--scanners`.
    pub security_checks: Vec<String>,
    /// Severities that condemn an image.
    pub severities: Vec<Severity>,
    /// Vulnerability statuses to ignore.
    pub ignored_statuses: Vec<String>,
}

impl Default for VulnerabilityConfig {
    fn default() -> VulnerabilityConfig {
        VulnerabilityConfig {
            ignore_unfixed: false,
            types: vec!["os".into(), "library".into()],
            security_checks: vec!["vuln".into()],
            severities: vec![Severity::Critical, Severity::High],
            ignored_statuses: Vec::new(),
        }
    }
}

/// `timeout`: how long scanning may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanTimeouts {
    /// For all images of a node; images not scanned in time count as not scanned.
    pub total: GoDuration,
    /// For one image.
    pub per_image: GoDuration,
}

impl Default for ScanTimeouts {
    fn default() -> ScanTimeouts {
        ScanTimeouts {
            total: GoDuration::from_hours(23),
            per_image: GoDuration::from_hours(1),
        }
    }
}

/// The scanner's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScannerConfig {
    /// Which scanner.
    pub engine: ScanEngine,
    /// The offline database of the native scanner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db: Option<DbSource>,
    /// Trivy's cache directory.
    pub cache_dir: String,
    /// Trivy's database repository.
    pub db_repo: String,
    /// Remove images that could not be scanned (default false: they are kept).
    pub delete_failed_images: bool,
    /// Remove images whose OS release is end-of-life.
    #[serde(rename = "deleteEOLImages")]
    pub delete_eol_images: bool,
    /// What counts as vulnerable.
    pub vulnerabilities: VulnerabilityConfig,
    /// Time limits.
    pub timeout: ScanTimeouts,
}

impl Default for ScannerConfig {
    fn default() -> ScannerConfig {
        ScannerConfig {
            engine: ScanEngine::Native,
            db: None,
            cache_dir: "/var/lib/trivy".into(),
            db_repo: "ghcr.io/aquasecurity/trivy-db".into(),
            delete_failed_images: false,
            delete_eol_images: true,
            vulnerabilities: VulnerabilityConfig::default(),
            timeout: ScanTimeouts::default(),
        }
    }
}

impl ScannerConfig {
    /// The settings as the YAML string Eraser keeps in `components.scanner.config`.
    pub fn to_yaml_string(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(self)
    }
}

/// Reads the scanner's YAML string (`path` is where the string is) over the defaults.
pub(crate) fn read(diagnostics: &mut Diagnostics, path: &KeyPath, text: &str) -> ScannerConfig {
    let mut config = ScannerConfig::default();
    if text.trim().is_empty() {
        return config;
    }
    let value: Value = match serde_yaml::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            diagnostics.error(path, ErrorKind::Yaml(error.into()));
            return config;
        }
    };
    let fields = Fields::new(diagnostics, path.clone(), Some(&value), KEYS, &[]);
    if fields.has("runtime") {
        diagnostics.warn(
            &fields.path("runtime"),
            WarningKind::Ignored {
                reason: "the scanner uses manager.runtime",
            },
        );
    }
    if let Some(engine) = fields.one_of(diagnostics, "engine", ENGINES) {
        config.engine = match engine {
            "trivy" => ScanEngine::Trivy,
            _ => ScanEngine::Native,
        };
    }
    if let Some(dir) = fields.string(diagnostics, "cacheDir") {
        config.cache_dir = dir;
    }
    if let Some(repo) = fields.string(diagnostics, "dbRepo") {
        config.db_repo = repo;
    }
    if let Some(delete) = fields.bool(diagnostics, "deleteFailedImages") {
        config.delete_failed_images = delete;
    }
    if let Some(delete) = fields.bool(diagnostics, "deleteEOLImages") {
        config.delete_eol_images = delete;
    }

    let vulnerabilities = fields.object(diagnostics, "vulnerabilities", VULNERABILITY_KEYS, &[]);
    let wanted = &mut config.vulnerabilities;
    if let Some(ignore) = vulnerabilities.bool(diagnostics, "ignoreUnfixed") {
        wanted.ignore_unfixed = ignore;
    }
    if let Some(types) = words(diagnostics, &vulnerabilities, "types", PACKAGE_TYPES, false) {
        wanted.types = types;
    }
    if let Some(checks) = words(
        diagnostics,
        &vulnerabilities,
        "securityChecks",
        SECURITY_CHECKS,
        false,
    ) {
        wanted.security_checks = checks;
    }
    if let Some(severities) = words(
        diagnostics,
        &vulnerabilities,
        "severities",
        SEVERITIES,
        true,
    ) {
        let written_empty = vulnerabilities
            .value("severities")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        if written_empty {
            diagnostics.error(
                &vulnerabilities.path("severities"),
                ErrorKind::Empty {
                    what: "to stop removing vulnerable images, set components.scanner.enabled: false",
                },
            );
        }
        wanted.severities = severities
            .iter()
            .filter_map(|name| Severity::from_name(name))
            .collect();
    }
    if let Some(statuses) = words(
        diagnostics,
        &vulnerabilities,
        "ignoredStatuses",
        VULNERABILITY_STATUSES,
        false,
    ) {
        wanted.ignored_statuses = statuses;
    }

    let timeout = fields.object(diagnostics, "timeout", TIMEOUT_KEYS, &[]);
    if let Some(total) = positive(diagnostics, &timeout, "total") {
        config.timeout.total = total;
    }
    if let Some(per_image) = positive(diagnostics, &timeout, "perImage") {
        config.timeout.per_image = per_image;
    }

    if fields.has("db") {
        let db = fields.object(diagnostics, "db", DB_KEYS, &[]);
        config.db = read_db(diagnostics, &db);
    }
    config
}

/// A list of words from a fixed set; `upper` accepts any case and stores upper case (the
/// severity names), otherwise the case must match.
fn words(
    diagnostics: &mut Diagnostics,
    fields: &Fields<'_>,
    key: &str,
    allowed: &'static [&'static str],
    upper: bool,
) -> Option<Vec<String>> {
    let items = fields.strings(diagnostics, key)?;
    let mut words: Vec<String> = Vec::with_capacity(items.len());
    for (path, item) in items {
        let word = if upper {
            item.to_ascii_uppercase()
        } else {
            item.clone()
        };
        if !allowed.contains(&word.as_str()) {
            diagnostics.error(
                &path,
                ErrorKind::NotOneOf {
                    value: item,
                    allowed,
                },
            );
        } else if !words.contains(&word) {
            words.push(word);
        }
    }
    Some(words)
}

fn read_db(diagnostics: &mut Diagnostics, db: &Fields<'_>) -> Option<DbSource> {
    let given = DB_SOURCES.iter().filter(|key| db.has(key)).count();
    if given != 1 {
        diagnostics.error(db.own_path(), ErrorKind::ExactlyOne { keys: DB_SOURCES });
        return None;
    }
    let max_age = positive(diagnostics, db, "maxAge").unwrap_or(DbSource::DEFAULT_MAX_AGE);
    let location = if db.has("path") {
        let path = db.string(diagnostics, "path")?;
        if !path.starts_with('/') {
            diagnostics.error(&db.path("path"), ErrorKind::RelativePath { value: path });
            return None;
        }
        DbLocation::Path(path)
    } else if db.has("url") {
        let url = db.string(diagnostics, "url")?;
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        if host.is_none_or(|rest| rest.is_empty() || rest.starts_with('/')) {
            diagnostics.error(&db.path("url"), ErrorKind::HttpUrl { value: url });
            return None;
        }
        DbLocation::Url(url)
    } else {
        let config_map = db.object(diagnostics, "configMap", CONFIG_MAP_KEYS, &[]);
        let name = config_map.string(diagnostics, "name");
        let key = config_map.string(diagnostics, "key");
        let (name, key) = match (name, key) {
            (Some(name), Some(key)) => (name, key),
            (name, key) => {
                if name.is_none() && !config_map.has("name") {
                    diagnostics.error(
                        &config_map.path("name"),
                        ErrorKind::Missing {
                            what: "the name of a ConfigMap in the manager's namespace",
                        },
                    );
                }
                if key.is_none() && !config_map.has("key") {
                    diagnostics.error(
                        &config_map.path("key"),
                        ErrorKind::Missing {
                            what: "the ConfigMap key holding the database",
                        },
                    );
                }
                return None;
            }
        };
        if !is_dns_subdomain(&name) {
            diagnostics.error(
                &config_map.path("name"),
                ErrorKind::ObjectName { value: name },
            );
            return None;
        }
        let valid_key = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_key {
            diagnostics.error(
                &config_map.path("key"),
                ErrorKind::ObjectName { value: key },
            );
            return None;
        }
        DbLocation::ConfigMap { name, key }
    };
    Some(DbSource { location, max_age })
}
