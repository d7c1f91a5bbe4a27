//! rpm support against rpm itself: version ordering agrees with `rpm.vercmp` (rpm's own
//! implementation, through its Lua interpreter) on thousands of pairs of real version
//! strings from the apt lists, and a real SQLite rpm database, written by `rpm` from
//! packages `rpmbuild` made, is read with binary-to-source mapping and matched.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use image_cleaner_scanner::fs::rootfs::RootDir;
use image_cleaner_scanner::version::rpm::compare_evr;
use image_cleaner_scanner::{Database, Family, scan};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn require_rpm() {
    assert!(
        have("rpm") && have("rpmbuild"),
        "rpm and rpmbuild are needed (apt-get install rpm; scripts/setup.sh does)"
    );
}

fn apt_versions(limit: usize) -> Vec<String> {
    let lists = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/var/lib/apt/lists")
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let mut paths = lists();
    if !paths
        .iter()
        .any(|p| p.to_string_lossy().contains("Packages"))
    {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        paths = lists();
    }
    let mut out = Vec::new();
    for path in paths {
        if !path.to_string_lossy().contains("Packages") {
            continue;
        }
        let Ok(output) = Command::new("/usr/lib/apt/apt-helper")
            .arg("cat-file")
            .arg(&path)
            .output()
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(v) = line.strip_prefix("Version: ") {
                out.push(v.trim().to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(limit);
    out
}

#[test]
fn ordering_agrees_with_rpm_vercmp() {
    require_rpm();
    let mut versions = apt_versions(6000);
    assert!(
        versions.len() > 1000,
        "apt lists give {} versions",
        versions.len()
    );
    versions.extend(
        [
            "1.0~rc1",
            "1.0^git1",
            "1.0",
            "1:0.9-1",
            "3.0.7-24.el9",
            "3.0.7-24.el9_3.1",
            "2a",
            "2.0",
        ]
        .map(String::from),
    );
    // Neighbours in byte order and a deterministic spread of distant pairs.
    let mut pairs: Vec<(&str, &str)> = versions
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect();
    let n = versions.len();
    for i in 0..n {
        pairs.push((&versions[i], &versions[(i * 7919 + 13) % n]));
    }
    // One rpm process judges every pair, read from a file by rpm's Lua.
    let list = tempfile::NamedTempFile::new().unwrap();
    let mut text = String::new();
    for (a, b) in &pairs {
        text.push_str(&format!("{a}\t{b}\n"));
    }
    std::fs::write(list.path(), text).unwrap();
    let lua = format!(
        "%{{lua: for line in io.lines(\"{}\") do local a, b = line:match(\"^([^\\t]*)\\t(.*)$\"); io.write(rpm.vercmp(a, b), \" \") end}}",
        list.path().display()
    );
    let output = Command::new("rpm")
        .arg("--eval")
        .arg(&lua)
        .output()
        .unwrap();
    let verdicts: Vec<i32> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(
        verdicts.len(),
        pairs.len(),
        "rpm answered every pair: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut wrong = Vec::new();
    for ((a, b), want) in pairs.iter().zip(verdicts) {
        let want = want.cmp(&0);
        let got = compare_evr(a, b);
        if got != want {
            wrong.push(format!("{a} vs {b}: rpm {want:?}, ours {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} disagree:\n{}",
        wrong.len(),
        pairs.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}

/// Builds `openssl` with a `libs` subpackage and records it in an rpm database under `root`.
fn rpm_root(root: &Path, work: &Path) {
    let top = work.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let spec = top.join("SPECS/openssl.spec");
    std::fs::write(
        &spec,
        "Name: openssl\nEpoch: 1\nVersion: 3.0.7\nRelease: 24.el9\nSummary: TLS\nLicense: Apache-2.0\nBuildArch: noarch\n\
         %description\nTLS\n%package libs\nSummary: TLS libraries\n%description libs\nTLS libraries\n%files\n%files libs\n",
    )
    .unwrap();
    let built = Command::new("rpmbuild")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .args(["-bb", "--quiet"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let rpms: Vec<_> = std::fs::read_dir(top.join("RPMS/noarch"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let dbpath = root.join("var/lib/rpm");
    std::fs::create_dir_all(&dbpath).unwrap();
    let installed = Command::new("rpm")
        .arg("--dbpath")
        .arg(&dbpath)
        .args([
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            "--ignorearch",
            "--ignoreos",
        ])
        .args(&rpms)
        .output()
        .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"AlmaLinux\"\nVERSION=\"9.3 (Shamrock Pampas Cat)\"\nID=\"almalinux\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
}

#[test]
fn sqlite_rpm_database_is_read_and_matched() {
    require_rpm();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rpm_root(&root, dir.path());
    // Two advisories on the source package: one fixed after the installed release, one
    // fixed before it.
    let record = |id: &str, fixed: &str| {
        serde_json::json!({
            "id": id, "modified": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-{id}")],
            "affected": [{"package": {"ecosystem": "AlmaLinux:9", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "database_specific": {"severity": "Important"},
        })
    };
    let osv = dir.path().join("osv");
    support::debian::write_records(
        &osv,
        &[
            record("ALSA-1", "1:3.0.7-25.el9_3"),
            record("ALSA-2", "1:3.0.7-20.el9"),
        ],
    );
    let db_path = dir.path().join("vulns.db");
    image_cleaner_scanner::db::build(&osv, &db_path, SystemTime::now()).unwrap();
    let db = Database::open(&db_path).unwrap();

    let scan = scan(&RootDir::new(&root), &db, SystemTime::now()).unwrap();
    assert_eq!(
        scan.os.as_ref().map(|o| (o.family, o.release())),
        Some((Family::Almalinux, "9".into()))
    );
    assert_eq!(scan.databases, ["var/lib/rpm/rpmdb.sqlite"]);
    assert_eq!(scan.packages, 2);
    let found: Vec<(&str, &str, &str)> = scan
        .findings
        .iter()
        .map(|f| {
            (
                f.vulnerability_id.as_str(),
                f.package.as_str(),
                f.installed_version.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("CVE-ALSA-1", "openssl", "1:3.0.7-24.el9"),
            ("CVE-ALSA-1", "openssl-libs", "1:3.0.7-24.el9")
        ]
    );

    // Garbage where the database should be is an error naming it, not a panic.
    std::fs::write(root.join("var/lib/rpm/rpmdb.sqlite"), b"this is not sqlite").unwrap();
    let err = image_cleaner_scanner::scan(&RootDir::new(&root), &db, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/var/lib/rpm/rpmdb.sqlite"), "{err}");
}
