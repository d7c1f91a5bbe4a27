//! The compiled database file: a versioned header and fixed-size tables over one string
//! pool, so opening it is one read and a checksum, and a lookup is two binary searches with
//! no parsing of the rest.
//!
//! ```text
//! "ICVULNDB" | format u32 | header_len u32 | header (JSON: counts, ecosystems, build time)
//! | sha256(body) [32] | body:
//!     counts: ecosystems u32, packages u32, advisories u32, events u32, strings u32
//!     ecosystems  16 B each: name (off u32, len u32), packages [start u32, end u32)
//!     packages    16 B each: name (off, len), advisories [start, end)     sorted by name
//!     advisories  36 B each: record id, vulnerability id, title (off, len each),
//!                            events [start, end), severity u8, status u8 (255 = none),
//!                            scheme u8, reserved u8
//!     events      12 B each: kind u8, reserved u8, range u16, version (off, len)
//!     strings     UTF-8, deduplicated
//! ```
//! All integers little-endian. Every offset is checked on read: a damaged file is an error
//! naming it, never a panic or a wrong answer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::osv::{Advisory, Event, EventKind};
use crate::finding::{Severity, Status};
use crate::version::Scheme;
use crate::{Error, Result};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"ICVULNDB";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const COUNTS_LEN: usize = 20;
const ECO_LEN: usize = 16;
const PKG_LEN: usize = 16;
const ADV_LEN: usize = 36;
const EVENT_LEN: usize = 12;
const NO_STATUS: u8 = 255;

/// What the header says about the database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// When it was built, seconds since the epoch.
    pub built_at: u64,
    /// What it was built from (a path, as given).
    pub source: String,
    /// OSV records read (withdrawn ones excluded).
    pub records: usize,
    /// Advisories stored.
    pub advisories: usize,
    /// Distinct (ecosystem, package) keys.
    pub packages: usize,
    /// Advisories per ecosystem key (`debian 12`, `alpine 3.19`, …).
    pub ecosystems: BTreeMap<String, usize>,
    /// Affected entries of ecosystems that cannot be matched, per ecosystem name.
    pub skipped: BTreeMap<String, usize>,
    /// The latest `modified` time among the records, as written.
    #[serde(default)]
    pub newest_record: Option<String>,
}

/// Serialises advisories into the file format, written to `out`. The sections are built in
/// memory once (the checksum covers them) and written without another copy; the string pool
/// borrows from `advisories`, so a large export is not held twice.
pub fn write_to(
    header: &Header,
    advisories: &[Advisory],
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    let mut strings: Vec<u8> = Vec::new();
    let mut pool: HashMap<&str, (u32, u32)> = HashMap::new();
    fn intern<'a>(
        pool: &mut HashMap<&'a str, (u32, u32)>,
        strings: &mut Vec<u8>,
        s: &'a str,
    ) -> (u32, u32) {
        if let Some(&r) = pool.get(s) {
            return r;
        }
        let r = (strings.len() as u32, s.len() as u32);
        strings.extend_from_slice(s.as_bytes());
        pool.insert(s, r);
        r
    }

    // ecosystem -> package -> advisories, all sorted.
    let mut grouped: BTreeMap<&str, BTreeMap<&str, Vec<&Advisory>>> = BTreeMap::new();
    for a in advisories {
        grouped
            .entry(&a.ecosystem)
            .or_default()
            .entry(&a.package)
            .or_default()
            .push(a);
    }
    let (mut ecos, mut pkgs, mut advs, mut events) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut n_pkgs, mut n_advs, mut n_events) = (0u32, 0u32, 0u32);
    for (eco, packages) in &grouped {
        let name = intern(&mut pool, &mut strings, eco);
        let start = n_pkgs;
        for (pkg, list) in packages {
            let name = intern(&mut pool, &mut strings, pkg);
            let adv_start = n_advs;
            for a in list {
                let ev_start = n_events;
                for e in &a.events {
                    let v = intern(&mut pool, &mut strings, &e.version);
                    events.push(e.kind as u8);
                    events.push(0);
                    events.extend_from_slice(&e.range.to_le_bytes());
                    put_pair(&mut events, v);
                    n_events += 1;
                }
                put_pair(&mut advs, intern(&mut pool, &mut strings, &a.record_id));
                put_pair(
                    &mut advs,
                    intern(&mut pool, &mut strings, &a.vulnerability_id),
                );
                put_pair(&mut advs, intern(&mut pool, &mut strings, &a.title));
                put_pair(&mut advs, (ev_start, n_events));
                advs.push(a.severity.to_u8());
                advs.push(a.status.map_or(NO_STATUS, Status::to_u8));
                advs.push(match a.scheme {
                    Scheme::Debian => 0,
                    Scheme::Apk => 1,
                    Scheme::Rpm => 2,
                });
                advs.push(0);
                n_advs += 1;
            }
            put_pair(&mut pkgs, name);
            put_pair(&mut pkgs, (adv_start, n_advs));
            n_pkgs += 1;
        }
        put_pair(&mut ecos, name);
        put_pair(&mut ecos, (start, n_pkgs));
    }
    let n_ecos = grouped.len() as u32;
    drop(pool);
    drop(grouped);
    let mut counts = Vec::with_capacity(20);
    for n in [n_ecos, n_pkgs, n_advs, n_events, strings.len() as u32] {
        counts.extend_from_slice(&n.to_le_bytes());
    }
    let sections = [&counts, &ecos, &pkgs, &advs, &events, &strings];
    let mut digest = Sha256::new();
    for section in sections {
        digest.update(section);
    }
    let header_json = serde_json::to_vec(header).unwrap_or_default();
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    out.write_all(&(header_json.len() as u32).to_le_bytes())?;
    out.write_all(&header_json)?;
    out.write_all(&digest.finalize())?;
    for section in sections {
        out.write_all(section)?;
    }
    Ok(())
}

fn put_pair(out: &mut Vec<u8>, (a, b): (u32, u32)) {
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
}

/// An advisory as stored, read back for matching.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// OSV record ID.
    pub record_id: String,
    /// Vulnerability ID to report.
    pub vulnerability_id: String,
    /// One-line summary.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// Status the record states, if any.
    pub status: Option<Status>,
    /// Version ordering.
    pub scheme: Scheme,
    /// Range events.
    pub events: Vec<Event>,
}

/// A loaded database file.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    header: Header,
    body: Vec<u8>,
    counts: [u32; 5],
    ecos_at: usize,
    pkgs_at: usize,
    advs_at: usize,
    events_at: usize,
    strings_at: usize,
}

impl Index {
    /// Reads and checks a database file.
    pub fn open(path: &Path) -> Result<Index> {
        let bytes = std::fs::read(path).map_err(|source| Error::Host {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// Checks and wraps the bytes of a database file.
    pub fn from_bytes(path: &Path, mut bytes: Vec<u8>) -> Result<Index> {
        let corrupt = |reason: &str| Error::CorruptDatabase {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(corrupt("it does not start with the database signature"));
        }
        let version = u32_at(&bytes, 8).ok_or_else(|| corrupt("truncated header"))?;
        if version != FORMAT_VERSION {
            return Err(Error::DatabaseVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let header_len = u32_at(&bytes, 12).ok_or_else(|| corrupt("truncated header"))? as usize;
        let header_end = 16usize
            .checked_add(header_len)
            .filter(|end| end + 32 <= bytes.len())
            .ok_or_else(|| corrupt("truncated header"))?;
        let header: Header = serde_json::from_slice(&bytes[16..header_end])
            .map_err(|e| corrupt(&format!("header is not valid: {e}")))?;
        let checksum: [u8; 32] = bytes[header_end..header_end + 32]
            .try_into()
            .map_err(|_| corrupt("truncated checksum"))?;
        let body = bytes.split_off(header_end + 32);
        if Sha256::digest(&body).as_slice() != checksum {
            return Err(corrupt(
                "checksum mismatch: the file is damaged or truncated",
            ));
        }
        let mut counts = [0u32; 5];
        for (i, c) in counts.iter_mut().enumerate() {
            *c = u32_at(&body, i * 4).ok_or_else(|| corrupt("truncated body"))?;
        }
        let ecos_at = COUNTS_LEN;
        let pkgs_at = ecos_at + counts[0] as usize * ECO_LEN;
        let advs_at = pkgs_at + counts[1] as usize * PKG_LEN;
        let events_at = advs_at + counts[2] as usize * ADV_LEN;
        let strings_at = events_at + counts[3] as usize * EVENT_LEN;
        if strings_at + counts[4] as usize != body.len() {
            return Err(corrupt("table sizes do not add up to the file size"));
        }
        Ok(Index {
            path: path.to_path_buf(),
            header,
            body,
            counts,
            ecos_at,
            pkgs_at,
            advs_at,
            events_at,
            strings_at,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn corrupt(&self) -> Error {
        Error::CorruptDatabase {
            path: self.path.clone(),
            reason: "an entry points outside its table".to_string(),
        }
    }

    fn u32(&self, at: usize) -> Result<u32> {
        u32_at(&self.body, at).ok_or_else(|| self.corrupt())
    }

    fn string(&self, at: usize) -> Result<&str> {
        let (off, len) = (self.u32(at)? as usize, self.u32(at + 4)? as usize);
        let start = self.strings_at + off;
        let bytes = self
            .body
            .get(start..start + len)
            .filter(|_| off + len <= self.counts[4] as usize)
            .ok_or_else(|| self.corrupt())?;
        std::str::from_utf8(bytes).map_err(|_| self.corrupt())
    }

    fn range(&self, at: usize, limit: u32) -> Result<(usize, usize)> {
        let (start, end) = (self.u32(at)?, self.u32(at + 4)?);
        if start > end || end > limit {
            return Err(self.corrupt());
        }
        Ok((start as usize, end as usize))
    }

    /// Ecosystem keys present.
    pub fn ecosystems(&self) -> Result<Vec<String>> {
        (0..self.counts[0] as usize)
            .map(|i| self.string(self.ecos_at + i * ECO_LEN).map(str::to_string))
            .collect()
    }

    /// The advisories for `package` in ecosystem `key` (`debian 12`).
    pub fn lookup(&self, key: &str, package: &str) -> Result<Vec<Stored>> {
        let mut eco = None;
        for i in 0..self.counts[0] as usize {
            let at = self.ecos_at + i * ECO_LEN;
            if self.string(at)? == key {
                eco = Some(self.range(at + 8, self.counts[1])?);
                break;
            }
        }
        let Some((mut lo, mut hi)) = eco else {
            return Ok(Vec::new());
        };
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.pkgs_at + mid * PKG_LEN;
            match self.string(at)?.cmp(package) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let (start, end) = self.range(at + 8, self.counts[2])?;
                    return (start..end).map(|i| self.advisory(i)).collect();
                }
            }
        }
        Ok(Vec::new())
    }

    fn advisory(&self, i: usize) -> Result<Stored> {
        let at = self.advs_at + i * ADV_LEN;
        let (ev_start, ev_end) = self.range(at + 24, self.counts[3])?;
        let flags = self
            .body
            .get(at + 32..at + 36)
            .ok_or_else(|| self.corrupt())?;
        let severity = Severity::from_u8(flags[0]).ok_or_else(|| self.corrupt())?;
        let status = match flags[1] {
            NO_STATUS => None,
            v => Some(Status::from_u8(v).ok_or_else(|| self.corrupt())?),
        };
        let scheme = match flags[2] {
            0 => Scheme::Debian,
            1 => Scheme::Apk,
            2 => Scheme::Rpm,
            _ => return Err(self.corrupt()),
        };
        let mut events = Vec::with_capacity(ev_end - ev_start);
        for e in ev_start..ev_end {
            let eat = self.events_at + e * EVENT_LEN;
            let head = self.body.get(eat..eat + 4).ok_or_else(|| self.corrupt())?;
            events.push(Event {
                kind: EventKind::from_u8(head[0]).ok_or_else(|| self.corrupt())?,
                range: u16::from_le_bytes([head[2], head[3]]),
                version: self.string(eat + 4)?.to_string(),
            });
        }
        Ok(Stored {
            record_id: self.string(at)?.to_string(),
            vulnerability_id: self.string(at + 8)?.to_string(),
            title: self.string(at + 16)?.to_string(),
            severity,
            status,
            scheme,
            events,
        })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}
