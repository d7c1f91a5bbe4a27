//! Test data from real Debian packages: `.deb` files fetched with `apt-get download` (and
//! cached under `target/scan-fixtures/debs`, so reruns are offline), their control fields,
//! and the CVE facts their `changelog.Debian.gz` states (which version fixed which CVE, at
//! what urgency), turned into OSV records. Expected findings are derived from the changelog's
//! own order, not from the version comparison under test.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// An old zlib (bookworm main) and the security update that fixed CVEs in it.
pub const ZLIB_OLD: (&str, &str) = ("zlib1g", "1:1.2.13.dfsg-1");
/// The bookworm-security zlib whose changelog names the CVEs.
pub const ZLIB_NEW: (&str, &str) = ("zlib1g", "1:1.2.13.dfsg-1+deb12u1");
/// An older expat (bookworm main).
pub const EXPAT_OLD: (&str, &str) = ("libexpat1", "2.5.0-1+deb12u2");
/// The bookworm-security expat whose changelog names the CVEs.
pub const EXPAT_NEW: (&str, &str) = ("libexpat1", "2.5.0-1+deb12u5");
/// base-files: the real `etc/os-release` of Debian 12.
pub const BASE_FILES: &str = "base-files";

/// Where downloaded packages and built fixtures are kept between runs.
pub fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("scan-fixtures");
    std::fs::create_dir_all(dir.join("debs")).expect("creating the fixture cache");
    dir
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The `.deb` of `package` at `version` (or the candidate version when `None`), downloaded
/// once through apt.
pub fn deb(package: &str, version: Option<&str>) -> PathBuf {
    let dir = cache_dir().join("debs");
    let wanted = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_string(),
    };
    let find = || {
        std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    return false;
                };
                let Some(rest) = name.strip_prefix(&format!("{package}_")) else {
                    return false;
                };
                match version {
                    // apt writes the epoch colon as %3a.
                    Some(v) => rest.starts_with(&format!("{}_", v.replace(':', "%3a"))),
                    None => rest.ends_with(".deb"),
                }
            })
    };
    if let Some(found) = find() {
        return found;
    }
    let status = Command::new("apt-get")
        .args(["download", "-qq", &wanted])
        .current_dir(&dir)
        .status()
        .expect("running apt-get download");
    if !status.success() {
        // The lists may be missing or stale on a fresh machine.
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        run(Command::new("apt-get")
            .args(["download", "-qq", &wanted])
            .current_dir(&dir));
    }
    find().unwrap_or_else(|| {
        panic!(
            "apt-get download {wanted} left no .deb in {}",
            dir.display()
        )
    })
}

/// The control fields of a `.deb`.
pub fn control(deb: &Path) -> String {
    String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(deb))).expect("utf-8 control")
}

/// One field of a control text.
pub fn field<'a>(control: &'a str, name: &str) -> Option<&'a str> {
    control.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The package's dpkg status stanza as dpkg would record it once installed.
pub fn status_stanza(deb: &Path) -> String {
    let control = control(deb);
    let mut out = String::new();
    for line in control.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("Package:") {
            out.push_str("Status: install ok installed\n");
        }
    }
    out
}

/// The same stanza as distroless writes it into `var/lib/dpkg/status.d/`: no Status field.
pub fn distroless_stanza(deb: &Path) -> String {
    control(deb)
}

/// Unpacks a `.deb`'s files into `root`.
pub fn extract(deb: &Path, root: &Path) {
    std::fs::create_dir_all(root).expect("creating the root");
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root));
}

/// One changelog entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The version it introduced.
    pub version: String,
    /// Its upload urgency.
    pub urgency: String,
    /// CVEs it mentions.
    pub cves: BTreeSet<String>,
}

/// The decompressed `changelog.Debian.gz` of a `.deb`.
pub fn changelog(deb: &Path) -> String {
    let package = field(&control(deb), "Package")
        .expect("Package field")
        .to_string();
    let tar = run(Command::new("dpkg-deb").arg("--fsys-tarfile").arg(deb));
    let mut archive = tar::Archive::new(tar.as_slice());
    let wanted = format!("usr/share/doc/{package}/changelog.Debian.gz");
    for entry in archive.entries().expect("deb data tar") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("path").to_string_lossy().into_owned();
        if path.trim_start_matches("./") == wanted {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&mut entry), &mut text)
                .expect("gunzip changelog");
            return text;
        }
    }
    panic!("{} has no {wanted}", deb.display());
}

/// Entries newest first, as the changelog lists them.
pub fn parse_changelog(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.contains(") ") && line.contains("urgency=") {
            let version = line
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(v, _)| v.to_string())
                .expect("version in changelog header");
            let urgency = line
                .split("urgency=")
                .nth(1)
                .unwrap_or("")
                .split([',', ' '])
                .next()
                .unwrap_or("")
                .to_string();
            entries.push(Entry {
                version,
                urgency,
                cves: BTreeSet::new(),
            });
        } else if let Some(entry) = entries.last_mut() {
            entry.cves.extend(cves_in(line));
        }
    }
    entries
}

fn cves_in(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("CVE-") {
        let tail = &rest[at + 4..];
        let year: String = tail.chars().take_while(char::is_ascii_digit).collect();
        let after = &tail[year.len()..];
        if year.len() == 4 && after.starts_with('-') {
            let number: String = after[1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if number.len() >= 4 {
                out.push(format!("CVE-{year}-{number}"));
            }
        }
        rest = tail;
    }
    out
}

/// A fact: `cve` in source package `source` was fixed in `fixed`, uploaded at `urgency`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fact {
    /// Source package.
    pub source: String,
    /// CVE ID.
    pub cve: String,
    /// The first version whose changelog entry names it.
    pub fixed: String,
    /// That upload's urgency.
    pub urgency: String,
}

/// Every CVE the changelog names, with the oldest entry that names it as the fix.
pub fn facts(source: &str, entries: &[Entry]) -> Vec<Fact> {
    let mut by_cve: BTreeMap<String, Fact> = BTreeMap::new();
    for entry in entries {
        for cve in &entry.cves {
            // Entries are newest first: later (older) entries overwrite.
            by_cve.insert(
                cve.clone(),
                Fact {
                    source: source.to_string(),
                    cve: cve.clone(),
                    fixed: entry.version.clone(),
                    urgency: entry.urgency.clone(),
                },
            );
        }
    }
    by_cve.into_values().collect()
}

/// The CVEs an installed `version` still has: named by entries above (newer than) its own
/// entry and by none at or below it.
pub fn open_cves(entries: &[Entry], version: &str) -> BTreeSet<String> {
    let at = entries
        .iter()
        .position(|e| e.version == version)
        .unwrap_or_else(|| panic!("version {version} is not in the changelog"));
    let newer: BTreeSet<String> = entries[..at].iter().flat_map(|e| e.cves.clone()).collect();
    let older: BTreeSet<String> = entries[at..].iter().flat_map(|e| e.cves.clone()).collect();
    newer.difference(&older).cloned().collect()
}

/// The OSV record of a fact, as the Debian converter would publish it for `Debian:12`.
pub fn osv_record(fact: &Fact) -> serde_json::Value {
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": format!("DEBIAN-{}", fact.cve),
        "modified": "2026-12-01T00:00:00Z",
        "upstream": [fact.cve],
        "summary": format!("{} in {}", fact.cve, fact.source),
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": fact.source, "purl": format!("pkg:deb/debian/{}", fact.source)},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fact.fixed}]}],
            "ecosystem_specific": {"urgency": fact.urgency},
        }],
    })
}

/// Writes records into `dir` as one JSON file each.
pub fn write_records(dir: &Path, records: &[serde_json::Value]) {
    std::fs::create_dir_all(dir).expect("creating the OSV directory");
    for record in records {
        let id = record["id"].as_str().expect("id");
        std::fs::write(dir.join(format!("{id}.json")), record.to_string())
            .expect("writing a record");
    }
}

/// The real fixture set: the old zlib and expat, their facts, and base-files.
pub struct RealData {
    /// Old zlib1g `.deb`.
    pub zlib_old: PathBuf,
    /// Old libexpat1 `.deb`.
    pub expat_old: PathBuf,
    /// base-files `.deb`.
    pub base_files: PathBuf,
    /// CVE facts of zlib and expat.
    pub facts: Vec<Fact>,
    /// The CVEs the old zlib still has.
    pub zlib_open: BTreeSet<String>,
    /// The CVEs the old expat still has.
    pub expat_open: BTreeSet<String>,
    /// The fixed zlib `.deb` (clean against those facts).
    pub zlib_new: PathBuf,
}

/// Fetches (or reuses) the packages and derives the facts, once per test process.
pub fn real_data() -> &'static RealData {
    static DATA: std::sync::OnceLock<RealData> = std::sync::OnceLock::new();
    DATA.get_or_init(load_real_data)
}

fn load_real_data() -> RealData {
    let zlib_new = deb(ZLIB_NEW.0, Some(ZLIB_NEW.1));
    let expat_new = deb(EXPAT_NEW.0, Some(EXPAT_NEW.1));
    let zlib_entries = parse_changelog(&changelog(&zlib_new));
    let expat_entries = parse_changelog(&changelog(&expat_new));
    let mut facts = facts("zlib", &zlib_entries);
    facts.extend(self::facts("expat", &expat_entries));
    RealData {
        zlib_old: deb(ZLIB_OLD.0, Some(ZLIB_OLD.1)),
        expat_old: deb(EXPAT_OLD.0, Some(EXPAT_OLD.1)),
        base_files: deb(BASE_FILES, None),
        zlib_open: open_cves(&zlib_entries, ZLIB_OLD.1),
        expat_open: open_cves(&expat_entries, EXPAT_OLD.1),
        facts,
        zlib_new,
    }
}

/// Builds the database from the facts into `dir/vulns.db`.
pub fn build_db(data: &RealData, dir: &Path) -> PathBuf {
    let records: Vec<_> = data.facts.iter().map(osv_record).collect();
    let source = dir.join("osv");
    write_records(&source, &records);
    let db = dir.join("vulns.db");
    image_cleaner_scanner::db::build(&source, &db, std::time::SystemTime::now())
        .expect("building the database");
    db
}

/// The files of base-files that identify the OS, as (path, contents or symlink target).
pub fn os_files(base_files: &Path, root: &Path) {
    extract(base_files, root);
}
