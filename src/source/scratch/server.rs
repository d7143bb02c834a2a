//! A configured scratch server: a uniquely named database is created for the drill and
//! dropped after it. Custodian never restores into a server that is not configured as scratch.

use super::{ScratchError, ScratchTarget};
use crate::model::Engine;
use crate::secret::Secret;
use crate::source::{mysql, postgres};

/// A server the user configured for scratch restores (URL without a password).
#[derive(Clone, Debug)]
pub struct ScratchServer {
    pub url: String,
    pub password: Option<Secret>,
}

impl ScratchServer {
    /// `user@host:port` — for records and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        url::Url::parse(&self.url).map_or_else(
            |_| "(unparsable URL)".to_string(),
            |u| {
                format!(
                    "{}@{}:{}",
                    u.username(),
                    u.host_str().unwrap_or("localhost"),
                    u.port().map_or_else(String::new, |p| p.to_string())
                )
            },
        )
    }

    fn err(&self, message: impl std::fmt::Display) -> ScratchError {
        ScratchError::Server {
            server: self.describe(),
            message: message.to_string(),
        }
    }

    /// Drops a scratch database by name (used by the sweep for databases left behind).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses.
    pub async fn drop_database_named(
        &self,
        engine: Engine,
        name: &str,
    ) -> Result<(), ScratchError> {
        // Only names Custodian made are ever dropped.
        if !name.starts_with("custodian_drill_") {
            return Err(self.err(format!("refusing to drop `{name}`: not a drill database")));
        }
        match engine {
            Engine::Mysql => {
                let c = mysql::Connect::new(&self.url, self.password.clone())
                    .map_err(|e| self.err(e))?;
                let mut conn = c
                    .with_database("information_schema")
                    .connect()
                    .await
                    .map_err(|e| self.err(e))?;
                sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {}",
                    mysql::quote_ident(name)
                ))
                .execute(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            }
            _ => {
                let c = postgres::Connect::new(&self.url, self.password.clone())
                    .map_err(|e| self.err(e))?;
                let mut conn = c
                    .with_database("postgres")
                    .connect()
                    .await
                    .map_err(|e| self.err(e))?;
                sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    postgres::quote_ident(name)
                ))
                .execute(&mut conn)
                .await
                .map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }
}

pub(super) enum Database {
    Postgres(ScratchServer, postgres::Connect),
    Mysql(ScratchServer, mysql::Connect),
}

impl Database {
    /// Checks that the database does not exist yet; the restore creates it.
    pub async fn create(
        server: &ScratchServer,
        engine: Engine,
        name: &str,
    ) -> Result<Self, ScratchError> {
        let db = match engine {
            Engine::Mysql => {
                let c = mysql::Connect::new(&server.url, server.password.clone())
                    .map_err(|e| server.err(e))?;
                Self::Mysql(server.clone(), c.with_database(name))
            }
            _ => {
                let c = postgres::Connect::new(&server.url, server.password.clone())
                    .map_err(|e| server.err(e))?;
                Self::Postgres(server.clone(), c.with_database(name))
            }
        };
        let existing = match &db {
            Self::Postgres(_, c) => postgres::prepare_target(c).await,
            Self::Mysql(_, c) => mysql::prepare_target(c).await,
        }
        .map_err(|e| server.err(e))?;
        if existing > 0 {
            return Err(server.err(format!(
                "scratch database {name} already holds {existing} tables"
            )));
        }
        Ok(db)
    }

    pub fn target(&self) -> ScratchTarget<'_> {
        match self {
            Self::Postgres(_, c) => ScratchTarget::Postgres(c),
            Self::Mysql(_, c) => ScratchTarget::Mysql(c),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(s, _) | Self::Mysql(s, _) => s.describe(),
        }
    }

    pub async fn drop_database(self) -> Result<(), ScratchError> {
        match self {
            Self::Postgres(s, c) => s.drop_database_named(Engine::Postgres, &c.database()).await,
            Self::Mysql(s, c) => s.drop_database_named(Engine::Mysql, &c.database()).await,
        }
    }
}
