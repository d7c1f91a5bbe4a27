//! A pod's volumes, made real as files under its pod directory (`D/volumes/NAME`), and the
//! [`PathTable`] of each container built from its `volumeMounts` and termination message path:
//!
//! | volume | on this machine |
//! |--------|-----------------|
//! | `configMap`, `secret` | one file per key (or per `items` entry) |
//! | `projected` | the service-account token (a real token from the TokenRequest API, bound to the pod), `ca.crt`, `namespace`, and any ConfigMap, Secret or downward-API sources |
//! | `downwardAPI` | one file per item |
//! | `emptyDir` | an empty directory |
//! | `hostPath` | the same path under the node's host root, so a hostPath of the runtime socket is that node's containerd socket |
//!
//! The termination message path maps to `D/termination/CONTAINER`, created empty before the
//! container starts and read when it ends.

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod, ServiceAccount, Volume};
use kube::Api;
use kube::api::PostParams;

use super::env::{ConfigError, Sources, field_ref};
use super::paths::PathTable;

/// Where a pod's files go.
#[derive(Clone, Debug)]
pub(crate) struct PodDir {
    pub root: PathBuf,
}

impl PodDir {
    /// The directory of pod `namespace/name` (UID `uid`) under `pods_root`.
    pub fn of(pods_root: &Path, namespace: &str, name: &str, uid: &str) -> PodDir {
        let short: String = uid
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        PodDir {
            root: pods_root.join(format!("{namespace}_{name}_{short}")),
        }
    }

    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    pub fn termination(&self, container: &str) -> PathBuf {
        self.root.join("termination").join(container)
    }

    pub fn log(&self, container: &str) -> PathBuf {
        self.root.join("logs").join(format!("{container}.log"))
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<(), ConfigError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ConfigError(format!("creating {}: {e}", parent.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| ConfigError(format!("writing {}: {e}", path.display())))
}

/// Writes `entries` (key → bytes) into `dir`, honouring `items`.
/// Writes the keys of a ConfigMap or Secret (`(kind, name)`, as found or not) into `dir`; a
/// missing optional one leaves `dir` empty, a missing required one fails the pod's start.
fn write_source(
    dir: &Path,
    entries: Option<Vec<(String, Vec<u8>)>>,
    items: Option<&Vec<KeyToPath>>,
    (kind, name): (&str, &str),
    optional: Option<bool>,
) -> Result<(), ConfigError> {
    match entries {
        Some(entries) => write_keys(dir, entries, items, name),
        None if optional == Some(true) => std::fs::create_dir_all(dir)
            .map_err(|e| ConfigError(format!("creating {}: {e}", dir.display()))),
        None => Err(ConfigError(format!("{kind} \"{name}\" not found"))),
    }
}

fn write_keys(
    dir: &Path,
    entries: Vec<(String, Vec<u8>)>,
    items: Option<&Vec<KeyToPath>>,
    what: &str,
) -> Result<(), ConfigError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ConfigError(format!("creating {}: {e}", dir.display())))?;
    match items {
        Some(items) => {
            for item in items {
                let Some((_, bytes)) = entries.iter().find(|(k, _)| *k == item.key) else {
                    return Err(ConfigError(format!(
                        "configmap references non-existent key {} in {what}",
                        item.key
                    )));
                };
                write(&dir.join(item.path.trim_start_matches('/')), bytes)?;
            }
        }
        None => {
            for (key, bytes) in &entries {
                write(&dir.join(key), bytes)?;
            }
        }
    }
    Ok(())
}

/// The node-side context volumes need.
pub(crate) struct Mounter<'a> {
    pub client: &'a kube::Client,
    pub host_root: &'a Path,
}

impl Mounter<'_> {
    /// Requests a token for the pod's service account, bound to the pod.
    pub async fn token(
        &self,
        pod: &Pod,
        expiration: i64,
        audiences: Vec<String>,
    ) -> Result<String, ConfigError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(expiration.max(600)),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", &sa, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                ConfigError(format!(
                    "requesting a token for service account {namespace}/{sa}: {e}"
                ))
            })?;
        answer
            .status
            .map(|s| s.token)
            .ok_or_else(|| ConfigError("the token request returned no token".into()))
    }

    /// Makes every volume of `pod` real under `dir`. Returns the host path of each volume.
    pub async fn mount_all(
        &self,
        sources: &mut Sources,
        pod: &Pod,
        dir: &PodDir,
    ) -> Result<Vec<(String, PathBuf)>, ConfigError> {
        let mut mounted = Vec::new();
        for volume in pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default()
        {
            let path = self.mount(sources, pod, dir, &volume).await?;
            mounted.push((volume.name.clone(), path));
        }
        Ok(mounted)
    }

    async fn mount(
        &self,
        sources: &mut Sources,
        pod: &Pod,
        dir: &PodDir,
        volume: &Volume,
    ) -> Result<PathBuf, ConfigError> {
        let path = dir.volume(&volume.name);
        if let Some(cm) = &volume.config_map {
            let found = sources.config_map(&cm.name).await?;
            write_source(
                &path,
                found.as_ref().map(config_map_entries),
                cm.items.as_ref(),
                ("configmap", &cm.name),
                cm.optional,
            )?;
            return Ok(path);
        }
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let found = sources.secret(&name).await?;
            write_source(
                &path,
                found.as_ref().map(secret_entries),
                secret.items.as_ref(),
                ("secret", &name),
                secret.optional,
            )?;
            return Ok(path);
        }
        if let Some(projected) = &volume.projected {
            std::fs::create_dir_all(&path)
                .map_err(|e| ConfigError(format!("creating {}: {e}", path.display())))?;
            for source in projected.sources.iter().flatten() {
                if let Some(token) = &source.service_account_token {
                    let audiences = token.audience.clone().into_iter().collect();
                    let value = self
                        .token(pod, token.expiration_seconds.unwrap_or(3600), audiences)
                        .await?;
                    write(&path.join(&token.path), value.as_bytes())?;
                }
                if let Some(cm) = &source.config_map {
                    let found = sources.config_map(&cm.name).await?;
                    write_source(
                        &path,
                        found.as_ref().map(config_map_entries),
                        cm.items.as_ref(),
                        ("configmap", &cm.name),
                        cm.optional,
                    )?;
                }
                if let Some(secret) = &source.secret {
                    let found = sources.secret(&secret.name).await?;
                    write_source(
                        &path,
                        found.as_ref().map(secret_entries),
                        secret.items.as_ref(),
                        ("secret", &secret.name),
                        secret.optional,
                    )?;
                }
                if let Some(downward) = &source.downward_api {
                    for item in downward.items.iter().flatten() {
                        if let Some(field) = &item.field_ref {
                            let value = field_ref(pod, &field.field_path).unwrap_or_default();
                            write(&path.join(&item.path), value.as_bytes())?;
                        }
                    }
                }
            }
            return Ok(path);
        }
        if let Some(downward) = &volume.downward_api {
            std::fs::create_dir_all(&path)
                .map_err(|e| ConfigError(format!("creating {}: {e}", path.display())))?;
            for item in downward.items.iter().flatten() {
                if let Some(field) = &item.field_ref {
                    let value = field_ref(pod, &field.field_path).unwrap_or_default();
                    write(&path.join(&item.path), value.as_bytes())?;
                }
            }
            return Ok(path);
        }
        if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&path)
                .map_err(|e| ConfigError(format!("creating {}: {e}", path.display())))?;
            return Ok(path);
        }
        if let Some(host) = &volume.host_path {
            let on_node = self.host_root.join(host.path.trim_start_matches('/'));
            match host.type_.as_deref() {
                Some("DirectoryOrCreate") => std::fs::create_dir_all(&on_node)
                    .map_err(|e| ConfigError(format!("creating {}: {e}", on_node.display())))?,
                Some("FileOrCreate") if !on_node.exists() => write(&on_node, b"")?,
                Some("Directory") if !on_node.is_dir() => {
                    return Err(ConfigError(format!(
                        "hostPath type check failed: {} is not a directory",
                        host.path
                    )));
                }
                Some("Socket") if !on_node.exists() => {
                    return Err(ConfigError(format!(
                        "hostPath type check failed: {} is not a socket file",
                        host.path
                    )));
                }
                _ => {}
            }
            return Ok(on_node);
        }
        Err(ConfigError(format!(
            "volume {} has a type this test cluster does not support",
            volume.name
        )))
    }
}

fn config_map_entries(cm: &k8s_openapi::api::core::v1::ConfigMap) -> Vec<(String, Vec<u8>)> {
    let mut entries: Vec<(String, Vec<u8>)> = cm
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    entries.extend(
        cm.binary_data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    entries
}

fn secret_entries(secret: &k8s_openapi::api::core::v1::Secret) -> Vec<(String, Vec<u8>)> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The path table of `container`: its mounts (with `subPath`) and its termination message
/// path. `volumes` are the host paths [`Mounter::mount_all`] returned.
pub(crate) fn path_table(
    container: &Container,
    volumes: &[(String, PathBuf)],
    dir: &PodDir,
) -> PathTable {
    let mut table = PathTable::default();
    for mount in container.volume_mounts.iter().flatten() {
        let Some((_, host)) = volumes.iter().find(|(name, _)| *name == mount.name) else {
            continue;
        };
        let host = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => host.join(sub.trim_start_matches('/')),
            None => host.clone(),
        };
        table.insert(&mount.mount_path, &host.to_string_lossy());
    }
    let termination = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    table.insert(
        &termination,
        &dir.termination(&container.name).to_string_lossy(),
    );
    table
}
