//! Compiling OSV exports as they are published: zip archives of one JSON record per file
//! (osv.dev's per-ecosystem `all.zip`), directories of them, and what goes wrong with them.

mod support;

use std::io::Write as _;
use std::time::SystemTime;

use image_cleaner_scanner::{Database, Family, db};
use support::debian;

fn zip_of(records: &[serde_json::Value]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for record in records {
        let id = record["id"].as_str().unwrap();
        writer.start_file(format!("{id}.json"), options).unwrap();
        writer.write_all(record.to_string().as_bytes()).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn zips_and_directories_of_zips_compile_to_the_same_database() {
    let data = debian::real_data();
    let records: Vec<_> = data.facts.iter().map(debian::osv_record).collect();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("all.zip");
    std::fs::write(&zip, zip_of(&records)).unwrap();
    let from_zip = db::build(&zip, &dir.path().join("a.db"), SystemTime::now()).unwrap();

    let tree = dir.path().join("osv/Debian:12");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(&zip, tree.join("all.zip")).unwrap();
    // Non-OSV files beside the exports are ignored.
    std::fs::write(dir.path().join("osv/README.txt"), "not a record").unwrap();
    let from_dir = db::build(
        &dir.path().join("osv"),
        &dir.path().join("b.db"),
        SystemTime::now(),
    )
    .unwrap();

    assert_eq!(from_zip.records, data.facts.len());
    assert_eq!(
        (from_zip.records, from_zip.advisories, &from_zip.ecosystems),
        (from_dir.records, from_dir.advisories, &from_dir.ecosystems)
    );
    let db = Database::open(&dir.path().join("b.db")).unwrap();
    let zlib = db.lookup(Family::Debian, "12", "zlib").unwrap();
    assert!(zlib.iter().any(|a| a.vulnerability_id == "CVE-2022-37434"));
    assert!(db.lookup(Family::Debian, "11", "zlib").unwrap().is_empty());
    assert!(db.covers(Family::Debian, "12") && !db.covers(Family::Alpine, "3.19"));
}

#[test]
fn withdrawn_records_are_left_out_and_bad_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    let withdrawn = serde_json::json!({
        "id": "DEBIAN-CVE-2099-0001", "withdrawn": "2026-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}],
    });
    std::fs::write(osv.join("a.json"), withdrawn.to_string()).unwrap();
    let header = db::build(&osv, &dir.path().join("x.db"), SystemTime::now()).unwrap();
    assert_eq!((header.records, header.advisories), (0, 0));

    std::fs::write(
        osv.join("b.json"),
        r#"{"id": "X", "affected": "not a list"}"#,
    )
    .unwrap();
    let err = db::build(&osv, &dir.path().join("y.db"), SystemTime::now()).unwrap_err();
    assert!(err.to_string().contains("b.json"), "{err}");
    // A failed build leaves no half-written database behind.
    assert!(!dir.path().join("y.db").exists());
}
