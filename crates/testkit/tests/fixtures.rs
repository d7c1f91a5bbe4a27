//! The sample node matches its documentation: names, sharing, the running pod.

use image_cleaner_cri::proto;
use image_cleaner_testkit::{Containerd, fixtures, pause};

#[tokio::test]
async fn the_sample_node_is_what_its_docs_say() {
    let c = Containerd::start().await.unwrap();
    let node = fixtures::sample_node(&c).await.unwrap();

    let images = c.list_images().await.unwrap();
    let by_id = |id: &str| images.iter().find(|i| i.id == id).unwrap().clone();
    for built in node.images() {
        let listed = by_id(&built.id);
        let mut tags = listed.repo_tags.clone();
        tags.sort();
        let mut expected = built.names.clone();
        expected.sort();
        assert_eq!(tags, expected);
        assert_eq!(listed.repo_digests, built.repo_digests);
        assert_eq!(listed.size, built.blob_bytes);
        assert_eq!(built.layer_digests[0], node.base_layer);
    }
    assert!(node.debug.names.is_empty());
    assert!(node.debug.repo_digests[0].starts_with(fixtures::DEBUG_REPO));
    assert_eq!(node.web.names, [fixtures::WEB_2, fixtures::WEB_STABLE]);
    // The five sample images and the sandbox image, nothing else.
    assert_eq!(images.len(), 6, "{images:#?}");
    assert!(images.iter().any(|i| i.repo_tags == [pause::IMAGE]));
    let total: u64 = node.images().iter().map(|i| i.blob_bytes).sum();
    assert!(total < 40 << 20, "{total}");

    // One running container, from app:1.1.
    let channel = image_cleaner_cri::Endpoint::from_path(c.socket_path())
        .connect(std::time::Duration::from_secs(2))
        .await
        .unwrap();
    let mut runtime = proto::runtime_service_client::RuntimeServiceClient::new(channel);
    let containers = runtime
        .list_containers(proto::ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(containers.len(), 1);
    let running = &containers[0];
    assert_eq!(running.id, node.pod.container_id);
    assert_eq!(
        running.state,
        proto::ContainerState::ContainerRunning as i32
    );
    // containerd 1.6 puts the image ID in `image_ref`, keeps the name the container was
    // created with in `image.image`, and leaves the newer `image_id` empty.
    assert_eq!(running.image_ref, node.app_1_1.id);
    assert_eq!(running.image.as_ref().unwrap().image, fixtures::APP_1_1);
    assert_eq!(running.image_id, "");

    c.shutdown().await.unwrap();
}
