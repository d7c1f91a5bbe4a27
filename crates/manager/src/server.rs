//! `/metrics`, `/healthz` and `/readyz`, on the ports Eraser's manager uses (8889 for
//! metrics, 8081 for health), and the cluster's copy of the vulnerability database
//! (`/vulnerability-db/<sha256>`, see [`crate::vulndb`]) for the workers.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::vulndb::{ROUTE_PREFIX, Shelf};

#[derive(Clone)]
struct Shared {
    metrics: Metrics,
    readiness: Readiness,
    shelf: Shelf,
}

/// What the endpoints serve.
#[derive(Clone, Debug)]
pub struct Served {
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub readiness: Readiness,
    /// The vulnerability database copy.
    pub shelf: Shelf,
}

async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        shared.metrics.encode(),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(shared): State<Shared>) -> impl IntoResponse {
    match shared.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// The database copy with that digest, streamed; 404 for any other digest (a worker with an
/// older job asks for a copy no longer kept, and should say so rather than get another).
async fn database(
    State(shared): State<Shared>,
    Path(sha256): Path<String>,
) -> axum::response::Response {
    let Some(copy) = shared.shelf.get(&sha256) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no vulnerability database {sha256} is kept here\n"),
        )
            .into_response();
    };
    match tokio::fs::File::open(&copy.path).await {
        Ok(file) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_LENGTH, copy.size.to_string()),
                (header::ETAG, format!("\"{}\"", copy.sha256)),
            ],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(path = %copy.path.display(), %error, "the kept vulnerability database is unreadable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the kept copy is unreadable\n",
            )
                .into_response()
        }
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(&format!("{ROUTE_PREFIX}/{{sha256}}"), get(database))
        .with_state(shared)
}

/// Binds `address` (port 0 picks a free port).
pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind {
            address: address.to_string(),
            source,
        })
}

/// Serves every endpoint on `listener` until cancelled.
pub async fn serve(listener: TcpListener, served: Served, cancel: CancellationToken) {
    let app = router(Shared {
        metrics: served.metrics,
        readiness: served.readiness,
        shelf: served.shelf,
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "the metrics and health server stopped");
    }
}
