//! The demo node prints one JSON line when ready and cleans up after SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const READY_DEADLINE: Duration = Duration::from_secs(60);
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn devnode_announces_itself_and_tears_down_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagecleaner-devnode"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = match rx.recv_timeout(READY_DEADLINE) {
        Ok(line) => line.unwrap(),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no ready line within {READY_DEADLINE:?}: {e}");
        }
    };
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let endpoint = ready["runtime_endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("unix:///"), "{ready}");
    let pid = ready["containerd_pid"].as_u64().unwrap() as i32;
    let state_dir = std::path::PathBuf::from(ready["state_dir"].as_str().unwrap());
    assert!(state_dir.is_dir());
    let images: Vec<&str> = ready["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(images.contains(&"docker.io/library/app:1.0"), "{ready}");
    assert!(images.contains(&"example.com/team/web:stable"), "{ready}");
    assert!(
        images
            .iter()
            .any(|i| i.starts_with("localhost:5000/tools/debug@sha256:")),
        "{ready}"
    );
    assert_eq!(
        ready["running"],
        serde_json::json!(["docker.io/library/app:1.1"])
    );

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let end = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("devnode did not exit within {EXIT_DEADLINE:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "containerd {pid} still runs"
    );
}
