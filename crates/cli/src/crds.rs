//! `imagecleaner crds`: the ImageList and ImageJob CRDs, rendered from the API types, so the
//! YAML under `deploy/crds/` is never edited by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use image_cleaner_api::{all_crds, all_crds_yaml, crd_file_name, crd_yaml};

use crate::exit::{self, Failure};

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write each CRD to DIR/<crd name>.yaml instead of printing all of them to stdout.
    #[arg(long, value_name = "DIR")]
    pub split: Option<PathBuf>,
}

pub fn run(args: CrdsArgs) -> Result<ExitCode, Failure> {
    let Some(dir) = args.split else {
        let yaml = all_crds_yaml()
            .context("rendering the CRDs")
            .map_err(Failure::operational)?;
        print!("{yaml}");
        return Ok(ExitCode::from(exit::OK));
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))
        .map_err(Failure::operational)?;
    for crd in all_crds() {
        let path = dir.join(crd_file_name(&crd));
        let yaml = crd_yaml(&crd)
            .context("rendering a CRD")
            .map_err(Failure::operational)?;
        std::fs::write(&path, yaml)
            .with_context(|| format!("writing {}", path.display()))
            .map_err(Failure::operational)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::from(exit::OK))
}
