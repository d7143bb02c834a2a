//! The JSON contract (docs/json.md, docs/schema/): every envelope a test sees is checked
//! against `envelope.json`, and its `data` against the command's own schema. A command without
//! a schema file fails the test that ran it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

const BASE: &str = "https://custodian.invalid/schema/";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/schema")
}

/// Serves the schema files to `$ref`s by their `$id`, from disk (never the network).
struct Files;

impl jsonschema::Retrieve for Files {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(BASE)
            .ok_or_else(|| format!("{uri} is not one of Custodian's schemas"))?;
        let text = std::fs::read_to_string(dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator(name: &str) -> std::sync::Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(v) = cache.lock().unwrap().get(name) {
        return v.clone();
    }
    let path = dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no JSON schema for `{name}` ({}: {e}); every command's --json output has one",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).unwrap();
    let built = jsonschema::options()
        .with_retriever(Files)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
    let built = std::sync::Arc::new(built);
    cache
        .lock()
        .unwrap()
        .insert(name.to_string(), built.clone());
    built
}

/// Panics with every violation when `value` does not match schema `name`.
pub fn check(name: &str, value: &Value) {
    let v = validator(name);
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| format!("  at {}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "output does not match docs/schema/{name}.json:\n{}\n{value:#}",
        errors.join("\n")
    );
}

/// Checks an envelope and its data.
pub fn check_envelope(envelope: &Value) {
    check("envelope", envelope);
    let command = envelope["command"].as_str().unwrap_or_default();
    if let Some(data) = envelope.get("data") {
        check(&command.replace(' ', "-"), data);
    }
}
