//! The parsed TOML document with its spans: lets every later check point at the line of the
//! key it is about, and deserializes one entry at a time so that one bad entry does not hide
//! the problems of the others.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostic::{Diagnostics, Severity};

/// A parsed configuration file.
pub struct Document<'a> {
    root: Spanned<DeTable<'a>>,
}

impl<'a> Document<'a> {
    /// Parses the text, recording every syntax error (not only the first).
    pub fn parse(text: &'a str, diags: &mut Diagnostics) -> Option<Self> {
        let (root, errors) = DeTable::parse_recoverable(text);
        for err in &errors {
            let line = err.span().map(|s| diags.line_of(s.start));
            diags.push(
                Severity::Error,
                line,
                "",
                format!("TOML syntax error: {}", err.message().trim_end()),
            );
        }
        errors.is_empty().then_some(Self { root })
    }

    #[must_use]
    pub fn root(&self) -> &DeTable<'a> {
        self.root.get_ref()
    }

    /// The span of the key (or, failing that, of the deepest existing parent) at `path`.
    #[must_use]
    pub fn span_of(&self, path: &[&str]) -> Option<Range<usize>> {
        let mut best = None;
        let mut table = self.root.get_ref();
        let mut value: Option<&Spanned<DeValue<'a>>> = None;
        for segment in path {
            if let Some(v) = value {
                match v.get_ref() {
                    DeValue::Table(t) => table = t,
                    DeValue::Array(items) => {
                        let Some(item) = segment.parse::<usize>().ok().and_then(|i| items.get(i))
                        else {
                            return best;
                        };
                        best = Some(item.span());
                        value = Some(item);
                        continue;
                    }
                    _ => return best,
                }
            }
            let Some((key, v)) = table.get_key_value(*segment) else {
                return best;
            };
            best = Some(key.span());
            value = Some(v);
        }
        best
    }

    /// The 1-based line of the key at `path`, for diagnostics.
    #[must_use]
    pub fn line(&self, diags: &Diagnostics, path: &str) -> Option<usize> {
        let segments: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('.').collect()
        };
        self.span_of(&segments).map(|s| diags.line_of(s.start))
    }

    /// Deserializes one value into `T`, reporting every unknown key and every value of the
    /// wrong type, each with its key path under `prefix`.
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'a>>,
        prefix: &str,
        diags: &mut Diagnostics,
    ) -> Option<T> {
        let mut value = value.clone();
        let mut reported = std::collections::BTreeSet::new();
        let mut result = self.attempt::<T>(&value, prefix, diags, &mut reported);
        // A value of the wrong type is named at its own key, then left out so that the rest
        // of the entry is still checked (every problem at once, not the first one).
        let mut rounds = 0;
        let mut removed: Vec<Vec<String>> = Vec::new();
        loop {
            let err = match result {
                Ok(v) => return Some(v),
                Err(err) => err,
            };
            let at = err.span().and_then(|span| key_at(&value, span.start));
            let line = err
                .span()
                .or_else(|| Some(value.span()))
                .map(|s| diags.line_of(s.start));
            // A required key left out above is already reported.
            let missing = err
                .message()
                .strip_prefix("missing field `")
                .and_then(|r| r.trim_end().strip_suffix('`'));
            if rounds > 0
                && missing.is_some_and(|m| removed.iter().any(|p| p.last().is_some_and(|l| l == m)))
            {
                return None;
            }
            match (at, plain_type_error(err.message())) {
                (Some(path), Some(sentence)) if rounds < 32 => {
                    diags.push(
                        Severity::Error,
                        line,
                        join(prefix, &path.join(".")),
                        sentence,
                    );
                    remove_path(&mut value, &path);
                    removed.push(path);
                }
                _ => {
                    diags.push(
                        Severity::Error,
                        line,
                        prefix,
                        fix_serde_message(err.message()),
                    );
                    return None;
                }
            }
            rounds += 1;
            result = self.attempt::<T>(&value, prefix, diags, &mut reported);
        }
    }

    /// One deserialization; reports the unknown keys it met (serde stops at the first type
    /// error, so each round may meet new ones).
    fn attempt<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'a>>,
        prefix: &str,
        diags: &mut Diagnostics,
        reported: &mut std::collections::BTreeSet<String>,
    ) -> Result<T, toml::de::Error> {
        let mut unknown = Vec::new();
        let de = ValueDeserializer::from(value.clone());
        let result = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
        for key in unknown {
            if !reported.insert(key.clone()) {
                continue;
            }
            let full = join(prefix, &key);
            let last = key.rsplit('.').next().unwrap_or(&key).to_string();
            let line = self.line(diags, &full);
            let hint = if key.contains('.') {
                String::new()
            } else {
                super::diagnostic::suggestion(&last, field_names::<T>())
            };
            diags.push(
                Severity::Error,
                line,
                full,
                format!(
                    "unknown key `{last}`{hint}; remove it or check its spelling against the \
                     configuration reference in the README"
                ),
            );
        }
        result
    }
}

/// The field names a struct deserializes (serde tells them to the deserializer it is given),
/// for "did you mean" on unknown keys.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields(&'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("introspection")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Self
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = Fields(&[]);
    let _ = T::deserialize(&mut fields);
    fields.0
}

/// The path of the deepest key whose value contains byte `pos`.
fn key_at(value: &Spanned<DeValue<'_>>, pos: usize) -> Option<Vec<String>> {
    let DeValue::Table(table) = value.get_ref() else {
        return None;
    };
    for (k, v) in table {
        if v.span().contains(&pos) || v.span().start == pos {
            let mut path = vec![k.get_ref().to_string()];
            if let Some(rest) = key_at(v, pos) {
                path.extend(rest);
            }
            return Some(path);
        }
    }
    None
}

fn remove_path(value: &mut Spanned<DeValue<'_>>, path: &[String]) {
    let DeValue::Table(table) = value.get_mut() else {
        return;
    };
    match path {
        [] => {}
        [last] => {
            table.remove(last.as_str());
        }
        [first, rest @ ..] => {
            if let Some(inner) = table.get_mut(first.as_str()) {
                remove_path(inner, rest);
            }
        }
    }
}

/// "invalid type: string \"two\", expected u32" → "must be a whole number, like 2; found the
/// string \"two\"".
fn plain_type_error(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.split_once(", expected ")?;
    let expected = expected.trim_end();
    let wanted = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, like 2".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number, like -1 or 2".to_string(),
        "f32" | "f64" => "a number, like 0.5".to_string(),
        "a boolean" => "true or false (without quotes)".to_string(),
        "a string" => "a string in double quotes".to_string(),
        "a sequence" => "a list, like [\"a\", \"b\"]".to_string(),
        e if e.starts_with("a map") || e.starts_with("struct") => {
            "a table (a [section] or { key = value })".to_string()
        }
        e => e.to_string(),
    };
    let found = if let Some(s) = found.strip_prefix("string ") {
        format!("the string {s}")
    } else if let Some(n) = found.strip_prefix("integer ") {
        format!("the number {}", n.trim_matches('`'))
    } else if let Some(n) = found.strip_prefix("floating point ") {
        format!("the number {}", n.trim_matches('`'))
    } else if let Some(b) = found.strip_prefix("boolean ") {
        b.trim_matches('`').to_string()
    } else if found == "sequence" {
        "a list".to_string()
    } else if found == "map" {
        "a table".to_string()
    } else {
        found.to_string()
    };
    Some(format!("must be {wanted}; found {found}"))
}

/// `a` + `b` → `a.b`, skipping empty parts.
#[must_use]
pub fn join(prefix: &str, key: &str) -> String {
    match (prefix.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{key}"),
    }
}

/// Serde's messages are terse ("missing field `path`"); say what to do.
fn fix_serde_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        format!("required key `{field}` is missing; add it")
    } else {
        format!("{message}; fix the value's type (see the configuration reference in the README)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Entry {
        path: String,
        keep_last: Option<u32>,
    }

    #[test]
    fn spans_point_at_keys() {
        let text =
            "[location.a]\npath = \"/x\"\n\n[location.b]\npath = \"/y\"\npassword-file = \"k\"\n";
        let mut diags = Diagnostics::new(Path::new("c.toml"), text);
        let doc = Document::parse(text, &mut diags).unwrap();
        assert_eq!(doc.line(&diags, "location.b.password-file"), Some(6));
        assert_eq!(doc.line(&diags, "location.a.path"), Some(2));
        // A missing key falls back to its parent.
        assert_eq!(doc.line(&diags, "location.b.nope"), Some(4));
    }

    #[test]
    fn every_unknown_key_and_type_errors_are_reported() {
        let text = "[e]\npath = \"/x\"\nkep-last = 3\nfoo = 1\n[f]\npath = 3\n";
        let mut diags = Diagnostics::new(Path::new("c.toml"), text);
        let doc = Document::parse(text, &mut diags).unwrap();
        let e = doc.root().get("e").unwrap().clone();
        let f = doc.root().get("f").unwrap().clone();
        assert!(doc.deserialize::<Entry>(&e, "e", &mut diags).is_some());
        assert!(doc.deserialize::<Entry>(&f, "f", &mut diags).is_none());
        let text: Vec<String> = diags.items().iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(
            text[0].starts_with(
                "c.toml:3: e.kep-last: unknown key `kep-last` (did you mean `keep-last`?)"
            ),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("c.toml:4: e.foo: unknown key"),
            "{}",
            text[1]
        );
        assert!(
            text[2].starts_with(
                "c.toml:6: f.path: must be a string in double quotes; found the number 3"
            ),
            "{}",
            text[2]
        );
    }

    #[test]
    fn all_syntax_errors_are_reported() {
        let text = "a = \nb = [\n";
        let mut diags = Diagnostics::new(Path::new("c.toml"), text);
        assert!(Document::parse(text, &mut diags).is_none());
        assert!(diags.has_errors());
        assert!(diags.items()[0].to_string().contains("TOML syntax error"));
    }
}
