//! The object store: etcd's role. One global, strictly increasing revision numbers every write
//! (it becomes the object's `resourceVersion`), and a bounded history of changes serves three
//! things a real server gets from etcd: watches resumed from a revision (`410 Gone` once it
//! fell out of the history), consistent paginated lists (a continue token lists the state as
//! of its revision, rebuilt by undoing later changes), and exact-revision lists.
//!
//! Everything sits behind one mutex, never held across an `.await`; the registry of served
//! types lives inside it so a CRD write and the type it serves change together. Changes are
//! broadcast after they are recorded, in revision order, while the lock is held, so a watcher
//! that reads the history and subscribes under the lock sees every change exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::meta;
use super::resources::{Registry, ResourceId};

/// An object's key within its resource: namespace (empty when cluster-scoped) and name.
pub(crate) type Key = (String, String);

/// What a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One recorded write.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub resource: ResourceId,
    pub kind: ChangeKind,
    /// The object after the change (for a deletion: its last state, at the deletion's
    /// revision).
    pub object: Arc<Value>,
    /// The object before the change (none for an addition).
    pub prev: Option<Arc<Value>>,
}

impl Change {
    /// The object's key.
    pub fn key(&self) -> Key {
        (
            meta::namespace(&self.object).to_string(),
            meta::name(&self.object).to_string(),
        )
    }
}

/// The asked-for revision is older than the history reaches.
#[derive(Debug)]
pub(crate) struct TooOld {
    pub oldest: u64,
}

/// The changes after a revision and a subscription to the ones that follow.
pub(crate) type Resumed = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// The store.
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<ResourceId, BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// Every change after this revision is still in `history`.
    floor: u64,
    sender: broadcast::Sender<Arc<Change>>,
    /// The served types.
    pub registry: Registry,
    /// The cluster CA (PEM), published in every namespace's `kube-root-ca.crt`.
    pub root_ca: String,
}

/// How many changes a watcher may fall behind before it is cut off (it then resumes from
/// its last revision, or relists after a 410).
const BROADCAST_CAPACITY: usize = 8192;

impl Store {
    /// An empty store keeping the last `history_limit` changes.
    pub fn new(history_limit: usize) -> Store {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            floor: 1,
            sender,
            registry: Registry::default(),
            root_ca: String::new(),
        }
    }

    /// The latest revision.
    pub fn revision(&self) -> u64 {
        self.rv
    }

    /// One object.
    pub fn get(&self, resource: &ResourceId, key: &Key) -> Option<Arc<Value>> {
        self.objects.get(resource)?.get(key).cloned()
    }

    /// The current objects of `resource` (in `namespace` if given), ordered by key.
    pub fn list(&self, resource: &ResourceId, namespace: Option<&str>) -> Vec<(Key, Arc<Value>)> {
        let Some(objects) = self.objects.get(resource) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => objects
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Every resource that has objects.
    pub fn resources(&self) -> Vec<ResourceId> {
        self.objects
            .iter()
            .filter(|(_, objects)| !objects.is_empty())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The objects of `resource` as they were at revision `rv`.
    pub fn snapshot(
        &self,
        resource: &ResourceId,
        rv: u64,
    ) -> Result<BTreeMap<Key, Arc<Value>>, TooOld> {
        if rv < self.floor {
            return Err(TooOld { oldest: self.floor });
        }
        let mut state: BTreeMap<Key, Arc<Value>> =
            self.objects.get(resource).cloned().unwrap_or_default();
        for change in self.history.iter().rev() {
            if change.rv <= rv {
                break;
            }
            if change.resource != *resource {
                continue;
            }
            let key = change.key();
            match &change.prev {
                Some(prev) => {
                    state.insert(key, prev.clone());
                }
                None => {
                    state.remove(&key);
                }
            }
        }
        Ok(state)
    }

    /// The changes after revision `rv`, oldest first, and a subscription to those that follow.
    pub fn watch_from(&self, rv: u64) -> Result<Resumed, TooOld> {
        if rv < self.floor {
            return Err(TooOld { oldest: self.floor });
        }
        let past = self.history.iter().filter(|c| c.rv > rv).cloned().collect();
        Ok((past, self.sender.subscribe()))
    }

    /// A subscription to all future changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.sender.subscribe()
    }

    /// Stores `object` (its `resourceVersion` set to a new revision), recording an addition or
    /// a modification. Returns the stored object.
    pub fn put(&mut self, resource: &ResourceId, mut object: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        meta::metadata_mut(&mut object)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        let object = Arc::new(object);
        let key = (
            meta::namespace(&object).to_string(),
            meta::name(&object).to_string(),
        );
        let prev = self
            .objects
            .entry(resource.clone())
            .or_default()
            .insert(key, object.clone());
        let kind = if prev.is_some() {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        self.record(Change {
            rv,
            resource: resource.clone(),
            kind,
            object: object.clone(),
            prev,
        });
        object
    }

    /// Removes an object, recording a deletion. Returns its last state (with the deletion's
    /// revision as its `resourceVersion`).
    pub fn remove(&mut self, resource: &ResourceId, key: &Key) -> Option<Arc<Value>> {
        self.remove_as(resource, key, None)
    }

    /// Removes an object whose last state is `last` (e.g. its final update, the one removing
    /// the last finalizer), recording one deletion.
    pub fn remove_as(
        &mut self,
        resource: &ResourceId,
        key: &Key,
        last: Option<Value>,
    ) -> Option<Arc<Value>> {
        let prev = self.objects.get_mut(resource)?.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        let mut last = last.unwrap_or_else(|| (*prev).clone());
        meta::metadata_mut(&mut last)
            .insert("resourceVersion".into(), Value::String(rv.to_string()));
        let last = Arc::new(last);
        self.record(Change {
            rv,
            resource: resource.clone(),
            kind: ChangeKind::Deleted,
            object: last.clone(),
            prev: Some(prev),
        });
        Some(last)
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.floor = dropped.rv;
            }
        }
        // No receivers is fine.
        let _ = self.sender.send(change);
    }

    /// Forgets the whole history, as an etcd compaction would: watches and continue tokens
    /// from before now get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str, value: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default"}, "data": {"v": value}})
    }

    #[test]
    fn snapshots_undo_later_changes() {
        let mut store = Store::new(100);
        let id = ResourceId::new("", "configmaps");
        store.put(&id, cm("a", "1"));
        let at = store.revision();
        store.put(&id, cm("a", "2"));
        store.put(&id, cm("b", "1"));
        store.remove(&id, &("default".into(), "a".into()));
        let now = store.snapshot(&id, store.revision()).unwrap();
        assert_eq!(now.len(), 1);
        let then = store.snapshot(&id, at).unwrap();
        assert_eq!(then.len(), 1);
        let a = &then[&("default".to_string(), "a".to_string())];
        assert_eq!(a["data"]["v"], "1");
        assert_eq!(a["metadata"]["resourceVersion"], at.to_string());
    }

    #[test]
    fn history_is_bounded_and_compactable() {
        let mut store = Store::new(2);
        let id = ResourceId::new("", "configmaps");
        let first = store.revision();
        for i in 0..5 {
            store.put(&id, cm("a", &i.to_string()));
        }
        assert!(store.watch_from(first).is_err());
        let (past, _) = store.watch_from(store.revision() - 1).unwrap();
        assert_eq!(past.len(), 1);
        store.compact();
        assert!(store.watch_from(store.revision() - 1).is_err());
        assert!(store.watch_from(store.revision()).is_ok());
    }
}
