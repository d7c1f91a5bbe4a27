//! What a scan reports: vulnerabilities found in installed packages, with the severity and
//! fix status the policy filters on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Severity, in Trivy's five levels (an operator's `severities` list uses these names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No severity known.
    Unknown,
    /// Low (Debian `unimportant`/`low`, Ubuntu `negligible`/`low`, CVSS < 4).
    Low,
    /// Medium (CVSS 4.0–6.9).
    Medium,
    /// High (CVSS 7.0–8.9).
    High,
    /// Critical (CVSS ≥ 9.0).
    Critical,
}

impl Severity {
    /// Every level, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Unknown,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// `UNKNOWN`, `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Option<Severity> {
        Severity::ALL.get(usize::from(v)).copied()
    }

    /// A vendor's word for severity (Debian urgency, Ubuntu priority, Red Hat impact,
    /// GHSA/NVD level), or `None` if it is not one.
    pub fn from_vendor(word: &str) -> Option<Severity> {
        let word = word
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase();
        Some(match word.as_str() {
            "unimportant" | "negligible" | "low" => Severity::Low,
            "medium" | "moderate" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" | "emergency" => Severity::Critical,
            "untriaged" | "not yet assigned" | "unknown" | "end-of-life" => Severity::Unknown,
            _ => return None,
        })
    }

    /// The CVSS v3 band of a base score.
    pub fn from_cvss(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown severity {s:?} (expected UNKNOWN, LOW, MEDIUM, HIGH or CRITICAL)")
            })
    }
}

/// Fix status, with Trivy's names (an operator's `ignoredStatuses` uses these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Status not known.
    Unknown,
    /// Being investigated.
    UnderInvestigation,
    /// Affected, no fix yet.
    Affected,
    /// A fixed version exists.
    Fixed,
    /// The distribution will not fix it.
    WillNotFix,
    /// The fix is postponed.
    FixDeferred,
    /// The release is out of support.
    EndOfLife,
}

impl Status {
    /// Every status.
    pub const ALL: [Status; 7] = [
        Status::Unknown,
        Status::UnderInvestigation,
        Status::Affected,
        Status::Fixed,
        Status::WillNotFix,
        Status::FixDeferred,
        Status::EndOfLife,
    ];

    /// Trivy's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::UnderInvestigation => "under_investigation",
            Status::Affected => "affected",
            Status::Fixed => "fixed",
            Status::WillNotFix => "will_not_fix",
            Status::FixDeferred => "fix_deferred",
            Status::EndOfLife => "end_of_life",
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Option<Status> {
        Status::ALL.get(usize::from(v)).copied()
    }

    /// Debian security tracker words (`no-dsa`, `ignored`, `postponed`, `end-of-life`) and
    /// Trivy's own names.
    pub fn from_vendor(word: &str) -> Option<Status> {
        let word = word.trim().to_ascii_lowercase();
        if let Some(s) = Status::ALL.into_iter().find(|s| s.as_str() == word) {
            return Some(s);
        }
        Some(match word.as_str() {
            "no-dsa" | "unfixed" | "needed" | "pending" => Status::Affected,
            "ignored" => Status::WillNotFix,
            "postponed" | "deferred" => Status::FixDeferred,
            "end-of-life" => Status::EndOfLife,
            "released" | "resolved" => Status::Fixed,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                let names: Vec<_> = Status::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown status {s:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// One vulnerability in one installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Finding {
    /// The vulnerability, preferably its CVE ID.
    pub vulnerability_id: String,
    /// The binary package installed.
    pub package: String,
    /// Its installed version.
    pub installed_version: String,
    /// The source package the record names.
    pub source_package: String,
    /// The first version that fixes it, if one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// Fix status.
    pub status: Status,
    /// The record it comes from (e.g. `DEBIAN-CVE-2023-45853`), when not the same ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// One-line summary.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
}
