//! WATCH: a chunked stream of newline-delimited JSON events, as kube and kubectl expect.
//!
//! - Without a `resourceVersion` (or with `0`), or with `sendInitialEvents=true`, the stream
//!   starts with an `ADDED` event per existing object (then, for `sendInitialEvents`, a
//!   `BOOKMARK` annotated `k8s.io/initial-events-end`).
//! - With a `resourceVersion`, it replays every change after it from the history; if that is
//!   too old, the stream carries one `ERROR` event with a 410 `Expired` Status, which is how
//!   a real server makes clients relist.
//! - Selectors are applied to the old and new state of each change, so an object that starts
//!   or stops matching arrives as `ADDED` or `DELETED`, as from the real watch cache.
//! - With `allowWatchBookmarks`, a `BOOKMARK` carrying the latest revision the stream has
//!   passed is sent every bookmark interval.
//! - The stream ends after `timeoutSeconds`, when the client goes, when the server shuts
//!   down, or when the client falls too far behind (it then resumes from its last revision).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::error::{ApiError, ApiResult};
use super::meta;
use super::output::{self, Format};
use super::read::Selectors;
use super::request::Query;
use super::resources::ResourceType;
use super::store::{Change, ChangeKind};

/// Default stream length when the client sets none (the real server picks 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// A watch request, parsed.
pub(crate) struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub version: String,
    pub namespace: Option<String>,
    pub query: Query,
    pub format: Format,
}

struct Stream {
    rt: Arc<ResourceType>,
    version: String,
    namespace: Option<String>,
    selectors: Selectors,
    format: Format,
    tx: mpsc::Sender<Bytes>,
}

impl Stream {
    fn render(&self, object: &Value) -> Value {
        output::render_one(
            &self.rt,
            &self.format,
            output::to_version(&self.rt, &self.version, object),
        )
    }

    fn selected(&self, object: &Value) -> bool {
        let in_namespace = self
            .namespace
            .as_deref()
            .is_none_or(|ns| meta::namespace(object) == ns);
        in_namespace
            && self
                .selectors
                .matches(&output::to_version(&self.rt, &self.version, object))
    }

    async fn send(&self, kind: &str, object: Value) -> bool {
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    /// Sends what `change` means to this watcher; false once the client is gone.
    async fn deliver(&self, change: &Change) -> bool {
        if change.resource != self.rt.storage {
            return true;
        }
        let now_in = change.kind != ChangeKind::Deleted && self.selected(&change.object);
        let was_in = match (&change.prev, change.kind) {
            (Some(prev), ChangeKind::Modified) => self.selected(prev),
            (_, ChangeKind::Deleted) => self.selected(&change.object),
            _ => false,
        };
        let kind = match (change.kind, was_in, now_in) {
            (ChangeKind::Deleted, true, _) => "DELETED",
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, true, true) => "MODIFIED",
            (ChangeKind::Modified, false, true) => "ADDED",
            (ChangeKind::Modified, true, false) => "DELETED",
            _ => return true,
        };
        self.send(kind, self.render(&change.object)).await
    }

    async fn bookmark(&self, rv: u64, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object = json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(&self.version),
            "metadata": metadata,
        });
        self.send("BOOKMARK", object).await
    }
}

/// Starts a watch and returns the streaming response.
pub(crate) fn watch(shared: &Arc<Shared>, request: WatchRequest) -> ApiResult<Response> {
    let selectors = Selectors::parse(&request.query, &request.rt)?;
    let timeout = match request.query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let bookmarks = request.query.flag("allowWatchBookmarks");
    let initial_events = request.query.flag("sendInitialEvents");
    let asked = request.query.str("resourceVersion").to_string();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let stream = Stream {
        rt: request.rt,
        version: request.version,
        namespace: request.namespace,
        selectors,
        format: request.format,
        tx,
    };
    // Under the lock: the starting state, the replayed history and the subscription line up
    // with no gap and no duplicate.
    let start = {
        let store = shared.lock();
        let current = store.revision();
        if asked.is_empty() || asked == "0" || initial_events {
            let existing: Vec<Arc<Value>> = store
                .list(&stream.rt.storage, stream.namespace.as_deref())
                .into_iter()
                .map(|(_, o)| o)
                .collect();
            Start::Fresh {
                existing,
                rv: current,
                rx: store.subscribe(),
            }
        } else {
            let rv: u64 = asked
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {asked}")))?;
            match store.watch_from(rv.min(current)) {
                Ok((past, rx)) => Start::Resume { past, rv, rx },
                Err(too_old) => Start::Expired(format!(
                    "too old resource version: {rv} ({})",
                    too_old.oldest
                )),
            }
        }
    };
    let interval = shared.options.bookmark_interval;
    let shutdown = shared.shutdown.clone();
    tokio::spawn(async move {
        let run = run(stream, start, initial_events, bookmarks, interval);
        tokio::select! {
            () = run => {}
            () = tokio::time::sleep(timeout) => {}
            () = shutdown.cancelled() => {}
        }
    });
    let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, std::convert::Infallible>(chunk), rx))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

enum Start {
    Fresh {
        existing: Vec<Arc<Value>>,
        rv: u64,
        rx: broadcast::Receiver<Arc<Change>>,
    },
    Resume {
        past: Vec<Arc<Change>>,
        rv: u64,
        rx: broadcast::Receiver<Arc<Change>>,
    },
    Expired(String),
}

async fn run(
    stream: Stream,
    start: Start,
    initial_events: bool,
    bookmarks: bool,
    interval: Duration,
) {
    let (mut rv, mut rx) = match start {
        Start::Expired(message) => {
            stream
                .send("ERROR", ApiError::gone(message).to_status())
                .await;
            return;
        }
        Start::Fresh { existing, rv, rx } => {
            for object in existing {
                if stream.selected(&object) && !stream.send("ADDED", stream.render(&object)).await {
                    return;
                }
            }
            if initial_events && bookmarks && !stream.bookmark(rv, true).await {
                return;
            }
            (rv, rx)
        }
        Start::Resume { past, rv, rx } => {
            let mut last = rv;
            for change in past {
                last = last.max(change.rv);
                if !stream.deliver(&change).await {
                    return;
                }
            }
            (last, rx)
        }
    };
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Ok(change) => {
                    if change.rv <= rv {
                        continue;
                    }
                    rv = change.rv;
                    if !stream.deliver(&change).await {
                        return;
                    }
                }
                // Fell behind or the server is going: end the stream; the client resumes.
                Err(_) => return,
            },
            _ = ticker.tick(), if bookmarks => {
                if !stream.bookmark(rv, false).await {
                    return;
                }
            }
            () = stream.tx.closed() => return,
        }
    }
}
