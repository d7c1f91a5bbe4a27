//! The cluster's vulnerability database, from its source to every node.
//!
//! An OSV export the size of a distribution's (synthetic records shaped like osv.dev's Debian
//! ones: aliases, summary and details, a CVSS vector, one to three affected releases) is served
//! over HTTP, as a mirror would. What is measured:
//!
//! - the manager getting it (`Keeper::prepare`: download, compile when it is a zip, check,
//!   hash), once from the zip and once from the pre-compiled file, each in its own process so
//!   its peak RSS (VmHWM) is its own — the manager's memory limit is 128 Mi;
//! - the hand-over: W workers fetching the copy from the manager at once
//!   (`database::fetch`: download, digest check, atomic write), against plain concurrent GETs
//!   of the same bytes from the same server in the same run (the floor); then the next run,
//!   when every node already has it.
//!
//! Run: `cargo bench -p image-cleaner-cli --bench database_handoff -- [--records N] [--workers W]`
//! (defaults: 60,000 records, 100 workers).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures::future::join_all;
use image_cleaner_api::GoDuration;
use image_cleaner_api::config::{DbLocation, DbSource};
use image_cleaner_manager::vulndb::{Keeper, KeeperSettings};
use image_cleaner_manager::{Metrics, Readiness, server};
use image_cleaner_worker::database;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// One synthetic record: the shape and size of osv.dev's Debian records.
fn record(n: usize) -> serde_json::Value {
    let year = 2005 + n % 21;
    let releases: &[&str] = match n % 4 {
        0 => &["Debian:11", "Debian:12"],
        1 => &["Debian:12"],
        2 => &["Debian:11", "Debian:12", "Debian:13"],
        _ => &["Debian:13"],
    };
    let package = format!("pkg{}", n % 9000);
    let affected: Vec<_> = releases
        .iter()
        .enumerate()
        .map(|(i, ecosystem)| {
            let mut events = vec![serde_json::json!({"introduced": "0"})];
            if !(n + i).is_multiple_of(5) {
                events.push(serde_json::json!({"fixed": format!("{}.{}.{}-{}+deb{}u{}", n % 7, n % 31, n % 13, 1 + n % 3, 11 + i, 1 + n % 4)}));
            }
            serde_json::json!({
                "package": {"ecosystem": ecosystem, "name": package, "purl": format!("pkg:deb/debian/{package}")},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": [format!("{}.{}-1", n % 7, n % 31)],
            })
        })
        .collect();
    serde_json::json!({
        "schema_version": "1.6.0",
        "id": format!("DEBIAN-CVE-{year}-{:05}", n),
        "modified": "2026-11-30T08:00:00Z",
        "published": format!("{year}-03-01T00:00:00Z"),
        "aliases": [format!("CVE-{year}-{:05}", n)],
        "summary": format!("{package}: buffer handling flaw in the parser of component {}", n % 97),
        "details": "A flaw was found in the way input was parsed. A remote attacker could use a crafted file to cause a denial of service or, possibly, execute arbitrary code with the privileges of the user running the program. ".repeat(1 + n % 2),
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"}],
        "affected": affected,
        "references": [{"type": "ADVISORY", "url": format!("https://security-tracker.debian.org/tracker/CVE-{year}-{:05}", n)}],
    })
}

fn write_export(path: &Path, records: usize) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for n in 0..records {
        let record = record(n);
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        zip.start_file(format!("{id}.json"), options)?;
        zip.write_all(record.to_string().as_bytes())?;
    }
    zip.finish()?;
    Ok(())
}

/// Serves the files of `dir` at `/<name>`.
async fn mirror(dir: PathBuf) -> anyhow::Result<SocketAddr> {
    use axum::extract::{Path as UrlPath, State};
    use axum::routing::get;
    async fn file(State(dir): State<PathBuf>, UrlPath(name): UrlPath<String>) -> Vec<u8> {
        tokio::fs::read(dir.join(name)).await.unwrap_or_default()
    }
    let app = axum::Router::new()
        .route("/{name}", get(file))
        .with_state(dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

fn kube_client() -> anyhow::Result<kube::Client> {
    // URL sources make no API call.
    let config = kube::Config::new("http://127.0.0.1:9".parse()?);
    Ok(kube::Client::try_from(config)?)
}

fn source(url: &str) -> DbSource {
    DbSource {
        location: DbLocation::Url(url.to_owned()),
        max_age: GoDuration::from_hours(168),
    }
}

/// In a child process: the manager getting the database from `url` into `dir`.
async fn keeper_child(url: &str, dir: &Path) -> anyhow::Result<()> {
    let keeper = Keeper::new(KeeperSettings {
        dir: dir.to_owned(),
        timeout: Duration::from_secs(1800),
        max_size: 4 << 30,
        max_compile: 4 << 30,
    });
    let started = Instant::now();
    let prepared = keeper
        .prepare(
            &kube_client()?,
            "kube-system",
            &source(url),
            Some("http://127.0.0.1:1"),
            SystemTime::now(),
        )
        .await;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(problem) = prepared.handoff.problem {
        bail!("{problem}");
    }
    println!(
        "{seconds:.3} {:.1} {}",
        peak_rss_mib(),
        prepared.handoff.size
    );
    Ok(())
}

struct Measured {
    seconds: f64,
    rss_mib: f64,
    size: u64,
}

fn measure_keeper(url: &str, dir: &Path) -> anyhow::Result<Measured> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--keeper", url])
        .arg(dir)
        .output()?;
    if !output.status.success() {
        bail!("{}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [seconds, rss, size] = fields[..] else {
        bail!("unexpected child output {text:?}");
    };
    Ok(Measured {
        seconds: seconds.parse()?,
        rss_mib: rss.parse()?,
        size: size.parse()?,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--keeper") {
        let url = args.get(i + 1).context("--keeper URL DIR")?;
        let dir = args.get(i + 2).context("--keeper URL DIR")?;
        return keeper_child(url, Path::new(dir)).await;
    }
    let value = |flag: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let records = value("--records", 60_000);
    let workers = value("--workers", 100);

    let work = tempfile::tempdir()?;
    let served = work.path().join("mirror");
    std::fs::create_dir_all(&served)?;
    let started = Instant::now();
    write_export(&served.join("all.zip"), records)?;
    let zip_size = std::fs::metadata(served.join("all.zip"))?.len();
    eprintln!(
        "export: {records} records, {:.1} MiB zip, written in {:.1} s",
        mib(zip_size),
        started.elapsed().as_secs_f64()
    );
    image_cleaner_scanner::db::build(
        &served.join("all.zip"),
        &served.join("vulns.db"),
        SystemTime::now(),
    )?;
    let address = mirror(served.clone()).await?;

    let from_zip = measure_keeper(
        &format!("http://{address}/all.zip"),
        &work.path().join("keeper-zip"),
    )?;
    let from_db = measure_keeper(
        &format!("http://{address}/vulns.db"),
        &work.path().join("keeper-db"),
    )?;

    // The manager's server, serving a copy; W workers fetch it at once.
    let keeper = Keeper::new(KeeperSettings {
        dir: work.path().join("manager"),
        ..KeeperSettings::default()
    });
    let listener = server::bind("127.0.0.1:0".parse()?).await?;
    let manager = listener.local_addr()?;
    tokio::spawn(server::serve(
        listener,
        server::Served {
            metrics: Metrics::new(),
            readiness: Readiness::default(),
            shelf: keeper.shelf(),
        },
        tokio_util::sync::CancellationToken::new(),
    ));
    let prepared = keeper
        .prepare(
            &kube_client()?,
            "kube-system",
            &source(&format!("http://{address}/vulns.db")),
            Some(&format!("http://{manager}")),
            SystemTime::now(),
        )
        .await;
    let handoff = prepared.handoff;
    if let Some(problem) = &handoff.problem {
        bail!("{problem}");
    }
    let url = handoff.url.clone().context("a URL")?;
    let nodes: Vec<PathBuf> = (0..workers)
        .map(|i| work.path().join(format!("node-{i}")))
        .collect();

    // The floor: the same bytes, W plain GETs at once, from the same server.
    let client = reqwest::Client::new();
    let started = Instant::now();
    let raw = join_all((0..workers).map(|_| {
        let client = client.clone();
        let url = url.clone();
        async move { client.get(&url).send().await?.bytes().await }
    }))
    .await;
    let floor = started.elapsed().as_secs_f64();
    for bytes in raw {
        if bytes?.len() as u64 != handoff.size {
            bail!("a plain GET got the wrong size");
        }
    }
    drop(client);

    let started = Instant::now();
    let first = join_all(
        nodes
            .iter()
            .map(|dir| database::fetch(&handoff, dir, Duration::from_secs(600))),
    )
    .await;
    let fetch = started.elapsed().as_secs_f64();
    for result in first {
        let (_, downloaded) = result?;
        if !downloaded {
            bail!("a node had the database before the first run");
        }
    }
    let started = Instant::now();
    let again = join_all(
        nodes
            .iter()
            .map(|dir| database::fetch(&handoff, dir, Duration::from_secs(600))),
    )
    .await;
    let cached = started.elapsed().as_secs_f64();
    for result in again {
        let (_, downloaded) = result?;
        if downloaded {
            bail!("a node downloaded the same database again");
        }
    }

    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| OSV export | {records} records, {:.1} MiB zip → {:.1} MiB compiled |",
        mib(zip_size),
        mib(from_db.size)
    );
    println!(
        "| manager gets the zip (download, compile, check, hash) | {:.2} s, peak RSS {:.1} MiB |",
        from_zip.seconds, from_zip.rss_mib
    );
    println!(
        "| manager gets the compiled file (download, check, hash) | {:.2} s, peak RSS {:.1} MiB |",
        from_db.seconds, from_db.rss_mib
    );
    println!(
        "| {workers} workers fetch it at once (download, digest, write) | {fetch:.2} s; plain GETs of the same bytes {floor:.2} s (ratio {:.2}) |",
        fetch / floor
    );
    println!(
        "| bytes moved in the cluster, first run / next run | {:.0} MiB / 0 (next run: {cached:.3} s, every node has it) |",
        mib(handoff.size) * workers as f64
    );
    println!(
        "| bytes each node takes from outside the cluster, every run | 0 (Eraser: the Trivy DB, 40.6 MiB published, per node per run) |"
    );
    Ok(())
}
