//! Command-line arguments. Values are checked here only for shape; `node` resolves them
//! into the engine's inputs and reports bad ones naming the flag.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Image Cleaner: removes container images nothing needs, never what runs or is excluded.
#[derive(Debug, Parser)]
#[command(name = "imagecleaner", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter for stderr (error, warn, info, debug, or a tracing filter); RUST_LOG wins.
    #[arg(long, global = true, env = "IMAGECLEANER_LOG")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan or clean the images of this node, against its runtime socket, with no cluster.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Print the ImageList and ImageJob CRDs as YAML.
    Crds(crate::crds::CrdsArgs),
    /// Check the manager's config file (EraserConfig).
    #[command(subcommand)]
    Config(crate::config::ConfigCommand),
    /// Report the vulnerabilities of images on this node, in an image archive or a root
    /// filesystem, from an offline database.
    Scan(crate::scan::ScanArgs),
    /// Build or inspect the offline vulnerability database.
    #[command(subcommand)]
    Db(crate::db::DbCommand),
    /// Run the cluster manager (in a pod, or against --kubeconfig).
    Manager(crate::manager::ManagerArgs),
    /// Run one node's worker (the program of the worker pods the manager creates).
    Worker(crate::worker::WorkerArgs),
    /// Print the manifests that install Image Cleaner (namespace, CRDs, RBAC, config,
    /// manager Deployment).
    Manifests(crate::manifests::ManifestsArgs),
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show what would be removed and why; changes nothing but the last-use state.
    Plan(NodeArgs),
    /// Remove what the plan says, re-checking each image right before removal.
    Clean(CleanArgs),
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// CRI endpoint of the runtime (unix:///path).
    #[arg(
        long,
        value_name = "URL",
        env = "IMAGECLEANER_RUNTIME_ENDPOINT",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub runtime_endpoint: String,
    /// Never remove images matching this pattern (ref, ID, digest, repo:*, prefix/*). Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Exclusions from a file: Eraser's {"excluded": [...]} JSON, or one pattern a line.
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Remove exactly the images matching these patterns ("*" for every non-running image),
    /// regardless of age or pod references; running, sandbox, pinned and excluded images stay.
    #[arg(long, value_name = "PATTERN")]
    pub remove: Vec<String>,
    /// Keep images used more recently than this (e.g. 90m, 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub min_unused: String,
    /// Where the last time each image was seen in use is kept across runs.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/imagecleaner")]
    pub state_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Node name for the report (default: NODE_NAME, else the host name).
    #[arg(long, env = "NODE_NAME", hide_env_values = true)]
    pub node_name: Option<String>,
    #[command(flatten)]
    pub scan: crate::scan::NodeScanArgs,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    #[command(flatten)]
    pub common: NodeArgs,
    /// Plan and re-check as for real, but remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The JSON report.
    Json,
}
