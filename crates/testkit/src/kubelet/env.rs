//! A container's environment as kubelet builds it: `envFrom` ConfigMaps and Secrets first, then
//! `env` (later entries win), with `valueFrom` resolved (`fieldRef`, `configMapKeyRef`,
//! `secretKeyRef`, `resourceFieldRef`) and `$(VAR)` references expanded against the
//! variables defined before them (`$$` escapes). A missing non-optional source is a
//! `CreateContainerConfigError`, as on a real node.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::Api;

/// A config source that is missing.
#[derive(Debug)]
pub struct ConfigError(pub String);

/// Fetches and caches the ConfigMaps and Secrets a pod refers to.
pub(crate) struct Sources {
    client: kube::Client,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl Sources {
    pub fn new(client: kube::Client, namespace: &str) -> Sources {
        Sources {
            client,
            namespace: namespace.to_string(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }

    /// The ConfigMap `name`, `None` if it does not exist.
    pub async fn config_map(&mut self, name: &str) -> Result<Option<ConfigMap>, ConfigError> {
        if let Some(cached) = self.config_maps.get(name) {
            return Ok(cached.clone());
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading configmap {name}: {e}")))?;
        self.config_maps.insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// The Secret `name`, `None` if it does not exist.
    pub async fn secret(&mut self, name: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(cached) = self.secrets.get(name) {
            return Ok(cached.clone());
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api
            .get_opt(name)
            .await
            .map_err(|e| ConfigError(format!("reading secret {name}: {e}")))?;
        self.secrets.insert(name.to_string(), found.clone());
        Ok(found)
    }

    /// The string value of `key` in ConfigMap `name` (data or binaryData).
    async fn config_map_key(
        &mut self,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
        Ok(self.config_map(name).await?.and_then(|cm| {
            cm.data
                .as_ref()
                .and_then(|d| d.get(key).cloned())
                .or_else(|| {
                    cm.binary_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                })
        }))
    }

    async fn secret_key(&mut self, name: &str, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.secret(name).await?.and_then(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        }))
    }
}

/// The value of a downward-API `fieldPath` for `pod`.
pub fn field_ref(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_entry = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")
            .and_then(|k| k.strip_suffix("']"))?;
        map.and_then(|m| m.get(key).cloned())
            .or(Some(String::new()))
    };
    let format_map = |map: Option<&BTreeMap<String, String>>| {
        map.map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "metadata.labels" => Some(format_map(meta.labels.as_ref())),
        "metadata.annotations" => Some(format_map(meta.annotations.as_ref())),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.podIP" => Some(
            status
                .and_then(|s| s.host_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into()),
        ),
        "status.hostIPs" | "status.podIPs" => Some("127.0.0.1".into()),
        _ => map_entry(meta.labels.as_ref(), "metadata.labels")
            .or_else(|| map_entry(meta.annotations.as_ref(), "metadata.annotations")),
    }
}

/// Expands `$(NAME)` from `vars`; unknown references stay as written, `$$` is a `$`.
pub fn expand(value: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
        {
            let name = &inner[..close];
            match vars.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(vars: &mut Vec<(String, String)>, name: &str, value: String) {
    vars.retain(|(k, _)| k != name);
    vars.push((name.to_string(), value));
}

/// The environment the pod spec gives `container`, in definition order.
pub(crate) async fn container_env(
    sources: &mut Sources,
    pod: &Pod,
    container: &Container,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm_ref) = &from.config_map_ref {
            match sources.config_map(&cm_ref.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.unwrap_or_default() {
                        set(&mut vars, &format!("{prefix}{k}"), v);
                    }
                }
                None if cm_ref.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!(
                        "configmap \"{}\" not found",
                        cm_ref.name
                    )));
                }
            }
        }
        if let Some(secret_ref) = &from.secret_ref {
            match sources.secret(&secret_ref.name).await? {
                Some(secret) => {
                    for (k, v) in secret.data.unwrap_or_default() {
                        set(
                            &mut vars,
                            &format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if secret_ref.optional == Some(true) => {}
                None => {
                    return Err(ConfigError(format!(
                        "secret \"{}\" not found",
                        secret_ref.name
                    )));
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, &vars),
            (None, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_ref(pod, &field.field_path).unwrap_or_default()
                } else if let Some(key) = &from.config_map_key_ref {
                    match sources.config_map_key(&key.name, &key.key).await? {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                key.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                key.name
                            )));
                        }
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    match sources.secret_key(&key.name, &key.key).await? {
                        Some(v) => v,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {}/{}",
                                key.key,
                                pod.metadata.namespace.as_deref().unwrap_or(""),
                                key.name
                            )));
                        }
                    }
                } else if from.resource_field_ref.is_some() {
                    // No resource accounting here: report the node's allocatable, as kubelet
                    // does for a container without limits.
                    "0".to_string()
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        set(&mut vars, &var.name, value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_expand_like_kubelet() {
        let vars = vec![
            ("NODE".to_string(), "n1".to_string()),
            ("DIR".to_string(), "/x".to_string()),
        ];
        assert_eq!(expand("--node=$(NODE)", &vars), "--node=n1");
        assert_eq!(expand("$(DIR)/a:$(MISSING)", &vars), "/x/a:$(MISSING)");
        assert_eq!(expand("cost $$(NODE) $5", &vars), "cost $(NODE) $5");
    }

    #[test]
    fn field_references_read_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w", "namespace": "kube-system", "uid": "u", "labels": {"app": "eraser"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": []}
        }))
        .unwrap();
        assert_eq!(field_ref(&pod, "spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(
            field_ref(&pod, "metadata.namespace").as_deref(),
            Some("kube-system")
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels['app']").as_deref(),
            Some("eraser")
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels").as_deref(),
            Some("app=\"eraser\"")
        );
        assert_eq!(
            field_ref(&pod, "spec.serviceAccountName").as_deref(),
            Some("sa")
        );
    }
}
