//! Readiness: the process is ready when every registered component is.
//!
//! Each component that can make the process unfit for traffic (a queue
//! replaying, a model store loading, a downstream it cannot do without)
//! registers once and flips its own handle. A component starts *not ready*
//! ("starting"): a process is not ready merely because it has not said
//! otherwise yet. [`Readiness::shutting_down`] makes the whole process not
//! ready for good, so Kubernetes takes the pod out of its Services while it
//! drains.

use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    /// Component name → `None` when ready, else why not.
    components: Vec<(String, Option<String>)>,
    shutting_down: bool,
}

/// Shared readiness of the process; cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.check())
            .finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a component, not ready ("starting") until it says so.
    pub fn register(&self, component: impl Into<String>) -> ReadinessHandle {
        let mut s = self.lock();
        s.components
            .push((component.into(), Some("starting".into())));
        ReadinessHandle {
            readiness: self.clone(),
            index: s.components.len() - 1,
        }
    }

    /// `Ok` when ready, else every reason (`"queue: replaying; …"`).
    pub fn check(&self) -> Result<(), String> {
        let s = self.lock();
        let mut reasons: Vec<String> = s
            .components
            .iter()
            .filter_map(|(name, why)| why.as_ref().map(|w| format!("{name}: {w}")))
            .collect();
        if s.shutting_down {
            reasons.insert(0, "shutting down".into());
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }

    /// Not ready from now on, whatever the components say.
    pub fn shutting_down(&self) {
        self.lock().shutting_down = true;
    }
}

/// One component's say in readiness.
#[derive(Debug)]
pub struct ReadinessHandle {
    readiness: Readiness,
    index: usize,
}

impl ReadinessHandle {
    pub fn ready(&self) {
        self.readiness.lock().components[self.index].1 = None;
    }

    pub fn not_ready(&self, reason: impl Into<String>) {
        self.readiness.lock().components[self.index].1 = Some(reason.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_component_is() {
        let r = Readiness::new();
        assert!(r.is_ready(), "nothing to wait for");
        let queue = r.register("queue");
        let receiver = r.register("otlp_receiver");
        assert_eq!(
            r.check(),
            Err("queue: starting; otlp_receiver: starting".into())
        );
        queue.ready();
        receiver.not_ready("binding");
        assert_eq!(r.check(), Err("otlp_receiver: binding".into()));
        receiver.ready();
        assert!(r.is_ready());
        r.shutting_down();
        assert_eq!(r.check(), Err("shutting down".into()));
    }
}
