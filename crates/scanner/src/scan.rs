//! One image's scan: detect the OS, read the package databases, match every package
//! against the database, and say which findings condemn the image under the operator's
//! policy (severities, unfixed, ignored statuses, end of life).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::db::{Database, eol};
use crate::finding::{Finding, Severity, Status};
use crate::fs::layers::Wanted;
use crate::fs::{self, Filesystem};
use crate::matching::applies;
use crate::os::{self, Os};
use crate::packages::{self, Kind};

/// The paths a scan reads, for sources that must be told in advance (streamed layers).
pub fn wanted() -> Wanted {
    Wanted::new(
        os::RELEASE_FILES
            .iter()
            .chain(packages::DATABASE_FILES.iter())
            .copied(),
        packages::DATABASE_DIRS.iter().copied(),
    )
}

/// What one image holds and which vulnerabilities apply to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageScan {
    /// The detected OS, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    /// Whether the OS release is past its end of life (`None`: release not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<bool>,
    /// Installed packages found.
    pub packages: usize,
    /// Package database files read.
    pub databases: Vec<String>,
    /// Every vulnerability found, sorted.
    pub findings: Vec<Finding>,
    /// What limits the result (no package database, release not in the database, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Which findings condemn an image (Eraser's scanner settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPolicy {
    /// Severities that count (default CRITICAL and HIGH).
    pub severities: BTreeSet<Severity>,
    /// Ignore findings without a fixed version.
    pub ignore_unfixed: bool,
    /// Statuses that never count.
    pub ignored_statuses: BTreeSet<Status>,
    /// An image on an end-of-life release is condemned.
    pub delete_eol: bool,
}

impl Default for ScanPolicy {
    fn default() -> Self {
        ScanPolicy {
            severities: [Severity::Critical, Severity::High].into(),
            ignore_unfixed: false,
            ignored_statuses: BTreeSet::new(),
            delete_eol: true,
        }
    }
}

/// The pseudo vulnerability ID reported for an image condemned for being end of life.
pub fn end_of_life_id(os: &Os) -> String {
    format!("EOL:{} {}", os.family, os.release())
}

impl ScanPolicy {
    /// Whether one finding counts under this policy.
    pub fn counts(&self, finding: &Finding) -> bool {
        self.severities.contains(&finding.severity)
            && !(self.ignore_unfixed && finding.status != Status::Fixed)
            && !self.ignored_statuses.contains(&finding.status)
    }
}

impl ImageScan {
    /// The IDs that condemn the image under `policy`, sorted and distinct; empty when it is
    /// not condemned.
    pub fn condemning_ids(&self, policy: &ScanPolicy) -> Vec<String> {
        let mut ids: BTreeSet<String> = self
            .findings
            .iter()
            .filter(|f| policy.counts(f))
            .map(|f| f.vulnerability_id.clone())
            .collect();
        if policy.delete_eol
            && self.end_of_life == Some(true)
            && let Some(os) = &self.os
        {
            ids.insert(end_of_life_id(os));
        }
        ids.into_iter().collect()
    }
}

/// Scans a filesystem against the database. `now` decides end of life.
pub fn scan(fs: &dyn Filesystem, db: &Database, now: SystemTime) -> Result<ImageScan> {
    let mut release_files = Vec::new();
    for path in os::RELEASE_FILES {
        let text = fs::read(fs, path)?.map(|b| String::from_utf8_lossy(&b).into_owned());
        release_files.push((path, text));
    }
    let borrowed: Vec<(&str, Option<&str>)> = release_files
        .iter()
        .map(|(p, t)| (*p, t.as_deref()))
        .collect();
    let os = os::detect(&borrowed);
    let installed = packages::read_installed(fs)?;
    let mut notes = Vec::new();
    let mut findings = Vec::new();
    let today = now
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() / 86_400) as i64)
        .unwrap_or(0);
    let end_of_life = os
        .as_ref()
        .and_then(|os| eol::is_end_of_life(os.family, &os.release(), today));

    if installed.databases.is_empty() {
        notes.push("no OS package database found".to_string());
    }
    match &os {
        None if !installed.packages.is_empty() => {
            notes.push("packages found but the operating system is unknown".to_string())
        }
        None => notes.push("operating system not identified".to_string()),
        Some(os) => {
            let release = os.release();
            let expected_kind = match os.family.scheme() {
                Some(crate::version::Scheme::Debian) => Some(Kind::Dpkg),
                Some(crate::version::Scheme::Apk) => Some(Kind::Apk),
                Some(crate::version::Scheme::Rpm) => Some(Kind::Rpm),
                None => None,
            };
            if expected_kind.is_none() {
                notes.push(format!("operating system {} is not supported", os.id));
            } else if !installed.packages.is_empty() && !db.covers(os.family, &release) {
                notes.push(format!(
                    "the vulnerability database has no records for {} {release}",
                    os.family
                ));
            }
            for package in installed
                .packages
                .iter()
                .filter(|p| Some(p.kind) == expected_kind)
            {
                let version = &package.source_version;
                let mut names = vec![package.source_name.as_str()];
                if package.kind == Kind::Rpm && package.name != package.source_name {
                    names.push(package.name.as_str());
                }
                for name in names {
                    for advisory in db.lookup(os.family, &release, name)? {
                        let Some(hit) = applies(&advisory, version) else {
                            continue;
                        };
                        let status = if hit.fixed.is_some() {
                            Status::Fixed
                        } else {
                            advisory.status.unwrap_or(Status::Affected)
                        };
                        findings.push(Finding {
                            record_id: (advisory.record_id != advisory.vulnerability_id)
                                .then(|| advisory.record_id.clone()),
                            vulnerability_id: advisory.vulnerability_id,
                            package: package.name.clone(),
                            installed_version: package.version.clone(),
                            source_package: name.to_string(),
                            fixed_version: hit.fixed,
                            severity: advisory.severity,
                            status,
                            title: advisory.title,
                        });
                    }
                }
            }
        }
    }
    findings.sort();
    findings.dedup_by(|a, b| a.vulnerability_id == b.vulnerability_id && a.package == b.package);
    Ok(ImageScan {
        os,
        end_of_life,
        packages: installed.packages.len(),
        databases: installed.databases,
        findings,
        notes,
    })
}
