//! The cluster's copy of the vulnerability database: fetched from a real HTTP server (with
//! conditional requests), checked, kept under its digest, served to workers, kept when the
//! source fails, and reported stale when old.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use image_cleaner_api::GoDuration;
use image_cleaner_api::config::{DbLocation, DbSource};
use image_cleaner_manager::vulndb::{Keeper, KeeperSettings, Prepared, ROUTE_PREFIX};
use image_cleaner_manager::{Metrics, Readiness, server};
use sha2::{Digest, Sha256};

const DAY: Duration = Duration::from_secs(86_400);

/// A real OSV record (Debian's zlib changelog: CVE-2022-37434 fixed in 1:1.2.13.dfsg-1+deb12u1).
fn record() -> serde_json::Value {
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": "DEBIAN-CVE-2022-37434",
        "modified": "2024-08-01T00:00:00Z",
        "aliases": ["CVE-2022-37434"],
        "affected": [{
            "package": {"ecosystem": "Debian:12", "name": "zlib"},
            "severity": [{"type": "Ubuntu", "score": "critical"}],
            "ranges": [{"type": "ECOSYSTEM", "events": [
                {"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1+deb12u1"}
            ]}]
        }]
    })
}

/// A compiled database built `age` ago.
fn database(age: Duration) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("record.json");
    std::fs::write(&json, record().to_string()).expect("record");
    let out = dir.path().join("db");
    image_cleaner_scanner::db::build(&json, &out, SystemTime::now() - age).expect("build");
    std::fs::read(out).expect("read db")
}

/// An OSV export as osv.dev publishes it: a zip of one JSON record per file.
fn osv_zip() -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    writer
        .start_file(
            "DEBIAN-CVE-2022-37434.json",
            zip::write::SimpleFileOptions::default(),
        )
        .expect("zip entry");
    writer
        .write_all(record().to_string().as_bytes())
        .expect("zip write");
    writer.finish().expect("zip").into_inner()
}

/// The source: what it answers, and the requests it got.
#[derive(Default)]
struct Source {
    body: Mutex<Option<Vec<u8>>>,
    requests: AtomicUsize,
    conditional: AtomicUsize,
}

async fn serve_source(State(source): State<Arc<Source>>, headers: HeaderMap) -> Response {
    source.requests.fetch_add(1, Ordering::SeqCst);
    let body = source.body.lock().expect("lock").clone();
    let Some(body) = body else {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&body)));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|value| value.as_bytes() == etag.as_bytes())
    {
        source.conditional.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_MODIFIED.into_response();
    }
    ([(header::ETAG, etag)], body).into_response()
}

async fn start_source(source: Arc<Source>) -> SocketAddr {
    let app = Router::new()
        .route("/db", get(serve_source))
        .with_state(source);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A client no call is made with (URL sources do not use the API).
fn unused_client() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
    kube::Client::try_from(config).expect("client")
}

/// What the coordinator asks of the keeper for a job starting now.
async fn prepare(keeper: &Keeper, source: &DbSource, base: Option<&str>) -> Prepared {
    keeper
        .prepare(
            &unused_client(),
            "kube-system",
            source,
            base,
            SystemTime::now(),
        )
        .await
}

fn url_source(address: SocketAddr, max_age: Duration) -> DbSource {
    DbSource {
        location: DbLocation::Url(format!("http://{address}/db")),
        max_age: GoDuration::from_secs(max_age.as_secs()),
    }
}

fn keeper(dir: &std::path::Path) -> Keeper {
    Keeper::new(KeeperSettings {
        dir: dir.to_owned(),
        timeout: Duration::from_secs(10),
        max_size: 1 << 20,
        max_compile: 1 << 20,
    })
}

#[tokio::test]
async fn a_url_is_fetched_once_then_only_checked_and_served_to_workers() {
    let source = Arc::new(Source::default());
    let db = database(DAY);
    *source.body.lock().unwrap() = Some(db.clone());
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let keeper = keeper(dir.path());
    let config = url_source(address, 7 * DAY);

    // The manager's own server, serving what the keeper holds.
    let listener = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let manager = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server::serve(
        listener,
        server::Served {
            metrics: Metrics::new(),
            readiness: Readiness::default(),
            shelf: keeper.shelf(),
        },
        cancel.clone(),
    ));
    let base = format!("http://{manager}");

    let first = prepare(&keeper, &config, Some(&base)).await;
    let sha = hex::encode(Sha256::digest(&db));
    assert_eq!(first.handoff.problem, None);
    assert_eq!(first.handoff.sha256, sha);
    assert_eq!(first.handoff.size, db.len() as u64);
    assert!(
        !first.stale,
        "a day-old database is not stale under a 7-day maxAge"
    );
    let url = first.handoff.url.clone().expect("a URL for the workers");
    assert_eq!(url, format!("{base}{ROUTE_PREFIX}/{sha}"));

    // Workers get exactly the checked bytes; another digest is not served.
    let served = reqwest::get(&url).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.bytes().await.unwrap().as_ref(), db.as_slice());
    let other = reqwest::get(format!("{base}{ROUTE_PREFIX}/{}", "0".repeat(64)))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);

    // The next job only asks whether it changed.
    let second = prepare(&keeper, &config, Some(&base)).await;
    assert_eq!(second.handoff, first.handoff);
    assert_eq!(source.requests.load(Ordering::SeqCst), 2);
    assert_eq!(source.conditional.load(Ordering::SeqCst), 1);

    // A new database replaces the old copy, on disk too.
    let newer = database(Duration::from_secs(60));
    *source.body.lock().unwrap() = Some(newer.clone());
    let third = prepare(&keeper, &config, Some(&base)).await;
    assert_eq!(third.handoff.sha256, hex::encode(Sha256::digest(&newer)));
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(kept.len(), 1, "only the current copy is kept: {kept:?}");
    let old = reqwest::get(&url).await.unwrap();
    assert_eq!(old.status(), 404, "the replaced copy is no longer served");

    // Another source: its own copy replaces this one, on disk too.
    let other = Arc::new(Source::default());
    *other.body.lock().unwrap() = Some(database(Duration::from_secs(120)));
    let other_address = start_source(other).await;
    let fourth = prepare(&keeper, &url_source(other_address, 7 * DAY), Some(&base)).await;
    assert_eq!(fourth.handoff.problem, None);
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "only the new source's copy is kept: {kept:?}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_failing_source_keeps_the_last_good_copy_and_says_so() {
    let source = Arc::new(Source::default());
    let db = database(10 * DAY);
    *source.body.lock().unwrap() = Some(db.clone());
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let keeper = keeper(dir.path());
    let config = url_source(address, 7 * DAY);
    let base = Some("http://10.0.0.7:8889");

    let first = prepare(&keeper, &config, base).await;
    assert!(first.stale, "built 10 days ago, maxAge 7 days");
    assert_eq!(first.handoff.problem, None);

    *source.body.lock().unwrap() = None;
    let second = prepare(&keeper, &config, base).await;
    assert_eq!(second.handoff.sha256, first.handoff.sha256);
    assert!(
        second.handoff.url.is_some(),
        "the last good copy is still handed over"
    );
    let problem = second.handoff.problem.expect("the failure is told");
    assert!(problem.contains("503"), "{problem}");
    assert!(problem.contains("using the copy fetched"), "{problem}");
}

#[tokio::test]
async fn bad_sources_are_named_and_nothing_is_handed_over() {
    let source = Arc::new(Source::default());
    *source.body.lock().unwrap() = Some(b"<html>not a database</html>".to_vec());
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let keeper = keeper(dir.path());
    let base = Some("http://10.0.0.7:8889");

    let invalid = prepare(&keeper, &url_source(address, DAY), base).await;
    assert_eq!(invalid.handoff.url, None);
    assert_eq!(invalid.copy, None);
    let problem = invalid.handoff.problem.expect("a problem");
    assert!(
        problem.contains(&format!("http://{address}/db")),
        "{problem}"
    );
    assert!(
        problem.contains("not a usable vulnerability database"),
        "{problem}"
    );

    // Larger than allowed: refused before it fills the manager's disk.
    *source.body.lock().unwrap() = Some(vec![b'x'; 2 << 20]);
    let large = prepare(&keeper, &url_source(address, DAY), base).await;
    assert!(
        large
            .handoff
            .problem
            .expect("a problem")
            .contains("larger than")
    );

    // Nothing listens: a clear error, within the timeout.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let unreachable = prepare(&keeper, &url_source(gone, DAY), base).await;
    let problem = unreachable.handoff.problem.expect("a problem");
    assert!(problem.contains(&gone.to_string()), "{problem}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "failed fetches leave nothing behind");
}

#[tokio::test]
async fn an_osv_export_is_compiled_once_by_the_manager() {
    let source = Arc::new(Source::default());
    *source.body.lock().unwrap() = Some(osv_zip());
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let keeper = keeper(dir.path());
    let prepared = prepare(
        &keeper,
        &url_source(address, DAY),
        Some("http://10.0.0.7:8889"),
    )
    .await;
    assert_eq!(prepared.handoff.problem, None);
    let copy = prepared.copy.expect("a compiled copy");
    let db = image_cleaner_scanner::Database::open(&copy.path).expect("opens");
    let zlib = db
        .lookup(image_cleaner_scanner::Family::Debian, "12", "zlib")
        .expect("lookup");
    assert!(zlib.iter().any(|a| a.vulnerability_id == "CVE-2022-37434"));
}

#[tokio::test]
async fn an_osv_export_too_large_to_compile_here_is_refused_with_what_to_do() {
    let source = Arc::new(Source::default());
    *source.body.lock().unwrap() = Some(osv_zip());
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let small = Keeper::new(KeeperSettings {
        dir: dir.path().to_owned(),
        timeout: Duration::from_secs(10),
        max_size: 1 << 20,
        max_compile: 64,
    });
    let prepared = prepare(
        &small,
        &url_source(address, DAY),
        Some("http://10.0.0.7:8889"),
    )
    .await;
    assert_eq!(prepared.copy, None);
    let problem = prepared.handoff.problem.expect("a problem");
    assert!(problem.contains("imagecleaner db build"), "{problem}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "nothing kept: {leftovers:?}");
}

#[tokio::test]
async fn without_its_own_address_the_manager_says_workers_cannot_reach_it() {
    let source = Arc::new(Source::default());
    *source.body.lock().unwrap() = Some(database(DAY));
    let address = start_source(source.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let prepared = prepare(&keeper(dir.path()), &url_source(address, DAY), None).await;
    assert_eq!(prepared.handoff.url, None);
    assert!(
        prepared
            .handoff
            .problem
            .expect("a problem")
            .contains("POD_IP")
    );
}
