//! rpm's database in any of its three formats: SQLite (`rpmdb.sqlite`, rpm ≥ 4.16: Fedora
//! 33+, RHEL 9), NDB (`Packages.db`, SUSE) and Berkeley DB (`Packages`, RHEL ≤ 8, CentOS 7).
//!
//! The formats are read by the `rpmdb` crate (a port of the reader Trivy uses). It needs a
//! host file, so the database bytes are copied to a private temporary file first, and it
//! indexes slices without checking bounds, so a damaged database is caught as a failed read
//! rather than allowed to abort the scanner. Its Berkeley DB reader also loops forever on an
//! overflow chain that reaches a page of another type or comes back on itself, so those
//! chains are walked here first ([`check_berkeley_db`]) and such a file is refused; and its
//! NDB reader allocates whatever length a blob header claims (up to 4 GiB), so those lengths
//! are checked against the file first ([`check_ndb`]).

use std::io::Write as _;

use super::{Kind, Package};
use crate::Result;
use crate::fs::{self, Filesystem};

/// Directories rpm keeps its database in, in the order they are tried.
pub const DIRS: [&str; 3] = ["usr/lib/sysimage/rpm", "var/lib/rpm", "usr/share/rpm"];
const FILES: [&str; 3] = ["rpmdb.sqlite", "Packages.db", "Packages"];

/// The first database file present in `dir`, with its bytes.
pub fn find_database(fs: &dyn Filesystem, dir: &str) -> Result<Option<(String, Vec<u8>)>> {
    for file in FILES {
        let path = format!("{dir}/{file}");
        if let Some(bytes) = fs::read(fs, &path)? {
            return Ok(Some((path, bytes)));
        }
    }
    Ok(None)
}

/// Parses a database of any format. The error says what is wrong.
pub fn parse(bytes: &[u8]) -> Result<Vec<Package>, String> {
    let mut file =
        tempfile::NamedTempFile::new().map_err(|e| format!("cannot make a temporary copy: {e}"))?;
    file.write_all(bytes)
        .and_then(|()| file.flush())
        .map_err(|e| format!("cannot make a temporary copy: {e}"))?;
    check_berkeley_db(bytes)?;
    check_ndb(bytes)?;
    let path = file.path().to_path_buf();
    let read = std::panic::catch_unwind(move || rpmdb::read_packages(path));
    let packages = match read {
        Ok(Ok(packages)) => packages,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("the database is damaged (the reader failed on it)".to_string()),
    };
    Ok(packages
        .into_iter()
        .filter(|p| !p.name.is_empty() && p.name != "gpg-pubkey")
        .map(|p| {
            let evr = if p.epoch > 0 {
                format!("{}:{}-{}", p.epoch, p.version, p.release)
            } else {
                format!("{}-{}", p.version, p.release)
            };
            let source_name = source_name(&p.source_rpm).unwrap_or_else(|| p.name.clone());
            Package {
                source_name,
                source_version: evr.clone(),
                name: p.name,
                version: evr,
                arch: (!p.arch.is_empty()).then_some(p.arch),
                kind: Kind::Rpm,
            }
        })
        .collect())
}

/// Berkeley DB hash files start with this magic (at byte 12 of the metadata page).
const BDB_HASH_MAGIC: u32 = 0x0006_1561;
/// Page types (Berkeley DB's `db_page.h`).
const PAGE_HASH_UNSORTED: u8 = 2;
const PAGE_HASH_OFF: u8 = 3;
const PAGE_OVERFLOW: u8 = 7;
const PAGE_HASH: u8 = 13;
/// Size of a page header.
const PAGE_HEADER: usize = 26;

/// Refuses a Berkeley DB hash file whose overflow chains the reader would follow forever: one
/// that reaches a page that is not an overflow page, leaves the file, or loops. Other files
/// pass (they are not Berkeley DB).
pub fn check_berkeley_db(bytes: &[u8]) -> Result<(), String> {
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if u32_at(12) != Some(BDB_HASH_MAGIC) {
        return Ok(());
    }
    let damaged = |why: &str| Err(format!("the Berkeley DB database is damaged: {why}"));
    let (Some(page_size), Some(last_page)) = (u32_at(20), u32_at(32)) else {
        return damaged("truncated metadata page");
    };
    let page_size = page_size as usize;
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return damaged("invalid page size");
    }
    let pages = bytes.len() / page_size;
    let page_type = |page: usize| bytes.get(page * page_size + 25).copied();
    for page in 0..=(last_page as usize).min(pages.saturating_sub(1)) {
        if !matches!(page_type(page), Some(PAGE_HASH | PAGE_HASH_UNSORTED)) {
            continue;
        }
        let start = page * page_size;
        let data = &bytes[start..start + page_size];
        let entries = usize::from(u16::from_le_bytes([data[20], data[21]]));
        let Some(index) = data.get(PAGE_HEADER..PAGE_HEADER + entries * 2) else {
            return damaged("a hash page has more entries than fit");
        };
        // Entries come in key/value pairs; the value's offset is the second of each pair.
        for pair in index.chunks_exact(4) {
            let offset = usize::from(u16::from_le_bytes([pair[2], pair[3]]));
            if data.get(offset) != Some(&PAGE_HASH_OFF) {
                continue;
            }
            let Some(first) = data.get(offset + 4..offset + 8) else {
                return damaged("an off-page entry is cut short");
            };
            let mut next = u32::from_le_bytes([first[0], first[1], first[2], first[3]]) as usize;
            let mut steps = 0usize;
            while next != 0 {
                if next >= pages || page_type(next) != Some(PAGE_OVERFLOW) {
                    return damaged(
                        "an overflow chain reaches a page that is not an overflow page",
                    );
                }
                steps += 1;
                if steps > pages {
                    return damaged("an overflow chain loops");
                }
                next = u32_at(next * page_size + 16).unwrap_or(0) as usize;
            }
        }
    }
    Ok(())
}

/// NDB files start with `RpmP`, version 0.
const NDB_MAGIC: &[u8; 4] = b"RpmP";
const NDB_SLOT_MAGIC: &[u8; 4] = b"Slot";
const NDB_SLOTS_PER_PAGE: usize = 4096 / 16;

/// Refuses an NDB file whose slots point at blobs that do not fit in the file (the reader
/// would allocate the claimed length first). Other files pass.
pub fn check_ndb(bytes: &[u8]) -> Result<(), String> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    if bytes.get(..4) != Some(NDB_MAGIC) || u32_at(4) != Some(0) {
        return Ok(());
    }
    let damaged = |why: &str| Err(format!("the NDB database is damaged: {why}"));
    let Some(slot_pages) = u32_at(12).filter(|n| (1..=2048).contains(n)) else {
        return damaged("invalid slot page count");
    };
    let slots = slot_pages * NDB_SLOTS_PER_PAGE - 2;
    for slot in 0..slots {
        let at = 32 + slot * 16;
        let Some(entry) = bytes.get(at..at + 16) else {
            return damaged("the slot table is cut short");
        };
        if &entry[..4] != NDB_SLOT_MAGIC {
            // The reader refuses it with its own message.
            return Ok(());
        }
        if u32_at(at + 4) == Some(0) {
            continue;
        }
        let blob = u32_at(at + 8).unwrap_or(0) * 16;
        let fits = u32_at(blob + 12).is_some_and(|len| blob + 16 + len <= bytes.len());
        if !fits {
            return damaged("a package's blob does not fit in the file");
        }
    }
    Ok(())
}

/// `openssl-3.0.7-24.el9.src.rpm` -> `openssl`.
fn source_name(source_rpm: &str) -> Option<String> {
    let base = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    let mut parts = base.rsplitn(3, '-');
    let (_release, _version, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NDB file with one slot and its blob (NDB files are written by rpm only where it is
    /// built with that backend, which Debian's is not).
    fn ndb(blob_len: u32, data: usize) -> Vec<u8> {
        let mut file = Vec::new();
        for word in [u32::from_le_bytes(*b"RpmP"), 0, 1, 1, 0, 0, 0, 0] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        let slots = NDB_SLOTS_PER_PAGE - 2;
        let blob_block = u32::try_from((32 + slots * 16) / 16).unwrap();
        for slot in 0..slots {
            let (index, offset) = if slot == 0 { (1, blob_block) } else { (0, 0) };
            for word in [u32::from_le_bytes(*b"Slot"), index, offset, 1] {
                file.extend_from_slice(&word.to_le_bytes());
            }
        }
        for word in [u32::from_le_bytes(*b"BlbS"), 1, 0, blob_len] {
            file.extend_from_slice(&word.to_le_bytes());
        }
        file.extend(std::iter::repeat_n(0u8, data));
        file
    }

    #[test]
    fn ndb_blobs_must_fit_in_the_file() {
        assert_eq!(check_ndb(&ndb(64, 64)), Ok(()));
        let huge = check_ndb(&ndb(u32::MAX - 64, 64)).expect_err("refused");
        assert!(huge.contains("does not fit"), "{huge}");
        // Refused before the reader allocates 4 GiB.
        let error = parse(&ndb(u32::MAX - 64, 64)).expect_err("refused");
        assert!(error.contains("NDB database is damaged"), "{error}");
        assert_eq!(check_ndb(b"SQLite format 3\0"), Ok(()));
    }

    #[test]
    fn source_rpm_names() {
        assert_eq!(
            source_name("openssl-3.0.7-24.el9.src.rpm").as_deref(),
            Some("openssl")
        );
        assert_eq!(
            source_name("python3-pip-21.2.3-7.el9.src.rpm").as_deref(),
            Some("python3-pip")
        );
        assert_eq!(source_name("(none)"), None);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = parse(b"not a database at all, just some bytes").unwrap_err();
        assert!(!err.is_empty());
    }
}
