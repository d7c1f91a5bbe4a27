//! The images that live pods bound to this node need (criterion 2 of a scheduled run).

use std::time::Duration;

use image_cleaner_core::References;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::Error;

/// Pods per LIST page.
const PAGE: u32 = 500;

/// Whether a pod may still run containers: Pending, Running, Unknown, or no phase yet.
fn is_live(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Every image string of the live pods: init, regular and ephemeral containers as the spec
/// names them, and the images and image IDs their statuses report.
pub fn images_of_pods(pods: &[Pod]) -> Vec<String> {
    let mut images = Vec::new();
    for pod in pods.iter().filter(|pod| is_live(pod)) {
        if let Some(spec) = &pod.spec {
            images.extend(
                spec.init_containers
                    .iter()
                    .flatten()
                    .filter_map(|c| c.image.clone()),
            );
            images.extend(spec.containers.iter().filter_map(|c| c.image.clone()));
            images.extend(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .filter_map(|c| c.image.clone()),
            );
        }
        if let Some(status) = &pod.status {
            let statuses = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten())
                .chain(status.ephemeral_container_statuses.iter().flatten());
            for container in statuses {
                images.push(container.image.clone());
                images.push(container.image_id.clone());
            }
        }
    }
    images.retain(|image| !image.trim().is_empty());
    images.sort();
    images.dedup();
    images
}

/// The references of the live pods on `node`, read from the API server now.
pub async fn references(
    client: &kube::Client,
    node: &str,
    timeout: Duration,
) -> Result<References, Error> {
    let api: Api<Pod> = Api::all(client.clone());
    let mut params = ListParams::default()
        .fields(&format!("spec.nodeName={node}"))
        .limit(PAGE);
    let mut pods = Vec::new();
    loop {
        let page = match tokio::time::timeout(timeout, api.list(&params)).await {
            Ok(Ok(page)) => page,
            Ok(Err(source)) => {
                return Err(Error::Pods {
                    node: node.to_owned(),
                    source,
                });
            }
            Err(_) => {
                return Err(Error::PodsTimeout {
                    node: node.to_owned(),
                    timeout,
                });
            }
        };
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        pods.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    let images = images_of_pods(&pods);
    tracing::info!(
        pods = pods.len(),
        images = images.len(),
        "read the pods on the node"
    );
    Ok(References::new(images))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerStatus, EphemeralContainer, PodSpec, PodStatus,
    };

    use super::*;

    fn pod(phase: Option<&str>, init: &[&str], main: &[&str], ephemeral: &[&str]) -> Pod {
        let container = |image: &&str| Container {
            name: "c".into(),
            image: Some(image.to_string()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                init_containers: Some(init.iter().map(container).collect()),
                containers: main.iter().map(container).collect(),
                ephemeral_containers: Some(
                    ephemeral
                        .iter()
                        .map(|image| EphemeralContainer {
                            name: "debug".into(),
                            image: Some(image.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: phase.map(|phase| PodStatus {
                phase: Some(phase.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn live_pods_reference_every_container_image() {
        let mut running = pod(Some("Running"), &[], &["nginx:1"], &["busybox"]);
        if let Some(status) = running.status.as_mut() {
            status.container_statuses = Some(vec![ContainerStatus {
                name: "c".into(),
                image: "docker.io/library/nginx:1".into(),
                image_id: "docker.io/library/nginx@sha256:abc".into(),
                ..Default::default()
            }]);
        }
        let pods = vec![
            pod(Some("Pending"), &["init:1"], &["app:2"], &[]),
            running,
            pod(None, &[], &["new:1"], &[]),
            pod(Some("Unknown"), &[], &["lost:1"], &[]),
            pod(Some("Succeeded"), &["done-init:1"], &["done:1"], &[]),
            pod(Some("Failed"), &[], &["failed:1"], &[]),
        ];
        assert_eq!(
            images_of_pods(&pods),
            vec![
                "app:2",
                "busybox",
                "docker.io/library/nginx:1",
                "docker.io/library/nginx@sha256:abc",
                "init:1",
                "lost:1",
                "new:1",
                "nginx:1",
            ]
        );
    }
}
