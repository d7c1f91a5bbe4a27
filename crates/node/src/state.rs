//! Node-local state: the last time the cleaner saw each image in use.
//!
//! Pull and container times say when an image was last used only while the runtime still
//! remembers the containers; once kubelet garbage-collects an exited container, that memory
//! is gone. The cleaner therefore records, on every run, the images it saw in use, in a
//! small JSON file that survives restarts. A missing file is a first run; a corrupt one is
//! reported and rebuilt, never fatal: losing it only makes images look older than they are
//! to the `recent` rule, while `running`, `referenced` and the exclusions do not depend on it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use image_cleaner_core::{ImageId, LastSeen};
use serde::{Deserialize, Serialize};

/// File name of the state under the state directory.
pub const FILE_NAME: &str = "last-seen.json";
const FORMAT_VERSION: u32 = 1;

/// Where the state lives.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

/// A problem with the state that the run survives; the caller logs it.
#[derive(Debug, thiserror::Error)]
pub enum StateWarning {
    /// The file could not be read.
    #[error("cannot read the state file {path}: {source}; starting with empty last-use state")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file is not valid state.
    #[error("the state file {path} is corrupt ({why}); it will be rebuilt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file could not be written.
    #[error(
        "cannot write the state file {path}: {source}; last-use times will not survive this run"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    /// Image ID -> unix seconds when last seen in use.
    last_seen_in_use: BTreeMap<ImageId, u64>,
}

impl StateFile {
    /// The state file under `dir`.
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        StateFile {
            path: dir.as_ref().join(FILE_NAME),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the state. A missing file is empty state; an unreadable or corrupt one is empty
    /// state plus a warning.
    pub fn load(&self) -> (LastSeen, Option<StateWarning>) {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (LastSeen::default(), None),
            Err(source) => {
                let warning = StateWarning::Read {
                    path: self.path.clone(),
                    source,
                };
                return (LastSeen::default(), Some(warning));
            }
        };
        match serde_json::from_slice::<OnDisk>(&bytes) {
            Ok(disk) if disk.version == FORMAT_VERSION => {
                let seen = disk
                    .last_seen_in_use
                    .into_iter()
                    .map(|(id, secs)| (id, UNIX_EPOCH + Duration::from_secs(secs)))
                    .collect();
                (LastSeen(seen), None)
            }
            Ok(disk) => (
                LastSeen::default(),
                Some(StateWarning::Corrupt {
                    path: self.path.clone(),
                    why: format!("unknown format version {}", disk.version),
                }),
            ),
            Err(e) => (
                LastSeen::default(),
                Some(StateWarning::Corrupt {
                    path: self.path.clone(),
                    why: e.to_string(),
                }),
            ),
        }
    }

    /// Writes the state atomically (temporary file, then rename), so a crash mid-write
    /// leaves the previous state, not a torn file.
    pub fn save(&self, state: &LastSeen) -> Result<(), StateWarning> {
        let disk = OnDisk {
            version: FORMAT_VERSION,
            last_seen_in_use: state
                .0
                .iter()
                .map(|(id, at)| {
                    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                    (id.clone(), secs)
                })
                .collect(),
        };
        let write = || -> io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("json.tmp");
            let bytes = serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|source| StateWarning::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ImageId {
        ImageId::new(s)
    }

    #[test]
    fn round_trips_and_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path().join("nested"));
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let state = LastSeen([(id("sha256:aa"), at)].into());
        file.save(&state).unwrap();
        let (loaded, warning) = StateFile::in_dir(dir.path().join("nested")).load();
        assert!(warning.is_none());
        assert_eq!(loaded, state);
    }

    #[test]
    fn missing_file_is_empty_without_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (state, warning) = StateFile::in_dir(dir.path()).load();
        assert!(state.0.is_empty());
        assert!(warning.is_none());
    }

    #[test]
    fn corrupt_file_warns_and_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_dir(dir.path());
        std::fs::write(file.path(), b"{\"version\": 1, \"last_seen_in_use\": [tr").unwrap();
        let (state, warning) = file.load();
        assert!(state.0.is_empty());
        let warning = warning.unwrap().to_string();
        assert!(warning.contains("corrupt"), "{warning}");
        assert!(warning.contains(FILE_NAME), "{warning}");
        file.save(&LastSeen([(id("sha256:bb"), UNIX_EPOCH)].into()))
            .unwrap();
        assert_eq!(file.load().0.0.len(), 1);
    }
}
