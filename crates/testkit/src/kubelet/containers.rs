//! Starting a pod's containers and following them: a local process for the cleaner's own
//! images ([`super::process`]), a CRI container in the pod's sandbox for all others
//! ([`super::sandbox`]); the environment and path rewriting a local process gets; the
//! termination message read when a container ends; and the supervision that stops a
//! container when its pod is deleted.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::{mpsc, watch};

use super::env::{self, ConfigError};
use super::paths::PathTable;
use super::pod::{Signal, Worker};
use super::process::{LocalContainer, Plan};
use super::sandbox::{CriPlan, CriPod, image_id};
use super::volumes::path_table;

/// Largest termination message kept, as kubelet's limit.
const MESSAGE_LIMIT: usize = 4096;

/// A running container.
pub(super) enum Handle {
    Local(LocalContainer),
    Cri { pod: Box<CriPod>, id: String },
}

/// How a container ended.
pub(super) struct Ended {
    pub code: i32,
    pub reason: String,
}

impl Handle {
    async fn wait(&mut self) -> Ended {
        match self {
            Handle::Local(local) => {
                let code = local.wait().await;
                Ended {
                    code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                }
            }
            Handle::Cri { pod, id } => {
                let exit = pod.wait(id).await;
                Ended {
                    code: exit.code,
                    reason: exit.reason,
                }
            }
        }
    }

    async fn stop(&mut self, grace: Duration) -> Ended {
        match self {
            Handle::Local(local) => {
                let code = local.stop(grace).await;
                Ended {
                    code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                }
            }
            Handle::Cri { pod, id } => {
                let exit = pod.stop(id, grace).await;
                Ended {
                    code: exit.code,
                    reason: exit.reason,
                }
            }
        }
    }
}

/// Why a container could not start.
pub(super) enum StartFailure {
    /// Stays waiting and is retried (missing image, missing config).
    Waiting { reason: String, message: String },
    /// Counts as a run that failed at once (the program could not be executed).
    Failed { message: String },
}

/// Runs a container until it exits or the pod is stopped; reports `(index, ended)`.
pub(super) async fn supervise(
    index: usize,
    mut handle: Handle,
    signal: watch::Receiver<Signal>,
    max_grace: Duration,
    report: mpsc::UnboundedSender<(usize, Ended)>,
) {
    let ended = handle.wait_or_stop(signal, max_grace).await;
    let _ = report.send((index, ended));
}

impl Worker {
    /// Writes the kubeconfig local processes use: this server, the pod's projected token.
    pub(super) fn write_kubeconfig(&mut self) {
        let token = self
            .volumes
            .iter()
            .map(|(_, path)| path.join("token"))
            .find(|path| path.is_file())
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default();
        let user = crate::apiserver::service_account_username(
            &self.namespace,
            self.pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.as_deref())
                .unwrap_or("default"),
        );
        let yaml = crate::apiserver::kubeconfig_yaml(
            &self.ctx.server_url,
            &self.ctx.server_ca,
            &token,
            &user,
        );
        let path = self.dir.kubeconfig();
        let written =
            std::fs::create_dir_all(&self.dir.root).and_then(|()| std::fs::write(&path, yaml));
        match written {
            Ok(()) => self.kubeconfig = Some(path),
            Err(e) => tracing::warn!("writing {}: {e}", path.display()),
        }
    }

    fn local_program(&self, image: &str) -> Option<PathBuf> {
        self.ctx
            .local_images
            .iter()
            .find(|l| l.matches(image))
            .map(|l| l.program.clone())
    }

    /// The base environment of a local process (the pod's variables override it).
    fn base_env(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (
                "PATH".to_string(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOSTNAME".to_string(), self.name.clone()),
            (
                "HOME".to_string(),
                self.dir.root.join("home").to_string_lossy().into_owned(),
            ),
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "127.0.0.1".to_string(),
            ),
            (
                "KUBERNETES_SERVICE_PORT".to_string(),
                self.ctx.server_port.to_string(),
            ),
        ];
        if let Some(kubeconfig) = &self.kubeconfig {
            vars.push((
                "KUBECONFIG".to_string(),
                kubeconfig.to_string_lossy().into_owned(),
            ));
        }
        for key in ["RUST_LOG", "RUST_BACKTRACE"] {
            if let Ok(value) = std::env::var(key) {
                vars.push((key.to_string(), value));
            }
        }
        vars.extend(self.ctx.extra_env.iter().cloned());
        vars
    }

    pub(super) async fn start(
        &mut self,
        container: &Container,
        attempt: u32,
    ) -> Result<(Handle, String, String), StartFailure> {
        let image = container.image.clone().unwrap_or_default();
        let vars = env::container_env(&mut self.sources, &self.pod, container)
            .await
            .map_err(|ConfigError(message)| StartFailure::Waiting {
                reason: "CreateContainerConfigError".into(),
                message,
            })?;
        let table = path_table(container, &self.volumes, &self.dir);
        let termination = self.dir.termination(&container.name);
        let prepared = std::fs::create_dir_all(self.dir.root.join("termination"))
            .and_then(|()| std::fs::write(&termination, b""));
        if let Err(e) = prepared {
            return Err(StartFailure::Failed {
                message: format!("creating {}: {e}", termination.display()),
            });
        }
        let expand = |values: &[String]| -> Vec<String> {
            values.iter().map(|v| env::expand(v, &vars)).collect()
        };
        let command = expand(container.command.as_deref().unwrap_or_default());
        let args = expand(container.args.as_deref().unwrap_or_default());
        match self.local_program(&image) {
            Some(program) => self.start_local(container, program, &command, &args, &vars, &table),
            None => {
                self.start_cri(container, &image, command, args, vars, &table, attempt)
                    .await
            }
        }
    }

    fn start_local(
        &self,
        container: &Container,
        program: PathBuf,
        command: &[String],
        args: &[String],
        vars: &[(String, String)],
        table: &PathTable,
    ) -> Result<(Handle, String, String), StartFailure> {
        let image = container.image.clone().unwrap_or_default();
        let mut env = self.base_env();
        for (k, v) in vars {
            env.retain(|(existing, _)| existing != k);
            env.push((k.clone(), table.rewrite(v)));
        }
        let arguments: Vec<String> = command
            .iter()
            .skip(1)
            .chain(args.iter())
            .map(|a| table.rewrite(a))
            .collect();
        let working_dir = container
            .working_dir
            .as_deref()
            .and_then(|w| table.host_path(w))
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir.root.join("work"));
        let plan = Plan {
            program,
            args: arguments,
            env,
            working_dir,
            log: self.dir.log(&container.name),
        };
        match LocalContainer::spawn(&plan, &self.ctx.groups) {
            Ok(local) => {
                let id = format!("process://{}", local.pid());
                Ok((Handle::Local(local), id, image))
            }
            Err(e) => Err(StartFailure::Failed {
                message: format!("starting {}: {e}", plan.program.display()),
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn start_cri(
        &mut self,
        container: &Container,
        image: &str,
        command: Vec<String>,
        args: Vec<String>,
        vars: Vec<(String, String)>,
        table: &PathTable,
        attempt: u32,
    ) -> Result<(Handle, String, String), StartFailure> {
        let endpoint = self.ctx.endpoint.clone();
        let id = match image_id(&endpoint, image).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err(StartFailure::Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: format!(
                        "image {image} is not present on node {} and this test cluster has no registry to pull from",
                        self.ctx.name
                    ),
                });
            }
            Err(e) => {
                return Err(StartFailure::Waiting {
                    reason: "ContainerCreating".into(),
                    message: format!("{e:#}"),
                });
            }
        };
        if self.cri.is_none() {
            let logs = self.dir.root.join("logs");
            let _ = std::fs::create_dir_all(&logs);
            match CriPod::run(
                &endpoint,
                &self.name,
                &self.namespace,
                &self.uid,
                &logs.to_string_lossy(),
            )
            .await
            {
                Ok(pod) => self.cri = Some(pod),
                Err(e) => {
                    return Err(StartFailure::Waiting {
                        reason: "ContainerCreating".into(),
                        message: format!("creating the pod sandbox: {e:#}"),
                    });
                }
            }
        }
        let Some(pod) = self.cri.clone() else {
            return Err(StartFailure::Waiting {
                reason: "ContainerCreating".into(),
                message: "no pod sandbox".into(),
            });
        };
        let mut mounts: Vec<(String, String, bool)> = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            if let Some(host) = table.host_path(&mount.mount_path) {
                mounts.push((
                    mount.mount_path.clone(),
                    host,
                    mount.read_only == Some(true),
                ));
            }
        }
        let termination_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push((
            termination_path,
            self.dir
                .termination(&container.name)
                .to_string_lossy()
                .into_owned(),
            false,
        ));
        let plan = CriPlan {
            name: container.name.clone(),
            image: id,
            user_image: image.to_string(),
            command,
            args,
            env: vars,
            working_dir: container.working_dir.clone().unwrap_or_default(),
            mounts,
        };
        match pod.start(&plan, attempt).await {
            Ok(id) => {
                let image_id = pod
                    .image_ref(&id)
                    .await
                    .unwrap_or_else(|| image.to_string());
                Ok((
                    Handle::Cri {
                        pod: Box::new(pod),
                        id: id.clone(),
                    },
                    format!("containerd://{id}"),
                    image_id,
                ))
            }
            Err(e) => Err(StartFailure::Failed {
                message: format!("{e:#}"),
            }),
        }
    }

    /// The termination message of a container that ended with `code`.
    pub(super) fn message(&self, container: &Container, code: i32, attempt: u32) -> Option<String> {
        let mut message = std::fs::read(self.dir.termination(&container.name)).unwrap_or_default();
        message.truncate(MESSAGE_LIMIT);
        let fallback =
            container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
        if message.is_empty() && fallback && code != 0 {
            let local = self.dir.log(&container.name);
            let cri = self
                .dir
                .root
                .join("logs")
                .join(format!("{}_{attempt}.log", container.name));
            let text = std::fs::read_to_string(&local)
                .or_else(|_| {
                    // CRI log lines are "TIME STREAM TAG MESSAGE".
                    std::fs::read_to_string(&cri).map(|t| {
                        t.lines()
                            .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                })
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            let start = tail.len().saturating_sub(2048);
            let start = (start..tail.len())
                .find(|&i| tail.is_char_boundary(i))
                .unwrap_or(tail.len());
            message = tail.as_bytes()[start..].to_vec();
        }
        (!message.is_empty()).then(|| String::from_utf8_lossy(&message).into_owned())
    }
}

impl Handle {
    /// Waits for the end, or stops the container when the pod is stopped.
    pub(super) async fn wait_or_stop(
        &mut self,
        mut signal: watch::Receiver<Signal>,
        max_grace: Duration,
    ) -> Ended {
        loop {
            let current = *signal.borrow_and_update();
            match current {
                Signal::Run => {}
                Signal::Terminate(seconds) => {
                    return self.stop(Duration::from_secs(seconds).min(max_grace)).await;
                }
                Signal::Removed => return self.stop(Duration::ZERO).await,
            }
            tokio::select! {
                ended = self.wait() => return ended,
                changed = signal.changed() => {
                    if changed.is_err() {
                        return self.stop(Duration::ZERO).await;
                    }
                }
            }
        }
    }
}
