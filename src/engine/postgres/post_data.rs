//! Which post-data items a restore builds as soon as their table is loaded.
//!
//! `pg_restore -j N` builds a table's indexes while other tables still load; loading every
//! table and only then running the whole post-data section leaves a core idle while the
//! largest table loads. So a large table's own indexes and constraints (primary key, unique,
//! exclusion, check — everything but foreign keys, which need a second table) get a list of
//! their own (`pg_restore -L`) that runs right after the table's load; everything else stays
//! in the rest of the list, which runs after all loads (`-j N`, as before).
//!
//! The list `pg_restore -l` prints names an `INDEX` by its schema and name only, so the
//! manifest records each streamed table's indexes. Names are matched exactly; an entry whose
//! fields are ambiguous (a name with a space, which `-l` prints unquoted) is never taken out of
//! the rest: at worst it is built later, never twice and never missed.

use std::collections::BTreeMap;

use crate::model::TableStream;

/// Tables with streams smaller than this keep their indexes in the rest of the list: a
/// `pg_restore` process of its own would cost more than it saves.
pub const MIN_EARLY_BYTES: u64 = 8 << 20;

/// The post-data list split in two.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// For each table (`schema.table`), the list of its own items.
    pub early: BTreeMap<String, String>,
    /// The whole list with the early items commented out.
    pub rest: String,
}

/// The fields of a `pg_restore -l` entry after its ids: `DESC SCHEMA TAG OWNER`.
fn fields(line: &str) -> Option<&str> {
    let (id, rest) = line.split_once("; ")?;
    id.trim().parse::<u32>().ok()?;
    let mut parts = rest.splitn(3, ' ');
    let _catalog = parts.next()?;
    let _oid = parts.next()?;
    parts.next()
}

fn plain(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace)
}

/// Splits `toc` (what `pg_restore -l` printed for the schema dump) for `streams`.
#[must_use]
pub fn split(toc: &str, streams: &[TableStream], min_bytes: u64) -> Split {
    // (schema, index) → table, and (schema, table) → table, for the tables worth it.
    let mut indexes: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    let mut tables: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for s in streams {
        if s.bytes < min_bytes || !plain(&s.schema) || !plain(&s.name) {
            continue;
        }
        tables.insert((s.schema.as_str(), s.name.as_str()), s.table.as_str());
        for index in s.indexes.iter().filter(|i| plain(i)) {
            indexes.insert((s.schema.as_str(), index.as_str()), s.table.as_str());
        }
    }
    let mut out = Split::default();
    for line in toc.lines() {
        let owner_of = |entry: &str| -> Option<&str> {
            let words: Vec<&str> = entry.split(' ').collect();
            if let ["INDEX", schema, index, _owner] = words.as_slice() {
                return indexes.get(&(*schema, *index)).copied();
            }
            if let ["CONSTRAINT", schema, table, _name, _owner] = words.as_slice() {
                return tables.get(&(*schema, *table)).copied();
            }
            None
        };
        match fields(line).and_then(owner_of) {
            Some(table) => {
                let list = out.early.entry(table.to_string()).or_default();
                list.push_str(line);
                list.push('\n');
                out.rest.push(';');
                out.rest.push_str(line);
            }
            None => out.rest.push_str(line),
        }
        out.rest.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(schema: &str, name: &str, bytes: u64, indexes: &[&str]) -> TableStream {
        TableStream {
            table: format!("{schema}.{name}"),
            schema: schema.into(),
            name: name.into(),
            file: String::new(),
            columns: Vec::new(),
            order: Vec::new(),
            bytes,
            indexes: indexes.iter().map(ToString::to_string).collect(),
        }
    }

    const TOC: &str = ";\n; Archive created at 2026-12-01\n;\n\
        215; 1259 16390 TABLE public notes custodian\n\
        3234; 2606 16411 CONSTRAINT public notes notes_pkey custodian\n\
        3236; 2606 16413 CONSTRAINT public small small_pkey custodian\n\
        3240; 1259 16432 INDEX public notes_contact_idx custodian\n\
        3241; 1259 16433 INDEX public small_idx custodian\n\
        3245; 2606 16440 FK CONSTRAINT public notes notes_contact_fkey custodian\n\
        3250; 2606 16450 CONSTRAINT public a b a b_pkey custodian\n\
        3251; 0 0 INDEX ATTACH public notes_contact_idx custodian\n";

    #[test]
    fn a_large_tables_own_items_run_early_and_nothing_is_lost() {
        let streams = [
            stream(
                "public",
                "notes",
                100 << 20,
                &["notes_contact_idx", "notes_pkey"],
            ),
            stream("public", "small", 1 << 10, &["small_idx"]),
            stream("public", "a", 100 << 20, &[]),
            stream("public", "a b", 100 << 20, &[]),
        ];
        let split = split(TOC, &streams, MIN_EARLY_BYTES);
        assert_eq!(
            split.early.get("public.notes").map(String::as_str),
            Some(
                "3234; 2606 16411 CONSTRAINT public notes notes_pkey custodian\n\
                 3240; 1259 16432 INDEX public notes_contact_idx custodian\n"
            )
        );
        // Small tables, foreign keys, attachments and ambiguous lines stay in the rest.
        assert_eq!(split.early.len(), 1, "{split:?}");
        let commented: Vec<&str> = split.rest.lines().filter(|l| l.starts_with(";3")).collect();
        assert_eq!(commented.len(), 2, "{}", split.rest);
        assert_eq!(split.rest.lines().count(), TOC.lines().count());
        for line in TOC.lines() {
            assert!(split.rest.contains(line));
        }
    }
}
