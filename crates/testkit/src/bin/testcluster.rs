//! `imagecleaner-testcluster`: a whole test cluster on this machine, for development, the demo
//! and trying the manager by hand.
//!
//! ```text
//! imagecleaner-testcluster --nodes N [--cleaner-binary PATH] [--cleaner-image PATTERN]...
//!                          [--local-image PATTERN=PROGRAM]... [--crds DIR|FILE]... [--port P]
//! ```
//!
//! Starts the loopback API server with the CRDs installed and N nodes (each a private
//! containerd and a fake kubelet), then prints one JSON line on stdout:
//!
//! ```text
//! {"kubeconfig":"/tmp/…/kubeconfig","server":"http://127.0.0.1:PORT",
//!  "nodes":{"node-1":{"runtime_endpoint":"unix:///…/containerd.sock"}}}
//! ```
//!
//! and runs until SIGINT or SIGTERM, when it tears everything down (processes, CRI
//! containers, containerds by PID, mounts, files). With the kubeconfig (admin),
//! `kubectl get --raw /testkit/forbidden` lists every request denied so far and
//! `kubectl get --raw /testkit/requests` the last requests served. Without `--cleaner-binary`, an
//! `imagecleaner` beside this program is used if there is one. Progress goes to stderr
//! (`RUST_LOG` for more).

use std::path::PathBuf;

use anyhow::Context as _;
use image_cleaner_testkit::{ClusterOptions, LocalImage, TestCluster};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: imagecleaner-testcluster --nodes N [--cleaner-binary PATH] \
[--cleaner-image PATTERN]... [--local-image PATTERN=PROGRAM]... [--crds DIR|FILE]... [--port P]";

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> anyhow::Result<String> {
    args.next()
        .with_context(|| format!("{flag} needs a value\n{USAGE}"))
}

fn parse_args() -> anyhow::Result<ClusterOptions> {
    let mut options = ClusterOptions::default();
    let mut images = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, v)) if flag.starts_with("--") => (flag.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut take = |flag: &str| match &inline {
            Some(v) => Ok(v.clone()),
            None => value(&mut args, flag),
        };
        match flag.as_str() {
            "--nodes" => {
                let n = take("--nodes")?;
                options.nodes = n
                    .parse()
                    .with_context(|| format!("--nodes {n}: not a number"))?;
            }
            "--cleaner-binary" => {
                options.cleaner_binary = Some(PathBuf::from(take("--cleaner-binary")?))
            }
            "--cleaner-image" => images.push(take("--cleaner-image")?),
            "--local-image" => {
                let spec = take("--local-image")?;
                let (pattern, program) = spec
                    .split_once('=')
                    .with_context(|| format!("--local-image {spec}: expected PATTERN=PROGRAM"))?;
                options.local_images.push(LocalImage::new(pattern, program));
            }
            "--crds" => options.crd_paths.push(PathBuf::from(take("--crds")?)),
            "--port" => {
                let port = take("--port")?;
                options.server.port = port
                    .parse()
                    .with_context(|| format!("--port {port}: not a port"))?;
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if !images.is_empty() {
        options.cleaner_images = images;
    }
    if options.cleaner_binary.is_none() {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("imagecleaner")))
            .filter(|path| path.is_file());
        options.cleaner_binary = beside;
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let options = parse_args()?;
    // Listen before starting anything, so a signal during set-up still leads to teardown.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;

    eprintln!(
        "testcluster: starting {} node(s){}",
        options.node_names.len().max(options.nodes),
        match &options.cleaner_binary {
            Some(binary) => format!(", cleaner images run {}", binary.display()),
            None => ", no cleaner binary (its pods will not start)".into(),
        }
    );
    // A signal during start-up waits in the listeners and ends the run right after.
    let cluster = TestCluster::start(options).await?;
    let nodes: serde_json::Map<String, serde_json::Value> = cluster
        .nodes()
        .iter()
        .map(|n| {
            (
                n.name().to_string(),
                serde_json::json!({"runtime_endpoint": n.runtime_endpoint()}),
            )
        })
        .collect();
    let ready = serde_json::json!({
        "kubeconfig": cluster.kubeconfig_path(),
        "server": cluster.server_url(),
        "nodes": nodes,
    });
    println!("{ready}");

    let why = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    eprintln!("testcluster: {why}; tearing down");
    cluster.shutdown().await?;
    eprintln!("testcluster: done");
    Ok(())
}
