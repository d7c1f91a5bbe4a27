//! The offline vulnerability database: OSV records compiled once into a compact index file
//! that every node opens in milliseconds and looks up by (ecosystem, source package).
//!
//! Nodes never download anything: the cluster keeps one compiled file (built with
//! `imagecleaner db build` from the per-ecosystem OSV exports, a directory of JSON records
//! or zip archives of them) and hands it to workers. The file records when it was built and
//! the newest record it holds, so a stale database can be reported.

pub mod cvss;
pub mod eol;
pub mod index;
pub mod osv;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use index::{Header, Stored};

use crate::finding::Severity;
use crate::os::Family;
use crate::{Error, Result};

/// A loaded vulnerability database.
#[derive(Debug)]
pub struct Database {
    index: index::Index,
}

impl Database {
    /// Opens a compiled database file, checking its format version and checksum.
    pub fn open(path: &Path) -> Result<Database> {
        Ok(Database {
            index: index::Index::open(path)?,
        })
    }

    /// What the database holds.
    pub fn header(&self) -> &Header {
        self.index.header()
    }

    /// Advisories for one source package of one release.
    pub fn lookup(&self, family: Family, release: &str, package: &str) -> Result<Vec<Stored>> {
        self.index
            .lookup(&osv::key_string(family, release), package)
    }

    /// Whether the database has any advisory for the release (an image on a release the
    /// database does not cover is reported as such, not as clean).
    pub fn covers(&self, family: Family, release: &str) -> bool {
        self.header()
            .ecosystems
            .contains_key(&osv::key_string(family, release))
    }

    /// Age of the database at `now`, from its build time.
    pub fn age(&self, now: SystemTime) -> std::time::Duration {
        let built = UNIX_EPOCH + std::time::Duration::from_secs(self.header().built_at);
        now.duration_since(built).unwrap_or_default()
    }
}

/// Compiles OSV records from `source` (a directory searched recursively for `*.json` and
/// `*.zip`, a single zip, or a single JSON file) into the database file `output`.
pub fn build(source: &Path, output: &Path, now: SystemTime) -> Result<Header> {
    let mut records = 0usize;
    let mut advisories = Vec::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut newest: Option<String> = None;
    let mut cve_severity: HashMap<String, Severity> = HashMap::new();
    let mut visit = |name: &str, bytes: &[u8]| -> Result<()> {
        let record: osv::Record =
            serde_json::from_slice(bytes).map_err(|source| Error::OsvRecord {
                source_name: name.to_string(),
                source,
            })?;
        if record.withdrawn() {
            return Ok(());
        }
        records += 1;
        if let Some(m) = record.modified()
            && newest.as_deref().is_none_or(|n| n < m)
        {
            newest = Some(m.to_string());
        }
        if let Some(s) = record.record_severity().filter(|s| *s != Severity::Unknown) {
            let entry = cve_severity.entry(record.vulnerability_id()).or_insert(s);
            *entry = (*entry).max(s);
        }
        let (found, not_matched) = record.advisories();
        advisories.extend(found);
        for eco in not_matched {
            *skipped.entry(eco).or_default() += 1;
        }
        Ok(())
    };
    for_each_json(source, &mut visit)?;
    // Records without a severity of their own take the one another record (e.g. the NVD
    // CVE record in the same export) gives the same CVE.
    for a in &mut advisories {
        if a.severity == Severity::Unknown
            && let Some(s) = cve_severity.get(&a.vulnerability_id)
        {
            a.severity = *s;
        }
    }
    advisories.sort_by(|a, b| {
        (&a.ecosystem, &a.package, &a.vulnerability_id, &a.record_id).cmp(&(
            &b.ecosystem,
            &b.package,
            &b.vulnerability_id,
            &b.record_id,
        ))
    });
    advisories.dedup();
    let mut ecosystems: BTreeMap<String, usize> = BTreeMap::new();
    for a in &advisories {
        *ecosystems.entry(a.ecosystem.clone()).or_default() += 1;
    }
    let packages = {
        let mut keys: Vec<(&str, &str)> = advisories
            .iter()
            .map(|a| (a.ecosystem.as_str(), a.package.as_str()))
            .collect();
        keys.dedup();
        keys.len()
    };
    let header = Header {
        built_at: now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        source: source.display().to_string(),
        records,
        advisories: advisories.len(),
        packages,
        ecosystems,
        skipped,
        newest_record: newest,
    };
    drop(cve_severity);
    // Write beside the target and rename, so a reader never sees half a database.
    let tmp = temporary_sibling(output);
    File::create(&tmp)
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            index::write_to(&header, &advisories, &mut out)?;
            out.into_inner().map_err(|e| e.into_error())?.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            Error::Host {
                path: output.to_path_buf(),
                source,
            }
        })?;
    Ok(header)
}

fn temporary_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

fn for_each_json(path: &Path, visit: &mut dyn FnMut(&str, &[u8]) -> Result<()>) -> Result<()> {
    let host = |source| Error::Host {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(host)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(host)?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .map_err(host)?;
        entries.sort();
        for entry in entries {
            let is_dir = entry.is_dir();
            let ext = entry.extension().and_then(|e| e.to_str()).unwrap_or("");
            if is_dir || ext == "json" || ext == "zip" {
                for_each_json(&entry, visit)?;
            }
        }
        return Ok(());
    }
    let mut file = File::open(path).map_err(host)?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(host)?;
    if n == 4 && magic == *b"PK\x03\x04" {
        let file = File::open(path).map_err(host)?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::Archive {
            path: path.to_path_buf(),
            reason: format!("not a readable zip: {e}"),
        })?;
        for i in 0..zip.len() {
            let mut member = zip.by_index(i).map_err(|e| Error::Archive {
                path: path.to_path_buf(),
                reason: format!("zip member {i}: {e}"),
            })?;
            let member_name = member.name().map(|n| n.into_owned()).unwrap_or_default();
            if !member.is_file() || !member_name.ends_with(".json") {
                continue;
            }
            let name = format!("{}:{member_name}", path.display());
            let mut bytes = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
            member.read_to_end(&mut bytes).map_err(host)?;
            visit(&name, &bytes)?;
        }
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(host)?;
    visit(&path.display().to_string(), &bytes)
}
