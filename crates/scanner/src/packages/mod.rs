//! Installed OS packages, from the package manager's own database inside the image.
//!
//! Vulnerability records name *source* packages (one Debian source such as `openssl` builds
//! `libssl3`, `openssl` and more), so every package carries both its binary and its source
//! name and version, as its database records them.

pub mod apk;
pub mod dpkg;
pub mod rpm;

use serde::{Deserialize, Serialize};

use crate::fs::{self, Filesystem};
use crate::{Error, Result};

/// Which package manager recorded a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// dpkg (Debian, Ubuntu, distroless).
    Dpkg,
    /// apk (Alpine, Wolfi).
    Apk,
    /// rpm.
    Rpm,
}

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Binary package version (`[epoch:]version[-release]`).
    pub version: String,
    /// Source package name.
    pub source_name: String,
    /// Source package version.
    pub source_version: String,
    /// Architecture, when recorded.
    pub arch: Option<String>,
    /// The database it came from.
    pub kind: Kind,
}

/// Paths of package databases a scan reads, for streaming layers.
pub const DATABASE_FILES: [&str; 11] = [
    dpkg::STATUS,
    apk::INSTALLED,
    apk::INSTALLED_USR,
    "var/lib/rpm/rpmdb.sqlite",
    "var/lib/rpm/Packages.db",
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/Packages.db",
    "usr/lib/sysimage/rpm/Packages",
    "usr/share/rpm/rpmdb.sqlite",
    "usr/share/rpm/Packages",
];

/// Directories read whole.
pub const DATABASE_DIRS: [&str; 1] = [dpkg::STATUS_DIR];

/// What the package databases of an image hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    /// Packages, sorted, without duplicates.
    pub packages: Vec<Package>,
    /// The database files that were read.
    pub databases: Vec<String>,
}

/// Reads every package database present. Finding none is not an error (a static-binary
/// image has none); a database that is present but unreadable is.
pub fn read_installed(fs: &dyn Filesystem) -> Result<Installed> {
    let mut installed = Installed::default();
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();

    if let Some(bytes) = fs::read(fs, dpkg::STATUS)? {
        installed.packages.extend(dpkg::parse(&text(bytes)));
        installed.databases.push(dpkg::STATUS.to_string());
    }
    for name in fs::list(fs, dpkg::STATUS_DIR)? {
        // dpkg-query and distroless skip editor backups and md5sums lists.
        if name.starts_with('.') || name.ends_with(".md5sums") {
            continue;
        }
        let path = format!("{}/{name}", dpkg::STATUS_DIR);
        if let Some(bytes) = fs::read(fs, &path)? {
            installed.packages.extend(dpkg::parse(&text(bytes)));
            installed.databases.push(path);
        }
    }
    for path in [apk::INSTALLED, apk::INSTALLED_USR] {
        if let Some(bytes) = fs::read(fs, path)? {
            installed.packages.extend(apk::parse(&text(bytes)));
            installed.databases.push(path.to_string());
            break;
        }
    }
    for dir in rpm::DIRS {
        if let Some((path, bytes)) = rpm::find_database(fs, dir)? {
            let packages = rpm::parse(&bytes).map_err(|reason| Error::PackageDb {
                image: fs.describe(),
                path: path.clone(),
                reason,
            })?;
            installed.packages.extend(packages);
            installed.databases.push(path);
            break;
        }
    }
    installed.packages.sort();
    installed.packages.dedup();
    Ok(installed)
}
