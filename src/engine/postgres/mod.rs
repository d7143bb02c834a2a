//! PostgreSQL: consistent dumps with a manifest from the dump's own snapshot (`dump`), table
//! summaries (`tables`), the description of every other object (`objects`), restores built
//! in a temporary database and renamed into place once verified (`restore`), scratch clusters
//! for drills (`scratch`), sessions for the configured SQL (`session`), and point-in-time
//! recovery's archive (`wal`: slot, `pg_receivewal`, `pg_basebackup`) and recovery (`recovery`).

mod archive;
mod connect;
mod doctor;
mod dump;
pub mod objects;
pub mod recovery;
mod restore;
mod restore_point;
mod scratch;
mod session;
pub mod streams;
pub mod tables;
pub mod wal;

use std::path::Path;

use futures_util::future::BoxFuture;
use sqlx::Connection;

use connect::unavailable;
pub use connect::{Connect, connect_settings};
pub use dump::{GLOBALS_NAME, dump_name, schema_name};
pub use restore::staging_name;

use super::{
    Database, DatabaseEngine, Destination, DumpOutput, EngineError, ScratchInstance, ScratchPlan,
    ScratchServer, Session, Staging, StagingPlan, Verification,
};
use crate::config::SourceKind;
use crate::model::{CompareScope, Engine, Manifest};

/// A quoted identifier.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted string literal (standard-conforming strings).
#[must_use]
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Describes the database `connect` names and compares it with `manifest`; the tables in
/// `checked` were read back already (right after a restore loaded them) and are not read again.
pub(crate) async fn verify(
    connect: &Connect,
    manifest: &Manifest,
    scope: CompareScope,
    checked: &std::collections::BTreeMap<String, crate::model::TableSummary>,
) -> Verification {
    let described = async {
        let tables = tables::summarize_target(connect, manifest, checked).await?;
        let objects = match &manifest.objects {
            Some(backup) => {
                let mut conn = connect.connect().await?;
                let o = objects::describe_restored(&mut conn, backup).await;
                let _ = conn.close().await;
                Some(o?)
            }
            None => None,
        };
        Ok::<_, sqlx::Error>((tables, objects))
    }
    .await;
    match described {
        Ok((tables, objects)) => {
            let counts = objects
                .as_ref()
                .map(crate::model::Objects::counts)
                .unwrap_or_default();
            let comparison = manifest.compare(&tables, objects.as_ref(), scope);
            Verification::from_comparison(comparison, tables, counts, None)
        }
        Err(e) => Verification::unreadable(format!("the restored database cannot be read: {e}")),
    }
}

/// The PostgreSQL engine.
pub struct Postgres;

fn server_destination(destination: &Destination) -> Result<Connect, EngineError> {
    match destination {
        Destination::Server { url, password } => {
            Connect::new(url, password.clone()).map_err(|message| EngineError::TargetRefused {
                target: url.clone(),
                message,
            })
        }
        Destination::File(path) => Err(EngineError::TargetRefused {
            target: path.display().to_string(),
            message: "this is a PostgreSQL backup; restore it with --target postgres://USER@HOST/DATABASE".into(),
        }),
    }
}

/// An existing database, to compare with a backup.
struct Existing(Connect);

/// The database `connect` names, for verification and the configured SQL (a recovered
/// cluster, say).
#[must_use]
pub fn existing(connect: Connect) -> Box<dyn Database> {
    Box::new(Existing(connect))
}

impl Database for Existing {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            verify(&self.0, manifest, scope, &std::collections::BTreeMap::new()).await
        })
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(session::open(&self.0, read_only))
    }
}

impl DatabaseEngine for Postgres {
    fn engine(&self) -> Engine {
        Engine::Postgres
    }

    fn dump<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<DumpOutput, EngineError>> {
        Box::pin(async move {
            let SourceKind::Postgres(cfg) = kind else {
                return Err(EngineError::DumpFailed {
                    source_name: source.to_string(),
                    message: "not a PostgreSQL source".into(),
                });
            };
            dump::start(source, cfg, scratch)
                .await
                .map(DumpOutput::Streams)
        })
    }

    fn staging_plan(
        &self,
        destination: &Destination,
        id: &str,
    ) -> Result<StagingPlan, EngineError> {
        let connect = server_destination(destination)?;
        Ok(StagingPlan {
            destination: destination.clone(),
            id: id.to_string(),
            name: staging_name(&connect.database(), id),
            server: Some(connect.server()),
        })
    }

    fn stage<'a>(
        &'a self,
        plan: &'a StagingPlan,
        manifest: &'a Manifest,
        force: bool,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<Box<dyn Staging>, EngineError>> {
        Box::pin(async move {
            let connect = server_destination(&plan.destination)?;
            let staged = restore::stage(&connect, &plan.name, manifest, force, scratch).await?;
            Ok(Box::new(staged) as Box<dyn Staging>)
        })
    }

    fn check_target<'a>(
        &'a self,
        plan: &'a StagingPlan,
        force: bool,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let connect = server_destination(&plan.destination)?;
            restore::check_target(&connect, force).await
        })
    }

    fn remove_leftover<'a>(
        &'a self,
        destination: &'a Destination,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(async move {
            let connect = server_destination(destination)?;
            for name in names {
                restore::drop_database(&connect, name)
                    .await
                    .map_err(|message| EngineError::RestoreFailed {
                        target: connect.describe(),
                        message: format!(
                            "dropping {name}, left by an interrupted restore, failed: {message}"
                        ),
                    })?;
            }
            Ok(())
        })
    }

    fn open(&self, destination: &Destination) -> Result<Box<dyn Database>, EngineError> {
        Ok(Box::new(Existing(server_destination(destination)?)))
    }

    fn scratch<'a>(
        &'a self,
        plan: &'a ScratchPlan,
        run_as: Option<super::RunAs>,
    ) -> BoxFuture<'a, Result<Box<dyn ScratchInstance>, EngineError>> {
        Box::pin(scratch::create(plan, run_as))
    }

    fn drop_scratch_database<'a>(
        &'a self,
        server: &'a ScratchServer,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), EngineError>> {
        Box::pin(scratch::drop_scratch_database(server, name))
    }

    fn doctor<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
    ) -> BoxFuture<'a, Vec<crate::model::Finding>> {
        Box::pin(async move {
            match kind.server() {
                Some(cfg) => doctor::doctor(source, cfg).await,
                None => Vec::new(),
            }
        })
    }

    fn archive_preflight<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Vec<crate::model::Finding>> {
        Box::pin(async move {
            match kind.server() {
                Some(cfg) => archive::preflight(source, cfg, scratch).await,
                None => Vec::new(),
            }
        })
    }
}
