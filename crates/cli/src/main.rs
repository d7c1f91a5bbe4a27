//! `imagecleaner`: the one binary of Image Cleaner. A thin shell: it parses arguments,
//! builds the engine's inputs, and turns results into output and exit codes.
//!
//! Exit codes: 0 done; 1 runtime or operational error; 2 bad input (the message names the
//! flag and value); 3 some removals failed.

#![forbid(unsafe_code)]

mod args;
mod config;
mod crds;
mod db;
mod exit;
mod manager;
mod manifests;
mod node;
mod output;
mod scan;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command, NodeCommand};
use crate::exit::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Failure::operational(anyhow::anyhow!("cannot start: {e}")).report(),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Node(NodeCommand::Plan(args)) => node::run(args, node::Action::Plan).await,
            Command::Node(NodeCommand::Clean(args)) => {
                let dry_run = args.dry_run;
                node::run(args.common, node::Action::Clean { dry_run }).await
            }
            Command::Crds(args) => crds::run(args),
            Command::Config(command) => config::run(command),
            Command::Scan(args) => scan::run(args).await,
            Command::Db(command) => db::run(command),
            Command::Manager(args) => manager::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Manifests(args) => manifests::run(args),
        }
    });
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| level.and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok()))
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
