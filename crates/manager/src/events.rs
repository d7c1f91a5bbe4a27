//! Kubernetes Events about ImageJobs, ImageLists and ConfigMaps (`events.k8s.io/v1`).
//!
//! ImageJobs and ImageLists are cluster-scoped. kube's recorder files events about
//! cluster-scoped objects in `default`, which would need a grant in a namespace the manager
//! otherwise never touches; these are written in the manager's own namespace instead
//! (`kubectl describe imagejob` searches every namespace for a cluster-scoped object, so it
//! still shows them). Publishing is best effort: a failure is logged, never fatal, and the
//! same note about the same object is not repeated within ten minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};

use crate::names::{EVENT_CONTROLLER, FIELD_MANAGER};

/// Identical events are not repeated within this time.
const REPEAT_AFTER: Duration = Duration::from_secs(600);
/// Longest note the API accepts (in bytes).
const MAX_NOTE: usize = 1024;
/// Entries kept to recognise repeats.
const MAX_CACHE: usize = 1024;

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something expected happened.
    Normal,
    /// Something needs an operator's attention.
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// Publishes Events in the manager's namespace.
#[derive(Debug)]
pub struct Events {
    api: Api<Event>,
    instance: String,
    timeout: Duration,
    sequence: AtomicU64,
    recent: Mutex<HashMap<(String, String, String), Timestamp>>,
}

impl Events {
    /// Events written by `instance` (the manager's identity) into `namespace`.
    pub fn new(client: Client, namespace: &str, instance: &str, timeout: Duration) -> Events {
        Events {
            api: Api::namespaced(client, namespace),
            instance: truncate(instance, 128).to_owned(),
            timeout,
            sequence: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event about `object`.
    pub async fn publish<K>(&self, object: &K, kind: Kind, reason: &str, action: &str, note: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish_ref(object.object_ref(&()), kind, reason, action, note)
            .await;
    }

    /// Publishes an event about the object `regarding`.
    pub async fn publish_ref(
        &self,
        regarding: ObjectReference,
        kind: Kind,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let now = Timestamp::now();
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            reason.to_owned(),
            note.to_owned(),
        );
        if !self.first_in_a_while(key, now) {
            return;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let object_name = regarding.name.clone().unwrap_or_else(|| "object".into());
        let name = format!(
            "{}.{:x}{:04x}",
            truncate(&object_name, 200),
            now.as_nanosecond(),
            sequence & 0xffff
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(truncate(action, 128).to_owned()),
            reason: Some(truncate(reason, 128).to_owned()),
            note: Some(truncate(note, MAX_NOTE).to_owned()),
            type_: Some(kind.as_str().to_owned()),
            reporting_controller: Some(EVENT_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            regarding: Some(regarding),
            ..Default::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match tokio::time::timeout(self.timeout, self.api.create(&params, &event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(reason, %error, "could not publish an event"),
            Err(_) => tracing::warn!(reason, "publishing an event timed out"),
        }
    }

    fn first_in_a_while(&self, key: (String, String, String), now: Timestamp) -> bool {
        let Ok(mut recent) = self.recent.lock() else {
            return true;
        };
        let repeat_after = jiff::SignedDuration::try_from(REPEAT_AFTER).unwrap_or_default();
        if let Some(last) = recent.get(&key)
            && now.duration_since(*last) < repeat_after
        {
            return false;
        }
        if recent.len() >= MAX_CACHE {
            recent.retain(|_, last| now.duration_since(*last) < repeat_after);
            if recent.len() >= MAX_CACHE {
                recent.clear();
            }
        }
        recent.insert(key, now);
        true
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
