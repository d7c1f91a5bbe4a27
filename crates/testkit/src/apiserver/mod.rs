//! A Kubernetes API server stand-in over real HTTPS on loopback, faithful to the API
//! conventions a controller depends on, so that an unmodified `kube::Client` (and kubectl)
//! can drive the cleaner's manager and workers against it.
//!
//! ```text
//!  HTTP (axum) ─> http: authenticate (auth) ─> impersonate ─> authorise (rbac, 403 → audit)
//!     ├─ non-resource: discovery (/api, /apis, /version)
//!     └─ resource (request, resources registry)
//!          ├─ get / list (read) ─ selectors, output (version, Table, metadata)
//!          ├─ watch ─ store history + broadcast
//!          ├─ create / update / patch (patch, apply) / status ─> write ─> admission, schema
//!          ├─ delete / deletecollection (delete)
//!          └─ token requests and access reviews (reviews)
//!  store: one revision counter, bounded history   controllers: GC, namespaces, CRD cleanup
//! ```
//!
//! Everything is held in memory; nothing is persisted. Objects are JSON values: the server is
//! generic over types, and a CRD created through the API (or installed at start) is served
//! like a built-in. See each module for the conventions it implements and what it leaves out.

mod admission;
mod apply;
mod auth;
mod bootstrap;
mod controllers;
mod delete;
mod discovery;
mod error;
mod events;
mod http;
mod meta;
mod output;
mod patch;
mod protobuf;
mod rbac;
mod read;
mod request;
mod resources;
mod reviews;
mod schema;
mod selectors;
mod store;
mod tls;
mod watch;
mod write;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use admission::TOKEN_MOUNT_PATH;
pub use auth::{AUTHENTICATED, MASTERS, NODES, UserInfo, service_account_username};
pub use discovery::{MAJOR, MINOR};
pub use rbac::Forbidden;

use auth::{Credential, Tokens};
use store::Store;

/// How to start an [`ApiServer`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// CustomResourceDefinitions to install before serving (JSON values of
    /// `apiextensions.k8s.io/v1` objects).
    pub crds: Vec<Value>,
    /// How many changes the watch history keeps (older resource versions get 410 Gone).
    pub history_limit: usize,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// The loopback port; 0 picks a free one.
    pub port: u16,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            crds: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(5),
            port: 0,
        }
    }
}

/// One request as the audit log records it.
#[derive(Clone, Debug, Serialize)]
pub struct RequestRecord {
    /// Who asked (after impersonation).
    pub user: String,
    /// The HTTP method.
    pub method: String,
    /// The path and query.
    pub uri: String,
    /// The response status code.
    pub code: u16,
}

/// Reads a container's log: `(namespace, pod, pod uid, container)` → text.
pub type LogReader = Arc<dyn Fn(&str, &str, &str, &str) -> Option<String> + Send + Sync>;

/// How many requests the audit log keeps.
const REQUEST_LOG_LIMIT: usize = 10_000;

/// State shared by the request handlers and the controllers.
pub(crate) struct Shared {
    store: Mutex<Store>,
    tokens: Tokens,
    forbidden: Mutex<Vec<Forbidden>>,
    requests: Mutex<std::collections::VecDeque<RequestRecord>>,
    options: ServerOptions,
    shutdown: CancellationToken,
    address: SocketAddr,
    ca_pem: String,
    ca_der: Vec<u8>,
    log_reader: Mutex<Option<LogReader>>,
}

impl Shared {
    /// The store, locked. Never hold it across an `.await`.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record_forbidden(&self, entry: Forbidden) {
        tracing::debug!(user = %entry.user, message = %entry.message, "forbidden");
        self.forbidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    fn record_request(&self, record: RequestRecord) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.len() >= REQUEST_LOG_LIMIT {
            requests.pop_front();
        }
        requests.push_back(record);
    }
}

/// A JSON response.
pub(crate) fn json_response(code: StatusCode, value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A running API server. Dropping it stops serving; [`ApiServer::shutdown`] also waits.
pub struct ApiServer {
    shared: Arc<Shared>,
    admin_token: String,
    serve: Option<JoinHandle<()>>,
    controllers: Option<JoinHandle<()>>,
}

/// The admin identity's user name.
pub const ADMIN_USER: &str = "kubernetes-admin";

impl ApiServer {
    /// Binds `127.0.0.1`, creates the system namespaces, default RBAC and the given CRDs, and
    /// starts serving HTTPS (with a certificate from a CA made for this server).
    pub async fn start(options: ServerOptions) -> anyhow::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", options.port))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let certificates = tls::certificates()?;
        let mut store = Store::new(options.history_limit);
        store.root_ca = certificates.ca_pem.clone();
        bootstrap::bootstrap(&mut store)
            .map_err(|e| anyhow::anyhow!("bootstrapping the store: {}", e.message))?;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            tokens: Tokens::default(),
            forbidden: Mutex::new(Vec::new()),
            requests: Mutex::new(std::collections::VecDeque::new()),
            options: options.clone(),
            shutdown: CancellationToken::new(),
            address,
            ca_pem: certificates.ca_pem.clone(),
            ca_der: certificates.ca_der.clone(),
            log_reader: Mutex::new(None),
        });
        let admin_token = meta::new_token();
        shared.tokens.insert(
            admin_token.clone(),
            Credential::User(UserInfo::new(ADMIN_USER, &[MASTERS])),
        );
        let mut server = ApiServer {
            shared: shared.clone(),
            admin_token,
            serve: None,
            controllers: None,
        };
        server.install_crds(&options.crds)?;
        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let cancelled = shared.shutdown.clone();
        let listener = tls::TlsListener::new(listener, &certificates, cancelled.clone())?;
        let serve = tokio::spawn(async move {
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(cancelled.cancelled_owned())
                .await;
            if let Err(e) = result {
                tracing::warn!("API server stopped: {e}");
            }
        });
        let controllers = tokio::spawn(controllers::run(shared.clone()));
        tracing::debug!(%address, "API server ready");
        server.serve = Some(serve);
        server.controllers = Some(controllers);
        Ok(server)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.shared.address)
    }

    /// The CA that signed the server's certificate (PEM), for kubeconfigs and `ca.crt` files.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// The admin's bearer token (user [`ADMIN_USER`], group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Issues a bearer token for `user` (its groups should include
    /// [`AUTHENTICATED`]; [`UserInfo::new`] adds it).
    pub fn issue_token(&self, user: UserInfo) -> String {
        let token = meta::new_token();
        self.shared
            .tokens
            .insert(token.clone(), Credential::User(user));
        token
    }

    /// Serves `pods/NAME/log` (`kubectl logs`) from `reader`; without one, logs are
    /// unavailable.
    pub fn set_log_reader(&self, reader: LogReader) {
        *self
            .shared
            .log_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reader);
    }

    /// Every request denied so far, oldest first.
    pub fn forbidden(&self) -> Vec<Forbidden> {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the recorded denials.
    pub fn clear_forbidden(&self) {
        self.shared
            .forbidden
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The last requests served (at most 10 000), oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Drops the watch history, as an etcd compaction: watches and continue tokens from
    /// before now get 410 Gone.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// The latest resource version.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().revision()
    }

    /// Creates (or, if present, replaces) CustomResourceDefinitions; their resources are
    /// served at once.
    pub fn install_crds(&self, crds: &[Value]) -> anyhow::Result<()> {
        let mut store = self.shared.lock();
        for crd in crds {
            let name = meta::name(crd).to_string();
            let existing = store.get(
                &resources::ResourceId::new("apiextensions.k8s.io", "customresourcedefinitions"),
                &(String::new(), name.clone()),
            );
            let result = match existing {
                None => bootstrap::create_system(
                    &mut store,
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "",
                    crd.clone(),
                ),
                Some(old) => {
                    let rt = store
                        .registry
                        .find("apiextensions.k8s.io", "v1", "customresourcedefinitions")
                        .context("the CRD type is always served")?;
                    let user = UserInfo::new("system:apiserver", &[MASTERS]);
                    let op = write::Op {
                        rt: &rt,
                        version: "v1",
                        user: &user,
                        manager: "kube-apiserver",
                        dry_run: false,
                    };
                    let mut body = crd.clone();
                    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        metadata.remove("resourceVersion");
                    }
                    write::update(&mut store, &op, &old, body, apply::Scope::Main, None).map(|_| ())
                }
            };
            result.map_err(|e| anyhow::anyhow!("installing CRD {name}: {}", e.message))?;
        }
        Ok(())
    }

    /// Installs the CRDs in a YAML or JSON file, or in every `*.yaml`, `*.yml` and `*.json`
    /// file of a directory (multi-document YAML allowed; non-CRD documents are skipped).
    /// Returns how many were installed.
    pub fn install_crds_from(&self, path: &Path) -> anyhow::Result<usize> {
        let crds = read_crds(path)?;
        self.install_crds(&crds)?;
        Ok(crds.len())
    }

    /// A kubeconfig (YAML) for this server with `token`.
    pub fn kubeconfig(&self, token: &str, user: &str) -> String {
        kubeconfig_yaml(&self.url(), &self.shared.ca_pem, token, user)
    }

    /// A kube client configuration for this server (trusting its CA) with `token`; change it
    /// (e.g. `auth_info.impersonate`) before building a client.
    pub fn config_with_token(&self, token: &str) -> anyhow::Result<kube::Config> {
        let uri: axum::http::Uri = self.url().parse().context("parsing the server URL")?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(vec![self.shared.ca_der.clone()]);
        config.auth_info.token = Some(token.to_string().into());
        config.default_namespace = "default".into();
        config.read_timeout = Some(Duration::from_secs(300));
        Ok(config)
    }

    /// A client authenticated with `token`.
    pub fn client_with_token(&self, token: &str) -> anyhow::Result<kube::Client> {
        kube::Client::try_from(self.config_with_token(token)?).context("building a kube client")
    }

    /// An admin client.
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_with_token(&self.admin_token)
    }

    /// Issues a token for service account `namespace/name` (which must exist) through the
    /// TokenRequest API, as a pod would get one.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<String> {
        let sa_api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
            kube::Api::namespaced(self.client()?, namespace);
        let request = k8s_openapi::api::authentication::v1::TokenRequest {
            spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let response: k8s_openapi::api::authentication::v1::TokenRequest = sa_api
            .create_subresource("token", name, &kube::api::PostParams::default(), &request)
            .await
            .with_context(|| {
                format!("requesting a token for service account {namespace}/{name}")
            })?;
        response
            .status
            .map(|s| s.token)
            .context("the TokenRequest answer has no token")
    }

    /// A client acting as service account `namespace/name`.
    pub async fn client_for_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        let token = self.service_account_token(namespace, name).await?;
        self.client_with_token(&token)
    }

    /// Stops serving (open watches end) and the controllers.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        for handle in [self.serve.take(), self.controllers.take()]
            .into_iter()
            .flatten()
        {
            let _ = handle.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// A kubeconfig document for `server` (trusting `ca_pem`) with a bearer `token`.
pub fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str, user: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "imagecleaner-test",
                      "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "imagecleaner-test",
                      "context": {"cluster": "imagecleaner-test", "user": user, "namespace": "default"}}],
        "current-context": "imagecleaner-test",
        "preferences": {},
    });
    serde_yaml::to_string(&config).unwrap_or_default()
}

/// The CRDs in a file or directory (see [`ApiServer::install_crds_from`]).
pub fn read_crds(path: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let file = entry?.path();
            let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
            if matches!(ext, "yaml" | "yml" | "json") {
                files.push(file);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut crds = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(document)
                .with_context(|| format!("parsing {}", file.display()))?;
            if value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition") {
                crds.push(value);
            }
        }
    }
    Ok(crds)
}

use serde::Deserialize as _;
