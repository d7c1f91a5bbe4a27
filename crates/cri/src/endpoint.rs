//! Runtime endpoints: where the CRI socket is, and how to open a channel to it.
//!
//! Endpoints are given as `unix:///path` URLs, as kubelet's `--container-runtime-endpoint`
//! and Eraser's `manager.runtime.address` take them. A bare absolute path is accepted too,
//! because operators paste socket paths; anything else (tcp, http, npipe) is refused with a
//! message that names the value, since a node-local cleaner must talk to the local runtime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Uri};

use crate::Error;

/// containerd's default CRI socket.
pub const CONTAINERD: &str = "unix:///run/containerd/containerd.sock";
/// CRI-O's default socket.
pub const CRIO: &str = "unix:///run/crio/crio.sock";
/// cri-dockerd's default socket.
pub const CRI_DOCKERD: &str = "unix:///run/cri-dockerd.sock";
/// k3s's embedded containerd.
pub const K3S: &str = "unix:///run/k3s/containerd/containerd.sock";
/// MicroK8s's containerd.
pub const MICROK8S: &str = "unix:///var/snap/microk8s/common/run/containerd.sock";

/// How long connecting (socket plus HTTP/2 handshake) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any single runtime call may take.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime endpoint: a unix socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    path: PathBuf,
}

impl Endpoint {
    /// The endpoint of a socket path.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Endpoint { path: path.into() }
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The well-known endpoint for a runtime name as Eraser's config spells it
    /// (`containerd`, `crio`, `dockershim`/`cri-dockerd`).
    pub fn default_for(runtime: &str) -> Option<Endpoint> {
        let url = match runtime {
            "containerd" => CONTAINERD,
            "crio" | "cri-o" => CRIO,
            "dockershim" | "docker" | "cri-dockerd" => CRI_DOCKERD,
            _ => return None,
        };
        url.parse().ok()
    }

    /// Opens a gRPC channel over the socket. Fails within `timeout` if the socket is
    /// missing, refuses, or accepts but never completes the HTTP/2 handshake.
    pub async fn connect(&self, timeout: Duration) -> Result<Channel, Error> {
        let path = self.path.clone();
        // The URI is required by tonic but unused: the connector dials the socket.
        let endpoint = tonic::transport::Endpoint::from_static("http://localhost")
            .connect_timeout(timeout)
            .timeout(DEFAULT_CALL_TIMEOUT)
            .keep_alive_while_idle(false);
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(source)) => Err(Error::Connect {
                endpoint: self.to_string(),
                source: Box::new(source),
            }),
            Err(_) => Err(Error::Timeout {
                endpoint: self.to_string(),
                call: "connect",
                after: timeout,
            }),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix://{}", self.path.display())
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &'static str| Error::InvalidEndpoint {
            endpoint: s.to_string(),
            why,
        };
        let trimmed = s.trim();
        let path = if let Some(rest) = trimmed.strip_prefix("unix://") {
            rest
        } else if trimmed.starts_with('/') {
            trimmed
        } else if trimmed.contains("://") {
            return Err(invalid(
                "only unix sockets are supported (unix:///path/to/runtime.sock)",
            ));
        } else {
            return Err(invalid(
                "expected unix:///path/to/runtime.sock or an absolute socket path",
            ));
        };
        if !path.starts_with('/') {
            return Err(invalid("the socket path must be absolute (unix:///path)"));
        }
        if path.len() <= 1 {
            return Err(invalid("the socket path is empty"));
        }
        Ok(Endpoint::from_path(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_urls_and_paths() {
        let e: Endpoint = "unix:///run/containerd/containerd.sock".parse().unwrap();
        assert_eq!(e.path(), Path::new("/run/containerd/containerd.sock"));
        assert_eq!(e.to_string(), "unix:///run/containerd/containerd.sock");
        let e: Endpoint = "/var/run/crio/crio.sock".parse().unwrap();
        assert_eq!(e.path(), Path::new("/var/run/crio/crio.sock"));
    }

    #[test]
    fn refuses_other_schemes_naming_the_value() {
        for bad in [
            "tcp://127.0.0.1:1234",
            "http://x",
            "containerd.sock",
            "unix://relative",
            "unix://",
            "",
        ] {
            let err = bad.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn knows_the_default_sockets() {
        assert_eq!(
            Endpoint::default_for("crio").unwrap().to_string(),
            "unix:///run/crio/crio.sock"
        );
        assert_eq!(
            Endpoint::default_for("containerd").unwrap().to_string(),
            CONTAINERD
        );
        assert!(Endpoint::default_for("rkt").is_none());
    }
}
