//! `imagecleaner node plan|clean`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use image_cleaner_core::{ListKind, PatternSet, Policy, References};
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::{Options, Runtime};

use crate::args::{NodeArgs, OutputFormat};
use crate::exit::{self, Failure};
use crate::output;

/// Plan only, or plan and remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Report the plan.
    Plan,
    /// Carry it out.
    Clean {
        /// Remove nothing.
        dry_run: bool,
    },
}

pub async fn run(args: NodeArgs, action: Action) -> Result<ExitCode, Failure> {
    let endpoint: Endpoint = args
        .runtime_endpoint
        .parse()
        .map_err(|e| Failure::bad_input(anyhow!("--runtime-endpoint: {e}")))?;
    let mut options = options(&args)?;

    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .map_err(Failure::operational)?;
    options.vulnerable = crate::scan::vulnerable_for_node(&runtime, &args.scan).await?;
    let planned = image_cleaner_node::plan(&runtime, options)
        .await
        .map_err(Failure::operational)?;
    for warning in planned.warnings() {
        eprintln!("warning: {warning}");
    }
    let (report, executed) = match action {
        Action::Plan => (Ok(planned.report()), None),
        Action::Clean { dry_run } => (planned.execute(dry_run).await, Some(dry_run)),
    };
    let report = report.map_err(Failure::operational)?;

    let printed = match args.output {
        OutputFormat::Json => output::json(&report),
        OutputFormat::Table => output::table(&report, executed),
    };
    printed
        .context("writing the report to stdout")
        .map_err(Failure::operational)?;
    Ok(ExitCode::from(if report.summary.failed > 0 {
        exit::REMOVALS_FAILED
    } else {
        exit::OK
    }))
}

fn options(args: &NodeArgs) -> Result<Options, Failure> {
    let mut exclusions = PatternSet::parse_strict(ListKind::Exclusion, &args.exclude)
        .map_err(|e| Failure::bad_input(anyhow!("--exclude: {e}")))?;
    for file in &args.exclude_file {
        let entries = read_exclude_file(file).map_err(Failure::bad_input)?;
        let set = PatternSet::parse_strict(ListKind::Exclusion, &entries)
            .map_err(|e| Failure::bad_input(anyhow!("--exclude-file {}: {e}", file.display())))?;
        exclusions.extend(set);
    }
    let removal = if args.remove.is_empty() {
        None
    } else {
        Some(
            PatternSet::parse_strict(ListKind::Removal, &args.remove)
                .map_err(|e| Failure::bad_input(anyhow!("--remove: {e}")))?,
        )
    };
    let min_unused = parse_duration(&args.min_unused).map_err(|why| {
        Failure::bad_input(anyhow!("--min-unused \"{}\": {why}", args.min_unused))
    })?;
    Ok(Options {
        node: args.node_name.clone().unwrap_or_else(host_name),
        policy: Policy {
            exclusions,
            removal,
            min_unused,
        },
        references: References::default(),
        vulnerable: Default::default(),
        state_dir: Some(args.state_dir.clone()),
        concurrency: image_cleaner_node::removal::DEFAULT_CONCURRENCY,
    })
}

/// Durations as operators write them: `90m`, `24h`, `7d`, `1h30m`, `0`.
fn parse_duration(value: &str) -> Result<Duration, String> {
    if value.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e} (expected a duration such as 90m, 24h or 7d)"))
}

/// Eraser's exclusion JSON (`{"excluded": [...]}`), or plain text with one pattern a line
/// (blank lines and `#` comments skipped).
fn read_exclude_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--exclude-file {}: cannot read", path.display()))?;
    if text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Excluded {
            excluded: Vec<String>,
        }
        let parsed: Excluded = serde_json::from_str(&text).with_context(|| {
            format!(
                "--exclude-file {}: not valid exclusion JSON (expected {{\"excluded\": [\"pattern\", ...]}})",
                path.display()
            )
        })?;
        return Ok(parsed.excluded);
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_operator_units() {
        assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").unwrap_err().contains("90m"));
        assert!(parse_duration("-5m").is_err());
    }

    #[test]
    fn reads_eraser_json_and_plain_exclusion_files() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(
            &json,
            r#"{"excluded": ["docker.io/library/*", "k8s.gcr.io/pause:*"]}"#,
        )
        .unwrap();
        assert_eq!(
            read_exclude_file(&json).unwrap(),
            ["docker.io/library/*", "k8s.gcr.io/pause:*"]
        );
        let text = dir.path().join("b.txt");
        std::fs::write(&text, "# keep these\nnginx\n\n  quay.io/x/*  \n").unwrap();
        assert_eq!(read_exclude_file(&text).unwrap(), ["nginx", "quay.io/x/*"]);
        let broken = dir.path().join("c.json");
        std::fs::write(&broken, r#"{"excluded": "nginx"}"#).unwrap();
        let err = format!("{:#}", read_exclude_file(&broken).unwrap_err());
        assert!(
            err.contains("c.json") && err.contains("--exclude-file"),
            "{err}"
        );
    }
}
