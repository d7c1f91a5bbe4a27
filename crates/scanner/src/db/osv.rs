//! OSV records (the Open Source Vulnerability schema, as osv.dev publishes per ecosystem:
//! `Debian:12`, `Alpine:v3.19`, `Ubuntu:22.04:LTS`, …) turned into flat advisories, one per
//! (record, affected OS package).
//!
//! Only what matching needs is kept: the ecosystem and source package, the version ranges
//! (`ECOSYSTEM` ranges and explicit version lists), a severity and, when the record states
//! one, a fix status. Language ecosystems (PyPI, npm, Go, …) and distributions keyed by
//! something other than a release number (Red Hat CPEs, SUSE product names) are counted as
//! skipped, not guessed at.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::cvss;
use crate::finding::{Severity, Status};
use crate::os::Family;
use crate::version::Scheme;

/// One OSV record, as much of it as is read.
#[derive(Debug, Deserialize)]
pub struct Record {
    /// The record's ID, e.g. `DEBIAN-CVE-2023-45853`, `ALPINE-CVE-2024-1234`.
    pub id: String,
    #[serde(default)]
    modified: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct SeverityEntry {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Deserialize)]
struct Affected {
    #[serde(default)]
    package: Option<AffectedPackage>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    ranges: Vec<Range>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    ecosystem_specific: Option<Value>,
    #[serde(default)]
    database_specific: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct AffectedPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<BTreeMap<String, String>>,
}

/// What an event says about the versions that follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventKind {
    /// Affected from this version on (`0` = from the beginning).
    Introduced = 0,
    /// Fixed in this version.
    Fixed = 1,
    /// Affected up to and including this version.
    LastAffected = 2,
    /// Not affected from here on (ranges only).
    Limit = 3,
    /// Exactly this version is affected (the record's `versions` list).
    Version = 4,
}

impl EventKind {
    pub(crate) fn from_u8(v: u8) -> Option<EventKind> {
        Some(match v {
            0 => EventKind::Introduced,
            1 => EventKind::Fixed,
            2 => EventKind::LastAffected,
            3 => EventKind::Limit,
            4 => EventKind::Version,
            _ => return None,
        })
    }
}

/// One event of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Which range of the advisory (0-based); explicit versions share range `u16::MAX`.
    pub range: u16,
    /// What it says.
    pub kind: EventKind,
    /// The version.
    pub version: String,
}

/// A flat advisory: one vulnerability affecting one source package of one release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advisory {
    /// Normalised ecosystem key, e.g. `debian 12`, `alpine 3.19`, `wolfi`.
    pub ecosystem: String,
    /// The (source) package name.
    pub package: String,
    /// The OSV record ID.
    pub record_id: String,
    /// The vulnerability ID to report: the CVE when the record names one.
    pub vulnerability_id: String,
    /// One-line summary.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Status stated by the record (e.g. Debian's `ignored`), if any.
    pub status: Option<Status>,
    /// Version ordering of the ecosystem.
    pub scheme: Scheme,
    /// Range events, each range sorted by version.
    pub events: Vec<Event>,
}

/// The database key of an OSV ecosystem string, or `None` if this scanner cannot match it
/// against a detected OS.
pub fn ecosystem_key(ecosystem: &str) -> Option<(Family, String)> {
    let mut parts = ecosystem.split(':');
    let name = parts.next()?.trim();
    let release = parts.next().map(str::trim);
    fn numeric(r: Option<&str>) -> Option<&str> {
        r.filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    }
    let (family, release) = match name {
        "Debian" => (Family::Debian, numeric(release)?.to_string()),
        "Ubuntu" => (Family::Ubuntu, numeric(release)?.to_string()),
        "Alpine" => (Family::Alpine, release?.trim_start_matches('v').to_string()),
        "Wolfi" => (Family::Wolfi, String::new()),
        "Chainguard" => (Family::Chainguard, String::new()),
        "AlmaLinux" => (Family::Almalinux, numeric(release)?.to_string()),
        "Rocky Linux" => (Family::Rocky, numeric(release)?.to_string()),
        "Photon OS" => (Family::Photon, numeric(release)?.to_string()),
        "Azure Linux" => (Family::Azurelinux, numeric(release)?.to_string()),
        _ => return None,
    };
    let release = crate::os::release_of(family, &release);
    Some((family, release))
}

/// `debian 12`, `alpine 3.19`, `wolfi`.
pub fn key_string(family: Family, release: &str) -> String {
    if release.is_empty() {
        family.as_str().to_string()
    } else {
        format!("{} {release}", family.as_str())
    }
}

impl Record {
    /// Whether the record was withdrawn (and must not be reported).
    pub fn withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }

    /// Its `modified` time as written.
    pub fn modified(&self) -> Option<&str> {
        self.modified.as_deref()
    }

    /// The ID to report: the record's own if it is a CVE, else a CVE among its aliases or
    /// upstream IDs, else a CVE embedded in the ID (`DEBIAN-CVE-…`), else the ID.
    pub fn vulnerability_id(&self) -> String {
        if self.id.starts_with("CVE-") {
            return self.id.clone();
        }
        if let Some(cve) = self
            .aliases
            .iter()
            .chain(&self.upstream)
            .find(|a| a.starts_with("CVE-"))
        {
            return cve.clone();
        }
        if let Some(at) = self.id.find("CVE-") {
            return self.id[at..].to_string();
        }
        self.id.clone()
    }

    fn title(&self) -> String {
        let text = self
            .summary
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .or(self.details.as_deref())
            .unwrap_or_default();
        let line = text.lines().next().unwrap_or_default().trim();
        line.chars().take(160).collect()
    }

    /// The record-level severity (CVSS vectors, `database_specific.severity`), used for
    /// advisories that carry none of their own and for other records of the same CVE.
    pub fn record_severity(&self) -> Option<Severity> {
        severity_from_entries(&self.severity)
            .or_else(|| vendor_word(self.database_specific.as_ref(), "severity"))
    }

    /// Flat advisories for every OS package this record affects, and the ecosystems it
    /// names that cannot be matched (for counting).
    pub fn advisories(&self) -> (Vec<Advisory>, Vec<String>) {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        let record_severity = self.record_severity();
        for affected in &self.affected {
            let Some(package) = &affected.package else {
                continue;
            };
            let Some((family, release)) = ecosystem_key(&package.ecosystem) else {
                skipped.push(
                    package
                        .ecosystem
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                );
                continue;
            };
            let Some(scheme) = family.scheme() else {
                continue;
            };
            let specific = [
                affected.ecosystem_specific.as_ref(),
                affected.database_specific.as_ref(),
            ];
            let severity = severity_from_entries(&affected.severity)
                .or_else(|| specific.iter().find_map(|v| vendor_word(*v, "urgency")))
                .or_else(|| specific.iter().find_map(|v| vendor_word(*v, "severity")))
                .or(record_severity)
                .unwrap_or(Severity::Unknown);
            let status = specific
                .iter()
                .find_map(|v| v.and_then(|v| v.get("status")).and_then(Value::as_str))
                .and_then(Status::from_vendor);
            let mut events = Vec::new();
            for (n, range) in affected
                .ranges
                .iter()
                .filter(|r| r.kind == "ECOSYSTEM")
                .enumerate()
            {
                let n = u16::try_from(n).unwrap_or(u16::MAX - 1);
                let mut range_events: Vec<Event> = range
                    .events
                    .iter()
                    .flat_map(|e| e.iter())
                    .filter_map(|(k, v)| {
                        let kind = match k.as_str() {
                            "introduced" => EventKind::Introduced,
                            "fixed" => EventKind::Fixed,
                            "last_affected" => EventKind::LastAffected,
                            "limit" => EventKind::Limit,
                            _ => return None,
                        };
                        Some(Event {
                            range: n,
                            kind,
                            version: v.clone(),
                        })
                    })
                    .collect();
                range_events.sort_by(|a, b| event_order(scheme, a, b));
                events.extend(range_events);
            }
            events.extend(affected.versions.iter().map(|v| Event {
                range: u16::MAX,
                kind: EventKind::Version,
                version: v.clone(),
            }));
            if events.is_empty() {
                continue;
            }
            out.push(Advisory {
                ecosystem: key_string(family, &release),
                package: package.name.clone(),
                record_id: self.id.clone(),
                vulnerability_id: self.vulnerability_id(),
                title: self.title(),
                severity,
                status,
                scheme,
                events,
            });
        }
        (out, skipped)
    }
}

/// Orders events of one range: by version (`introduced: 0` first), introduced before fixed
/// at equal versions.
fn event_order(scheme: Scheme, a: &Event, b: &Event) -> std::cmp::Ordering {
    let zero = |e: &Event| e.kind == EventKind::Introduced && e.version == "0";
    match (zero(a), zero(b)) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => scheme
            .compare(&a.version, &b.version)
            .then(a.kind.cmp(&b.kind)),
    }
}

fn severity_from_entries(entries: &[SeverityEntry]) -> Option<Severity> {
    // A vendor's own word first (Ubuntu priorities), then the highest CVSS v3 score.
    entries
        .iter()
        .filter(|e| e.kind.eq_ignore_ascii_case("ubuntu"))
        .find_map(|e| Severity::from_vendor(&e.score))
        .or_else(|| {
            entries
                .iter()
                .filter(|e| e.kind == "CVSS_V3")
                .filter_map(|e| cvss::base_score_v3(&e.score))
                .reduce(f64::max)
                .map(Severity::from_cvss)
        })
}

fn vendor_word(value: Option<&Value>, key: &str) -> Option<Severity> {
    value?.get(key)?.as_str().and_then(Severity::from_vendor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_map_to_release_keys() {
        let key = |e: &str| ecosystem_key(e).map(|(f, r)| key_string(f, &r));
        assert_eq!(key("Debian:12").as_deref(), Some("debian 12"));
        assert_eq!(key("Alpine:v3.19").as_deref(), Some("alpine 3.19"));
        assert_eq!(key("Ubuntu:22.04:LTS").as_deref(), Some("ubuntu 22.04"));
        assert_eq!(key("Ubuntu:Pro:18.04:LTS"), None);
        assert_eq!(key("Wolfi").as_deref(), Some("wolfi"));
        assert_eq!(key("PyPI"), None);
        assert_eq!(key("Red Hat:enterprise_linux:9::baseos"), None);
    }

    #[test]
    fn record_to_advisories() {
        let record: Record = serde_json::from_str(
            r#"{"id":"DEBIAN-CVE-2023-45853","modified":"2024-01-01T00:00:00Z",
            "upstream":["CVE-2023-45853"],
            "summary":"MiniZip integer overflow",
            "affected":[{"package":{"ecosystem":"Debian:12","name":"zlib"},
              "ecosystem_specific":{"urgency":"high"},
              "ranges":[{"type":"ECOSYSTEM","events":[{"fixed":"1:1.2.13.dfsg-1+deb12u1"},{"introduced":"0"}]}]},
              {"package":{"ecosystem":"PyPI","name":"zlib"},"ranges":[]}]}"#,
        )
        .unwrap();
        let (advisories, skipped) = record.advisories();
        assert_eq!(skipped, ["PyPI"]);
        let [a] = advisories.as_slice() else {
            panic!("{advisories:?}")
        };
        assert_eq!(a.ecosystem, "debian 12");
        assert_eq!(a.vulnerability_id, "CVE-2023-45853");
        assert_eq!(a.severity, Severity::High);
        assert_eq!(a.events[0].kind, EventKind::Introduced);
        assert_eq!(a.events[1].version, "1:1.2.13.dfsg-1+deb12u1");
    }
}
