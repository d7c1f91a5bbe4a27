//! The CRI sandbox image, `docker.io/library/pause:local`: one static binary, `/pause`, that
//! sleeps until SIGTERM or SIGINT and then exits 0, so pod sandboxes stop at once.
//!
//! No registry can be reached, so the binary is compiled from the C source below with
//! `gcc -static` and cached under the temporary directory, keyed by a hash of the source and
//! flags: each machine compiles it once.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::oci::{FileEntry, ImageSpec, Layer};

/// The sandbox image name the private containerd is configured with.
pub const IMAGE: &str = "docker.io/library/pause:local";

/// How long compiling may take.
const COMPILE_DEADLINE: Duration = Duration::from_secs(120);

const SOURCE: &str = r#"
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, 0, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = stop;
    sigaction(SIGINT, &sa, 0);
    sigaction(SIGTERM, &sa, 0);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, 0);
    for (;;) {
        pause();
    }
}
"#;

const GCC_FLAGS: &[&str] = &["-static", "-Os", "-s", "-x", "c"];

/// The compiled pause binary, compiling it if the cache does not have it yet.
pub async fn binary() -> anyhow::Result<PathBuf> {
    let mut key = Sha256::new();
    key.update(SOURCE.as_bytes());
    key.update(GCC_FLAGS.join(" ").as_bytes());
    let key = hex::encode(&key.finalize()[..8]);
    let cache = crate::temp_base().join("image-cleaner-testkit-cache");
    let binary = cache.join(format!("pause-{key}"));
    if binary.is_file() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("creating cache directory {}", cache.display()))?;
    // Compile next to the final path and rename, so concurrent tests never see half a file.
    let staging = tempfile::Builder::new()
        .prefix("pause-build")
        .tempdir_in(&cache)
        .with_context(|| format!("creating a build directory in {}", cache.display()))?;
    let source = staging.path().join("pause.c");
    let output = staging.path().join("pause");
    std::fs::write(&source, SOURCE).with_context(|| format!("writing {}", source.display()))?;
    let mut command = tokio::process::Command::new("gcc");
    command
        .args(GCC_FLAGS)
        .arg(&source)
        .arg("-o")
        .arg(&output)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let result = tokio::time::timeout(COMPILE_DEADLINE, command.output())
        .await
        .with_context(|| format!("gcc did not finish within {COMPILE_DEADLINE:?}"))?
        .context("running gcc (install gcc and libc6-dev)")?;
    anyhow::ensure!(
        result.status.success(),
        "gcc -static failed compiling {} ({}): {}",
        source.display(),
        result.status,
        String::from_utf8_lossy(&result.stderr).trim()
    );
    std::fs::rename(&output, &binary)
        .with_context(|| format!("moving the pause binary to {}", binary.display()))?;
    Ok(binary)
}

/// The sandbox image: `/pause` in a single layer, entrypoint `["/pause"]`.
pub async fn image() -> anyhow::Result<ImageSpec> {
    static LAYER: OnceLock<Layer> = OnceLock::new();
    let layer = match LAYER.get() {
        Some(layer) => layer.clone(),
        None => {
            let path = binary().await?;
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let layer = Layer::from_files(vec![FileEntry::executable("pause", bytes)])?;
            LAYER.get_or_init(|| layer).clone()
        }
    };
    Ok(ImageSpec::new()
        .name(IMAGE)
        .layer(layer)
        .entrypoint(["/pause"]))
}
