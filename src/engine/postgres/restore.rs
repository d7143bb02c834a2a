//! PostgreSQL restores that are never seen half-done.
//!
//! A restore to a server is built in a temporary database on that server
//! (`<target>__custodian_<id>`), created from `template0` with the backup's own encoding,
//! collation, ctype and locale provider; loaded; given the backup's database-level owner,
//! privileges, comment and settings; verified against the manifest; and handed to the erasure
//! replay. Only then is it renamed into place (`ALTER DATABASE … RENAME`, both renames in one
//! transaction), replacing an existing database only under `--force`; on any failure the
//! temporary database is dropped and the target is exactly as it was. A drill loads the same
//! way into the database of its scratch instance.
//!
//! Loading, with the schema-only dump a backup carries: the pre-data section and the dump's
//! data (all of it in a backup without table streams; sequences, large objects and any table
//! without a stream otherwise) straight from the repository into one `pg_restore
//! --single-transaction` (so large objects' metadata precedes their data, and in a fresh
//! `wal_level=minimal` cluster the new tables are filled without WAL). Then the table streams
//! (manifest format 3), several at a time and largest first, each into its own `psql COPY …
//! FROM STDIN` from the repository; as soon as a table's load ends it is read back and its
//! digest computed, while the other tables load. Then the post-data section — indexes and
//! constraints — with parallel workers from a small private copy of the schema, then the
//! materialized views that were populated in the backup are refreshed in dependency order
//! (the schema-only dump has no `MATERIALIZED VIEW DATA`). Backups without a schema-only dump
//! are restored whole, in one transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use sqlx::Connection;

use super::dump::{GLOBALS_NAME, schema_name};
use super::streams;
use super::tables::{TablePlan, digest_table};
use super::{Connect, quote_ident, quote_literal};
use crate::engine::common::{
    fetch_file, join_read_backs, load_jobs, run_at_most, run_tool, short_id, stream_into,
    tool_warnings,
};
use crate::engine::{
    Database, EngineError, LoadOptions, Loaded, Released, Session, SnapshotFiles, Staging,
    Verification, private_workdir,
};
use crate::model::{ChecksumMode, CompareScope, Manifest, Phases, TableStream, TableSummary};

/// Relations that make a database "not empty".
const COUNT_RELATIONS: &str =
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
       AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')";

/// Settings whose values are lists (pg_dump quotes each element separately).
const LIST_SETTINGS: &[&str] = &[
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
];

/// The temporary database a restore of `target` is built in.
#[must_use]
pub fn staging_name(target: &str, id: &str) -> String {
    // Identifiers are at most 63 bytes: shorten the target's part, never the unique suffix.
    let suffix = format!("__custodian_{}", short_id(id));
    let keep = 63usize.saturating_sub(suffix.len());
    let mut head: String = String::new();
    for c in target.chars() {
        if head.len() + c.len_utf8() > keep {
            break;
        }
        head.push(c);
    }
    format!("{head}{suffix}")
}

/// The maintenance database of a server: `postgres`, else `template1`.
async fn admin(connect: &Connect) -> Result<(Connect, sqlx::PgConnection), sqlx::Error> {
    let first = connect.with_database("postgres");
    match first.connect().await {
        Ok(conn) => Ok((first, conn)),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let second = connect.with_database("template1");
            let conn = second.connect().await?;
            Ok((second, conn))
        }
        Err(e) => Err(e),
    }
}

/// How many relations a database holds; `None` when it does not exist.
async fn relations(connect: &Connect) -> Result<Option<u64>, sqlx::Error> {
    match connect.connect().await {
        Ok(mut conn) => {
            let n: i64 = sqlx::query_scalar(COUNT_RELATIONS)
                .fetch_one(&mut conn)
                .await?;
            let _ = conn.close().await;
            Ok(Some(u64::try_from(n).unwrap_or(0)))
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => Ok(None),
        Err(e) => Err(e),
    }
}

/// `CREATE DATABASE name` with the backup's encoding, collation, ctype and locale provider.
pub(super) async fn create_database(
    admin: &mut sqlx::PgConnection,
    name: &str,
    manifest: &Manifest,
) -> Result<(), sqlx::Error> {
    let props = manifest
        .objects
        .as_ref()
        .map(|o| o.database.clone())
        .unwrap_or_default();
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(e) = props.get("encoding") {
        sql.push_str(&format!(" ENCODING {}", quote_literal(e)));
    }
    match props.get("locale provider").map(String::as_str) {
        Some("icu") => {
            sql.push_str(" LOCALE_PROVIDER icu");
            if let Some(l) = props.get("locale") {
                sql.push_str(&format!(" ICU_LOCALE {}", quote_literal(l)));
            }
        }
        Some("builtin") => {
            sql.push_str(" LOCALE_PROVIDER builtin");
            if let Some(l) = props.get("locale") {
                sql.push_str(&format!(" BUILTIN_LOCALE {}", quote_literal(l)));
            }
        }
        _ => {}
    }
    if let Some(c) = props.get("collation") {
        sql.push_str(&format!(" LC_COLLATE {}", quote_literal(c)));
    }
    if let Some(c) = props.get("ctype") {
        sql.push_str(&format!(" LC_CTYPE {}", quote_literal(c)));
    }
    if let Some(n) = props
        .get("connection limit")
        .and_then(|n| n.parse::<i32>().ok())
    {
        sql.push_str(&format!(" CONNECTION LIMIT {n}"));
    }
    sqlx::query(&sql).execute(admin).await?;
    Ok(())
}

/// Gives a restored database the backup's owner, privileges, comment and settings (what
/// `pg_dump --create` would restore). Returns what could not be applied.
async fn apply_properties(
    admin: &mut sqlx::PgConnection,
    name: &str,
    manifest: &Manifest,
    skip_access: bool,
) -> Vec<String> {
    let Some(objects) = &manifest.objects else {
        return Vec::new();
    };
    let db = quote_ident(name);
    let mut statements = Vec::new();
    let props = &objects.database;
    if !skip_access {
        if let Some(owner) = props.get("owner") {
            statements.push(format!(
                "ALTER DATABASE {db} OWNER TO {}",
                quote_ident(owner)
            ));
        }
        if let Some(acl) = props.get("privileges") {
            statements.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
            if let Some(owner) = props.get("owner") {
                statements.push(format!(
                    "REVOKE ALL ON DATABASE {db} FROM {}",
                    quote_ident(owner)
                ));
            }
            statements.extend(grants(&db, acl));
        }
    }
    if let Some(comment) = props.get("comment") {
        statements.push(format!(
            "COMMENT ON DATABASE {db} IS {}",
            quote_literal(comment)
        ));
    }
    for (key, value) in props {
        if let Some(setting) = key.strip_prefix("setting ") {
            statements.push(format!(
                "ALTER DATABASE {db} SET {}",
                set_clause(setting, value)
            ));
        } else if let Some(rest) = key.strip_prefix("role setting ")
            && !skip_access
            && let Some((role, setting)) = rest.split_once(' ')
        {
            statements.push(format!(
                "ALTER ROLE {} IN DATABASE {db} SET {}",
                quote_ident(role),
                set_clause(setting, value)
            ));
        }
    }
    let mut problems = Vec::new();
    for statement in statements {
        if let Err(e) = sqlx::query(&statement).execute(&mut *admin).await {
            problems.push(format!("`{statement}` failed: {e}"));
        }
    }
    problems
}

/// `GRANT` statements for an ACL text (`grantee=privs/grantor,…`; an empty grantee is
/// PUBLIC; `*` after a privilege letter is the grant option).
fn grants(db: &str, acl: &str) -> Vec<String> {
    let mut out = Vec::new();
    for item in acl.split(',').filter(|i| !i.is_empty()) {
        let Some((grantee, rest)) = item.split_once('=') else {
            continue;
        };
        let privs = rest.split_once('/').map_or(rest, |(p, _)| p);
        let grantee = if grantee.is_empty() {
            "PUBLIC".to_string()
        } else {
            quote_ident(grantee.trim_matches('"'))
        };
        let mut plain = Vec::new();
        let mut with_option = Vec::new();
        let chars: Vec<char> = privs.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            let name = match c {
                'C' => "CREATE",
                'T' => "TEMPORARY",
                'c' => "CONNECT",
                _ => continue,
            };
            if chars.get(i + 1) == Some(&'*') {
                with_option.push(name);
            } else {
                plain.push(name);
            }
        }
        if !plain.is_empty() {
            out.push(format!(
                "GRANT {} ON DATABASE {db} TO {grantee}",
                plain.join(", ")
            ));
        }
        if !with_option.is_empty() {
            out.push(format!(
                "GRANT {} ON DATABASE {db} TO {grantee} WITH GRANT OPTION",
                with_option.join(", ")
            ));
        }
    }
    out
}

/// `name = value` for `ALTER … SET`, quoting list settings element by element as pg_dump does.
fn set_clause(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        let mut items = Vec::new();
        let mut current = String::new();
        let mut quoted = false;
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted && chars.peek() == Some(&'"') => {
                    current.push('"');
                    chars.next();
                }
                '"' => quoted = !quoted,
                ',' if !quoted => items.push(std::mem::take(&mut current)),
                c => current.push(c),
            }
        }
        items.push(current);
        let items: Vec<String> = items.iter().map(|i| quote_literal(i.trim())).collect();
        format!("{} = {}", quote_ident(name), items.join(", "))
    } else {
        format!("{} = {}", quote_ident(name), quote_literal(value))
    }
}

/// Roles and tablespaces from `globals.sql`, without tablespaces (a scratch cluster has none
/// of the source's directories; tablespaces are not compared).
fn globals_without_tablespaces(text: &str) -> String {
    text.lines()
        .filter(|line| {
            let l = line.trim_start();
            !(l.starts_with("CREATE TABLESPACE ")
                || l.starts_with("ALTER TABLESPACE ")
                || l.starts_with("COMMENT ON TABLESPACE ")
                || (l.starts_with("GRANT ") || l.starts_with("REVOKE "))
                    && l.contains(" ON TABLESPACE "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Tables being read back and digested after their load.
type ReadBacks = tokio::task::JoinSet<Result<TableSummary, sqlx::Error>>;

/// A restore into a PostgreSQL database that nothing else uses yet.
pub(super) struct PgStaging {
    /// The staging database (a temporary one, or a scratch instance's).
    pub connect: Connect,
    /// The database it becomes on release (`None`: a drill's, released in place).
    pub target: Option<String>,
    /// The database still has to be created (drills create it when the load starts).
    pub create_on_load: bool,
    /// A fresh cluster of our own: globals must apply without an error, tablespaces go.
    pub fresh_cluster: bool,
    pub scratch_dir: PathBuf,
    /// Ownership and privileges were left out of the load.
    pub skip_access: bool,
    /// What was restored into, for messages.
    pub label: String,
    /// Tables already read back and digested, right after their load.
    pub checked: BTreeMap<String, TableSummary>,
}

impl PgStaging {
    fn failed(&self, message: impl std::fmt::Display) -> EngineError {
        EngineError::RestoreFailed {
            target: self.label.clone(),
            message: message.to_string(),
        }
    }

    async fn load_inner(
        &mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &Manifest,
        opts: &LoadOptions,
        phases: &mut Phases,
    ) -> Result<Loaded, EngineError> {
        self.skip_access = opts.skip_ownership;
        let database = self.connect.database();
        if self.create_on_load {
            let (_, mut admin) = admin(&self.connect).await.map_err(|e| self.failed(e))?;
            create_database(&mut admin, &database, manifest)
                .await
                .map_err(|e| self.failed(format!("creating database {database}: {e}")))?;
            let _ = admin.close().await;
            self.create_on_load = false;
        }
        let workdir = private_workdir(&self.scratch_dir, "restore-")?;
        let secrets = self.connect.secret_list();
        let mut loaded = Loaded::default();
        let has = |name: &str| manifest.files.iter().any(|f| f.name == name);
        if opts.with_globals && has(GLOBALS_NAME) {
            let started = Instant::now();
            loaded
                .warnings
                .extend(self.apply_globals(&files, workdir.path(), &secrets).await?);
            phases.push("restore.globals", started);
        }
        let dump = manifest
            .files
            .first()
            .map(|f| f.name.clone())
            .ok_or_else(|| self.failed("the snapshot's manifest lists no dump file"))?;
        let schema = schema_name(&manifest.database);
        let step = |sections: &[&str], jobs: Option<(&Path, u32)>| {
            let mut cmd = self
                .connect
                .command("pg_restore", workdir.path())
                .map_err(|e| self.failed(format!("preparing pg_restore: {e}")))?;
            cmd.args(["--no-password", "--exit-on-error", "--dbname", &database]);
            if opts.skip_ownership {
                cmd.args(["--no-owner", "--no-privileges"]);
            }
            if self.fresh_cluster {
                cmd.arg("--no-tablespaces");
            }
            for s in sections {
                cmd.arg(format!("--section={s}"));
            }
            match jobs {
                None => {
                    cmd.arg("--single-transaction");
                }
                Some((file, n)) => {
                    cmd.arg(format!("--jobs={n}")).arg(file);
                }
            }
            Ok::<_, EngineError>(cmd)
        };
        if !has(&schema) {
            // An old backup without a schema-only dump: everything in one stream.
            let started = Instant::now();
            let cmd = step(&[], None)?;
            let streamed =
                stream_into(files, &dump, "pg_restore", &self.label, cmd, &secrets).await?;
            loaded.bytes = streamed.bytes;
            loaded
                .warnings
                .extend(tool_warnings("pg_restore", &streamed.stderr));
            phases.push("restore.data", started);
            return Ok(loaded);
        }
        let started = Instant::now();
        let schema_file = workdir.path().join("schema.dump");
        fetch_file(files.clone(), &schema, &schema_file).await?;
        let cmd = step(&["pre-data", "data"], None)?;
        let streamed = stream_into(
            files.clone(),
            &dump,
            "pg_restore --section=pre-data --section=data",
            &self.label,
            cmd,
            &secrets,
        )
        .await?;
        loaded.bytes = streamed.bytes;
        loaded
            .warnings
            .extend(tool_warnings("pg_restore", &streamed.stderr));
        let jobs = load_jobs(opts.jobs);
        // Tables are read back while the indexes are built: both only read the loaded rows.
        let mut checks = tokio::task::JoinSet::new();
        if !manifest.streams.is_empty() {
            let (bytes, pending) = self
                .load_streams(&files, manifest, jobs, workdir.path(), &secrets)
                .await?;
            loaded.bytes += bytes;
            checks = pending;
        }
        tracing::info!(bytes = loaded.bytes, "restore: schema and data loaded");
        phases.push("restore.data", started);

        let started = Instant::now();
        let cmd = step(&["post-data"], Some((&schema_file, jobs)))?;
        let stderr = run_tool("pg_restore --section=post-data", &self.label, cmd, &secrets).await?;
        loaded.warnings.extend(tool_warnings("pg_restore", &stderr));
        tracing::info!(jobs, "restore: indexes and constraints (post-data) built");
        phases.push("restore.post-data", started);

        let started = Instant::now();
        let refreshed = self.refresh_matviews(manifest).await?;
        if refreshed.1 {
            loaded.warnings.push(
                "materialized views were all refreshed: this backup's manifest (format 1) does not say which were populated"
                    .into(),
            );
        }
        if refreshed.0 > 0 {
            phases.push("restore.matviews", started);
        }
        self.checked = join_read_backs(checks, &self.label, phases).await?;
        Ok(loaded)
    }

    /// Loads the table streams, `jobs` at a time and largest first. Each table, once loaded,
    /// is read back and digested on a connection of its own while the next loads (and then the
    /// index builds) run; returns the bytes streamed and those read-backs, still running.
    async fn load_streams<'m>(
        &'m self,
        files: &'m Arc<dyn SnapshotFiles>,
        manifest: &'m Manifest,
        jobs: u32,
        dir: &Path,
        secrets: &[crate::secret::Secret],
    ) -> Result<(u64, ReadBacks), EngineError> {
        let mut order: Vec<&TableStream> = manifest.streams.iter().collect();
        order.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.table.cmp(&b.table)));
        let modes: BTreeMap<&str, ChecksumMode> = manifest
            .tables
            .iter()
            .map(|t| (t.name.as_str(), t.mode))
            .collect();
        let mut checks = tokio::task::JoinSet::new();
        let mut bytes = 0;
        // A table split into key ranges is read back once, after its last range is in.
        let mut ranges_left: BTreeMap<&str, usize> = BTreeMap::new();
        for stream in &manifest.streams {
            *ranges_left.entry(stream.table.as_str()).or_default() += 1;
        }
        let load = |stream: &'m TableStream| {
            let mode = modes
                .get(stream.table.as_str())
                .copied()
                .unwrap_or(ChecksumMode::Rows);
            self.load_stream(files, stream, mode, dir, secrets)
        };
        run_at_most(order, jobs, load, |(streamed, check)| {
            bytes += streamed;
            let left = check
                .as_ref()
                .and_then(|plan| ranges_left.get_mut(plan.name.as_str()))
                .map_or(0, |left| {
                    *left -= 1;
                    *left
                });
            if let Some(plan) = check.filter(|_| left == 0) {
                let connect = self.connect.clone();
                checks.spawn(async move {
                    let mut conn = connect.connect().await?;
                    let summary = digest_table(&mut conn, &plan).await;
                    let _ = conn.close().await;
                    summary
                });
            }
        })
        .await?;
        tracing::info!(
            tables = manifest.streams.len(),
            jobs,
            "restore: table streams loaded"
        );
        Ok((bytes, checks))
    }

    /// Loads one table stream; returns the bytes streamed and, when the table's manifest
    /// entry (`mode`) has a `rows` digest, the plan to read it back with.
    async fn load_stream(
        &self,
        files: &Arc<dyn SnapshotFiles>,
        stream: &TableStream,
        mode: ChecksumMode,
        dir: &Path,
        secrets: &[crate::secret::Secret],
    ) -> Result<(u64, Option<TablePlan>), EngineError> {
        let ident = format!(
            "{}.{}",
            quote_ident(&stream.schema),
            quote_ident(&stream.name)
        );
        let mut cmd = self
            .connect
            .command("psql", dir)
            .map_err(|e| self.failed(format!("preparing psql: {e}")))?;
        cmd.args(streams::load_args(
            &ident,
            &stream.columns,
            stream.part.is_none(),
        ));
        let tool = match &stream.part {
            Some(p) => format!(
                "psql (COPY into table {}, key range {} of {})",
                stream.table, p.number, p.of
            ),
            None => format!("psql (COPY into table {})", stream.table),
        };
        let streamed = stream_into(
            files.clone(),
            &stream.file,
            &tool,
            &self.label,
            cmd,
            secrets,
        )
        .await?;
        let check = (mode == ChecksumMode::Rows).then(|| TablePlan {
            name: stream.table.clone(),
            schema: stream.schema.clone(),
            table: stream.name.clone(),
            size: stream.bytes,
            ident,
            pk: stream.order.clone(),
            columns: stream.columns.clone(),
            mode,
            int_key: false,
        });
        Ok((streamed.bytes, check))
    }

    /// Applies `globals.sql`: in a fresh cluster every statement must succeed (the statement
    /// that failed fails the restore); on a shared server, roles that exist already make
    /// statements fail harmlessly, and every such message is returned as a warning.
    async fn apply_globals(
        &self,
        files: &Arc<dyn SnapshotFiles>,
        dir: &Path,
        secrets: &[crate::secret::Secret],
    ) -> Result<Vec<String>, EngineError> {
        let raw = dir.join("globals.raw.sql");
        fetch_file(files.clone(), GLOBALS_NAME, &raw).await?;
        let text = std::fs::read_to_string(&raw).map_err(|e| self.failed(e))?;
        let _ = std::fs::remove_file(&raw);
        let path = dir.join("globals.sql");
        let text = if self.fresh_cluster {
            globals_without_tablespaces(&text)
        } else {
            text
        };
        crate::secret::write_new_secret_file(&path, &crate::secret::Secret::new(text))
            .map_err(|e| self.failed(e))?;
        let mut cmd = self
            .connect
            .command("psql", dir)
            .map_err(|e| self.failed(format!("preparing psql: {e}")))?;
        cmd.args([
            "--no-password",
            "--no-psqlrc",
            "--quiet",
            "--echo-errors",
            "-v",
            if self.fresh_cluster {
                "ON_ERROR_STOP=1"
            } else {
                "ON_ERROR_STOP=0"
            },
            "--dbname",
            &self.connect.database(),
            "--file",
        ])
        .arg(&path);
        let stderr = run_tool("psql (globals.sql)", &self.label, cmd, secrets).await?;
        Ok(stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("globals: {}", l.trim()))
            .collect())
    }

    /// Refreshes the materialized views the backup had populated, each after the ones it reads
    /// (all of them for a format 1 manifest, which does not say). Returns how many, and
    /// whether all were refreshed for want of a record.
    async fn refresh_matviews(&self, manifest: &Manifest) -> Result<(usize, bool), EngineError> {
        let mut conn = self.connect.connect().await.map_err(|e| self.failed(e))?;
        let order = matview_order(&mut conn).await.map_err(|e| self.failed(e))?;
        let (wanted, guessed): (BTreeSet<String>, bool) = match &manifest.objects {
            Some(o) => (
                o.materialized_views
                    .iter()
                    .filter(|m| m.populated)
                    .map(|m| m.name.clone())
                    .collect(),
                false,
            ),
            None => (order.iter().cloned().collect(), !order.is_empty()),
        };
        let mut n = 0;
        for name in order.iter().filter(|m| wanted.contains(*m)) {
            sqlx::query(&format!("REFRESH MATERIALIZED VIEW {name}"))
                .execute(&mut conn)
                .await
                .map_err(|e| self.failed(format!("refreshing materialized view {name}: {e}")))?;
            n += 1;
        }
        let _ = conn.close().await;
        Ok((n, guessed))
    }
}

/// Every materialized view (as `schema.name`, quoted for SQL with `search_path = pg_catalog`),
/// each after the materialized views it reads, directly or through views.
async fn matview_order(conn: &mut sqlx::PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query("SELECT set_config('search_path', 'pg_catalog', false)")
        .execute(&mut *conn)
        .await?;
    let rels: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT c.oid::bigint, c.oid::regclass::text, c.relkind::text FROM pg_class c
         WHERE c.relkind IN ('v', 'm')
           AND c.relnamespace NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))",
    )
    .fetch_all(&mut *conn)
    .await?;
    let edges: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT DISTINCT r.ev_class::bigint, d.refobjid::bigint FROM pg_rewrite r
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
              AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut uses: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (from, to) in edges {
        uses.entry(from).or_default().push(to);
    }
    let by_oid: BTreeMap<i64, (String, String)> =
        rels.into_iter().map(|(o, n, k)| (o, (n, k))).collect();
    let mut order = Vec::new();
    let mut done = BTreeSet::new();
    fn visit(
        oid: i64,
        uses: &BTreeMap<i64, Vec<i64>>,
        by_oid: &BTreeMap<i64, (String, String)>,
        done: &mut BTreeSet<i64>,
        order: &mut Vec<String>,
    ) {
        if !done.insert(oid) {
            return;
        }
        for dep in uses.get(&oid).into_iter().flatten() {
            if by_oid.contains_key(dep) {
                visit(*dep, uses, by_oid, done, order);
            }
        }
        if let Some((name, kind)) = by_oid.get(&oid)
            && kind == "m"
        {
            order.push(name.clone());
        }
    }
    for oid in by_oid.keys() {
        visit(*oid, &uses, &by_oid, &mut done, &mut order);
    }
    Ok(order)
}

impl Database for PgStaging {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn verify<'a>(
        &'a self,
        manifest: &'a Manifest,
        scope: CompareScope,
    ) -> BoxFuture<'a, Verification> {
        let scope = CompareScope {
            skip_access: scope.skip_access || self.skip_access,
            ..scope
        };
        Box::pin(super::verify(&self.connect, manifest, scope, &self.checked))
    }

    fn session(&self, read_only: bool) -> BoxFuture<'_, Result<Box<dyn Session>, EngineError>> {
        Box::pin(super::session::open(&self.connect, read_only))
    }
}

impl Staging for PgStaging {
    fn load<'a>(
        &'a mut self,
        files: Arc<dyn SnapshotFiles>,
        manifest: &'a Manifest,
        opts: &'a LoadOptions,
        phases: &'a mut Phases,
    ) -> BoxFuture<'a, Result<Loaded, EngineError>> {
        Box::pin(async move {
            let mut loaded = self.load_inner(files, manifest, opts, phases).await?;
            // Database-level properties go on last: a setting such as
            // default_transaction_read_only must not stop the load itself.
            let (_, mut admin) = admin(&self.connect).await.map_err(|e| self.failed(e))?;
            let problems = apply_properties(
                &mut admin,
                &self.connect.database(),
                manifest,
                self.skip_access,
            )
            .await;
            let _ = admin.close().await;
            loaded.warnings.extend(
                problems
                    .into_iter()
                    .map(|p| format!("database properties: {p}")),
            );
            Ok(loaded)
        })
    }

    fn release(self: Box<Self>, force: bool) -> BoxFuture<'static, Result<Released, EngineError>> {
        Box::pin(async move {
            let Some(target) = self.target.clone() else {
                return Ok(Released::default());
            };
            let result = promote(&self.connect, &target, force).await;
            if result.is_err() {
                let _ = drop_database(&self.connect, &self.connect.database()).await;
            }
            result.map_err(|message| EngineError::Promote {
                target: self.label.clone(),
                message,
            })
        })
    }

    fn discard(self: Box<Self>) -> BoxFuture<'static, Result<(), EngineError>> {
        Box::pin(async move {
            if self.target.is_none() || self.create_on_load {
                return Ok(());
            }
            drop_database(&self.connect, &self.connect.database())
                .await
                .map_err(|message| EngineError::RestoreFailed {
                    target: self.label.clone(),
                    message: format!(
                        "dropping the temporary database {} failed ({message}); drop it by hand",
                        self.connect.database()
                    ),
                })
        })
    }
}

/// Drops a database, ending its sessions.
pub(super) async fn drop_database(connect: &Connect, name: &str) -> Result<(), String> {
    let (_, mut admin) = admin(connect).await.map_err(|e| e.to_string())?;
    let result = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_ident(name)
    ))
    .execute(&mut admin)
    .await
    .map(|_| ())
    .map_err(|e| e.to_string());
    let _ = admin.close().await;
    result
}

/// Renames the staging database (`connect`'s) to `target`; an existing target is renamed away
/// first and dropped afterwards (only with `force`). Both renames happen in one transaction.
async fn promote(connect: &Connect, target: &str, force: bool) -> Result<Released, String> {
    let staging = connect.database();
    let (_, mut admin) = admin(connect).await.map_err(|e| e.to_string())?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(target)
            .fetch_one(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
    let mut released = Released::default();
    let old = format!("{staging}_old");
    if exists {
        let n = relations(&connect.with_database(target))
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        if n > 0 && !force {
            return Err(format!(
                "database {target} was filled ({n} relations) while the restore ran; nothing was replaced (pass --force to replace it)"
            ));
        }
        // Sessions on the database being replaced end (that is what replacing it means); a
        // rename needs it unused. Retried briefly for sessions that reconnect.
        let mut attempt = 0;
        loop {
            let _ = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(target)
            .execute(&mut admin)
            .await;
            let swapped = async {
                let mut tx = admin.begin().await?;
                sqlx::query(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(target),
                    quote_ident(&old)
                ))
                .execute(&mut *tx)
                .await?;
                sqlx::query(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&staging),
                    quote_ident(target)
                ))
                .execute(&mut *tx)
                .await?;
                tx.commit().await
            }
            .await;
            match swapped {
                Ok(()) => break,
                Err(e) if attempt < 10 => {
                    tracing::debug!(error = %e, "renaming the restored database: retrying");
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        released.replaced = n > 0;
        if let Err(e) = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&old)
        ))
        .execute(&mut admin)
        .await
        {
            released.warnings.push(format!(
                "the replaced database was kept as {old} because dropping it failed ({e}); drop it when you no longer need it"
            ));
        }
    } else {
        sqlx::query(&format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&staging),
            quote_ident(target)
        ))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    }
    let _ = admin.close().await;
    Ok(released)
}

/// Prepares a restore into `target` (the database `connect` names): refuses a non-empty target
/// without `force` and a role that could not build or replace it, then creates the staging
/// database `staging`.
pub(super) async fn stage(
    connect: &Connect,
    staging: &str,
    manifest: &Manifest,
    force: bool,
    scratch_dir: &Path,
) -> Result<PgStaging, EngineError> {
    let target = connect.database();
    let label = connect.describe();
    let unreachable = |e: sqlx::Error| EngineError::TargetUnavailable {
        target: label.clone(),
        message: e.to_string(),
    };
    let (_, mut admin_conn) = admin(connect).await.map_err(unreachable)?;
    check_fit(connect, &mut admin_conn, force).await?;
    create_database(&mut admin_conn, staging, manifest)
        .await
        .map_err(|e| EngineError::RestoreFailed {
            target: label.clone(),
            message: format!("creating the temporary database {staging}: {e}"),
        })?;
    let _ = admin_conn.close().await;
    Ok(PgStaging {
        connect: connect.with_database(staging),
        target: Some(target),
        create_on_load: false,
        fresh_cluster: false,
        scratch_dir: scratch_dir.to_path_buf(),
        skip_access: false,
        label,
        checked: BTreeMap::new(),
    })
}

/// Refuses a target the verified restore could not build or replace: a role without
/// CREATEDB, an existing database the role does not own, or one that is not empty without
/// `force`. Run by [`stage`], and before any other work by a restore that does much of it
/// first (a point-in-time recovery into a server).
pub(super) async fn check_target(connect: &Connect, force: bool) -> Result<(), EngineError> {
    let (_, mut admin_conn) = admin(connect)
        .await
        .map_err(|e| EngineError::TargetUnavailable {
            target: connect.describe(),
            message: e.to_string(),
        })?;
    let fit = check_fit(connect, &mut admin_conn, force).await;
    let _ = admin_conn.close().await;
    fit
}

async fn check_fit(
    connect: &Connect,
    admin_conn: &mut sqlx::PgConnection,
    force: bool,
) -> Result<(), EngineError> {
    let target = connect.database();
    let label = connect.describe();
    let unreachable = |e: sqlx::Error| EngineError::TargetUnavailable {
        target: label.clone(),
        message: e.to_string(),
    };
    let refused = |message: String| EngineError::TargetRefused {
        target: label.clone(),
        message,
    };
    let (can_create, is_super): (bool, bool) = sqlx::query_as(
        "SELECT rolcreatedb OR rolsuper, rolsuper FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *admin_conn)
    .await
    .map_err(unreachable)?;
    if !can_create {
        return Err(refused(
            "the restore is built in a temporary database and renamed into place only once verified, which needs CREATEDB; run `ALTER ROLE … CREATEDB` for the restoring role, or restore as another role"
                .into(),
        ));
    }
    let owner: Option<bool> = sqlx::query_scalar(
        "SELECT pg_has_role(current_user, datdba, 'MEMBER') FROM pg_database WHERE datname = $1",
    )
    .bind(&target)
    .fetch_optional(&mut *admin_conn)
    .await
    .map_err(unreachable)?;
    if let Some(owns) = owner {
        if !owns && !is_super {
            return Err(refused(format!(
                "database {target} exists and the restoring role does not own it, so it cannot be replaced by the verified restore; restore into a new database name, or as its owner"
            )));
        }
        let n = relations(connect).await.map_err(unreachable)?.unwrap_or(0);
        if n > 0 && !force {
            return Err(refused(format!(
                "database {target} is not empty ({n} tables or other relations); restore into an empty or new database, or pass --force to replace its contents once the restore is verified"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_fit_and_stay_unique() {
        assert_eq!(
            staging_name("crm", "20261201T090834.123Z-1a2b3c4d"),
            "crm__custodian_123z1a2b3c4d"
        );
        let long = "x".repeat(80);
        let name = staging_name(&long, "20261201T090834.123Z-1a2b3c4d");
        assert!(name.len() <= 63 && name.ends_with("1a2b3c4d"), "{name}");
    }

    #[test]
    fn database_acls_become_grants() {
        assert_eq!(
            grants("\"crm\"", "=Tc/app,app=C*Tc/app,reporting=c/app"),
            [
                "GRANT TEMPORARY, CONNECT ON DATABASE \"crm\" TO PUBLIC",
                "GRANT TEMPORARY, CONNECT ON DATABASE \"crm\" TO \"app\"",
                "GRANT CREATE ON DATABASE \"crm\" TO \"app\" WITH GRANT OPTION",
                "GRANT CONNECT ON DATABASE \"crm\" TO \"reporting\"",
            ]
        );
    }

    #[test]
    fn list_settings_are_quoted_element_by_element() {
        assert_eq!(
            set_clause("search_path", "app, \"$user\", public"),
            "\"search_path\" = 'app', '$user', 'public'"
        );
        assert_eq!(set_clause("work_mem", "64MB"), "\"work_mem\" = '64MB'");
    }

    #[test]
    fn tablespaces_leave_the_globals_of_a_scratch_cluster() {
        let text = "CREATE ROLE app;\nCREATE TABLESPACE fast OWNER app LOCATION '/ssd';\nGRANT CREATE ON TABLESPACE fast TO app;\nALTER ROLE app SET work_mem = '1MB';";
        assert_eq!(
            globals_without_tablespaces(text),
            "CREATE ROLE app;\nALTER ROLE app SET work_mem = '1MB';"
        );
    }
}
