//! A node's copy of the cluster's vulnerability database, fetched from the manager over real
//! HTTP: downloaded once per digest, checked before use, replaced when the digest changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use image_cleaner_protocol::DatabaseHandoff;
use image_cleaner_worker::database::{FetchError, fetch, kept_path};
use sha2::{Digest, Sha256};

struct Manager {
    body: Vec<u8>,
    requests: AtomicUsize,
}

async fn serve(State(manager): State<Arc<Manager>>) -> Vec<u8> {
    manager.requests.fetch_add(1, Ordering::SeqCst);
    manager.body.clone()
}

async fn start(body: &[u8]) -> (SocketAddr, Arc<Manager>) {
    let manager = Arc::new(Manager {
        body: body.to_vec(),
        requests: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/vulnerability-db/{sha}", get(serve))
        .with_state(manager.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, manager)
}

fn handoff(address: SocketAddr, body: &[u8]) -> DatabaseHandoff {
    let sha256 = hex::encode(Sha256::digest(body));
    DatabaseHandoff {
        url: Some(format!("http://{address}/vulnerability-db/{sha256}")),
        sha256,
        size: body.len() as u64,
        built_at: 1_700_000_000,
        problem: None,
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_node_downloads_each_database_once() {
    let body = b"ICVULNDB pretend database bytes".to_vec();
    let (address, manager) = start(&body).await;
    let dir = tempfile::tempdir().unwrap();
    let first = handoff(address, &body);

    let (path, downloaded) = fetch(&first, dir.path(), TIMEOUT).await.unwrap();
    assert!(downloaded);
    assert_eq!(path, kept_path(dir.path(), &first.sha256));
    assert_eq!(std::fs::read(&path).unwrap(), body);

    // The next run uses the node's copy.
    let (again, downloaded) = fetch(&first, dir.path(), TIMEOUT).await.unwrap();
    assert!(!downloaded);
    assert_eq!(again, path);
    assert_eq!(manager.requests.load(Ordering::SeqCst), 1);

    // A damaged copy (same size, other bytes) is fetched again rather than failing every scan.
    let mut damaged = body.clone();
    damaged[0] ^= 0xff;
    std::fs::write(&path, &damaged).unwrap();
    let (_, downloaded) = fetch(&first, dir.path(), TIMEOUT).await.unwrap();
    assert!(downloaded);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    assert_eq!(manager.requests.load(Ordering::SeqCst), 2);

    // A new database replaces the old copy.
    let newer = b"ICVULNDB a newer database".to_vec();
    let (address, _) = start(&newer).await;
    let (new_path, downloaded) = fetch(&handoff(address, &newer), dir.path(), TIMEOUT)
        .await
        .unwrap();
    assert!(downloaded);
    assert!(!path.exists(), "the old copy is removed");
    assert_eq!(std::fs::read(new_path).unwrap(), newer);
}

#[tokio::test]
async fn what_does_not_match_the_job_is_not_kept() {
    let (address, _) = start(b"tampered or truncated").await;
    let dir = tempfile::tempdir().unwrap();
    let expected = handoff(address, b"the database the manager checked");
    let error = fetch(&expected, dir.path(), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, FetchError::Mismatch { .. }), "{error}");
    assert!(error.to_string().contains(&expected.sha256));
    let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(kept.is_empty(), "nothing kept: {kept:?}");
}

#[tokio::test]
async fn a_manager_without_a_database_or_a_bad_job_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let none = DatabaseHandoff {
        url: None,
        sha256: String::new(),
        size: 0,
        built_at: 0,
        problem: Some("fetching https://db.example/all.zip: the server answered 503".into()),
    };
    let error = fetch(&none, dir.path(), TIMEOUT).await.unwrap_err();
    assert!(error.to_string().contains("503"), "{error}");

    let bad = DatabaseHandoff {
        url: Some("http://127.0.0.1:9/vulnerability-db/../../etc/passwd".into()),
        sha256: "../../etc/passwd".into(),
        ..none.clone()
    };
    let error = fetch(&bad, dir.path(), TIMEOUT).await.unwrap_err();
    assert!(matches!(error, FetchError::BadDigest(_)), "{error}");

    // The manager is gone: the error names where the worker looked.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let error = fetch(&handoff(gone, b"x"), dir.path(), TIMEOUT)
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&gone.to_string()), "{error}");
}
