//! `imagecleaner manifests`: everything to install Image Cleaner, as YAML (for GitOps, or
//! `kubectl apply -f -`). `deploy/imagecleaner.yaml` is this output with the defaults.

use std::process::ExitCode;

use clap::Args;
use image_cleaner_api::constants::DEFAULT_NAMESPACE;
use image_cleaner_manager::manifests::{self, Options};
use image_cleaner_manager::names::DEFAULT_IMAGE;

use crate::exit::{self, Failure};

#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// Namespace of the manager and its workers.
    #[arg(long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Hours between scheduled runs.
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub interval_hours: u64,
    /// Image of the manager and the workers.
    #[arg(long, value_name = "REPO:TAG", default_value = DEFAULT_IMAGE)]
    pub image: String,
}

pub fn run(args: ManifestsArgs) -> Result<ExitCode, Failure> {
    let options = Options {
        namespace: args.namespace,
        interval_hours: args.interval_hours,
        image: args.image,
    };
    let yaml = manifests::render(&options).map_err(|error| match error {
        manifests::Error::Interval(_) => Failure::bad_input(error),
        other => Failure::operational(anyhow::Error::new(other).context("rendering the manifests")),
    })?;
    print!("{yaml}");
    Ok(ExitCode::from(exit::OK))
}
