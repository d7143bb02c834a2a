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

    /// Deserializes one value into `T`, reporting unknown keys (all of them) and the first type
    /// error, each with its key path under `prefix`.
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        value: &Spanned<DeValue<'a>>,
        prefix: &str,
        diags: &mut Diagnostics,
    ) -> Option<T> {
        let mut unknown = Vec::new();
        let de = ValueDeserializer::from(value.clone());
        let result: Result<T, _> =
            serde_ignored::deserialize(de, |path| unknown.push(path.to_string()));
        for key in unknown {
            let full = join(prefix, &key);
            let last = key.rsplit('.').next().unwrap_or(&key).to_string();
            let line = self.line(diags, &full);
            diags.push(
                Severity::Error,
                line,
                full,
                format!(
                    "unknown key `{last}`; remove it or check its spelling against the \
                     configuration reference in the README"
                ),
            );
        }
        match result {
            Ok(v) => Some(v),
            Err(err) => {
                let line = err
                    .span()
                    .or_else(|| Some(value.span()))
                    .map(|s| diags.line_of(s.start));
                diags.push(
                    Severity::Error,
                    line,
                    prefix,
                    fix_serde_message(err.message()),
                );
                None
            }
        }
    }
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
            text[0].starts_with("c.toml:3: e.kep-last: unknown key"),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("c.toml:4: e.foo: unknown key"),
            "{}",
            text[1]
        );
        assert!(
            text[2].starts_with("c.toml:6: f: invalid type"),
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
