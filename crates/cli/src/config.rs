//! `imagecleaner config check FILE`: reads a config as the manager would, before it is
//! applied. Prints the effective config (defaults applied, in the newest version) on stdout
//! and warnings on stderr; with errors, prints every one with its key path and exits 2.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use image_cleaner_api::Config;
use image_cleaner_api::config::ApiVersion;

use crate::exit::{self, Failure};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check an EraserConfig file, or a ConfigMap manifest holding one under
    /// controller_manager_config.yaml, and print the effective config.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check ("-" reads stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Format of the effective config.
    #[arg(short = 'o', long, value_enum, default_value_t = ConfigFormat::Yaml)]
    pub output: ConfigFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConfigFormat {
    /// An eraser.sh/v1alpha3 EraserConfig document.
    Yaml,
    /// The same document as JSON.
    Json,
}

pub fn run(command: ConfigCommand) -> Result<ExitCode, Failure> {
    match command {
        ConfigCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> Result<ExitCode, Failure> {
    let text = read(&args.file).map_err(Failure::bad_input)?;
    let parsed = match Config::from_file_text(&text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for warning in &errors.warnings {
                eprintln!("warning: {warning}");
            }
            return Err(Failure::bad_input(anyhow!(
                "{}: {errors}",
                args.file.display()
            )));
        }
    };
    for warning in &parsed.warnings {
        eprintln!("warning: {warning}");
    }
    if parsed.api_version != ApiVersion::V1alpha3 {
        eprintln!(
            "note: converted from {} to {}",
            parsed.api_version,
            ApiVersion::V1alpha3
        );
    }
    let effective = parsed.config.with_derived_defaults();
    let rendered = match args.output {
        ConfigFormat::Yaml => effective.to_yaml().context("writing YAML"),
        ConfigFormat::Json => effective
            .to_json()
            .map(|json| json + "\n")
            .context("writing JSON"),
    }
    .map_err(Failure::operational)?;
    print!("{rendered}");
    Ok(ExitCode::from(exit::OK))
}

fn read(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
}
