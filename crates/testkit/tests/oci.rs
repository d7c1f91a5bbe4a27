//! Archives built in Rust import into a real containerd, which then reports exactly the
//! identities, names and sizes the builder computed.

use image_cleaner_cri::proto;
use image_cleaner_testkit::{Containerd, FileEntry, ImageSpec, Layer};

fn find<'a>(images: &'a [proto::Image], id: &str) -> &'a proto::Image {
    images
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("{id} not listed: {images:#?}"))
}

async fn content_digests(c: &Containerd) -> Vec<String> {
    let listing = c.ctr(&["content", "ls", "--quiet"]).await.unwrap();
    listing.lines().map(str::to_string).collect()
}

#[tokio::test]
async fn cri_reports_what_the_builder_computed() {
    let c = Containerd::start().await.unwrap();
    let base = Layer::busybox().unwrap();
    let config_layer = Layer::from_files(vec![
        FileEntry::file("etc/app.conf", "x=1\n"),
        FileEntry::dir("var/lib/app"),
        FileEntry::symlink("usr/bin/app", "/bin/busybox"),
        FileEntry::whiteout("tmp/gone"),
        FileEntry::opaque("var/cache"),
    ])
    .unwrap();
    let tagged = ImageSpec::new()
        .name("docker.io/library/app:1")
        .name("docker.io/library/app:latest")
        .layer(base.clone())
        .layer(config_layer)
        .layer(Layer::random(1, 64 * 1024))
        .label("team", "a")
        .cmd(["/bin/sleep", "3600"]);
    let tagged = c.load(&tagged).await.unwrap();

    // Built separately, from the same base: shares that blob bit for bit.
    let other = ImageSpec::new()
        .name("example.com/other:2")
        .layer(Layer::busybox().unwrap())
        .layer(Layer::random(2, 64 * 1024));
    let other = c.load(&other).await.unwrap();
    assert_eq!(tagged.layer_digests[0], other.layer_digests[0]);
    assert_eq!(tagged.layer_digests[0], base.digest());

    let digest_only = ImageSpec::new()
        .digest_only("localhost:5000/tools/debug")
        .layer(Layer::random(3, 1024));
    let digest_only = c.load(&digest_only).await.unwrap();

    let images = c.list_images().await.unwrap();
    let found = find(&images, &tagged.id);
    let mut tags = found.repo_tags.clone();
    tags.sort();
    assert_eq!(
        tags,
        ["docker.io/library/app:1", "docker.io/library/app:latest"]
    );
    assert_eq!(
        found.repo_digests,
        [format!("docker.io/library/app@{}", tagged.manifest_digest)]
    );
    assert_eq!(found.size, tagged.blob_bytes);

    let found = find(&images, &digest_only.id);
    assert!(found.repo_tags.is_empty(), "{found:?}");
    assert_eq!(
        found.repo_digests,
        [format!(
            "localhost:5000/tools/debug@{}",
            digest_only.manifest_digest
        )]
    );
    assert_eq!(found.size, digest_only.blob_bytes);
    assert_eq!(find(&images, &other.id).size, other.blob_bytes);

    // The shared base is stored once.
    let content = content_digests(&c).await;
    let base_copies = content.iter().filter(|d| **d == base.digest()).count();
    assert_eq!(base_copies, 1, "{content:?}");
    for digest in tagged.layer_digests.iter().chain(&other.layer_digests) {
        assert!(content.contains(digest), "{digest} not in {content:?}");
    }

    // A plain import through `ctr` works too; the builder's id is what CRI calls the image.
    let archive = c.dir().join("plain.tar");
    let plain = ImageSpec::new()
        .name("docker.io/library/plain:1")
        .layer(Layer::random(4, 1024))
        .write_archive(&archive)
        .unwrap();
    c.import(&archive).await.unwrap();
    c.wait_visible(&plain).await.unwrap();

    c.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_broken_archive_fails_with_ctr_output() {
    let c = Containerd::start_with(image_cleaner_testkit::Options {
        import_pause: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let archive = c.dir().join("broken.tar");
    std::fs::write(&archive, b"not a tar").unwrap();
    let err = format!("{:#}", c.import(&archive).await.unwrap_err());
    assert!(err.contains("broken.tar"), "{err}");
    assert!(err.contains("ctr images import"), "{err}");
    assert!(err.contains("failed"), "{err}");
    c.shutdown().await.unwrap();
}
