//! Fan-out at scale: one removal job over thousands of nodes, against the loopback API server,
//! with the workers stubbed to report at once.
//!
//! The manager runs as its own process (the real `imagecleaner manager`, as its service
//! account, with the generated RBAC), so its peak RSS is its own. The nodes are Node objects
//! only; a stub kubelet marks every worker pod Succeeded with a worker report as soon as it
//! appears. What is measured, for each pod-creation rate:
//!
//! - fan-out: from the job's start to its `WorkersCreated` condition (every pod created),
//!   against the floor the client's token bucket sets: (nodes - burst) / rate;
//! - the whole job, from the ImageList's creation to the list's status recording the result;
//! - the manager's peak RSS (VmHWM) over its whole life, and the CPU time it and this process
//!   (the API server and the stub kubelet) spent on the job.
//!
//! Run: `cargo bench -p image-cleaner-cli --bench fanout -- [--nodes N] [--qps R,R...]`
//! (defaults: 5000 nodes, rates 50 and 500 per second).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt, stream};
use image_cleaner_api::constants::{
    MANAGER_CONFIG_KEY, MANAGER_CONFIG_MAP, MANAGER_SERVICE_ACCOUNT,
};
use image_cleaner_api::{ImageJob, ImageList, ImageListSpec, all_crds};
use image_cleaner_manager::manifests;
use image_cleaner_protocol::{PROTOCOL_VERSION, ReportOutcome, WorkerReport};
use image_cleaner_testkit::apiserver::{ApiServer, ServerOptions};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const NS: &str = "kube-system";
const IMAGE: &str = "ghcr.io/image-cleaner/imagecleaner:bench";
const BURST: u32 = 100;
const DEADLINE: Duration = Duration::from_secs(1800);

const CONFIG: &str = r#"apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  scheduling:
    repeatInterval: 24h
    beginImmediately: false
  imageJob:
    successRatio: 1.0
    cleanup:
      delayOnSuccess: 1h
      delayOnFailure: 1h
components:
  collector:
    enabled: false
"#;

struct Figures {
    qps: f64,
    nodes: usize,
    fan_out: Duration,
    floor: Duration,
    job: Duration,
    rss_idle_kib: u64,
    rss_peak_kib: u64,
    manager_cpu: Duration,
    bench_cpu: Duration,
}

fn main() -> anyhow::Result<()> {
    let mut nodes = 5000usize;
    let mut rates = vec![50.0, 500.0];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--nodes" => nodes = args.next().context("--nodes N")?.parse()?,
            "--qps" => {
                rates = args
                    .next()
                    .context("--qps R,R")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut figures = Vec::new();
    for qps in rates {
        figures.push(runtime.block_on(run(nodes, qps))?);
    }
    println!();
    println!(
        "| nodes | pod creates/s (burst {BURST}) | fan-out | floor | fan-out / floor | whole job | manager CPU | API server + stub CPU | manager RSS idle | manager peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for f in &figures {
        println!(
            "| {} | {} | {:.1} s | {:.1} s | {:.2} | {:.1} s | {:.1} s | {:.1} s | {:.1} MiB | {:.1} MiB |",
            f.nodes,
            f.qps,
            f.fan_out.as_secs_f64(),
            f.floor.as_secs_f64(),
            f.fan_out.as_secs_f64() / f.floor.as_secs_f64().max(0.001),
            f.job.as_secs_f64(),
            f.manager_cpu.as_secs_f64(),
            f.bench_cpu.as_secs_f64(),
            f.rss_idle_kib as f64 / 1024.0,
            f.rss_peak_kib as f64 / 1024.0,
        );
    }
    Ok(())
}

async fn run(nodes: usize, qps: f64) -> anyhow::Result<Figures> {
    eprintln!("== {nodes} nodes, {qps} pod creations per second");
    let crds = all_crds()
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let server = ApiServer::start(ServerOptions {
        crds,
        history_limit: 200_000,
        ..ServerOptions::default()
    })
    .await?;
    let admin = server.client()?;
    install(&admin).await?;
    let started = Instant::now();
    stream::iter(0..nodes)
        .map(|i| {
            let api: Api<Node> = Api::all(admin.clone());
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": format!("node-{i:05}"),
                                 "labels": {"kubernetes.io/os": "linux", "kubernetes.io/hostname": format!("node-{i:05}")}}
                }))?;
                api.create(&PostParams::default(), &node).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    eprintln!(
        "   {nodes} nodes created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let stub = tokio::spawn(stub_kubelet(admin.clone()));
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("manager.kubeconfig");
    let token = server
        .service_account_token(NS, MANAGER_SERVICE_ACCOUNT)
        .await?;
    std::fs::write(
        &kubeconfig,
        server.kubeconfig(&token, MANAGER_SERVICE_ACCOUNT),
    )?;
    let mut manager = tokio::process::Command::new(env!("CARGO_BIN_EXE_imagecleaner"))
        .args([
            "manager",
            "--namespace",
            NS,
            "--identity",
            "bench",
            "--image",
            IMAGE,
        ])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--metrics-bind-address", "127.0.0.1:0"])
        .args(["--health-probe-bind-address", "127.0.0.1:0"])
        .args(["--pod-create-qps", &qps.to_string()])
        .args(["--pod-create-burst", &BURST.to_string()])
        .env("IMAGECLEANER_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting the manager")?;
    let pid = manager.id().context("the manager's pid")?;

    // The manager is up when it has resolved a list: let it settle, then note its idle RSS.
    let lists: Api<ImageList> = Api::all(admin.clone());
    let probe = ImageList::new(
        "probe-exclusions",
        ImageListSpec {
            images: vec!["docker.io/library/nginx:1".into()],
            action: None,
        },
    );
    lists.create(&PostParams::default(), &probe).await?;
    wait(&lists, "probe-exclusions", |l| {
        l.status.as_ref().is_some_and(|s| s.action.is_some())
    })
    .await?;
    let rss_idle = rss(pid, "VmRSS")?;
    let manager_cpu_before = cpu(&pid.to_string())?;
    let bench_cpu_before = cpu("self")?;

    let list = ImageList::new(
        "imagelist",
        ImageListSpec {
            images: vec!["docker.io/library/alpine:3.7.3".into()],
            action: None,
        },
    );
    let t0 = Instant::now();
    lists.create(&PostParams::default(), &list).await?;
    wait(&lists, "imagelist", |l| {
        l.status
            .as_ref()
            .is_some_and(|s| s.observed_generation == Some(1) && s.timestamp.is_some())
    })
    .await?;
    let whole = t0.elapsed();
    let rss_peak = rss(pid, "VmHWM")?;
    let manager_cpu = cpu(&pid.to_string())?.saturating_sub(manager_cpu_before);
    let bench_cpu = cpu("self")?.saturating_sub(bench_cpu_before);

    let jobs: Api<ImageJob> = Api::all(admin.clone());
    let job = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .next()
        .context("the job")?;
    let status = job.status.clone().context("the job's status")?;
    anyhow::ensure!(
        status.succeeded as usize == nodes,
        "{} of {nodes} nodes succeeded: {status:?}",
        status.succeeded
    );
    let start = status.start_time.context("startTime")?.0;
    let created = status
        .conditions
        .iter()
        .find(|c| c.type_ == "WorkersCreated")
        .context("WorkersCreated")?
        .last_transition_time
        .0;
    let fan_out = Duration::try_from(created.duration_since(start))?;
    let floor = Duration::from_secs_f64((nodes as f64 - f64::from(BURST)).max(0.0) / qps);
    eprintln!(
        "   fan-out {:.1} s (floor {:.1} s), whole job {:.1} s, RSS idle {} KiB, peak {} KiB",
        fan_out.as_secs_f64(),
        floor.as_secs_f64(),
        whole.as_secs_f64(),
        rss_idle,
        rss_peak
    );
    manager.kill().await.ok();
    stub.abort();
    server.shutdown().await;
    Ok(Figures {
        qps,
        nodes,
        fan_out,
        floor,
        job: whole,
        rss_idle_kib: rss_idle,
        rss_peak_kib: rss_peak,
        manager_cpu,
        bench_cpu,
    })
}

/// Applies the generated manifests (not the CRDs, installed with the server).
async fn install(admin: &Client) -> anyhow::Result<()> {
    let objects = manifests::objects(&manifests::Options {
        namespace: NS.into(),
        interval_hours: 24,
        image: IMAGE.into(),
    })?;
    for mut object in objects {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "CustomResourceDefinition" {
            continue;
        }
        if kind == "ConfigMap" && object["metadata"]["name"] == MANAGER_CONFIG_MAP {
            object["data"][MANAGER_CONFIG_KEY] = Value::String(CONFIG.into());
        }
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let (group, version) = api_version
            .split_once('/')
            .map_or((String::new(), api_version.clone()), |(g, v)| {
                (g.to_owned(), v.to_owned())
            });
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, &kind));
        let object: DynamicObject = serde_json::from_value(object)?;
        let api: Api<DynamicObject> = match object.namespace() {
            Some(ns) => Api::namespaced_with(admin.clone(), &ns, &resource),
            None => Api::all_with(admin.clone(), &resource),
        };
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error).with_context(|| format!("creating {kind}")),
        }
    }
    Ok(())
}

/// Marks every new worker pod Succeeded at once, with a worker's report.
async fn stub_kubelet(admin: Client) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    let config = watcher::Config::default().labels("app=eraser");
    watcher(pods.clone(), config)
        .default_backoff()
        .applied_objects()
        .map_err(anyhow::Error::from)
        .try_filter(|pod| {
            let pending = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p == "Pending");
            futures::future::ready(pending)
        })
        .map_ok(|pod| {
            let pods = pods.clone();
            async move {
                let node = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default();
                let mut report = WorkerReport::failed(&node, "");
                report.version = PROTOCOL_VERSION;
                report.outcome = ReportOutcome::Succeeded;
                report.error = None;
                report.images = 10;
                report.kept = [("running".to_string(), 3)].into();
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let patch = json!({"status": {
                    "phase": "Succeeded",
                    "startTime": now,
                    "containerStatuses": [{
                        "name": "remover", "image": IMAGE, "imageID": "", "ready": false,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                            "startedAt": now, "finishedAt": now,
                            "message": report.encode_bounded(4096)}}
                    }]
                }});
                pods.patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .try_buffer_unordered(16)
        .try_for_each(|()| async { Ok(()) })
        .await
}

async fn wait(
    lists: &Api<ImageList>,
    name: &str,
    done: impl Fn(&ImageList) -> bool,
) -> anyhow::Result<()> {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(list) = lists.get_opt(name).await?
            && done(&list)
        {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("ImageList {name} not done within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// User + system CPU time of a process (`self` for this one) so far.
fn cpu(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("a stat line")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    let per_second = 100; // USER_HZ on Linux
    Ok(Duration::from_millis(ticks * 1000 / per_second))
}

/// A `/proc/PID/status` field, in KiB.
fn rss(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .with_context(|| format!("no {field} for pid {pid}"))
}
