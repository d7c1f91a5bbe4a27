//! rpm's database in any of its three formats: SQLite (`rpmdb.sqlite`, rpm ≥ 4.16: Fedora
//! 33+, RHEL 9), NDB (`Packages.db`, SUSE) and Berkeley DB (`Packages`, RHEL ≤ 8, CentOS 7).
//!
//! The formats are read by the `rpmdb` crate (a port of the reader Trivy uses). It needs a
//! host file, so the database bytes are copied to a private temporary file first, and it
//! indexes slices without checking bounds, so a damaged database is caught as a failed read
//! rather than allowed to abort the scanner.

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
