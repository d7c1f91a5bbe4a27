//! Vulnerability scanning in a scheduled run (`components.scanner.enabled`), with the
//! settings of the config the job was started with.
//!
//! The native scanner reads an offline database: from a path on the node (`db.path`, a
//! `components.scanner.volumes` hostPath mounted read-only at the same path), or the copy the
//! manager keeps for the cluster (`db.configMap`, `db.url`; see [`crate::database`]). Trivy
//! runs per image with the configured cache directory and database repository. Which findings condemn
//! an image (severities, unfixed, ignored statuses, end of life) and whether an image that
//! could not be scanned is removed (`deleteFailedImages`) come from the config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use image_cleaner_api::config::{DbLocation, ScanEngine, ScannerConfig};
use image_cleaner_core::ImageId;
use image_cleaner_node::Runtime;
use image_cleaner_node::scan::{Scanner, Settings, scan_images, vulnerable};
use image_cleaner_scanner::trivy::Trivy;
use image_cleaner_scanner::{Database, ScanPolicy, Severity, Status};

/// Why a scan could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The native scanner has no database it can read.
    #[error(
        "the native scanner needs a database: set components.scanner.config db (path, configMap or url); {0}"
    )]
    NoDatabase(&'static str),
    /// The database could not be opened.
    #[error("opening the vulnerability database {path}: {source}")]
    Database {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: image_cleaner_scanner::Error,
    },
    /// A severity or status name the scanner does not know.
    #[error("components.scanner.config: {0}")]
    Policy(String),
    /// The runtime's images could not be listed.
    #[error("listing the images to scan: {0}")]
    Runtime(#[source] image_cleaner_cri::Error),
}

impl ScanError {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ScanError::NoDatabase(_) => "scan_no_database",
            ScanError::Database { .. } => "scan_database",
            ScanError::Policy(_) => "scan_policy",
            ScanError::Runtime(_) => "scan_runtime",
        }
    }
}

/// The scan settings for `config`; `kept` is the node's copy of the cluster's database, for a
/// `db.configMap` or `db.url` source. Also the database's age when it is older than
/// `db.maxAge`.
pub fn settings(
    config: &ScannerConfig,
    kept: Option<&Path>,
) -> Result<(Settings, Option<Duration>), ScanError> {
    let mut stale = None;
    let per_image = config.timeout.per_image.as_duration();
    let scanner = match config.engine {
        ScanEngine::Trivy => Scanner::Trivy(Trivy {
            binary: PathBuf::from("trivy"),
            extra_args: vec![
                "--cache-dir".into(),
                config.cache_dir.clone(),
                "--db-repository".into(),
                config.db_repo.clone(),
            ],
            timeout: per_image,
        }),
        ScanEngine::Native => {
            let Some(source) = &config.db else {
                return Err(ScanError::NoDatabase("none is configured"));
            };
            let path = match (&source.location, kept) {
                (DbLocation::Path(path), _) => PathBuf::from(path),
                (_, Some(kept)) => kept.to_owned(),
                (_, None) => {
                    return Err(ScanError::NoDatabase(
                        "the job carries no copy from the manager",
                    ));
                }
            };
            let db = Database::open(&path).map_err(|source| ScanError::Database {
                path: path.clone(),
                source,
            })?;
            let age = db.age(SystemTime::now());
            if age > source.max_age.as_duration() {
                stale = Some(age);
            }
            Scanner::Native(Arc::new(db))
        }
    };
    let vulnerabilities = &config.vulnerabilities;
    let severities = vulnerabilities
        .severities
        .iter()
        .map(|s| s.as_str().parse::<Severity>())
        .collect::<Result<_, _>>()
        .map_err(ScanError::Policy)?;
    let ignored_statuses = vulnerabilities
        .ignored_statuses
        .iter()
        .map(|s| s.parse::<Status>())
        .collect::<Result<_, _>>()
        .map_err(ScanError::Policy)?;
    let mut settings = Settings::new(scanner);
    settings.policy = ScanPolicy {
        severities,
        ignore_unfixed: vulnerabilities.ignore_unfixed,
        ignored_statuses,
        delete_eol: config.delete_eol_images,
    };
    settings.delete_failed = config.delete_failed_images;
    settings.per_image_timeout = per_image;
    settings.total_timeout = config.timeout.total.as_duration();
    Ok((settings, stale))
}

/// Scans the node's images: image → the IDs that condemn it.
pub async fn scan(
    runtime: &Runtime,
    settings: &Settings,
) -> Result<BTreeMap<ImageId, Vec<String>>, ScanError> {
    let images = runtime
        .cri
        .list_images()
        .await
        .map_err(ScanError::Runtime)?;
    let progress = |done: usize, total: usize| {
        if done == total {
            tracing::info!(images = total, "scan done");
        }
    };
    let results = scan_images(runtime, &images, settings, &progress).await;
    for result in &results {
        if let Some(error) = &result.error {
            tracing::warn!(image = %result.names.first().unwrap_or(&result.id), %error, "scan failed");
        }
    }
    Ok(vulnerable(&results, settings))
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::config::Severity as ConfigSeverity;

    use super::*;

    #[test]
    fn trivy_gets_the_configured_cache_and_repository() {
        let config = ScannerConfig {
            engine: ScanEngine::Trivy,
            delete_failed_images: true,
            ..ScannerConfig::default()
        };
        let (settings, stale) = settings(&config, None).expect("trivy needs no database");
        assert_eq!(stale, None);
        let Scanner::Trivy(trivy) = &settings.scanner else {
            panic!("trivy expected");
        };
        assert!(trivy.extra_args.contains(&"/var/lib/trivy".to_string()));
        assert!(settings.delete_failed);
        assert!(settings.policy.severities.contains(&Severity::Critical));
        assert!(!settings.policy.severities.contains(&Severity::Low));
    }

    /// A database file built `age` ago, in `dir`.
    fn database(dir: &Path, age: Duration) -> PathBuf {
        let json = dir.join("record.json");
        let record = r#"{"id": "DEBIAN-CVE-2022-37434", "modified": "2024-08-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
            {"fixed": "1:1.2.13.dfsg-1+deb12u1"}]}]}]}"#;
        std::fs::write(&json, record).expect("record");
        let out = dir.join("vulns.db");
        image_cleaner_scanner::db::build(&json, &out, SystemTime::now() - age).expect("build");
        out
    }

    #[test]
    fn erasers_scanner_keys_reach_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path(), Duration::from_secs(3 * 3600));
        // As an operator writes it, in Eraser's format (the string under
        // components.scanner.config).
        let yaml = format!(
            "apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
components:
  scanner:
    enabled: true
    config: |
      db: {{path: {db}, maxAge: 2h}}
      vulnerabilities:
        ignoreUnfixed: true
        severities: [CRITICAL, MEDIUM]
        ignoredStatuses: [will_not_fix]
      deleteFailedImages: true
      deleteEOLImages: false
      timeout:
        total: 10m
        perImage: 45s
",
            db = db.display()
        );
        let parsed = image_cleaner_api::Config::from_yaml(&yaml).expect("a valid config");
        let (scan, stale) =
            settings(&parsed.config.components.scanner.config, None).expect("settings");
        assert!(matches!(scan.scanner, Scanner::Native(_)));
        assert_eq!(
            scan.policy.severities,
            [Severity::Critical, Severity::Medium].into()
        );
        assert!(scan.policy.ignore_unfixed);
        assert_eq!(scan.policy.ignored_statuses, [Status::WillNotFix].into());
        assert!(scan.delete_failed);
        assert!(!scan.policy.delete_eol);
        assert_eq!(scan.total_timeout, Duration::from_secs(600));
        assert_eq!(scan.per_image_timeout, Duration::from_secs(45));
        let stale = stale.expect("3 hours old, maxAge 2h: stale");
        assert!(stale >= Duration::from_secs(3 * 3600), "{stale:?}");

        // Defaults: unscanned images are kept, end-of-life images removed (as in Eraser).
        let defaults = image_cleaner_api::Config::from_yaml(&format!(
            "apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
components:
  scanner:
    enabled: true
    config: |
      db: {{path: {}}}
",
            db.display()
        ))
        .expect("a valid config");
        let (scan, stale) =
            settings(&defaults.config.components.scanner.config, None).expect("settings");
        assert!(!scan.delete_failed);
        assert!(scan.policy.delete_eol);
        assert!(!scan.policy.ignore_unfixed);
        assert_eq!(stale, None, "within the default maxAge of a week");
    }

    #[test]
    fn a_database_from_the_manager_needs_the_nodes_copy() {
        let mut config = ScannerConfig::default();
        config.db = Some(image_cleaner_api::config::DbSource {
            location: DbLocation::Url("https://db.example/vulns.db".into()),
            max_age: image_cleaner_api::config::DbSource::DEFAULT_MAX_AGE,
        });
        let error = settings(&config, None).expect_err("no copy");
        assert!(
            error.to_string().contains("no copy from the manager"),
            "{error}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database(dir.path(), Duration::ZERO);
        let (scan, stale) = settings(&config, Some(&db)).expect("the node's copy");
        assert!(matches!(scan.scanner, Scanner::Native(_)));
        assert_eq!(stale, None);
        std::fs::write(&db, b"not a database").expect("write");
        let error = settings(&config, Some(&db)).expect_err("corrupt");
        assert_eq!(error.metric_label(), "scan_database");
    }

    #[test]
    fn the_native_scanner_needs_a_database_path() {
        let error = settings(&ScannerConfig::default(), None).expect_err("no database");
        assert_eq!(error.metric_label(), "scan_no_database");
        let mut config = ScannerConfig::default();
        config.vulnerabilities.severities = vec![ConfigSeverity::Low];
        config.engine = ScanEngine::Trivy;
        config.vulnerabilities.ignored_statuses = vec!["nonsense".into()];
        assert_eq!(
            settings(&config, None)
                .expect_err("bad status")
                .metric_label(),
            "scan_policy"
        );
    }
}
