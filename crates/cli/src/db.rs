//! `imagecleaner db build|info`: compile OSV records into the offline database file that
//! nodes scan against, and say what a database file holds and how old it is.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use image_cleaner_scanner::Database;

use crate::args::OutputFormat;
use crate::exit::{self, Failure};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Compile OSV records (a directory of JSON files or zip archives, or one zip, as
    /// published per ecosystem, e.g. Debian:12/all.zip) into a database file.
    Build(BuildArgs),
    /// Show what a database file holds: records, ecosystems, when it was built.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// OSV source: directory, zip or JSON file.
    #[arg(value_name = "SRC")]
    pub source: PathBuf,
    /// The database file to write.
    #[arg(short = 'o', long = "output", value_name = "DB")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The database file.
    #[arg(value_name = "DB")]
    pub db: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

pub fn run(command: DbCommand) -> Result<ExitCode, Failure> {
    match command {
        DbCommand::Build(args) => build(args),
        DbCommand::Info(args) => info(args),
    }
}

fn build(args: BuildArgs) -> Result<ExitCode, Failure> {
    if !args.source.exists() {
        return Err(Failure::bad_input(anyhow!(
            "db build {}: no such file or directory",
            args.source.display()
        )));
    }
    let header = image_cleaner_scanner::db::build(&args.source, &args.output, SystemTime::now())
        .map_err(Failure::operational)?;
    println!(
        "wrote {}: {} records, {} advisories for {} packages in {} ecosystems",
        args.output.display(),
        header.records,
        header.advisories,
        header.packages,
        header.ecosystems.len()
    );
    if !header.skipped.is_empty() {
        let skipped: Vec<String> = header
            .skipped
            .iter()
            .map(|(e, n)| format!("{e} {n}"))
            .collect();
        println!("skipped (ecosystems not scanned): {}", skipped.join(", "));
    }
    Ok(ExitCode::from(exit::OK))
}

fn info(args: InfoArgs) -> Result<ExitCode, Failure> {
    let db = Database::open(&args.db).map_err(Failure::operational)?;
    let header = db.header();
    let age = db.age(SystemTime::now());
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        OutputFormat::Json => {
            let value = serde_json::json!({
                "path": args.db,
                "header": header,
                "age_seconds": age.as_secs(),
            });
            serde_json::to_writer_pretty(&mut out, &value)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        }
        OutputFormat::Table => {
            let built = humantime::format_rfc3339_seconds(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(header.built_at),
            );
            let age_text =
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs() / 60 * 60));
            (|| -> std::io::Result<()> {
                writeln!(out, "database:   {}", args.db.display())?;
                writeln!(
                    out,
                    "built:      {built} ({age_text} ago) from {}",
                    header.source
                )?;
                if let Some(newest) = &header.newest_record {
                    writeln!(out, "newest:     {newest}")?;
                }
                writeln!(
                    out,
                    "records:    {} ({} advisories, {} packages)",
                    header.records, header.advisories, header.packages
                )?;
                writeln!(out, "ecosystems:")?;
                for (ecosystem, n) in &header.ecosystems {
                    writeln!(out, "  {ecosystem:<20} {n}")?;
                }
                if !header.skipped.is_empty() {
                    writeln!(out, "skipped:")?;
                    for (ecosystem, n) in &header.skipped {
                        writeln!(out, "  {ecosystem:<20} {n}")?;
                    }
                }
                Ok(())
            })()
        }
    };
    written.map_err(|e| Failure::operational(anyhow!("writing to stdout: {e}")))?;
    Ok(ExitCode::from(exit::OK))
}
