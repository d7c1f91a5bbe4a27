//! The node's copy of the cluster's vulnerability database.
//!
//! The manager keeps one copy for the cluster and names it in the job by digest. The worker
//! keeps the copy it fetched in the node's state directory (a hostPath, so it outlives the
//! pod) as `<sha256>.icvdb`, and downloads from the manager only when the digest changes:
//! a node does not download the database on every run, and never from outside the cluster.
//! A download is checked against the digest and size before it is used (and the kept copy
//! again at each run), and older copies are removed once a new one is in place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_cleaner_protocol::DatabaseHandoff;
use sha2::{Digest, Sha256};

/// File name suffix of kept copies.
const SUFFIX: &str = ".icvdb";

/// Why the node has no usable copy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The manager holds no database to hand over.
    #[error("the manager holds no vulnerability database: {0}")]
    NotHeld(String),
    /// The digest in the job is not one.
    #[error("the job names no valid database digest ({0:?})")]
    BadDigest(String),
    /// The download failed.
    #[error("downloading the vulnerability database from {url}: {source}")]
    Download {
        /// Where from.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The manager answered with an error.
    #[error("downloading the vulnerability database from {url}: the manager answered {status}")]
    Status {
        /// Where from.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
    /// The download took too long.
    #[error("downloading the vulnerability database from {url}: not done within {timeout:?}")]
    Timeout {
        /// Where from.
        url: String,
        /// The limit.
        timeout: Duration,
    },
    /// What arrived is not what the job named.
    #[error(
        "the vulnerability database from {url} does not match the job (sha256 {found}, {size} bytes; expected {expected})"
    )]
    Mismatch {
        /// Where from.
        url: String,
        /// The digest received.
        found: String,
        /// The size received.
        size: u64,
        /// The digest named.
        expected: String,
    },
    /// The node's disk failed.
    #[error("keeping the vulnerability database in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// Where a copy with `sha256` is kept in `dir`.
pub fn kept_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}{SUFFIX}"))
}

/// The path of a verified copy of the job's database in `dir`, downloading it only when the
/// node does not have it yet. `Ok((path, downloaded))`.
pub async fn fetch(
    handoff: &DatabaseHandoff,
    dir: &Path,
    timeout: Duration,
) -> Result<(PathBuf, bool), FetchError> {
    let Some(url) = &handoff.url else {
        return Err(FetchError::NotHeld(
            handoff
                .problem
                .clone()
                .unwrap_or_else(|| "no reason given".into()),
        ));
    };
    if let Some(problem) = &handoff.problem {
        tracing::warn!("the manager could not refresh the vulnerability database: {problem}");
    }
    let sha256 = handoff.sha256.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::BadDigest(handoff.sha256.clone()));
    }
    let path = kept_path(dir, &sha256);
    // The node's copy is used when it is intact (a damaged one, say a disk error, would
    // otherwise fail every scan until the database changes); else it is fetched again.
    let kept = path.clone();
    let intact = tokio::task::spawn_blocking(move || digest_of(&kept))
        .await
        .ok()
        .flatten()
        .is_some_and(|(found, size)| found == sha256 && size == handoff.size);
    if intact {
        return Ok((path, false));
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let bytes = match tokio::time::timeout(timeout, download(url)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(FetchError::Timeout {
                url: url.clone(),
                timeout,
            });
        }
    };
    let found = hex::encode(Sha256::digest(&bytes));
    if found != sha256 || bytes.len() as u64 != handoff.size {
        return Err(FetchError::Mismatch {
            url: url.clone(),
            found,
            size: bytes.len() as u64,
            expected: sha256,
        });
    }
    let dir_owned = dir.to_owned();
    let target = path.clone();
    tokio::task::spawn_blocking(move || keep(&dir_owned, &target, &bytes))
        .await
        .map_err(|error| FetchError::Io {
            path: path.clone(),
            source: std::io::Error::other(error.to_string()),
        })??;
    tracing::info!(sha256 = %sha256, size = handoff.size, "vulnerability database downloaded from the manager");
    Ok((path, true))
}

/// The SHA-256 and size of the file at `path`, if it can be read.
fn digest_of(path: &Path) -> Option<(String, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).ok()?;
    Some((hex::encode(hasher.finalize()), size))
}

async fn download(url: &str) -> Result<Vec<u8>, FetchError> {
    let error = |source| FetchError::Download {
        url: url.to_owned(),
        source,
    };
    let response = reqwest::get(url).await.map_err(error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    Ok(response.bytes().await.map_err(error)?.to_vec())
}

/// Writes the copy atomically, then removes every other kept copy.
fn keep(dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| FetchError::Io { path, source }
    };
    let mut file = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    std::io::Write::write_all(&mut file, bytes).map_err(io(file.path()))?;
    file.persist(target).map_err(|error| FetchError::Io {
        path: target.to_owned(),
        source: error.error,
    })?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let path = entry.path();
        if path != target && path.to_string_lossy().ends_with(SUFFIX) {
            let _ = std::fs::remove_file(&path);
        }
    }
    Ok(())
}
