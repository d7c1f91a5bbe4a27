//! dpkg's database: `var/lib/dpkg/status`, and one file per package under
//! `var/lib/dpkg/status.d/` in distroless images, both in deb822 stanzas.
//!
//! A stanza whose `Status` says the package is being removed or purged, or is no longer
//! installed (only its configuration files remain), describes nothing that can be exploited
//! and is skipped. `Source: name (version)` gives the source package; without it the source
//! is the binary package itself.

use super::{Kind, Package};

/// The main status file.
pub const STATUS: &str = "var/lib/dpkg/status";
/// The distroless per-package directory.
pub const STATUS_DIR: &str = "var/lib/dpkg/status.d";

/// Parses deb822 stanzas into installed packages.
pub fn parse(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        if let Some(p) = parse_stanza(stanza) {
            out.push(p);
        }
    }
    out
}

/// The fields a scan needs, read in one pass over the stanza (descriptions and file lists
/// make stanzas long; continuation lines are skipped).
#[derive(Default)]
struct Fields<'a> {
    package: Option<&'a str>,
    version: Option<&'a str>,
    status: Option<&'a str>,
    source: Option<&'a str>,
    architecture: Option<&'a str>,
}

fn fields(stanza: &str) -> Fields<'_> {
    let mut f = Fields::default();
    for line in stanza.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.len() {
            6 if key.eq_ignore_ascii_case("Status") => &mut f.status,
            6 if key.eq_ignore_ascii_case("Source") => &mut f.source,
            7 if key.eq_ignore_ascii_case("Package") => &mut f.package,
            7 if key.eq_ignore_ascii_case("Version") => &mut f.version,
            12 if key.eq_ignore_ascii_case("Architecture") => &mut f.architecture,
            _ => continue,
        };
        slot.get_or_insert(value.trim());
    }
    f
}

fn parse_stanza(stanza: &str) -> Option<Package> {
    let fields = fields(stanza);
    let name = fields.package?;
    let version = fields.version?;
    if let Some(status) = fields.status {
        let words: Vec<&str> = status.split_whitespace().collect();
        let removing = words
            .first()
            .is_some_and(|w| *w == "deinstall" || *w == "purge");
        let gone = words
            .get(2)
            .is_some_and(|w| *w == "not-installed" || *w == "config-files");
        if removing || gone {
            return None;
        }
    }
    let (source_name, source_version) = match fields.source {
        Some(source) => match source.split_once('(') {
            Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
            None => (source, version),
        },
        None => (name, version),
    };
    Some(Package {
        name: name.to_string(),
        version: version.to_string(),
        source_name: source_name.to_string(),
        source_version: source_version.to_string(),
        arch: fields.architecture.map(str::to_string),
        kind: Kind::Dpkg,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_binaries_to_sources_and_skips_removed() {
        let text = "\
Package: zlib1g
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: zlib
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime
 zlib is a library implementing the deflate compression method.

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1

Package: oldpkg
Status: deinstall ok config-files
Version: 1.0

Package: purged
Status: purge ok not-installed
Version: 2.0

Package: base-files
Status: install ok installed
Version: 12.4+deb12u5
";
        let packages = parse(text);
        let names: Vec<_> = packages
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.source_name.as_str(),
                    p.source_version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("zlib1g", "zlib", "1:1.2.13.dfsg-1"),
                ("libssl3", "openssl", "3.0.11-1~deb12u2"),
                ("base-files", "base-files", "12.4+deb12u5"),
            ]
        );
    }
}
