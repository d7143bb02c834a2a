//! MariaDB/MySQL: consistent dumps with a manifest tied to the dump's snapshot (`dump`), table
//! summaries (`tables`), the description of every other object (`objects`), restores built in
//! a temporary database and moved into place once verified (`restore`), scratch servers for
//! drills (`scratch`), and sessions for the configured SQL (`session`).

mod archive;
pub mod binlog;
mod connect;
mod doctor;
pub mod dump;
pub mod objects;
mod restore;
mod scratch;
mod session;
pub mod streams;
pub mod tables;

use std::path::Path;

use futures_util::future::BoxFuture;
use sqlx::Connection;

use connect::unavailable;
pub use connect::{Connect, connect_settings, tool};
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
    format!("`{}`", name.replace('`', "``"))
}

/// Name of the dump inside the snapshot.
#[must_use]
pub fn dump_name(database: &str) -> String {
    format!("{database}.sql")
}

/// Describes the database `connect` names and compares it with `manifest`.
pub(crate) async fn verify(
    connect: &Connect,
    manifest: &Manifest,
    scope: CompareScope,
    checked: &std::collections::BTreeMap<String, crate::model::TableSummary>,
) -> Verification {
    let described = async {
        let tables = tables::summarize_target(connect, manifest, checked).await?;
        let objects = match &manifest.objects {
            Some(_) => {
                let mut conn = connect.connect().await?;
                let o = objects::describe(&mut conn).await;
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

/// No table read back yet (a database Custodian did not just load).
static NOTHING_CHECKED: std::collections::BTreeMap<String, crate::model::TableSummary> =
    std::collections::BTreeMap::new();

/// The MariaDB/MySQL engine.
pub struct Mysql;

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
            message: "this is a MariaDB/MySQL backup; restore it with --target mysql://USER@HOST/DATABASE".into(),
        }),
    }
}

struct Existing(Connect);

impl Database for Existing {
    fn describe(&self) -> String {
        self.0.describe()
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        Box::pin(verify(&self.0, manifest, scope, &NOTHING_CHECKED))
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(session::open(&self.0, read_only))
    }
}

impl DatabaseEngine for Mysql {
    fn engine(&self) -> Engine {
        Engine::Mysql
    }

    fn dump<'a>(
        &'a self,
        source: &'a str,
        kind: &'a SourceKind,
        scratch: &'a Path,
    ) -> BoxFuture<'a, Result<DumpOutput, EngineError>> {
        Box::pin(async move {
            let SourceKind::Mysql(cfg) = kind else {
                return Err(EngineError::DumpFailed {
                    source_name: source.to_string(),
                    message: "not a MariaDB/MySQL source".into(),
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
            if connect.database().is_empty() {
                return Err(EngineError::TargetRefused {
                    target: connect.describe(),
                    message: "the URL names no database; write it like mysql://USER@HOST/DATABASE"
                        .into(),
                });
            }
            let staged = restore::stage(&connect, &plan.name, manifest, force, scratch).await?;
            Ok(Box::new(staged) as Box<dyn Staging>)
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
        let _ = scratch;
        Box::pin(async move {
            match kind.server() {
                Some(cfg) => archive::preflight(source, cfg).await,
                None => Vec::new(),
            }
        })
    }
}
