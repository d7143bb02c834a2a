//! Timed phases of a job (a drill's provision → fetch → restore → verify → teardown).

use std::time::Instant;

use serde::Serialize;

/// One timed phase.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

/// Phases in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Phases(pub Vec<Phase>);

impl Phases {
    /// Records a phase that started at `started` and ends now.
    pub fn push(&mut self, name: &str, started: Instant) {
        self.0.push(Phase {
            name: name.to_string(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }

    /// The phases as JSON for the catalog.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}
