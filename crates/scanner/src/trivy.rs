//! Trivy as an external scanner, for operators who prefer its database and analyzers.
//!
//! Trivy runs once per image as a separate process with JSON output; its report is mapped
//! into the same [`ImageScan`] the native scanner produces, so policy and reports do not
//! care which scanner ran. A missing `trivy` binary, a non-zero exit, a timeout or output
//! that is not Trivy's JSON is an error for that image only.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::finding::{Finding, Severity, Status};
use crate::os::{Family, Os};
use crate::scan::ImageScan;
use crate::{Error, Result};

/// How to run Trivy.
#[derive(Clone, Debug)]
pub struct Trivy {
    /// The binary: a path, or a name looked up on `PATH`.
    pub binary: PathBuf,
    /// Extra arguments (e.g. `--skip-db-update`, `--cache-dir DIR`, `--db-repository R`).
    pub extra_args: Vec<String>,
    /// How long one image may take.
    pub timeout: Duration,
}

impl Default for Trivy {
    fn default() -> Self {
        Trivy {
            binary: PathBuf::from("trivy"),
            extra_args: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }
}

/// What Trivy scans.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    /// An image in containerd's `k8s.io` namespace, by reference or ID.
    ContainerdImage {
        /// Reference or ID.
        image: &'a str,
        /// containerd's socket path.
        address: &'a Path,
    },
    /// An image archive (`trivy image --input`).
    Archive(&'a Path),
    /// A root filesystem directory (`trivy rootfs`).
    Rootfs(&'a Path),
}

impl Target<'_> {
    fn label(&self) -> String {
        match self {
            Target::ContainerdImage { image, .. } => image.to_string(),
            Target::Archive(p) | Target::Rootfs(p) => p.display().to_string(),
        }
    }
}

impl Trivy {
    /// Runs Trivy on one target and maps its findings.
    pub fn scan(&self, target: &Target<'_>) -> Result<ImageScan> {
        let label = target.label();
        let fail = |reason: String| Error::Trivy {
            image: label.clone(),
            reason,
        };
        let mut command = Command::new(&self.binary);
        match target {
            Target::ContainerdImage { image, address } => {
                command
                    .args(["image", "--image-src", "containerd"])
                    .env("CONTAINERD_ADDRESS", address)
                    .env("CONTAINERD_NAMESPACE", "k8s.io")
                    .arg(image);
            }
            Target::Archive(path) => {
                command.args(["image", "--input"]).arg(path);
            }
            Target::Rootfs(path) => {
                command.arg("rootfs").arg(path);
            }
        }
        command
            .args(["--format", "json", "--quiet", "--scanners", "vuln"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} not found (install Trivy or use the native scanner)",
                    self.binary.display()
                )
            } else {
                format!("cannot start {}: {e}", self.binary.display())
            })
        })?;
        // Read both pipes on their own threads so a chatty Trivy cannot block on a full pipe.
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!("did not finish within {:?}", self.timeout)));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(fail(format!("waiting for it failed: {e}"))),
            }
        };
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            return Err(fail(format!("exited with {status}: {}", last.trim())));
        }
        parse_report(&label, &stdout)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    results: Vec<ResultEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Metadata {
    #[serde(default, rename = "OS")]
    os: Option<TrivyOs>,
}

#[derive(Deserialize)]
struct TrivyOs {
    #[serde(rename = "Family", default)]
    family: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "EOSL", default)]
    eosl: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResultEntry {
    #[serde(default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    pkg_name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    pkg_identifier: Option<BTreeMap<String, serde_json::Value>>,
}

/// Maps a Trivy JSON report (schema version 2) to an [`ImageScan`].
pub fn parse_report(label: &str, json: &[u8]) -> Result<ImageScan> {
    let report: Report = serde_json::from_slice(json).map_err(|e| Error::Trivy {
        image: label.to_string(),
        reason: format!("output is not Trivy's JSON report: {e}"),
    })?;
    let os = report.metadata.and_then(|m| m.os).map(|o| {
        let family = Family::from_name(&o.family).unwrap_or(Family::Other);
        (
            Os {
                family,
                version: o.name,
                id: o.family,
                pretty_name: None,
            },
            o.eosl,
        )
    });
    let mut findings = Vec::new();
    let mut packages = std::collections::BTreeSet::new();
    for result in report.results {
        for v in result.vulnerabilities.unwrap_or_default() {
            packages.insert(v.pkg_name.clone());
            let fixed = (!v.fixed_version.is_empty()).then_some(v.fixed_version);
            let status = Status::from_vendor(&v.status).unwrap_or(if fixed.is_some() {
                Status::Fixed
            } else {
                Status::Affected
            });
            let _ = &v.pkg_identifier;
            findings.push(Finding {
                vulnerability_id: v.vulnerability_id,
                source_package: v.pkg_name.clone(),
                package: v.pkg_name,
                installed_version: v.installed_version,
                fixed_version: fixed,
                severity: v.severity.parse().unwrap_or(Severity::Unknown),
                status,
                record_id: None,
                title: v.title,
            });
        }
    }
    findings.sort();
    findings.dedup();
    Ok(ImageScan {
        end_of_life: os.as_ref().map(|(_, eosl)| *eosl),
        os: os.map(|(os, _)| os),
        packages: packages.len(),
        databases: Vec::new(),
        findings,
        notes: vec!["scanned by trivy".to_string()],
    })
}
