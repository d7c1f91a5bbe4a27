//! Where a container's paths live on this machine, and how a local process is told.
//!
//! A container sees its volumes at their `mountPath`s and writes its termination message to
//! `terminationMessagePath`; a local process cannot (no mount namespace). So the fake kubelet
//! keeps a table from each container path to the host path standing in for it, and rewrites
//! every command argument and environment value that names one of those container paths:
//!
//! - a value equal to a container path, or starting with it followed by `/`, e.g.
//!   `/config/eraser.yaml` under a ConfigMap mounted at `/config`;
//! - the same after `=` (`--config=/config/x.yaml`), `:` or `unix://`
//!   (`unix:///run/cri/cri.sock`).
//!
//! Longer container paths win over shorter ones. Paths that are not in the table (not a volume
//! mount, not the termination message path) are left alone.

/// Container path → host path, longest container path first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathTable {
    entries: Vec<(String, String)>,
}

impl PathTable {
    /// Maps `container` to `host` (a later mapping of the same path wins).
    pub fn insert(&mut self, container: &str, host: &str) {
        let container = container.trim_end_matches('/');
        let container = if container.is_empty() { "/" } else { container };
        self.entries.retain(|(c, _)| c != container);
        self.entries.push((container.to_string(), host.to_string()));
        self.entries
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    }

    /// The host path standing in for container path `container`, if it is mapped.
    pub fn host_path(&self, container: &str) -> Option<String> {
        self.entries.iter().find_map(|(c, h)| {
            if container == c {
                Some(h.clone())
            } else {
                container
                    .strip_prefix(c.as_str())
                    .filter(|rest| rest.starts_with('/'))
                    .map(|rest| format!("{h}{rest}"))
            }
        })
    }

    /// `value` with every container path it names rewritten to its host path.
    pub fn rewrite(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut i = 0;
        let bytes = value.as_bytes();
        'outer: while i < value.len() {
            let at_boundary = i == 0
                || matches!(bytes[i - 1], b'=' | b':' | b' ' | b'"' | b'\'' | b',')
                || value[..i].ends_with("unix://");
            if at_boundary && bytes[i] == b'/' {
                for (container, host) in &self.entries {
                    if container == "/" {
                        continue;
                    }
                    let end = i + container.len();
                    let ends_well = value[i..].starts_with(container.as_str())
                        && (end == value.len()
                            || matches!(
                                bytes[end],
                                b'/' | b' ' | b'"' | b'\'' | b',' | b';' | b':'
                            ));
                    if ends_well {
                        out.push_str(host);
                        i = end;
                        continue 'outer;
                    }
                }
            }
            let c = value[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PathTable {
        let mut t = PathTable::default();
        t.insert("/config", "/tmp/pod/volumes/config");
        t.insert(
            "/run/cri/cri.sock",
            "/tmp/node/run/containerd/containerd.sock",
        );
        t.insert("/dev/termination-log", "/tmp/pod/termination/worker");
        t.insert("/config/nested", "/tmp/pod/volumes/nested");
        t
    }

    #[test]
    fn arguments_naming_container_paths_are_rewritten() {
        let t = table();
        assert_eq!(
            t.rewrite("/config/eraser.yaml"),
            "/tmp/pod/volumes/config/eraser.yaml"
        );
        assert_eq!(
            t.rewrite("--config=/config"),
            "--config=/tmp/pod/volumes/config"
        );
        assert_eq!(
            t.rewrite("unix:///run/cri/cri.sock"),
            "unix:///tmp/node/run/containerd/containerd.sock"
        );
        assert_eq!(t.rewrite("/config/nested/x"), "/tmp/pod/volumes/nested/x");
        assert_eq!(
            t.rewrite("echo done > /dev/termination-log"),
            "echo done > /tmp/pod/termination/worker"
        );
        // Not a mapped path, or not at a boundary.
        assert_eq!(t.rewrite("/configuration"), "/configuration");
        assert_eq!(t.rewrite("/etc/config"), "/etc/config");
        assert_eq!(t.rewrite("plain"), "plain");
        assert_eq!(t.rewrite(""), "");
    }

    #[test]
    fn host_paths_follow_the_longest_mount() {
        let t = table();
        assert_eq!(
            t.host_path("/config/a").as_deref(),
            Some("/tmp/pod/volumes/config/a")
        );
        assert_eq!(
            t.host_path("/config/nested").as_deref(),
            Some("/tmp/pod/volumes/nested")
        );
        assert_eq!(t.host_path("/other"), None);
    }
}
