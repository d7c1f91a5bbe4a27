//! The container runtime the workers talk to: `manager.runtime`.
//!
//! Eraser's rules (`api/v1alpha3/runtime_spec.go`): the name is one of `containerd`,
//! `dockershim`, `crio`; an empty address means the default socket of that name; nothing at
//! all means containerd; an address without a name is an error. The address must be a unix
//! socket URL here: the worker mounts the socket's path from the host, and Eraser's dialer
//! refuses `tcp` anyway (after accepting it in the config, which is how a job hangs).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::constants::{
    CONTAINERD_DEFAULT_ADDRESS, CRIO_DEFAULT_ADDRESS, DOCKERSHIM_DEFAULT_ADDRESS,
};

/// Runtime names, as Eraser spells them.
pub const RUNTIME_NAMES: &[&str] = &["containerd", "dockershim", "crio"];

/// Which runtime the nodes run (one for the whole cluster, as in Eraser).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RuntimeName {
    /// containerd (also k3s, microk8s, with their own socket address).
    #[default]
    Containerd,
    /// dockershim, or cri-dockerd with its own socket address.
    Dockershim,
    /// CRI-O.
    Crio,
}

impl RuntimeName {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeName::Containerd => "containerd",
            RuntimeName::Dockershim => "dockershim",
            RuntimeName::Crio => "crio",
        }
    }

    /// The runtime's usual CRI socket.
    pub fn default_address(self) -> RuntimeAddress {
        let url = match self {
            RuntimeName::Containerd => CONTAINERD_DEFAULT_ADDRESS,
            RuntimeName::Dockershim => DOCKERSHIM_DEFAULT_ADDRESS,
            RuntimeName::Crio => CRIO_DEFAULT_ADDRESS,
        };
        let path = url.trim_start_matches("unix://");
        RuntimeAddress {
            path: path.to_owned(),
        }
    }
}

impl fmt::Display for RuntimeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeName {
    type Err = ();

    fn from_str(text: &str) -> Result<RuntimeName, ()> {
        match text {
            "containerd" => Ok(RuntimeName::Containerd),
            "dockershim" => Ok(RuntimeName::Dockershim),
            "crio" => Ok(RuntimeName::Crio),
            _ => Err(()),
        }
    }
}

impl Serialize for RuntimeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a runtime address is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `scheme://`.
    #[error("{address:?} is not a URL; write the socket as unix:///path/to/socket")]
    NotAUrl {
        /// The address as written.
        address: String,
    },
    /// `tcp://`: Eraser accepts it in the config and then cannot dial it.
    #[error(
        "{address:?}: tcp addresses are not supported: each worker mounts the runtime's socket \
         from its node, so the address must be a unix socket (unix:///path/to/socket)"
    )]
    Tcp {
        /// The address as written.
        address: String,
    },
    /// Any other scheme.
    #[error("{address:?}: scheme {scheme:?} is not one of unix")]
    Scheme {
        /// The address as written.
        address: String,
        /// The scheme.
        scheme: String,
    },
    /// `unix://host/path` or `unix://relative`: only the path is mounted, so it must be absolute.
    #[error(
        "{address:?}: the socket path must be absolute, as in unix:///run/containerd/containerd.sock"
    )]
    NotAbsolute {
        /// The address as written.
        address: String,
    },
}

/// A runtime socket on the node, from a `unix://` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuntimeAddress {
    path: String,
}

impl RuntimeAddress {
    /// The socket's path on the node: what the worker pod mounts (`hostPath`).
    pub fn socket_path(&self) -> &str {
        &self.path
    }

    /// The address as a URL, `unix:///...`.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path)
    }
}

impl fmt::Display for RuntimeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix://{}", self.path)
    }
}

impl FromStr for RuntimeAddress {
    type Err = AddressError;

    fn from_str(address: &str) -> Result<RuntimeAddress, AddressError> {
        let owned = || address.to_owned();
        let Some((scheme, rest)) = address.split_once("://") else {
            return Err(AddressError::NotAUrl { address: owned() });
        };
        match scheme {
            "unix" => {}
            "tcp" => return Err(AddressError::Tcp { address: owned() }),
            _ => {
                return Err(AddressError::Scheme {
                    address: owned(),
                    scheme: scheme.to_owned(),
                });
            }
        }
        if !rest.starts_with('/') || rest.len() < 2 || rest.contains(['?', '#']) {
            return Err(AddressError::NotAbsolute { address: owned() });
        }
        Ok(RuntimeAddress {
            path: rest.to_owned(),
        })
    }
}

impl Serialize for RuntimeAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `manager.runtime`: the runtime and its socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeSpec {
    /// Which runtime.
    pub name: RuntimeName,
    /// Its CRI socket.
    pub address: RuntimeAddress,
}

impl Default for RuntimeSpec {
    /// containerd at its usual socket, Eraser's default.
    fn default() -> RuntimeSpec {
        RuntimeSpec::for_name(RuntimeName::Containerd)
    }
}

impl RuntimeSpec {
    /// A runtime at its usual socket (what a v1alpha1/v1alpha2 runtime string means).
    pub fn for_name(name: RuntimeName) -> RuntimeSpec {
        RuntimeSpec {
            name,
            address: name.default_address(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let ok = [
            (
                "unix:///run/containerd/containerd.sock",
                "/run/containerd/containerd.sock",
            ),
            (
                "unix:///run/k3s/containerd/containerd.sock",
                "/run/k3s/containerd/containerd.sock",
            ),
            (
                "unix:///fake/socket/address.sock",
                "/fake/socket/address.sock",
            ),
        ];
        for (text, path) in ok {
            let address: RuntimeAddress = text.parse().expect(text);
            assert_eq!(address.socket_path(), path);
            assert_eq!(address.to_string(), text);
        }
        type Check = fn(&AddressError) -> bool;
        let refused: &[(&str, Check)] = &[
            ("/run/containerd/containerd.sock", |e| {
                matches!(e, AddressError::NotAUrl { .. })
            }),
            ("tcp://10.0.0.1:2375", |e| {
                matches!(e, AddressError::Tcp { .. })
            }),
            ("http://localhost/x", |e| {
                matches!(e, AddressError::Scheme { .. })
            }),
            ("unix://run/containerd.sock", |e| {
                matches!(e, AddressError::NotAbsolute { .. })
            }),
            ("unix://", |e| matches!(e, AddressError::NotAbsolute { .. })),
            ("unix:///", |e| {
                matches!(e, AddressError::NotAbsolute { .. })
            }),
        ];
        for (text, expected) in refused {
            let error = text.parse::<RuntimeAddress>().expect_err(text);
            assert!(expected(&error), "{text}: {error:?}");
        }
    }

    #[test]
    fn default_sockets_match_eraser() {
        for (name, url) in [
            (
                RuntimeName::Containerd,
                "unix:///run/containerd/containerd.sock",
            ),
            (RuntimeName::Dockershim, "unix:///run/dockershim.sock"),
            (RuntimeName::Crio, "unix:///run/crio/crio.sock"),
        ] {
            assert_eq!(name.default_address().url(), url);
            assert_eq!(name.as_str().parse::<RuntimeName>(), Ok(name));
        }
    }
}
