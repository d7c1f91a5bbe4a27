//! apk's database, `lib/apk/db/installed`: one record per package, one `X:value` field a
//! line. `P` is the package, `V` its version, `o` its origin (the source package that
//! Alpine's security data is keyed by), `A` the architecture.

use super::{Kind, Package};

/// The installed database.
pub const INSTALLED: &str = "lib/apk/db/installed";
/// Where apk-tools 3 and usr-merged systems keep it.
pub const INSTALLED_USR: &str = "usr/lib/apk/db/installed";

/// Parses the installed database.
pub fn parse(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut origin, mut arch) = (None, None, None, None);
    let mut flush = |name: &mut Option<String>,
                     version: &mut Option<String>,
                     origin: &mut Option<String>,
                     arch: &mut Option<String>| {
        if let (Some(n), Some(v)) = (name.take(), version.take()) {
            out.push(Package {
                source_name: origin.take().unwrap_or_else(|| n.clone()),
                source_version: v.clone(),
                name: n,
                version: v,
                arch: arch.take(),
                kind: Kind::Apk,
            });
        }
        *origin = None;
        *arch = None;
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut origin, &mut arch);
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_string());
        match key {
            "P" => name = value,
            "V" => version = value,
            "o" => origin = value,
            "A" => arch = value,
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut origin, &mut arch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_the_source() {
        let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nL:Apache-2.0\n\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\n";
        let packages = parse(text);
        assert_eq!(packages.len(), 2);
        assert_eq!(
            (packages[0].name.as_str(), packages[0].source_name.as_str()),
            ("libcrypto3", "openssl")
        );
        assert_eq!(packages[1].source_name, "musl");
        assert_eq!(packages[1].version, "1.2.4_git20230717-r4");
    }
}
