//! The repository's key files: when each was created and whether it is the one Custodian opens
//! the repository with (reports flag unknown keys and old keys).

use rustic_core::FileType;
use serde::{Deserialize, Serialize};

use super::{Repo, RepoError};

/// One key file (no key material: only its id and public metadata).
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub created: Option<String>,
    pub hostname: Option<String>,
    pub username: Option<String>,
    /// The key Custodian's configured password opened.
    pub used_by_custodian: bool,
}

#[derive(Deserialize)]
struct KeyMeta {
    created: Option<String>,
    hostname: Option<String>,
    username: Option<String>,
}

impl Repo {
    /// Every key file of the repository.
    ///
    /// # Errors
    /// When the key files cannot be listed or read.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, RepoError> {
        let storage = &self.inner.backend.storage;
        let ours = self.rustic().key_id().map(|k| k.to_hex().to_string());
        let ids = storage
            .list(FileType::Key)
            .map_err(|e| self.err("listing key files", &e))?;
        let mut keys = Vec::with_capacity(ids.len());
        for id in ids {
            let data = storage
                .read_full(FileType::Key, &id)
                .map_err(|e| self.err("reading a key file", &e))?;
            let meta: Option<KeyMeta> = serde_json::from_slice(&data).ok();
            let hex = id.to_hex().to_string();
            keys.push(KeyInfo {
                used_by_custodian: ours.as_deref() == Some(hex.as_str()),
                id: hex,
                created: meta.as_ref().and_then(|m| m.created.clone()),
                hostname: meta.as_ref().and_then(|m| m.hostname.clone()),
                username: meta.and_then(|m| m.username),
            });
        }
        keys.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(keys)
    }
}
