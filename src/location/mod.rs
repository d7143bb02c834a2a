//! Storage locations: where restic repositories live. Each location kind implements
//! rustic_core's backend traits (`ReadBackend` + `WriteBackend`), the one storage contract the
//! repository layer relies on; `tests/storage_conformance.rs` runs the same suite on all of them.

mod local;
pub mod s3;

use std::sync::Arc;

use rustic_core::WriteBackend;

pub use local::LocalStorage;
pub use s3::S3Storage;

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

/// The storage of one location.
#[derive(Clone, Debug)]
pub enum Storage {
    Local(Arc<LocalStorage>),
    S3(Arc<S3Storage>),
}

impl Storage {
    /// The backend rustic_core works on.
    #[must_use]
    pub fn backend(&self) -> Arc<dyn WriteBackend> {
        match self {
            Self::Local(s) => s.clone(),
            Self::S3(s) => s.clone(),
        }
    }

    /// Remote storage benefits from a local cache of index and snapshot files.
    #[must_use]
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::S3(_))
    }

    /// The S3 storage, for bucket-level maintenance (Object Lock).
    #[must_use]
    pub fn s3(&self) -> Option<&Arc<S3Storage>> {
        match self {
            Self::S3(s) => Some(s),
            Self::Local(_) => None,
        }
    }
}

/// Opens the storage of a configured location (credentials are read; nothing is sent yet).
///
/// # Errors
/// When the location cannot be set up from its configuration.
pub fn open(location: &LocationConfig) -> Result<Storage, LocationError> {
    let setup = |message: String| LocationError::Setup {
        location: location.name.clone(),
        message,
    };
    match &location.kind {
        LocationKind::Local { path } => LocalStorage::new(path)
            .map(|s| Storage::Local(Arc::new(s)))
            .map_err(setup),
        LocationKind::S3(s3) => S3Storage::new(&location.name, s3, &location.repository())
            .map(|s| Storage::S3(Arc::new(s)))
            .map_err(setup),
    }
}

/// The storage backend for a configured location.
///
/// # Errors
/// When the backend cannot be constructed from the configuration.
pub fn backend(location: &LocationConfig) -> Result<Arc<dyn WriteBackend>, LocationError> {
    open(location).map(|s| s.backend())
}
