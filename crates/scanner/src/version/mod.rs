//! Version ordering, one algorithm per package ecosystem.
//!
//! Whether an installed package is older than the version that fixed a vulnerability is the
//! whole question a scan answers, so each ecosystem's ordering is re-implemented exactly as
//! its package manager defines it (dpkg's `verrevcmp`, apk-tools' `version.c`, rpm's
//! `rpmvercmp`) rather than approximated by semantic versioning, which orders real distro
//! versions such as `1:1.2.13.dfsg-1` or `3.1_p16-r2` wrongly.

pub mod apk;
pub mod debian;
pub mod rpm;

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// How an ecosystem orders its versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// dpkg: Debian and Ubuntu.
    Debian,
    /// apk-tools: Alpine, Wolfi, Chainguard.
    Apk,
    /// rpm: Red Hat and its rebuilds, SUSE, Photon, Azure Linux.
    Rpm,
}

impl Scheme {
    /// Orders two versions of this scheme. Malformed versions still get a total order (the
    /// algorithms are defined on any string), so a bad record cannot stop a scan.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Debian => debian::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Rpm => rpm::compare_evr(a, b),
        }
    }

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Debian => "debian",
            Scheme::Apk => "apk",
            Scheme::Rpm => "rpm",
        }
    }
}
