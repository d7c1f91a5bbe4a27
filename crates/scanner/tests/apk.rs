//! An Alpine root filesystem: `etc/alpine-release`, `etc/os-release` and apk's
//! `lib/apk/db/installed` in apk-tools' own format, matched against `Alpine:v3.19` records by
//! origin (source package) with apk version ordering. The package set and versions follow
//! Alpine 3.19's naming; the advisories are made for this test, not published facts.

mod support;

use std::time::SystemTime;

use image_cleaner_scanner::fs::rootfs::RootDir;
use image_cleaner_scanner::{Database, Family, scan};

const INSTALLED: &str = "\
C:Q1SJ2VDh1vLEr5aWbqnVfB5HLcBbA=
P:musl
V:1.2.4_git20230717-r4
A:x86_64
S:407278
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1705933180
c:4b7d3d5ee1b5e7d5f1d4f2ad81b38ee3a6ac4b0b
p:so:libc.musl-x86_64.so.1=1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1r1Yt3nvFm0Dpig2LscIvlzJ0mmE=

C:Q1Lk3C0gxVFyy4nV7wVEUFUEu2zVk=
P:libcrypto3
V:3.1.4-r5
A:x86_64
S:1795116
I:4554752
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
t:1706283424
c:3b71c6ad76b3fe2bb8c0d2b9cee34fe4d2fe8d31
D:so:libc.musl-x86_64.so.1
p:so:libcrypto.so.3=3
F:lib
R:libcrypto.so.3

";

#[test]
fn apk_database_matched_by_origin() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
    std::fs::write(root.join("etc/alpine-release"), "3.19.1\n").unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n",
    )
    .unwrap();
    std::fs::write(root.join("lib/apk/db/installed"), INSTALLED).unwrap();

    let record = |id: &str, package: &str, fixed: &str| {
        serde_json::json!({
            "id": id, "modified": "2026-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": package},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
        })
    };
    let osv = dir.path().join("osv");
    support::debian::write_records(
        &osv,
        &[
            // Fixed in a later revision than installed: found, on the binary package.
            record("ALPINE-CVE-2099-0001", "openssl", "3.1.4-r6"),
            // Fixed by an earlier revision: not found.
            record("ALPINE-CVE-2099-0002", "openssl", "3.1.4-r3"),
            // `_git` is a post-release suffix: 1.2.4_git… is newer than 1.2.4, not found.
            record("ALPINE-CVE-2099-0003", "musl", "1.2.4-r0"),
            // The next package revision of the same snapshot fixes it: found.
            record("ALPINE-CVE-2099-0005", "musl", "1.2.4_git20230717-r5"),
            // Another release's record does not apply.
            serde_json::json!({"id": "ALPINE-CVE-2099-0004", "affected": [{"package":
                {"ecosystem": "Alpine:v3.18", "name": "musl"}, "ranges": [{"type": "ECOSYSTEM",
                "events": [{"introduced": "0"}, {"fixed": "9.9.9-r0"}]}]}]}),
        ],
    );
    let db_path = dir.path().join("vulns.db");
    image_cleaner_scanner::db::build(&osv, &db_path, SystemTime::now()).unwrap();
    let db = Database::open(&db_path).unwrap();
    let scan = scan(&RootDir::new(&root), &db, SystemTime::now()).unwrap();
    let os = scan.os.as_ref().unwrap();
    assert_eq!(
        (os.family, os.release()),
        (Family::Alpine, "3.19".to_string())
    );
    assert_eq!(scan.databases, ["lib/apk/db/installed"]);
    assert_eq!(scan.packages, 2);
    let found: Vec<(&str, &str, &str)> = scan
        .findings
        .iter()
        .map(|f| {
            (
                f.vulnerability_id.as_str(),
                f.package.as_str(),
                f.source_package.as_str(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("CVE-2099-0001", "libcrypto3", "openssl"),
            ("CVE-2099-0005", "musl", "musl"),
        ]
    );
    assert!(
        scan.findings
            .iter()
            .all(|f| f.severity == image_cleaner_scanner::Severity::High)
    );
}
