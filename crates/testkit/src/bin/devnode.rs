//! `imagecleaner-devnode`: a throwaway node to try the cleaner against by hand or from CI.
//!
//! Starts a private containerd, imports the sample images, runs the sample pod, and prints
//! one JSON line on stdout once everything is ready:
//!
//! ```text
//! {"runtime_endpoint":"unix:///tmp/…/run/containerd.sock","containerd_pid":123,
//!  "state_dir":"/tmp/…","images":[…],"running":["docker.io/library/app:1.1"]}
//! ```
//!
//! `state_dir` is the instance directory holding everything (removed at exit). It then
//! waits for SIGINT or SIGTERM (or `--keep-running-seconds N`) and tears everything down.
//! Progress and errors go to stderr.

use std::time::Duration;

use anyhow::Context as _;
use image_cleaner_testkit::{Containerd, fixtures, pause};
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: imagecleaner-devnode [--keep-running-seconds N]";

fn parse_args() -> anyhow::Result<Option<Duration>> {
    let mut args = std::env::args().skip(1);
    let mut keep = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep-running-seconds" => {
                let value = args.next().context(USAGE)?;
                let seconds: u64 = value
                    .parse()
                    .with_context(|| format!("--keep-running-seconds {value}: not a number"))?;
                keep = Some(Duration::from_secs(seconds));
            }
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(keep)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keep = parse_args()?;
    // Listen before starting anything, so a signal during set-up still leads to teardown.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;

    eprintln!("devnode: starting containerd");
    let containerd = Containerd::start().await?;
    eprintln!(
        "devnode: containerd {} at {} (log {})",
        containerd.pid(),
        containerd.endpoint(),
        containerd.log_path().display()
    );
    let node = match fixtures::sample_node(&containerd).await {
        Ok(node) => node,
        Err(e) => {
            let _ = containerd.shutdown().await;
            return Err(e.context("building the sample node"));
        }
    };
    let ready = serde_json::json!({
        "runtime_endpoint": containerd.endpoint(),
        "containerd_pid": containerd.pid(),
        "state_dir": containerd.dir(),
        "sandbox_image": pause::IMAGE,
        "images": node.names(),
        "running": [fixtures::APP_1_1],
    });
    println!("{ready}");

    let time_up = async {
        match keep {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    let why = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        () = time_up => "time is up",
    };
    eprintln!("devnode: {why}; tearing down");
    containerd.shutdown().await?;
    eprintln!("devnode: done");
    Ok(())
}
