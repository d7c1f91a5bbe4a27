//! `imagecleaner config check` and `imagecleaner crds`, run as an operator or CI would.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn imagecleaner(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagecleaner"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writes stdin");
    child.wait_with_output().expect("finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_config_prints_the_effective_config_and_warnings() {
    let config = "apiVersion: eraser.sh/v1alpha2
kind: EraserConfig
manager:
  runtime: crio
  schedulng: {repeatInterval: 1h}
";
    let output = imagecleaner(&["config", "check", "-"], config);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("address: unix:///run/crio/crio.sock"),
        "{stdout}"
    );
    assert!(
        stdout.contains("minUnused: 24h"),
        "derived defaults are shown: {stdout}"
    );
    assert!(
        stderr.contains(
            "warning: manager.schedulng: unknown key, ignored (did you mean manager.scheduling?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("converted from eraser.sh/v1alpha2"),
        "{stderr}"
    );

    let json = imagecleaner(&["config", "check", "-", "-o", "json"], config);
    assert_eq!(json.status.code(), Some(0));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["manager"]["runtime"]["name"], "crio");
}

#[test]
fn a_config_map_manifest_is_checked_too() {
    let manifest = "apiVersion: v1
kind: ConfigMap
metadata: {name: eraser-manager-config, namespace: kube-system}
data:
  controller_manager_config.yaml: |
    apiVersion: eraser.sh/v1alpha3
    kind: EraserConfig
    manager: {scheduling: {repeatInterval: 48h}}
";
    let output = imagecleaner(&["config", "check", "-"], manifest);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("repeatInterval: 48h"));
}

#[test]
fn every_error_is_printed_with_its_path_and_exit_2() {
    let config = "apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  nodeFilter: {type: both}
  scheduling: {repeatInterval: 1d}
  runtime: {name: containerd, address: \"tcp://10.0.0.1:2375\"}
";
    let output = imagecleaner(&["config", "check", "-"], config);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    for expected in [
        "3 errors in the config",
        "manager.nodeFilter.type: \"both\" is not one of exclude, include",
        "manager.scheduling.repeatInterval: invalid duration \"1d\"",
        "manager.runtime.address: \"tcp://10.0.0.1:2375\": tcp addresses are not supported",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    let missing = imagecleaner(&["config", "check", "/nonexistent/config.yaml"], "");
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn crds_prints_both_definitions() {
    let output = imagecleaner(&["crds"], "");
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.matches("kind: CustomResourceDefinition").count(), 2);
    assert!(stdout.contains("name: imagelists.eraser.sh"));
    assert!(stdout.contains("name: imagejobs.eraser.sh"));
}
