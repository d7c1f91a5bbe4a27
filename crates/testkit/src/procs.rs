//! Processes and mounts seen through `/proc`: finding a containerd's shims and their
//! containers, waiting for processes to go, and unmounting what a runtime left behind.
//! All of it is synchronous so that `Drop` can use it outside any async runtime.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How often waits poll.
const POLL: Duration = Duration::from_millis(20);

/// The `/proc/PID/stat` fields this module needs.
struct Stat {
    state: char,
    ppid: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so cut after the
    // last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid })
}

/// Whether `pid` is a live process. Zombies count as gone: they hold no resources, and a
/// reparented zombie may wait for an init that never reaps.
pub(crate) fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some(s) if s.state != 'Z' && s.state != 'X')
}

fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live containerd shims started for the containerd whose gRPC socket is `address`: their
/// command line carries `-address ADDRESS`.
pub(crate) fn shims_for(address: &Path) -> Vec<i32> {
    let address = address.to_string_lossy();
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let args = cmdline(pid);
            args.first().is_some_and(|a| a.contains("containerd-shim"))
                && args.iter().any(|a| *a == address)
                && alive(pid)
        })
        .collect()
}

/// Live direct children of `parent`.
pub(crate) fn children_of(parent: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(stat(pid), Some(s) if s.ppid == parent && s.state != 'Z'))
        .collect()
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn signal(pid: i32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid), signal);
}

/// Polls until none of `pids` is alive; false if `deadline` passed first.
pub(crate) fn wait_gone(pids: &[i32], deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if !pids.iter().any(|&p| alive(p)) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// What [`kill_shims`] did.
pub(crate) struct KilledShims {
    /// `(namespace, id)` of each shim's task group, from its `-namespace` and `-id` flags.
    pub groups: Vec<(String, String)>,
    /// PIDs still alive after the deadline.
    pub survivors: Vec<i32>,
}

/// Kills the shims of the containerd at `address` and the processes they run (container
/// init processes, which would otherwise outlive both), and waits for them to go.
pub(crate) fn kill_shims(address: &Path, deadline: Duration) -> KilledShims {
    let shims = shims_for(address);
    let groups = shims
        .iter()
        .filter_map(|&pid| {
            let args = cmdline(pid);
            let flag = |name: &str| {
                let at = args.iter().position(|a| a == name)?;
                args.get(at + 1).cloned()
            };
            Some((flag("-namespace")?, flag("-id")?))
        })
        .collect();
    let mut targets: Vec<i32> = shims.iter().flat_map(|&s| children_of(s)).collect();
    targets.extend(&shims);
    for &pid in &targets {
        signal(pid, Signal::SIGKILL);
    }
    wait_gone(&targets, deadline);
    KilledShims {
        groups,
        survivors: targets.into_iter().filter(|&p| alive(p)).collect(),
    }
}

/// Undoes the octal escapes (`\040` for a space) of a path in `/proc/self/mountinfo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
}

/// Lazily unmounts everything at or below `dir`, deepest first. Returns the mount points
/// that could not be unmounted, with the reason.
pub(crate) fn unmount_all_under(dir: &Path) -> Vec<(PathBuf, Errno)> {
    let mut failed = Vec::new();
    // Stacked mounts on one point need one umount each; bound the passes.
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Vec::new();
        }
        failed.clear();
        for mount in mounts {
            match umount2(&mount, MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(e) => failed.push((mount, e)),
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape(r"/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape(r"/tmp/x\\"), r"/tmp/x\\");
        assert_eq!(unescape(r"/tmp/\04"), r"/tmp/\04");
    }

    #[test]
    fn this_process_is_alive_and_has_a_parent() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        let parent = stat(me).unwrap().ppid;
        assert!(children_of(parent).contains(&me));
        assert!(!alive(i32::MAX));
    }
}
