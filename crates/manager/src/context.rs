//! What every controller of one leadership term shares: the client, the settings, metrics,
//! Events, and a deadline on every API call.

use std::future::Future;
use std::sync::Arc;

use jiff::Timestamp;
use kube::Client;

use crate::error::{Error, Result};
use crate::events::Events;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::vulndb::Keeper;

/// Shared by the controllers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Process settings.
    pub settings: Arc<Settings>,
    /// Metrics.
    pub metrics: Metrics,
    /// Events.
    pub events: Events,
    /// When this manager process started.
    pub started: Timestamp,
    /// The cluster's copy of the vulnerability database.
    pub database: Arc<Keeper>,
    /// Where workers fetch it from this manager (`http://IP:port`), when known.
    pub database_url: Option<String>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Context {
    /// A context for `client`; `database` is the keeper the HTTP server serves from, and
    /// `database_url` where workers reach that server.
    pub fn new(
        client: Client,
        settings: Arc<Settings>,
        metrics: Metrics,
        started: Timestamp,
        database: Arc<Keeper>,
        database_url: Option<String>,
    ) -> Context {
        let events = Events::new(
            client.clone(),
            &settings.namespace,
            &settings.identity,
            settings.api_timeout,
        );
        Context {
            client,
            settings,
            metrics,
            events,
            started,
            database,
            database_url,
        }
    }

    /// Runs one API call under the API timeout; `action` names it in errors.
    pub async fn call<T, F>(&self, action: impl FnOnce() -> String, call: F) -> Result<T>
    where
        F: Future<Output = Result<T, kube::Error>>,
    {
        timed(self.settings.api_timeout, action, call).await
    }
}

/// Runs `call` with a deadline.
pub async fn timed<T, F>(
    timeout: std::time::Duration,
    action: impl FnOnce() -> String,
    call: F,
) -> Result<T>
where
    F: Future<Output = Result<T, kube::Error>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(Error::Kube {
            action: action(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            action: action(),
            timeout,
        }),
    }
}
