//! Everything a PostgreSQL database holds besides table rows, described from the catalogs: the
//! database's own properties (encoding, collation, ctype, locale provider, owner, privileges,
//! comment, `ALTER DATABASE … SET` settings), every user object of every class pg_dump restores
//! — schemas, extensions, types (enums, domains, composites, ranges), functions and
//! procedures, tables and partitions (columns, defaults, generated and identity columns,
//! collations, persistence, partition keys and bounds, row-level security), views,
//! materialized views, indexes, constraints, triggers, policies, rules, sequences, collations,
//! default privileges, event triggers, publications — each as a hash of its definition as the
//! server prints it (`pg_get_viewdef`, `pg_get_functiondef`, `pg_get_indexdef`…) with its
//! comment, and a hash of its owner and privileges; sequence positions; materialized views
//! (populated, and the content their query gives at the snapshot); large objects.
//!
//! Run in the dump's exported snapshot, this describes exactly what pg_dump saw. Names are
//! printed with `search_path = pg_catalog`, so every user object is schema-qualified the same
//! way on both sides. Objects that belong to an extension are described by the extension.

use std::collections::BTreeMap;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Row};

use crate::model::objects::{LargeObjects, MatviewState, ObjectState, Objects, SequenceState};

/// Object classes pg_dump restores that are not described (yet); listed with every
/// verification.
const NOT_COVERED: &[&str] = &[
    "operators, operator classes and families, casts, conversions and transforms",
    "text search configurations and dictionaries",
    "foreign-data wrappers, foreign servers and user mappings",
    "extended statistics objects, subscriptions, security labels and tablespaces",
    "the cluster's roles themselves (globals.sql is applied, not compared)",
];

/// A relation in a user schema and not part of an extension.
const USER_RELATION: &str = "c.relnamespace NOT IN (SELECT oid FROM pg_namespace
        WHERE nspname IN ('pg_catalog', 'information_schema')
           OR nspname LIKE 'pg\\_toast%' OR nspname LIKE 'pg\\_temp%')
    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                    AND e.objid = c.oid AND e.deptype = 'e')";

/// An ACL, sorted, with the implicit default spelled out (`NULL` means the default).
fn acl(column: &str, kind: char, owner: &str) -> String {
    format!(
        "pg_get_userbyid({owner}) || ' ' || coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text)
             FROM unnest(coalesce({column}, acldefault('{kind}', {owner}))) a), '')"
    )
}

/// Per class: a query returning (identity, definition, access) of every user object.
fn class_queries() -> Vec<(&'static str, String)> {
    let user_ns = |col: &str| {
        format!(
            "{col} NOT IN (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema')
                 OR nspname LIKE 'pg\\_toast%' OR nspname LIKE 'pg\\_temp%')"
        )
    };
    let not_ext = |catalog: &str, col: &str| {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass
                 AND e.objid = {col} AND e.deptype = 'e')"
        )
    };
    let columns =
        "coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
             || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
             || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
             || ' gen=' || a.attgenerated::text || ' ident=' || a.attidentity::text
             || ' coll=' || coalesce(co.collname, '')
             || ' stats=' || coalesce(nullif(a.attstattarget::int, -1)::text, '')
             || ' storage=' || a.attstorage::text
             || ' comment=' || coalesce(col_description(a.attrelid, a.attnum), ''),
             ', ' ORDER BY a.attnum)
           FROM pg_attribute a
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
           LEFT JOIN pg_collation co ON co.oid = a.attcollation
                AND a.attcollation <> (SELECT typcollation FROM pg_type WHERE oid = a.atttypid)
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')";
    let column_acls = "coalesce((SELECT string_agg(a.attname || ':' || array_to_string(a.attacl, ','), ';' ORDER BY a.attname)
           FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND a.attacl IS NOT NULL), '')";
    let comment = |oid: &str, catalog: &str| {
        format!("' comment=' || coalesce(obj_description({oid}, '{catalog}'), '')")
    };
    let rel = |kinds: &str, definition: String| {
        format!(
            "SELECT c.oid::regclass::text, {definition},
                    {} || ' ' || {column_acls}
             FROM pg_class c WHERE c.relkind::text IN ({kinds}) AND {USER_RELATION}",
            acl("c.relacl", 'r', "c.relowner")
        )
    };
    vec![
        (
            "schema",
            format!(
                "SELECT n.nspname::text, {}, {} FROM pg_namespace n
                 WHERE {} AND {}",
                comment("n.oid", "pg_namespace"),
                acl("n.nspacl", 'n', "n.nspowner"),
                user_ns("n.oid"),
                not_ext("pg_namespace", "n.oid")
            ),
        ),
        (
            "extension",
            "SELECT e.extname::text,
                    e.extversion || ' in ' || n.nspname || ' comment=' || coalesce(obj_description(e.oid, 'pg_extension'), ''),
                    ''
             FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                .to_string(),
        ),
        (
            "type",
            format!(
                "SELECT format_type(t.oid, NULL),
                    t.typtype::text || ': ' || CASE t.typtype::text
                      WHEN 'e' THEN (SELECT string_agg(enumlabel::text, ',' ORDER BY enumsortorder)
                                     FROM pg_enum WHERE enumtypid = t.oid)
                      WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                           || ' notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '')
                           || ' coll=' || coalesce((SELECT collname FROM pg_collation
                                  WHERE oid = t.typcollation AND t.typcollation <> 0
                                    AND t.typcollation <> (SELECT typcollation FROM pg_type WHERE oid = t.typbasetype)), '')
                           || ' checks=' || coalesce((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid)
                                  || ' valid=' || convalidated, ';' ORDER BY conname)
                                  FROM pg_constraint WHERE contypid = t.oid), '')
                      WHEN 'c' THEN (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                                     FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
                      WHEN 'r' THEN (SELECT format_type(rngsubtype, NULL) FROM pg_range WHERE rngtypid = t.oid)
                      ELSE t.typinput::text || ' ' || t.typoutput::text END
                    || {},
                    {}
                 FROM pg_type t
                 WHERE {} AND {}
                   AND t.typtype::text <> 'm'
                   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
                   AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid)",
                comment("t.oid", "pg_type"),
                acl("t.typacl", 'T', "t.typowner"),
                user_ns("t.typnamespace"),
                not_ext("pg_type", "t.oid")
            ),
        ),
        (
            "function",
            format!(
                "SELECT p.oid::regprocedure::text,
                    CASE WHEN p.prokind = 'a' THEN
                        (SELECT 'aggregate ' || a.aggkind::text || ' ' || a.aggtransfn::regprocedure::text
                            || ' ' || a.aggfinalfn::text || ' ' || format_type(a.aggtranstype, NULL)
                            || ' ' || coalesce(a.agginitval, '') || ' ' || a.aggsortop::regoperator::text
                         FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
                    ELSE pg_get_functiondef(p.oid) END || {},
                    {}
                 FROM pg_proc p WHERE {} AND {}
                   -- A range type's constructors belong to the type (and to the bootstrap
                   -- superuser, whoever created the type): described with the type.
                   AND NOT EXISTS (SELECT 1 FROM pg_depend i WHERE i.classid = 'pg_proc'::regclass
                                   AND i.objid = p.oid AND i.deptype = 'i')",
                comment("p.oid", "pg_proc"),
                acl("p.proacl", 'f', "p.proowner"),
                user_ns("p.pronamespace"),
                not_ext("pg_proc", "p.oid")
            ),
        ),
        (
            "table",
            rel(
                "'r', 'p', 'f'",
                format!(
                    "c.relkind::text || ' persistence=' || c.relpersistence::text
                     || ' am=' || coalesce((SELECT amname FROM pg_am WHERE oid = c.relam), '')
                     || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
                     || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
                     || ' replica=' || c.relreplident::text
                     || ' partkey=' || coalesce(pg_get_partkeydef(c.oid), '')
                     || ' bound=' || coalesce(pg_get_expr(c.relpartbound, c.oid), '')
                     || ' parents=' || coalesce((SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno)
                                                 FROM pg_inherits i WHERE i.inhrelid = c.oid), '')
                     || ' columns=' || {columns} || {}",
                    comment("c.oid", "pg_class")
                ),
            ),
        ),
        (
            "view",
            rel(
                "'v'",
                format!(
                    "pg_get_viewdef(c.oid, true) || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
                     || ' columns=' || {columns} || {}",
                    comment("c.oid", "pg_class")
                ),
            ),
        ),
        (
            "materialized view",
            rel(
                "'m'",
                format!(
                    "pg_get_viewdef(c.oid, true) || ' options=' || coalesce(array_to_string(c.reloptions, ','), '')
                     || ' am=' || coalesce((SELECT amname FROM pg_am WHERE oid = c.relam), '')
                     || ' columns=' || {columns} || {}",
                    comment("c.oid", "pg_class")
                ),
            ),
        ),
        (
            "sequence",
            format!(
                "SELECT c.oid::regclass::text,
                    format_type(s.seqtypid, NULL) || ' start=' || s.seqstart || ' increment=' || s.seqincrement
                    || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
                    || ' persistence=' || c.relpersistence::text
                    || ' owned=' || coalesce((SELECT d.refobjid::regclass::text || '.' || a.attname || ' ' || d.deptype::text
                           FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.refclassid = 'pg_class'::regclass AND d.deptype::text IN ('a', 'i') LIMIT 1), '')
                    || {},
                    {}
                 FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid WHERE {USER_RELATION}",
                comment("c.oid", "pg_class"),
                acl("c.relacl", 's', "c.relowner")
            ),
        ),
        (
            "index",
            format!(
                "SELECT i.indexrelid::regclass::text,
                    pg_get_indexdef(i.indexrelid) || ' clustered=' || i.indisclustered
                    || ' replica=' || i.indisreplident || {}, ''
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                 WHERE i.indisvalid AND {USER_RELATION}",
                comment("i.indexrelid", "pg_class")
            ),
        ),
        (
            "constraint",
            format!(
                "SELECT k.conrelid::regclass::text || ' ' || k.conname,
                    k.contype::text || ' ' || pg_get_constraintdef(k.oid) || ' deferrable=' || k.condeferrable
                    || '/' || k.condeferred || ' valid=' || k.convalidated || {}, ''
                 FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                 WHERE k.conrelid <> 0 AND {USER_RELATION}",
                comment("k.oid", "pg_constraint")
            ),
        ),
        (
            "trigger",
            format!(
                "SELECT g.tgrelid::regclass::text || ' ' || g.tgname,
                    pg_get_triggerdef(g.oid) || ' enabled=' || g.tgenabled::text || {}, ''
                 FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
                 WHERE NOT g.tgisinternal AND {USER_RELATION}",
                comment("g.oid", "pg_trigger")
            ),
        ),
        (
            "policy",
            format!(
                "SELECT p.polrelid::regclass::text || ' ' || p.polname,
                    p.polcmd::text || ' permissive=' || p.polpermissive
                    || ' roles=' || coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END, ',' ORDER BY 1)
                                              FROM unnest(p.polroles) r), '')
                    || ' using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
                    || ' check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') || {}, ''
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE {USER_RELATION}",
                comment("p.oid", "pg_policy")
            ),
        ),
        (
            "rule",
            format!(
                "SELECT r.ev_class::regclass::text || ' ' || r.rulename, pg_get_ruledef(r.oid) || {}, ''
                 FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                 WHERE r.rulename <> '_RETURN' AND {USER_RELATION}",
                comment("r.oid", "pg_rewrite")
            ),
        ),
        (
            "collation",
            format!(
                "SELECT k.oid::regcollation::text,
                    (to_jsonb(k) - 'oid' - 'collname' - 'collnamespace' - 'collowner' - 'collversion')::text || {},
                    pg_get_userbyid(k.collowner)
                 FROM pg_collation k WHERE {} AND {}",
                comment("k.oid", "pg_collation"),
                user_ns("k.collnamespace"),
                not_ext("pg_collation", "k.oid")
            ),
        ),
        (
            "default privileges",
            "SELECT pg_get_userbyid(d.defaclrole) || ' in ' || coalesce(n.nspname, 'every schema') || ' on ' || d.defaclobjtype::text,
                    coalesce((SELECT string_agg(a::text, ',' ORDER BY a::text) FROM unnest(d.defaclacl) a), ''), ''
             FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace"
                .to_string(),
        ),
        (
            "event trigger",
            format!(
                "SELECT t.evtname::text,
                    t.evtevent || ' ' || t.evtfoid::regprocedure::text || ' enabled=' || t.evtenabled::text
                    || ' tags=' || coalesce(array_to_string(t.evttags, ','), '') || {},
                    pg_get_userbyid(t.evtowner)
                 FROM pg_event_trigger t WHERE {}",
                comment("t.oid", "pg_event_trigger"),
                not_ext("pg_event_trigger", "t.oid")
            ),
        ),
        (
            "publication",
            "SELECT p.pubname::text,
                    'all=' || p.puballtables || ' ' || p.pubinsert || p.pubupdate || p.pubdelete || p.pubtruncate
                    || ' tables=' || coalesce((SELECT string_agg(r.prrelid::regclass::text, ',' ORDER BY 1)
                                               FROM pg_publication_rel r WHERE r.prpubid = p.oid), ''),
                    pg_get_userbyid(p.pubowner)
             FROM pg_publication p"
                .to_string(),
        ),
    ]
}

/// Describes the database `conn` is connected to, inside whatever transaction it is in (the
/// dump's snapshot at backup time). With `backup`, `conn` is a restored database: materialized
/// views are described by what they hold, as far as the backup recorded their content.
/// `search_path` is set to `pg_catalog` for the description and put back afterwards.
///
/// # Errors
/// When a catalog query fails.
pub async fn describe(
    conn: &mut PgConnection,
    backup: Option<&Objects>,
) -> Result<Objects, sqlx::Error> {
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut *conn)
        .await?;
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("SELECT set_config('search_path', 'pg_catalog', false)")
        .execute(&mut *conn)
        .await?;
    // A failed query aborts the transaction: its error is the one to report.
    let described = describe_in_catalog_path(conn, &version, backup).await?;
    sqlx::query("SELECT set_config('search_path', $1, false)")
        .bind(&path)
        .execute(&mut *conn)
        .await?;
    Ok(described)
}

async fn describe_in_catalog_path(
    conn: &mut PgConnection,
    version: &str,
    backup: Option<&Objects>,
) -> Result<Objects, sqlx::Error> {
    let mut objects = Objects {
        server: format!("PostgreSQL {version}"),
        database: database_properties(conn).await?,
        not_covered: NOT_COVERED.iter().map(|s| (*s).to_string()).collect(),
        ..Objects::default()
    };
    for (class, sql) in class_queries() {
        let rows = sqlx::query(&sql)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| sqlx::Error::Protocol(format!("describing every {class}: {e}")))?;
        let entry = objects.classes.entry(class.to_string()).or_default();
        for row in rows {
            let name: Option<String> = row.try_get(0)?;
            let definition: Option<String> = row.try_get(1)?;
            let access: Option<String> = row.try_get(2)?;
            if let Some(name) = name {
                entry.insert(
                    name,
                    ObjectState::new(
                        definition.as_deref().unwrap_or_default(),
                        access.as_deref().unwrap_or_default(),
                    ),
                );
            }
        }
    }
    objects.classes.retain(|_, objects| !objects.is_empty());
    let invalid: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         WHERE NOT i.indisvalid AND {USER_RELATION} ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    if !invalid.is_empty() {
        objects.not_covered.push(format!(
            "invalid indexes (pg_dump leaves them out; rebuild them at the source): {}",
            invalid.join(", ")
        ));
    }
    objects.sequences = sequences(conn).await?;
    objects.materialized_views = match backup {
        None => matviews(conn).await?,
        Some(b) => restored_matviews(conn, &b.materialized_views).await?,
    };
    objects.large_objects = large_objects(conn).await?;
    Ok(objects)
}

/// The database's own properties: what `pg_dump --create` would set on a new database. Its
/// privileges keep their order (a restore grants them in that order, so it is reproduced).
async fn database_properties(
    conn: &mut PgConnection,
) -> Result<BTreeMap<String, String>, sqlx::Error> {
    let row = sqlx::query("SELECT pg_encoding_to_char(d.encoding)::text, d.datcollate::text, d.datctype::text,
                d.datconnlimit::text,
                pg_get_userbyid(d.datdba) || ' ' || array_to_string(coalesce(d.datacl, acldefault('d', d.datdba)), ','),
                coalesce(shobj_description(d.oid, 'pg_database'), ''),
                to_jsonb(d) ->> 'datlocprovider', coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale'),
                to_jsonb(d) ->> 'daticurules'
         FROM pg_database d WHERE d.datname = current_database()")
    .fetch_one(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    fn put(out: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.insert(key.to_string(), v);
        }
    }
    put(&mut out, "encoding", row.try_get(0)?);
    put(&mut out, "collation", row.try_get(1)?);
    put(&mut out, "ctype", row.try_get(2)?);
    put(&mut out, "connection limit", row.try_get(3)?);
    let access: Option<String> = row.try_get(4)?;
    if let Some((owner, privileges)) = access.as_deref().and_then(|a| a.split_once(' ')) {
        out.insert("owner".into(), owner.to_string());
        out.insert("privileges".into(), privileges.to_string());
    }
    put(&mut out, "comment", row.try_get(5)?);
    let provider: Option<String> = row.try_get(6)?;
    let provider = provider.map(|p| match p.as_str() {
        "c" => "libc".to_string(),
        "i" => "icu".to_string(),
        "b" => "builtin".to_string(),
        other => other.to_string(),
    });
    put(&mut out, "locale provider", provider);
    put(&mut out, "locale", row.try_get(7)?);
    put(&mut out, "icu rules", row.try_get(8)?);
    let settings = sqlx::query(
        "SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0))::text, ''), c.setting
         FROM pg_db_role_setting s, unnest(s.setconfig) AS c(setting)
         WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in settings {
        let role: String = row.try_get(0)?;
        let setting: String = row.try_get(1)?;
        let (name, value) = setting.split_once('=').unwrap_or((&setting, ""));
        let key = if role.is_empty() {
            format!("setting {name}")
        } else {
            format!("role setting {role} {name}")
        };
        out.insert(key, value.to_string());
    }
    Ok(out)
}

/// Sequence positions, named as `regclass` prints them with `search_path = pg_catalog` (this
/// runs before the description sets it).
pub(super) async fn sequences(conn: &mut PgConnection) -> Result<Vec<SequenceState>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT format('%I.%I', n.nspname, c.relname), pg_sequence_last_value(c.oid), s.seqstart, s.seqincrement
         FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid
         JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {USER_RELATION} ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let last: Option<i64> = r.try_get(1)?;
            Ok(SequenceState {
                name: r.try_get(0)?,
                is_called: last.is_some(),
                last_value: last.unwrap_or(r.try_get(2)?),
                last_value_max: None,
                increment: r.try_get(3)?,
            })
        })
        .collect()
}

/// Reads the sequences again and widens each recorded value to the range it moved in.
///
/// # Errors
/// When the query fails.
pub async fn widen_sequences(
    conn: &mut PgConnection,
    recorded: &mut [SequenceState],
) -> Result<(), sqlx::Error> {
    for later in sequences(conn).await? {
        if let Some(s) = recorded.iter_mut().find(|s| s.name == later.name)
            && (later.last_value != s.last_value || later.is_called != s.is_called)
        {
            let (lo, hi) = if s.increment >= 0 {
                (s.last_value, later.last_value)
            } else {
                (later.last_value, s.last_value)
            };
            s.last_value = lo.min(hi);
            s.last_value_max = Some(hi.max(lo));
        }
    }
    Ok(())
}

/// Materialized views: populated or not, and — when the defining query is deterministic —
/// the row count and checksum of what it gives in this snapshot, i.e. what a refresh restores.
async fn matviews(conn: &mut PgConnection) -> Result<Vec<MatviewState>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT c.oid::regclass::text, c.relispopulated, pg_get_viewdef(c.oid),
                EXISTS (SELECT 1 FROM pg_rewrite r JOIN pg_depend d
                          ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                        LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
                        LEFT JOIN pg_operator o ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
                        LEFT JOIN pg_proc op ON op.oid = o.oprcode
                        WHERE r.ev_class = c.oid
                          AND (p.provolatile <> 'i' OR op.provolatile <> 'i'
                               OR (d.refclassid = 'pg_class'::regclass
                                   AND (SELECT relkind FROM pg_class WHERE oid = d.refobjid) IN ('v', 'm', 'f'))))
         FROM pg_class c WHERE c.relkind::text = 'm' AND {USER_RELATION} ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0)?;
        let populated: bool = r.try_get(1)?;
        let definition: String = r.try_get(2)?;
        let volatile: bool = r.try_get(3)?;
        let mut state = MatviewState {
            name,
            populated,
            rows: None,
            checksum: None,
            content_not_compared: None,
        };
        if populated {
            if volatile {
                state.content_not_compared = Some(
                    "its query uses functions or operators that are not immutable (now(), random()…) or reads other views, so every refresh may give other rows"
                        .into(),
                );
            } else {
                let query = definition.trim().trim_end_matches(';');
                let (rows, checksum) = content(conn, &format!("({query})")).await?;
                state.rows = Some(rows);
                state.checksum = Some(checksum);
            }
        }
        out.push(state);
    }
    Ok(out)
}

/// Row count and order-independent checksum of a relation or subquery, as for tables.
async fn content(conn: &mut PgConnection, from: &str) -> Result<(u64, String), sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT count(*)::bigint, coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {from} t"
    ))
    .fetch_one(&mut *conn)
    .await?;
    let rows: i64 = row.try_get(0)?;
    let sum: String = row.try_get(1)?;
    Ok((
        u64::try_from(rows).unwrap_or(0),
        crate::model::objects::short_hash(&format!("{rows}:{sum}")),
    ))
}

/// What the materialized views of a restored database hold (their stored rows, after the
/// restore's refresh), in the same shape as [`matviews`] records at backup time.
async fn restored_matviews(
    conn: &mut PgConnection,
    backup: &[MatviewState],
) -> Result<Vec<MatviewState>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT c.oid::regclass::text, c.relispopulated FROM pg_class c
         WHERE c.relkind::text = 'm' AND {USER_RELATION} ORDER BY 1"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let name: String = r.try_get(0)?;
        let populated: bool = r.try_get(1)?;
        let wanted = backup
            .iter()
            .find(|b| b.name == name)
            .is_some_and(|b| b.populated && b.checksum.is_some());
        let (rows, checksum) = if populated && wanted {
            let (n, sum) = content(conn, &name).await?;
            (Some(n), Some(sum))
        } else {
            (None, None)
        };
        out.push(MatviewState {
            name,
            populated,
            rows,
            checksum,
            content_not_compared: None,
        });
    }
    Ok(out)
}

async fn large_objects(conn: &mut PgConnection) -> Result<Option<LargeObjects>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*)::bigint,
                coalesce(sum(hashtextextended(m.oid::text || ':' || md5(lo_get(m.oid)), 0)), 0)::text,
                md5(coalesce(string_agg(m.oid::text || '=' || pg_get_userbyid(m.lomowner) || ' '
                      || coalesce(array_to_string(m.lomacl, ','), '')
                      || ' ' || coalesce(obj_description(m.oid, 'pg_largeobject'), ''), ';' ORDER BY m.oid), ''))
         FROM pg_largeobject_metadata m",
    )
    .fetch_one(&mut *conn)
    .await?;
    let count: i64 = row.try_get(0)?;
    if count == 0 {
        return Ok(None);
    }
    let sum: String = row.try_get(1)?;
    Ok(Some(LargeObjects {
        count: u64::try_from(count).unwrap_or(0),
        checksum: crate::model::objects::short_hash(&format!("{count}:{sum}")),
        access: row.try_get(2)?,
    }))
}

/// Describes a restored database in a read-only snapshot of its own.
///
/// # Errors
/// When a query fails.
pub async fn describe_restored(
    conn: &mut PgConnection,
    backup: &Objects,
) -> Result<Objects, sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let objects = describe(&mut tx, Some(backup)).await?;
    tx.rollback().await?;
    Ok(objects)
}
