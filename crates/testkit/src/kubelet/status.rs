//! The pod status the fake kubelet reports, shaped like kubelet's: phase, the five standard
//! conditions, host and pod IPs (host network: 127.0.0.1), and per container its state
//! (`waiting` with a reason, `running` since, `terminated` with exit code, reason, message and
//! times), last state, restart count, readiness, image and container ID.

use serde_json::{Value, json};

/// One container's state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: String,
        finished_at: String,
    },
}

impl State {
    fn to_value(&self, container_id: &str) -> Value {
        match self {
            State::Waiting { reason, message } => {
                let mut v = json!({"waiting": {"reason": reason}});
                if let Some(m) = message {
                    v["waiting"]["message"] = json!(m);
                }
                v
            }
            State::Running { started_at } => json!({"running": {"startedAt": started_at}}),
            State::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => {
                let mut v = json!({"terminated": {
                    "exitCode": exit_code, "reason": reason,
                    "startedAt": started_at, "finishedAt": finished_at}});
                if let Some(m) = message.as_ref().filter(|m| !m.is_empty()) {
                    v["terminated"]["message"] = json!(m);
                }
                if !container_id.is_empty() {
                    v["terminated"]["containerID"] = json!(container_id);
                }
                v
            }
        }
    }
}

/// One container's status.
#[derive(Clone, Debug)]
pub(crate) struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
}

impl ContainerStatus {
    pub fn waiting(name: &str, image: &str, reason: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: String::new(),
            state: State::Waiting {
                reason: reason.to_string(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn to_value(&self) -> Value {
        json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "containerID": if self.container_id.is_empty() { Value::Null } else { json!(self.container_id) },
            "state": self.state.to_value(&self.container_id),
            "lastState": self.last_state.as_ref().map(|s| s.to_value("")).unwrap_or_else(|| json!({})),
            "ready": self.running(),
            "started": self.running(),
            "restartCount": self.restart_count,
        })
    }
}

/// The whole pod status.
#[derive(Clone, Debug)]
pub(crate) struct PodStatus {
    pub phase: &'static str,
    pub start_time: String,
    pub init: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    pub initialized: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
}

fn condition(kind: &str, ok: bool, now: &str, reason: Option<&str>) -> Value {
    let mut c = json!({"type": kind, "status": if ok { "True" } else { "False" },
                       "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(reason) = reason.filter(|_| !ok) {
        c["reason"] = json!(reason);
    }
    c
}

impl PodStatus {
    /// The `status` object (with `null` for fields the kubelet clears, so a merge patch
    /// removes them).
    pub fn to_value(&self, now: &str) -> Value {
        let all_running =
            !self.containers.is_empty() && self.containers.iter().all(ContainerStatus::running);
        let finished = matches!(self.phase, "Succeeded" | "Failed");
        let not_ready_reason = if finished {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        };
        json!({
            "phase": self.phase,
            "conditions": [
                condition("PodReadyToStartContainers", !finished, now, None),
                condition("Initialized", self.initialized, now, Some("ContainersNotInitialized")),
                condition("Ready", all_running, now, Some(not_ready_reason)),
                condition("ContainersReady", all_running, now, Some(not_ready_reason)),
                condition("PodScheduled", true, now, None),
            ],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time,
            "qosClass": "BestEffort",
            "reason": self.reason,
            "message": self.message,
            "initContainerStatuses": if self.init.is_empty() { Value::Null } else {
                Value::Array(self.init.iter().map(ContainerStatus::to_value).collect())
            },
            "containerStatuses": self.containers.iter().map(ContainerStatus::to_value).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminated_containers_carry_the_message() {
        let status = ContainerStatus {
            name: "worker".into(),
            image: "img".into(),
            image_id: "img".into(),
            container_id: "process://1".into(),
            state: State::Terminated {
                exit_code: 0,
                reason: "Completed".into(),
                message: Some("{\"removed\":3}".into()),
                started_at: "a".into(),
                finished_at: "b".into(),
            },
            last_state: None,
            restart_count: 0,
        };
        let value = status.to_value();
        assert_eq!(value["state"]["terminated"]["message"], "{\"removed\":3}");
        assert_eq!(value["ready"], false);
        let pod = PodStatus {
            phase: "Succeeded",
            start_time: "t".into(),
            init: Vec::new(),
            containers: vec![status],
            initialized: true,
            reason: None,
            message: None,
        }
        .to_value("now");
        assert_eq!(pod["conditions"][2]["reason"], "PodCompleted");
        assert!(pod["initContainerStatuses"].is_null());
    }
}
