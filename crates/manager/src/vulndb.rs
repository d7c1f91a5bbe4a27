//! The cluster's one copy of the vulnerability database.
//!
//! Eraser's scanner downloads its database on every node on every run: rate limits, slow
//! starts, and nothing works without internet. Here the operator names one source
//! (`components.scanner.config.db`):
//!
//! - `path`: a file on a volume every worker mounts; the manager leaves it alone;
//! - `configMap` (`name`, `key`, in the manager's namespace) or `url` (http or https): the
//!   manager gets the file — a ConfigMap read whose resourceVersion says whether it changed,
//!   or a conditional GET —, checks that it opens (an OSV zip is compiled first), keeps it on
//!   disk and serves it at `/vulnerability-db/<sha256>` beside `/metrics`.
//!
//! Each scanning job tells the workers the digest and where to fetch it; a node keeps the
//! copy it fetched and downloads again only when the digest changes. A source that fails keeps
//! the last good copy in use (and says so); a copy older than `db.maxAge` is reported stale
//! and still used, because an old database finds fewer problems, never wrong ones.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use image_cleaner_api::config::{DbLocation, DbSource};
use image_cleaner_protocol::DatabaseHandoff;
use image_cleaner_scanner::Database;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// The path the manager serves database copies under.
pub const ROUTE_PREFIX: &str = "/vulnerability-db";
/// File name suffix of kept copies.
const SUFFIX: &str = ".icvdb";

/// Why the database could not be had from its source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The URL could not be fetched.
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The URL.
        url: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("fetching {url}: the server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
    },
    /// The source took longer than allowed.
    #[error("{what}: no complete answer within {timeout:?}")]
    Timeout {
        /// The source.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// The file is larger than the manager accepts.
    #[error("{what}: larger than {limit} bytes")]
    TooLarge {
        /// The source.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// An OSV export too large to compile within the manager's memory.
    #[error(
        "{what}: an OSV export of {size} bytes is larger than the manager compiles ({limit} bytes, to stay within its memory limit); compile it with `imagecleaner db build` and serve the compiled file instead"
    )]
    TooLargeToCompile {
        /// The source.
        what: String,
        /// The export's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The ConfigMap could not be read.
    #[error("reading ConfigMap {namespace}/{name}: {source}")]
    ConfigMap {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The ConfigMap has no such key.
    #[error(
        "ConfigMap {namespace}/{name} has no key {key} in binaryData or data (build the file with `imagecleaner db build` and create the ConfigMap with --from-file={key}=FILE)"
    )]
    MissingKey {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// What the source gave is not a database (nor an OSV archive).
    #[error("{what} is not a usable vulnerability database: {source}")]
    Invalid {
        /// The source.
        what: String,
        /// The scanner's error.
        #[source]
        source: image_cleaner_scanner::Error,
    },
    /// The manager's own disk failed.
    #[error("keeping the database in {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    /// A stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DbError::Fetch { .. } | DbError::Status { .. } => "fetch",
            DbError::Timeout { .. } => "timeout",
            DbError::TooLarge { .. } | DbError::TooLargeToCompile { .. } => "too_large",
            DbError::ConfigMap { .. } | DbError::MissingKey { .. } => "config_map",
            DbError::Invalid { .. } => "invalid",
            DbError::Io { .. } => "io",
        }
    }
}

/// One kept copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When the database was built, seconds since the epoch.
    pub built_at: u64,
    /// Where it is on the manager's disk.
    pub path: PathBuf,
}

impl Copy {
    /// How old the database is at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(UNIX_EPOCH + Duration::from_secs(self.built_at))
            .unwrap_or_default()
    }
}

/// The copy being served, shared with the HTTP route.
#[derive(Clone, Debug, Default)]
pub struct Shelf(Arc<RwLock<Option<Copy>>>);

impl Shelf {
    /// The served copy, if its digest is `sha256`.
    pub fn get(&self, sha256: &str) -> Option<Copy> {
        let held = self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        held.as_ref().filter(|copy| copy.sha256 == sha256).cloned()
    }

    fn put(&self, copy: Option<Copy>) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = copy;
    }
}

/// How the manager checks whether its source changed.
#[derive(Clone, Debug, Default)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    resource_version: Option<String>,
}

#[derive(Clone, Debug)]
struct Held {
    copy: Copy,
    location: DbLocation,
    validators: Validators,
    fetched_at: SystemTime,
}

/// How the manager gets databases.
#[derive(Clone, Debug)]
pub struct KeeperSettings {
    /// Where copies are kept (an emptyDir in the manager's pod).
    pub dir: PathBuf,
    /// Longest time one fetch may take, download included.
    pub timeout: Duration,
    /// Largest file accepted.
    pub max_size: u64,
    /// Largest OSV export (zip) compiled here. Compiling takes 4–5 times the zip's size in
    /// memory (BENCHMARKS.md); larger exports are compiled beforehand.
    pub max_compile: u64,
}

impl Default for KeeperSettings {
    fn default() -> KeeperSettings {
        KeeperSettings {
            dir: PathBuf::from(crate::names::CACHE_PATH),
            timeout: Duration::from_secs(300),
            max_size: 1 << 30,
            max_compile: 16 << 20,
        }
    }
}

/// What a job is told about the database, and what the manager should report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// For the workers.
    pub handoff: DatabaseHandoff,
    /// The copy in use, if any.
    pub copy: Option<Copy>,
    /// Whether that copy is older than `db.maxAge`.
    pub stale: bool,
}

/// Gets the database from its source, keeps the last good copy, and serves it.
#[derive(Debug)]
pub struct Keeper {
    settings: KeeperSettings,
    http: reqwest::Client,
    shelf: Shelf,
    held: tokio::sync::Mutex<Option<Held>>,
}

impl Keeper {
    /// A keeper with nothing held yet.
    pub fn new(settings: KeeperSettings) -> Keeper {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("imagecleaner/", env!("CARGO_PKG_VERSION")))
            .build()
            // Only the TLS backend can fail to build; fall back to the default client.
            .unwrap_or_default();
        Keeper {
            settings,
            http,
            shelf: Shelf::default(),
            held: tokio::sync::Mutex::new(None),
        }
    }

    /// The shelf the HTTP route reads.
    pub fn shelf(&self) -> Shelf {
        self.shelf.clone()
    }

    /// Gets the database from `source` (unless unchanged since the last time), for a job
    /// starting at `now`. `base_url` is where workers reach this manager (`http://IP:port`).
    /// Never fails: a problem is told to the workers (and returned for the manager to
    /// report), with the last good copy still handed over when there is one.
    pub async fn prepare(
        &self,
        client: &Client,
        namespace: &str,
        source: &DbSource,
        base_url: Option<&str>,
        now: SystemTime,
    ) -> Prepared {
        let mut held = self.held.lock().await;
        // A copy from another source is not this source's copy.
        if held.as_ref().is_some_and(|h| h.location != source.location) {
            if let Some(old) = held.take() {
                let _ = std::fs::remove_file(&old.copy.path);
            }
            self.shelf.put(None);
        }
        let result = tokio::time::timeout(
            self.settings.timeout,
            self.refresh(client, namespace, &source.location, held.as_ref()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(DbError::Timeout {
                what: describe(namespace, &source.location),
                timeout: self.settings.timeout,
            })
        });
        let mut problem = None;
        match result {
            Ok(Some((copy, validators))) => {
                let old = held.replace(Held {
                    copy: copy.clone(),
                    location: source.location.clone(),
                    validators,
                    fetched_at: now,
                });
                self.shelf.put(Some(copy.clone()));
                if let Some(old) = old.filter(|old| old.copy.path != copy.path) {
                    let _ = std::fs::remove_file(&old.copy.path);
                }
                tracing::info!(sha256 = %copy.sha256, size = copy.size, "vulnerability database updated");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "vulnerability database not refreshed");
                problem = Some(match held.as_ref() {
                    Some(h) => format!(
                        "{error}; using the copy fetched {} ago",
                        humanize(now.duration_since(h.fetched_at).unwrap_or_default())
                    ),
                    None => error.to_string(),
                });
            }
        }
        let copy = held.as_ref().map(|h| h.copy.clone());
        let stale = copy
            .as_ref()
            .is_some_and(|c| c.age(now) > source.max_age.as_duration());
        let mut handoff = DatabaseHandoff {
            url: None,
            sha256: String::new(),
            size: 0,
            built_at: 0,
            problem,
        };
        if let Some(copy) = &copy {
            handoff.sha256 = copy.sha256.clone();
            handoff.size = copy.size;
            handoff.built_at = copy.built_at;
            match base_url {
                Some(base) => {
                    handoff.url = Some(format!(
                        "{}{ROUTE_PREFIX}/{}",
                        base.trim_end_matches('/'),
                        copy.sha256
                    ))
                }
                None => {
                    handoff.problem.get_or_insert_with(|| {
                        "the manager does not know the address workers reach it at (set POD_IP)"
                            .to_owned()
                    });
                }
            }
        }
        Prepared {
            handoff,
            copy,
            stale,
        }
    }

    /// A new copy, or `None` when the source says it has not changed.
    async fn refresh(
        &self,
        client: &Client,
        namespace: &str,
        location: &DbLocation,
        held: Option<&Held>,
    ) -> Result<Option<(Copy, Validators)>, DbError> {
        let dir = &self.settings.dir;
        std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
            path: dir.clone(),
            source,
        })?;
        let what = describe(namespace, location);
        let (incoming, validators) = match location {
            // Workers read it themselves.
            DbLocation::Path(_) => return Ok(None),
            DbLocation::ConfigMap { name, key } => {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                let map = api.get(name).await.map_err(|source| DbError::ConfigMap {
                    namespace: namespace.to_owned(),
                    name: name.clone(),
                    source,
                })?;
                let version = map.resource_version();
                if version.is_some()
                    && held.and_then(|h| h.validators.resource_version.clone()) == version
                {
                    return Ok(None);
                }
                let bytes = map
                    .binary_data
                    .as_ref()
                    .and_then(|data| data.get(key))
                    .map(|bytes| bytes.0.clone())
                    .or_else(|| {
                        map.data
                            .as_ref()
                            .and_then(|data| data.get(key))
                            .map(|text| text.clone().into_bytes())
                    })
                    .ok_or_else(|| DbError::MissingKey {
                        namespace: namespace.to_owned(),
                        name: name.clone(),
                        key: key.clone(),
                    })?;
                let mut file = self.incoming_file()?;
                std::io::Write::write_all(&mut file, &bytes).map_err(|source| DbError::Io {
                    path: file.path().to_owned(),
                    source,
                })?;
                let validators = Validators {
                    resource_version: version,
                    ..Validators::default()
                };
                (file, validators)
            }
            DbLocation::Url(url) => match self.download(url, held).await? {
                Some(fetched) => fetched,
                None => return Ok(None),
            },
        };
        let dir = dir.clone();
        let max_compile = self.settings.max_compile;
        let copy = tokio::task::spawn_blocking(move || install(incoming, &dir, &what, max_compile))
            .await
            .map_err(|error| DbError::Io {
                path: self.settings.dir.clone(),
                source: std::io::Error::other(error.to_string()),
            })??;
        Ok(Some((copy, validators)))
    }

    fn incoming_file(&self) -> Result<tempfile::NamedTempFile, DbError> {
        tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.settings.dir)
            .map_err(|source| DbError::Io {
                path: self.settings.dir.clone(),
                source,
            })
    }

    /// Downloads `url` into an incoming file; `None` when the server says it has not
    /// changed since the held copy.
    async fn download(
        &self,
        url: &str,
        held: Option<&Held>,
    ) -> Result<Option<(tempfile::NamedTempFile, Validators)>, DbError> {
        let fetch_error = |source| DbError::Fetch {
            url: url.to_owned(),
            source,
        };
        let mut request = self.http.get(url).timeout(self.settings.timeout);
        if let Some(held) = held {
            if let Some(etag) = &held.validators.etag {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            if let Some(modified) = &held.validators.last_modified {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, modified);
            }
        }
        let response = request.send().await.map_err(fetch_error)?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && held.is_some() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(DbError::Status {
                url: url.to_owned(),
                status,
            });
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let validators = Validators {
            etag: header(reqwest::header::ETAG),
            last_modified: header(reqwest::header::LAST_MODIFIED),
            resource_version: None,
        };
        let too_large = || DbError::TooLarge {
            what: url.to_owned(),
            limit: self.settings.max_size,
        };
        if response
            .content_length()
            .is_some_and(|length| length > self.settings.max_size)
        {
            return Err(too_large());
        }
        let incoming = self.incoming_file()?;
        let io_error = |source| DbError::Io {
            path: incoming.path().to_owned(),
            source,
        };
        let mut file = tokio::fs::File::from_std(incoming.reopen().map_err(io_error)?);
        let mut stream = response.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(fetch_error)?;
            written += chunk.len() as u64;
            if written > self.settings.max_size {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        file.flush().await.map_err(io_error)?;
        Ok(Some((incoming, validators)))
    }
}

/// Names a source in messages.
fn describe(namespace: &str, location: &DbLocation) -> String {
    match location {
        DbLocation::Path(path) => format!("db.path {path}"),
        DbLocation::ConfigMap { name, key } => format!("ConfigMap {namespace}/{name} key {key}"),
        DbLocation::Url(url) => url.clone(),
    }
}

/// Checks an incoming file (compiling it first when it is an OSV zip), and keeps it under
/// its digest.
fn install(
    incoming: tempfile::NamedTempFile,
    dir: &Path,
    what: &str,
    max_compile: u64,
) -> Result<Copy, DbError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DbError::Io { path, source }
    };
    let invalid = |source| DbError::Invalid {
        what: what.to_owned(),
        source,
    };
    let mut magic = [0u8; 4];
    let is_zip = std::fs::File::open(incoming.path())
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PK\x03\x04";
    let compiled;
    let database_path = if is_zip {
        // An OSV export as published (`<ecosystem>/all.zip`): compile it once here.
        let size = std::fs::metadata(incoming.path())
            .map_err(io(incoming.path()))?
            .len();
        if size > max_compile {
            return Err(DbError::TooLargeToCompile {
                what: what.to_owned(),
                size,
                limit: max_compile,
            });
        }
        let zip = incoming.path().with_extension("zip");
        std::fs::rename(incoming.path(), &zip).map_err(io(&zip))?;
        let result = tempfile::Builder::new()
            .prefix(".compiled-")
            .tempfile_in(dir)
            .map_err(io(dir))
            .and_then(|out| {
                image_cleaner_scanner::db::build(&zip, out.path(), SystemTime::now())
                    .map_err(invalid)
                    .map(|_| out)
            });
        let _ = std::fs::remove_file(&zip);
        compiled = result?;
        compiled.path().to_owned()
    } else {
        incoming.path().to_owned()
    };
    let database = Database::open(&database_path).map_err(invalid)?;
    let built_at = database.header().built_at;
    drop(database);
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(&database_path).map_err(io(&database_path))?;
    let size = std::io::copy(&mut file, &mut hasher).map_err(io(&database_path))?;
    let sha256 = hex::encode(hasher.finalize());
    let path = dir.join(format!("{sha256}{SUFFIX}"));
    std::fs::rename(&database_path, &path).map_err(io(&path))?;
    Ok(Copy {
        sha256,
        size,
        built_at,
        path,
    })
}

/// A duration as an operator reads it (`3d 4h`, `12m`).
pub fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (days, hours, minutes) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, minutes) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}
