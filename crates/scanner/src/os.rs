//! Which operating system an image is built from, from its release files.
//!
//! The distribution and its release pick the vulnerability records that apply: a package
//! named `openssl` at the same version can be fixed in one Debian release and not another.
//! Detection follows what distributions actually ship: `etc/os-release` (or
//! `usr/lib/os-release`) first, then the older per-distribution files, with Debian's
//! `etc/debian_version` filling in the point release that distroless images keep there.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::version::Scheme;

/// Files that identify the operating system, in the order they are consulted.
pub const RELEASE_FILES: [&str; 6] = [
    "etc/os-release",
    "usr/lib/os-release",
    "etc/lsb-release",
    "etc/debian_version",
    "etc/alpine-release",
    "etc/redhat-release",
];

/// A distribution family, named as the vulnerability database keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Debian.
    Debian,
    /// Ubuntu.
    Ubuntu,
    /// Alpine Linux.
    Alpine,
    /// Wolfi (rolling, no release).
    Wolfi,
    /// Chainguard OS (rolling, no release).
    Chainguard,
    /// Red Hat Enterprise Linux.
    Rhel,
    /// AlmaLinux.
    Almalinux,
    /// Rocky Linux.
    Rocky,
    /// openSUSE Leap.
    OpensuseLeap,
    /// SUSE Linux Enterprise.
    Sles,
    /// Photon OS.
    Photon,
    /// Azure Linux (formerly CBL-Mariner).
    Azurelinux,
    /// Another distribution, by its `ID`.
    Other,
}

impl Family {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Ubuntu => "ubuntu",
            Family::Alpine => "alpine",
            Family::Wolfi => "wolfi",
            Family::Chainguard => "chainguard",
            Family::Rhel => "rhel",
            Family::Almalinux => "almalinux",
            Family::Rocky => "rocky",
            Family::OpensuseLeap => "opensuse-leap",
            Family::Sles => "sles",
            Family::Photon => "photon",
            Family::Azurelinux => "azurelinux",
            Family::Other => "other",
        }
    }

    /// Parses [`Family::as_str`] names.
    pub fn from_name(name: &str) -> Option<Family> {
        Some(match name {
            "debian" => Family::Debian,
            "ubuntu" => Family::Ubuntu,
            "alpine" => Family::Alpine,
            "wolfi" => Family::Wolfi,
            "chainguard" => Family::Chainguard,
            "rhel" => Family::Rhel,
            "almalinux" => Family::Almalinux,
            "rocky" => Family::Rocky,
            "opensuse-leap" => Family::OpensuseLeap,
            "sles" => Family::Sles,
            "photon" => Family::Photon,
            "azurelinux" => Family::Azurelinux,
            _ => return None,
        })
    }

    /// How this family orders package versions.
    pub fn scheme(self) -> Option<Scheme> {
        match self {
            Family::Debian | Family::Ubuntu => Some(Scheme::Debian),
            Family::Alpine | Family::Wolfi | Family::Chainguard => Some(Scheme::Apk),
            Family::Rhel
            | Family::Almalinux
            | Family::Rocky
            | Family::OpensuseLeap
            | Family::Sles
            | Family::Photon
            | Family::Azurelinux => Some(Scheme::Rpm),
            Family::Other => None,
        }
    }

    fn from_os_release_id(id: &str) -> Family {
        match id {
            "debian" => Family::Debian,
            "ubuntu" => Family::Ubuntu,
            "alpine" => Family::Alpine,
            "wolfi" => Family::Wolfi,
            "chainguard" => Family::Chainguard,
            "rhel" | "redhat" => Family::Rhel,
            "almalinux" => Family::Almalinux,
            "rocky" => Family::Rocky,
            "opensuse-leap" | "opensuse" => Family::OpensuseLeap,
            "sles" | "sled" => Family::Sles,
            "photon" => Family::Photon,
            "azurelinux" | "mariner" => Family::Azurelinux,
            _ => Family::Other,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The detected operating system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Os {
    /// The family.
    pub family: Family,
    /// The full version as the image states it, e.g. `12.5`, `3.19.1`, `22.04`; empty for
    /// rolling distributions or testing/unstable.
    pub version: String,
    /// `ID` from os-release as written (useful when the family is `other`).
    pub id: String,
    /// `PRETTY_NAME`, when given.
    pub pretty_name: Option<String>,
}

impl Os {
    /// The release the vulnerability database is keyed by: the major version for Debian and
    /// Red Hat-likes (`12.5` -> `12`), `major.minor` for Alpine and Ubuntu, nothing for
    /// rolling distributions.
    pub fn release(&self) -> String {
        release_of(self.family, &self.version)
    }
}

/// The release key of `version` within `family` (see [`Os::release`]).
pub fn release_of(family: Family, version: &str) -> String {
    let mut parts = version.split('.');
    match family {
        Family::Wolfi | Family::Chainguard => String::new(),
        Family::Alpine | Family::Ubuntu | Family::OpensuseLeap | Family::Photon => {
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => format!("{a}.{b}"),
                (Some(a), None) => a.to_string(),
                _ => String::new(),
            }
        }
        _ => parts.next().unwrap_or_default().to_string(),
    }
}

/// The contents of whichever release files exist, keyed by their path in [`RELEASE_FILES`].
pub type ReleaseFiles<'a> = [(&'a str, Option<&'a str>)];

/// Detects the OS from the release files present. `None` when nothing identifies it (a
/// `scratch` or static-binary image).
pub fn detect(files: &ReleaseFiles<'_>) -> Option<Os> {
    let get = |path: &str| {
        files
            .iter()
            .find(|(p, _)| *p == path)
            .and_then(|(_, text)| *text)
    };
    let os_release = get("etc/os-release").or_else(|| get("usr/lib/os-release"));
    let mut os = os_release.and_then(|text| {
        let fields = parse_env_file(text);
        let value = |k: &str| {
            fields
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let id = value("ID")?.to_ascii_lowercase();
        Some(Os {
            family: Family::from_os_release_id(&id),
            version: value("VERSION_ID").unwrap_or_default(),
            id,
            pretty_name: value("PRETTY_NAME"),
        })
    });
    if os.is_none()
        && let Some(text) = get("etc/lsb-release")
    {
        let fields = parse_env_file(text);
        if fields
            .iter()
            .any(|(k, v)| k == "DISTRIB_ID" && v.eq_ignore_ascii_case("ubuntu"))
        {
            os = Some(Os {
                family: Family::Ubuntu,
                version: fields
                    .iter()
                    .find(|(k, _)| k == "DISTRIB_RELEASE")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                id: "ubuntu".into(),
                pretty_name: None,
            });
        }
    }
    if os.is_none()
        && let Some(text) = get("etc/alpine-release")
    {
        os = Some(Os {
            family: Family::Alpine,
            version: first_line(text),
            id: "alpine".into(),
            pretty_name: None,
        });
    }
    // Debian's point release lives in debian_version (os-release says only `12`); on
    // Ubuntu that file holds a Debian codename (`bookworm/sid`) and is ignored.
    if let Some(text) = get("etc/debian_version") {
        let version = first_line(text);
        let numeric = version.starts_with(|c: char| c.is_ascii_digit());
        match &mut os {
            Some(os) if os.family == Family::Debian && numeric => os.version = version,
            None => {
                os = Some(Os {
                    family: Family::Debian,
                    version: if numeric { version } else { String::new() },
                    id: "debian".into(),
                    pretty_name: None,
                })
            }
            _ => {}
        }
    }
    if os.is_none()
        && let Some(text) = get("etc/redhat-release")
    {
        let line = first_line(text);
        let version = line
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or_default()
            .to_string();
        let lower = line.to_ascii_lowercase();
        let family = if lower.starts_with("rocky") {
            Family::Rocky
        } else if lower.starts_with("almalinux") {
            Family::Almalinux
        } else {
            Family::Rhel
        };
        os = Some(Os {
            family,
            version,
            id: family.as_str().into(),
            pretty_name: Some(line),
        });
    }
    os
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// `KEY=value` lines with optional shell quoting, as os-release(5) defines them.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_string(), value.replace("\\\"", "\"")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

    #[test]
    fn debian_takes_the_point_release_from_debian_version() {
        let os = detect(&[
            ("etc/os-release", Some(BOOKWORM)),
            ("etc/debian_version", Some("12.11\n")),
        ])
        .unwrap();
        assert_eq!(os.family, Family::Debian);
        assert_eq!(os.version, "12.11");
        assert_eq!(os.release(), "12");
    }

    #[test]
    fn alpine_and_ubuntu_key_on_major_minor() {
        let os = detect(&[(
            "etc/os-release",
            Some("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n"),
        )])
        .unwrap();
        assert_eq!((os.family, os.release()), (Family::Alpine, "3.19".into()));
        let os = detect(&[
            (
                "etc/lsb-release",
                Some("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\n"),
            ),
            ("etc/debian_version", Some("bookworm/sid\n")),
        ])
        .unwrap();
        assert_eq!((os.family, os.release()), (Family::Ubuntu, "22.04".into()));
    }

    #[test]
    fn nothing_identifies_scratch() {
        assert_eq!(detect(&[("etc/os-release", None)]), None);
    }
}
