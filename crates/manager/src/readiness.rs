//! Whether the manager is ready, and if not, why (`/readyz`).

use std::sync::{Arc, Mutex};

/// Shared readiness: `None` when ready, else the reason.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<Mutex<Option<String>>>);

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness(Arc::new(Mutex::new(Some("starting".into()))))
    }
}

impl Readiness {
    /// Ready.
    pub fn set_ready(&self) {
        self.set(None);
    }

    /// Not ready, because of `reason`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(Some(reason.into()));
    }

    fn set(&self, value: Option<String>) {
        match self.0.lock() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }

    /// `Ok` when ready, else the reason.
    pub fn check(&self) -> Result<(), String> {
        let guard = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match guard.as_ref() {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }
}
