//! Containers of "local" images run as ordinary processes on this machine: the configured
//! program (e.g. the real `imagecleaner` binary) with the pod's arguments and environment, in
//! its own process group, output to the container log. Stopping sends SIGTERM to the group,
//! then SIGKILL after the grace period; every group is remembered so the kubelet can kill
//! whatever is left when it shuts down or is dropped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Process groups of running local containers.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProcessGroups(Arc<Mutex<BTreeSet<i32>>>);

impl ProcessGroups {
    fn add(&self, pgid: i32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
    }

    fn remove(&self, pgid: i32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
    }

    /// SIGKILLs every remembered group.
    pub fn kill_all(&self) {
        let groups: Vec<i32> =
            std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        for pgid in groups {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    /// The remembered groups.
    pub fn list(&self) -> Vec<i32> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub log: PathBuf,
}

/// A running local container.
pub(crate) struct LocalContainer {
    child: tokio::process::Child,
    pgid: i32,
    groups: ProcessGroups,
}

impl LocalContainer {
    /// Starts `plan`.
    pub fn spawn(plan: &Plan, groups: &ProcessGroups) -> std::io::Result<LocalContainer> {
        if let Some(parent) = plan.log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::create_dir_all(&plan.working_dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&plan.log)?;
        let log_err = log.try_clone()?;
        let child = tokio::process::Command::new(&plan.program)
            .args(&plan.args)
            .env_clear()
            .envs(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&plan.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(0);
        if pgid > 0 {
            groups.add(pgid);
        }
        Ok(LocalContainer {
            child,
            pgid,
            groups: groups.clone(),
        })
    }

    /// The process ID.
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the process to end; its exit code (128 + signal when killed by one).
    pub async fn wait(&mut self) -> i32 {
        let code = match self.child.wait().await {
            Ok(status) => exit_code(status),
            Err(_) => 128,
        };
        // Whatever the main process left in its group goes with it, as with a container.
        if self.pgid > 0 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
            self.groups.remove(self.pgid);
        }
        code
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit code.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        if self.pgid > 0 {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                let code = exit_code(status);
                if self.pgid > 0 {
                    let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
                    self.groups.remove(self.pgid);
                }
                code
            }
            _ => {
                if self.pgid > 0 {
                    let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
                }
                self.wait().await
            }
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(128)
}
