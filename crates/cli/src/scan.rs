//! `imagecleaner scan` (images on a node, an image archive, or a root directory) and the
//! `--scan` flags of `node plan|clean`, which turn scan results into vulnerability-based
//! removals.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, anyhow};
use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use image_cleaner_core::{ImageId, Inventory};
use image_cleaner_cri::{Endpoint, Timeouts};
use image_cleaner_node::Runtime;
use image_cleaner_node::scan::{self as node_scan, ImageResult, Method, Scanner, Settings};
use image_cleaner_scanner::fs::archive::Archive;
use image_cleaner_scanner::fs::rootfs::RootDir;
use image_cleaner_scanner::trivy::{Target, Trivy};
use image_cleaner_scanner::{Database, ScanPolicy, Severity, Status};
use serde::Serialize;

use crate::args::OutputFormat;
use crate::exit::{self, Failure};

/// The run finished but some images could not be scanned (same code as failed removals:
/// the command did its job, partly).
const SOME_SCANS_FAILED: u8 = exit::REMOVALS_FAILED;

/// Which scanner to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScannerKind {
    /// The built-in scanner with an offline database (--db).
    Native,
    /// An external `trivy` binary per image.
    Trivy,
}

/// Flags shared by `scan` and `node plan|clean --scan`.
#[derive(Debug, Args)]
pub struct ScanOptions {
    /// Compiled vulnerability database (`imagecleaner db build`).
    #[arg(long, value_name = "DB", env = "IMAGECLEANER_DB")]
    pub db: Option<PathBuf>,
    /// Severities that count (UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL).
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "CRITICAL,HIGH"
    )]
    pub severity: Vec<String>,
    /// Ignore vulnerabilities that have no fixed version.
    #[arg(long)]
    pub ignore_unfixed: bool,
    /// Statuses that never count (e.g. will_not_fix,fix_deferred).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub ignored_status: Vec<String>,
    /// Do not count an end-of-life OS release as a vulnerability.
    #[arg(long)]
    pub keep_eol_images: bool,
    /// Scanner to run.
    #[arg(long, value_enum, default_value_t = ScannerKind::Native)]
    pub scanner: ScannerKind,
    /// The trivy binary (with --scanner trivy).
    #[arg(long, value_name = "PATH", default_value = "trivy")]
    pub trivy: PathBuf,
    /// An extra argument for trivy (repeatable), e.g. --trivy-arg=--skip-db-update.
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub trivy_arg: Vec<String>,
    /// Longest time for one image.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub scan_timeout_per_image: String,
    /// Longest time for the whole scan.
    #[arg(long, value_name = "DURATION", default_value = "23h")]
    pub scan_timeout: String,
    /// Always stream compressed layers, even where unpacked snapshots exist.
    #[arg(long)]
    pub no_snapshots: bool,
}

/// `imagecleaner scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Images to scan (name, digest or ID); every image when none is given.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// CRI endpoint of the runtime (unix:///path).
    #[arg(
        long,
        value_name = "URL",
        env = "IMAGECLEANER_RUNTIME_ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub runtime_endpoint: String,
    /// Scan an image archive (OCI layout or docker save tar) instead of a runtime.
    #[arg(long, value_name = "FILE", conflicts_with = "rootfs")]
    pub archive: Option<PathBuf>,
    /// Scan a root filesystem directory instead of a runtime.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    #[command(flatten)]
    pub options: ScanOptions,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// The `--scan` flags of `node plan|clean`.
#[derive(Debug, Args)]
pub struct NodeScanArgs {
    /// Scan images for vulnerabilities; non-running images with findings of the given
    /// severities are removed (reason `vulnerable`).
    #[arg(long)]
    pub scan: bool,
    /// Remove images that could not be scanned (Eraser's deleteFailedImages); by default
    /// they are kept.
    #[arg(long, requires = "scan")]
    pub delete_failed_images: bool,
    #[command(flatten)]
    pub options: ScanOptions,
}

fn parse_duration(flag: &str, value: &str) -> Result<Duration, Failure> {
    humantime::parse_duration(value.trim())
        .map_err(|e| Failure::bad_input(anyhow!("--{flag} \"{value}\": {e} (e.g. 90s, 10m, 1h)")))
}

fn policy(options: &ScanOptions) -> Result<ScanPolicy, Failure> {
    let severities = options
        .severity
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<Severity>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| Failure::bad_input(anyhow!("--severity: {e}")))?;
    let ignored_statuses = options
        .ignored_status
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<Status>())
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(|e| Failure::bad_input(anyhow!("--ignored-status: {e}")))?;
    Ok(ScanPolicy {
        severities,
        ignore_unfixed: options.ignore_unfixed,
        ignored_statuses,
        delete_eol: !options.keep_eol_images,
    })
}

fn scanner(options: &ScanOptions) -> Result<Scanner, Failure> {
    match options.scanner {
        ScannerKind::Trivy => Ok(Scanner::Trivy(Trivy {
            binary: options.trivy.clone(),
            extra_args: options.trivy_arg.clone(),
            timeout: parse_duration("scan-timeout-per-image", &options.scan_timeout_per_image)?,
        })),
        ScannerKind::Native => {
            let path = options.db.as_ref().ok_or_else(|| {
                Failure::bad_input(anyhow!(
                    "--db: a vulnerability database is needed (build one with `imagecleaner db build`)"
                ))
            })?;
            let db = Database::open(path).map_err(Failure::operational)?;
            let age = db.age(SystemTime::now());
            if age > Duration::from_secs(7 * 86_400) {
                eprintln!(
                    "warning: the vulnerability database {} is {} old",
                    path.display(),
                    humantime::format_duration(Duration::from_secs(age.as_secs() / 3600 * 3600))
                );
            }
            Ok(Scanner::Native(Arc::new(db)))
        }
    }
}

fn settings(options: &ScanOptions, delete_failed: bool) -> Result<Settings, Failure> {
    let mut settings = Settings::new(scanner(options)?);
    settings.policy = policy(options)?;
    settings.delete_failed = delete_failed;
    settings.per_image_timeout =
        parse_duration("scan-timeout-per-image", &options.scan_timeout_per_image)?;
    settings.total_timeout = parse_duration("scan-timeout", &options.scan_timeout)?;
    settings.use_snapshots = !options.no_snapshots;
    Ok(settings)
}

/// A progress line on stderr: rewritten in place on a terminal, otherwise a line every
/// few seconds, and nothing for short scans.
fn progress_printer() -> impl Fn(usize, usize) + Send + Sync {
    let started = Instant::now();
    let last = Mutex::new(Instant::now());
    let terminal = std::io::stderr().is_terminal();
    move |done, total| {
        let elapsed = started.elapsed();
        if elapsed < Duration::from_secs(2) && done < total {
            return;
        }
        let Ok(mut last) = last.lock() else { return };
        let finished = done == total;
        if !terminal && !finished && last.elapsed() < Duration::from_secs(5) {
            return;
        }
        *last = Instant::now();
        let line = format!(
            "scanned {done}/{total} images in {:.1}s",
            elapsed.as_secs_f64()
        );
        let mut err = std::io::stderr().lock();
        let _ = if terminal {
            write!(err, "\r{line}{}", if finished { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
    }
}

/// Scans the node's images for `node plan|clean --scan`; `None` when not asked to.
pub async fn vulnerable_for_node(
    runtime: &Runtime,
    args: &NodeScanArgs,
) -> Result<BTreeMap<ImageId, Vec<String>>, Failure> {
    if !args.scan {
        return Ok(BTreeMap::new());
    }
    let settings = settings(&args.options, args.delete_failed_images)?;
    let images = runtime
        .cri
        .list_images()
        .await
        .map_err(Failure::operational)?;
    let progress = progress_printer();
    let results = node_scan::scan_images(runtime, &images, &settings, &progress).await;
    let vulnerable = node_scan::vulnerable(&results, &settings);
    for result in &results {
        if let Some(error) = &result.error {
            let action = if settings.delete_failed {
                "removed unless in use"
            } else {
                "kept"
            };
            eprintln!("scan failed ({action}): {}: {error}", label(result));
        }
    }
    for (id, ids) in &vulnerable {
        if let Some(result) = results.iter().find(|r| r.id == id.as_str()) {
            eprintln!("vulnerable: {}: {}", label(result), ids.join(", "));
        }
    }
    Ok(vulnerable)
}

fn label(result: &ImageResult) -> String {
    result
        .names
        .first()
        .cloned()
        .unwrap_or_else(|| result.id.clone())
}

#[derive(Serialize)]
struct ScanReport {
    images: Vec<ReportedImage>,
    summary: ScanSummary,
}

#[derive(Serialize)]
struct ReportedImage {
    #[serde(flatten)]
    result: ImageResult,
    /// The IDs that would condemn the image under the given policy.
    condemned_by: Vec<String>,
}

#[derive(Serialize)]
struct ScanSummary {
    images: usize,
    vulnerable: usize,
    failed: usize,
    findings: usize,
    severities: Vec<Severity>,
}

/// `imagecleaner scan`.
pub async fn run(args: ScanArgs) -> Result<ExitCode, Failure> {
    let settings = settings(&args.options, false)?;
    let results = if let Some(archive) = &args.archive {
        scan_archive(archive, &settings).await?
    } else if let Some(root) = &args.rootfs {
        vec![scan_rootfs(root, &settings).await?]
    } else {
        scan_runtime(&args, &settings).await?
    };
    let severities: BTreeSet<Severity> = settings.policy.severities.clone();
    let images: Vec<ReportedImage> = results
        .into_iter()
        .map(|result| ReportedImage {
            condemned_by: result
                .scan
                .as_ref()
                .map(|s| s.condemning_ids(&settings.policy))
                .unwrap_or_default(),
            result,
        })
        .collect();
    let summary = ScanSummary {
        images: images.len(),
        vulnerable: images.iter().filter(|i| !i.condemned_by.is_empty()).count(),
        failed: images.iter().filter(|i| i.result.error.is_some()).count(),
        findings: images
            .iter()
            .filter_map(|i| i.result.scan.as_ref())
            .map(|s| {
                s.findings
                    .iter()
                    .filter(|f| severities.contains(&f.severity))
                    .count()
            })
            .sum(),
        severities: severities.iter().copied().collect(),
    };
    let report = ScanReport { images, summary };
    let printed = match args.output {
        OutputFormat::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &report)
                .map_err(std::io::Error::other)
                .and_then(|()| writeln!(out))
        }
        OutputFormat::Table => print_table(&report, &severities),
    };
    printed
        .context("writing the scan report to stdout")
        .map_err(Failure::operational)?;
    Ok(ExitCode::from(if report.summary.failed > 0 {
        SOME_SCANS_FAILED
    } else {
        exit::OK
    }))
}

async fn scan_runtime(args: &ScanArgs, settings: &Settings) -> Result<Vec<ImageResult>, Failure> {
    let endpoint: Endpoint = args
        .runtime_endpoint
        .parse()
        .map_err(|e| Failure::bad_input(anyhow!("--runtime-endpoint: {e}")))?;
    let runtime = Runtime::connect(&endpoint, Timeouts::default())
        .await
        .map_err(Failure::operational)?;
    let all = runtime
        .cri
        .list_images()
        .await
        .map_err(Failure::operational)?;
    let images = if args.images.is_empty() {
        all
    } else {
        let inventory = Inventory {
            images: all,
            ..Inventory::default()
        };
        let mut chosen = Vec::new();
        for reference in &args.images {
            let id = inventory.resolve(reference).ok_or_else(|| {
                Failure::bad_input(anyhow!(
                    "IMAGE \"{reference}\": no such image on {}",
                    args.runtime_endpoint
                ))
            })?;
            if let Some(image) = inventory.image(id)
                && !chosen
                    .iter()
                    .any(|c: &image_cleaner_core::Image| c.id == image.id)
            {
                chosen.push(image.clone());
            }
        }
        chosen
    };
    let progress = progress_printer();
    Ok(node_scan::scan_images(&runtime, &images, settings, &progress).await)
}

async fn scan_archive(path: &Path, settings: &Settings) -> Result<Vec<ImageResult>, Failure> {
    let path = path.to_path_buf();
    let scanner = settings.scanner.clone();
    let task = tokio::task::spawn_blocking(move || -> Result<Vec<ImageResult>, Failure> {
        if let Scanner::Trivy(trivy) = &scanner {
            let began = Instant::now();
            let scanned = trivy.scan(&Target::Archive(&path));
            return Ok(vec![one_result(
                path.display().to_string(),
                Vec::new(),
                Method::Trivy,
                began,
                scanned,
            )]);
        }
        let Scanner::Native(db) = &scanner else {
            return Ok(Vec::new());
        };
        let archive = Archive::open(&path).map_err(Failure::bad_input)?;
        let images = archive.images().map_err(Failure::bad_input)?;
        let wanted = image_cleaner_scanner::wanted();
        Ok(images
            .into_iter()
            .map(|image| {
                let began = Instant::now();
                let scanned = archive
                    .file_tree(&image, &wanted)
                    .and_then(|tree| image_cleaner_scanner::scan(&tree, db, SystemTime::now()));
                one_result(image.id, image.names, Method::Archive, began, scanned)
            })
            .collect())
    });
    task.await
        .map_err(|e| Failure::operational(anyhow!("scan task failed: {e}")))?
}

async fn scan_rootfs(root: &Path, settings: &Settings) -> Result<ImageResult, Failure> {
    if !root.is_dir() {
        return Err(Failure::bad_input(anyhow!(
            "--rootfs {}: not a directory",
            root.display()
        )));
    }
    let root = root.to_path_buf();
    let scanner = settings.scanner.clone();
    tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        let label = root.display().to_string();
        match &scanner {
            Scanner::Trivy(trivy) => {
                let scanned = trivy.scan(&Target::Rootfs(&root));
                one_result(label, Vec::new(), Method::Trivy, began, scanned)
            }
            Scanner::Native(db) => {
                let scanned =
                    image_cleaner_scanner::scan(&RootDir::new(&root), db, SystemTime::now());
                one_result(label, Vec::new(), Method::Rootfs, began, scanned)
            }
        }
    })
    .await
    .map_err(|e| Failure::operational(anyhow!("scan task failed: {e}")))
}

fn one_result(
    id: String,
    names: Vec<String>,
    method: Method,
    began: Instant,
    scanned: image_cleaner_scanner::Result<image_cleaner_scanner::ImageScan>,
) -> ImageResult {
    let (scan, error) = match scanned {
        Ok(scan) => (Some(scan), None),
        Err(e) => (None, Some(e.to_string())),
    };
    ImageResult {
        id,
        names,
        method: Some(method),
        millis: began.elapsed().as_millis() as u64,
        scan,
        error,
    }
}

fn print_table(report: &ScanReport, severities: &BTreeSet<Severity>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for image in &report.images {
        let result = &image.result;
        let name = label(result);
        let Some(scan) = &result.scan else {
            writeln!(
                out,
                "{name}: NOT SCANNED: {}\n",
                result.error.as_deref().unwrap_or("unknown error")
            )?;
            continue;
        };
        let os = scan.os.as_ref().map_or_else(
            || "unknown OS".to_string(),
            |os| {
                let eol = if scan.end_of_life == Some(true) {
                    ", END OF LIFE"
                } else {
                    ""
                };
                format!("{} {}{eol}", os.family, os.version)
            },
        );
        let method = result.method.map_or("", |m| match m {
            Method::Snapshot => "snapshot",
            Method::Layers => "layers",
            Method::Trivy => "trivy",
            Method::Rootfs => "the directory",
            Method::Archive => "the archive",
        });
        writeln!(
            out,
            "{name} ({os}, {} packages, read from {method} in {} ms)",
            scan.packages, result.millis
        )?;
        for note in &scan.notes {
            writeln!(out, "  note: {note}")?;
        }
        let shown: Vec<_> = scan
            .findings
            .iter()
            .filter(|f| severities.contains(&f.severity))
            .collect();
        if !shown.is_empty() {
            let mut table = Table::new();
            table.load_preset(presets::NOTHING).set_header([
                "VULNERABILITY",
                "SEVERITY",
                "PACKAGE",
                "INSTALLED",
                "FIXED",
                "STATUS",
            ]);
            for f in shown {
                table.add_row([
                    f.vulnerability_id.clone(),
                    f.severity.to_string(),
                    f.package.clone(),
                    f.installed_version.clone(),
                    f.fixed_version.clone().unwrap_or_default(),
                    f.status.to_string(),
                ]);
            }
            for line in table.lines() {
                writeln!(out, "{}", line.trim_end())?;
            }
        }
        if image.condemned_by.is_empty() {
            writeln!(out, "  verdict: keep\n")?;
        } else {
            writeln!(
                out,
                "  verdict: vulnerable ({})\n",
                image.condemned_by.join(", ")
            )?;
        }
    }
    let s = &report.summary;
    let levels: Vec<&str> = s.severities.iter().map(|s| s.as_str()).collect();
    writeln!(
        out,
        "{} images scanned: {} vulnerable ({}), {} findings at those severities, {} could not be scanned.",
        s.images,
        s.vulnerable,
        levels.join(","),
        s.findings,
        s.failed
    )
}
