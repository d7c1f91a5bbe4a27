//! `imagecleaner worker`: the program of each worker pod. The manager builds its arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use image_cleaner_api::constants::{ENV_NODE_NAME, RUNTIME_SOCKET_MOUNT_PATH};
use image_cleaner_cri::Endpoint;
use image_cleaner_protocol::WorkerReport;
use image_cleaner_worker::Options;

use crate::exit::{self, Failure};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The job (job.json of the job's ConfigMap).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/run/eraser.sh/job/job.json"
    )]
    pub job: PathBuf,
    /// The manager's config as of the job (the scanner's settings, when the job scans).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CRI endpoint of the node's runtime.
    #[arg(long, value_name = "URL", default_value_t = format!("unix://{RUNTIME_SOCKET_MOUNT_PATH}"))]
    pub runtime_endpoint: String,
    /// Where the node's last-use state is kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/imagecleaner")]
    pub state_dir: PathBuf,
    /// This node (the pod's spec.nodeName).
    #[arg(long, env = ENV_NODE_NAME, hide_env_values = true)]
    pub node_name: Option<String>,
    /// Where the compact report for the manager goes.
    #[arg(long, value_name = "FILE", default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
    /// Longest time a single API call may take.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub api_timeout: Duration,
}

pub async fn run(args: WorkerArgs) -> Result<ExitCode, Failure> {
    let node = args.node_name.clone().unwrap_or_default();
    let fail = |error: String| {
        tracing::error!("{error}");
        image_cleaner_worker::write_termination_message(
            &args.termination_log,
            &WorkerReport::failed(&node, &error),
        );
        eprintln!("error: {error}");
        Ok(ExitCode::from(exit::OPERATIONAL))
    };
    let endpoint: Endpoint = match args.runtime_endpoint.parse() {
        Ok(endpoint) => endpoint,
        Err(error) => return fail(format!("--runtime-endpoint: {error}")),
    };
    let options = Options {
        job_file: args.job.clone(),
        config_file: args.config.clone(),
        runtime_endpoint: endpoint,
        state_dir: Some(args.state_dir.clone()),
        node_name: node.clone(),
        termination_log: args.termination_log.clone(),
        api_timeout: args.api_timeout,
        concurrency: image_cleaner_node::removal::DEFAULT_CONCURRENCY,
    };
    let client = image_cleaner_worker::client(args.api_timeout).await;
    match image_cleaner_worker::run(&options, client).await {
        Ok(done) => {
            match serde_json::to_string(&done.report) {
                Ok(json) => println!("{json}"),
                Err(error) => tracing::warn!(%error, "could not print the report"),
            }
            image_cleaner_worker::write_termination_message(&args.termination_log, &done.summary);
            let summary = &done.summary;
            eprintln!(
                "node {}: {} images, {} removed, {} failed, {} bytes freed",
                summary.node, summary.images, summary.removed, summary.failed, summary.freed_bytes
            );
            Ok(ExitCode::from(exit::OK))
        }
        Err(error) => fail(error.to_string()),
    }
}
