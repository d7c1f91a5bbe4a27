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

/// A database of two advisories on the source package `openssl` of AlmaLinux 9: one fixed
/// after the installed release, one fixed before it.
fn alma_db(dir: &Path) -> Database {
    let record = |id: &str, fixed: &str| {
        serde_json::json!({
            "id": id, "modified": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-{id}")],
            "affected": [{"package": {"ecosystem": "AlmaLinux:9", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "database_specific": {"severity": "Important"},
        })
    };
    let osv = dir.join("osv");
    support::debian::write_records(
        &osv,
        &[
            record("ALSA-1", "1:3.0.7-25.el9_3"),
            record("ALSA-2", "1:3.0.7-20.el9"),
        ],
    );
    let db_path = dir.join("vulns.db");
    image_cleaner_scanner::db::build(&osv, &db_path, SystemTime::now()).unwrap();
    Database::open(&db_path).unwrap()
}

/// Scans `root` and checks the findings the two packages must give.
fn assert_openssl_findings(root: &Path, db: &Database, database_file: &str) {
    let scan = scan(&RootDir::new(root), db, SystemTime::now()).unwrap();
    assert_eq!(
        scan.os.as_ref().map(|o| (o.family, o.release())),
        Some((Family::Almalinux, "9".into()))
    );
    assert_eq!(scan.databases, [database_file]);
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
}

#[test]
fn sqlite_rpm_database_is_read_and_matched() {
    require_rpm();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rpm_root(&root, dir.path());
    let db = alma_db(dir.path());
    assert_openssl_findings(&root, &db, "var/lib/rpm/rpmdb.sqlite");

    // Garbage where the database should be is an error naming it, not a panic.
    std::fs::write(root.join("var/lib/rpm/rpmdb.sqlite"), b"this is not sqlite").unwrap();
    let err = scan(&RootDir::new(&root), &db, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("/var/lib/rpm/rpmdb.sqlite"), "{err}");
}

/// The headers rpm exports (`rpmdb --exportdb`: each with its 8-byte magic), as the blobs
/// rpm's database stores (without it).
fn exported_headers(dbpath: &Path) -> Vec<Vec<u8>> {
    let output = Command::new("rpmdb")
        .arg("--dbpath")
        .arg(dbpath)
        .arg("--exportdb")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = output.stdout;
    let mut blobs = Vec::new();
    let mut at = 0;
    while at < data.len() {
        assert_eq!(
            &data[at..at + 8],
            b"\x8e\xad\xe8\x01\0\0\0\0",
            "header magic"
        );
        let word = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        let (index_entries, data_len) = (word(at + 8), word(at + 12));
        let len = 8 + 16 * index_entries + data_len;
        blobs.push(data[at + 8..at + 8 + len].to_vec());
        at += 8 + len;
    }
    blobs
}

/// rpm's Berkeley DB format (`Packages`, RHEL/CentOS ≤ 8, older SUSE and Amazon Linux 2): the
/// same packages rpm installed, written by Berkeley DB itself (`db_load`, hash, small pages
/// so the headers go to overflow pages as in real databases), checked readable by rpm's own
/// `bdb_ro` backend, then scanned.
#[test]
fn berkeley_db_rpm_database_is_read_and_matched() {
    require_rpm();
    assert!(
        have_db_load(),
        "db5.3_load is needed (apt-get install db5.3-util; scripts/setup.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    rpm_root(&root, dir.path());
    let dbpath = root.join("var/lib/rpm");
    let headers = exported_headers(&dbpath);
    assert_eq!(headers.len(), 2);
    let mut dump =
        String::from("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=512\nHEADER=END\n");
    for (n, header) in headers.iter().enumerate() {
        // Keys are header instance numbers, native-endian.
        let key = u32::try_from(n + 1).unwrap().to_ne_bytes();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        dump.push_str(&format!(" {}\n {}\n", hex(&key), hex(header)));
    }
    dump.push_str("DATA=END\n");
    let dump_file = dir.path().join("packages.dump");
    std::fs::write(&dump_file, dump).unwrap();
    for entry in std::fs::read_dir(&dbpath).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let loaded = Command::new("db5.3_load")
        .arg("-f")
        .arg(&dump_file)
        .arg(dbpath.join("Packages"))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    // rpm itself reads it.
    let listed = Command::new("rpm")
        .arg("--dbpath")
        .arg(&dbpath)
        .args([
            "--define",
            "_db_backend bdb_ro",
            "-qa",
            "--qf",
            "%{NAME}\\n",
        ])
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["openssl", "openssl-libs"],
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    let db = alma_db(dir.path());
    assert_openssl_findings(&root, &db, "var/lib/rpm/Packages");

    // Damaged overflow chains (a page of another type in the chain, a chain that loops) are
    // refused with the file named, in bounded time: a regression fails here, it does not hang.
    let packages = dbpath.join("Packages");
    let good = std::fs::read(&packages).unwrap();
    let page_size = u32::from_le_bytes(good[20..24].try_into().unwrap()) as usize;
    let overflow: Vec<usize> = (0..good.len() / page_size)
        .filter(|p| good[p * page_size + 25] == 7)
        .collect();
    assert!(overflow.len() >= 2, "the headers went to overflow pages");
    let mut wrong_type = good.clone();
    wrong_type[overflow[0] * page_size + 25] = 13;
    let mut looping = good.clone();
    let last = *overflow.last().unwrap();
    looping[last * page_size + 16..last * page_size + 20]
        .copy_from_slice(&u32::try_from(last).unwrap().to_le_bytes());
    for (what, damaged) in [("wrong type", wrong_type), ("loop", looping)] {
        std::fs::write(&packages, damaged).unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        let (root, db) = (root.clone(), db_path_of(dir.path()));
        std::thread::spawn(move || {
            let db = Database::open(&db).unwrap();
            let _ = send.send(
                scan(&RootDir::new(&root), &db, SystemTime::now()).map_err(|e| e.to_string()),
            );
        });
        let result = receive
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the scan of a damaged Berkeley DB finishes");
        let error = result.expect_err(what);
        assert!(
            error.contains("var/lib/rpm/Packages") && error.contains("damaged"),
            "{error}"
        );
    }
}

fn db_path_of(dir: &Path) -> std::path::PathBuf {
    dir.join("vulns.db")
}

fn have_db_load() -> bool {
    Command::new("db5.3_load")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}
