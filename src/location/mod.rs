//! Storage locations: where restic repositories live. Each location kind implements
//! rustic_core's backend traits (`ReadBackend` + `WriteBackend`), the one storage contract the
//! repository layer relies on.

mod local;

use std::sync::Arc;

use rustic_core::WriteBackend;

pub use local::LocalStorage;

use crate::config::{LocationConfig, LocationKind};

/// Why a location's storage could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("location {location}: {message}")]
    Setup { location: String, message: String },
}

impl LocationError {
    /// Stable error code for the catalog.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Setup { .. } => "location.setup",
        }
    }
}

/// The storage backend for a configured location.
///
/// # Errors
/// When the backend cannot be constructed from the configuration.
pub fn backend(location: &LocationConfig) -> Result<Arc<dyn WriteBackend>, LocationError> {
    match &location.kind {
        LocationKind::Local { path } => LocalStorage::new(path)
            .map(|s| Arc::new(s) as Arc<dyn WriteBackend>)
            .map_err(|message| LocationError::Setup {
                location: location.name.clone(),
                message,
            }),
    }
}
