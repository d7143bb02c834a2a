//! The report bundle on disk: a directory (0750) of files (0640), a `SHA256SUMS` manifest in
//! `sha256sum` format, and `SHA256SUMS.minisig`. Writing goes through a hidden temporary
//! directory renamed into place, so a bundle is either complete or absent. Verification checks
//! the signature with a trusted public key, every file against the manifest, and the chain to
//! the previous report.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use minisign::{PublicKey, SecretKey};
use serde::Serialize;

use super::{ReportError, sign};

/// The manifest the signature covers.
pub const MANIFEST: &str = "SHA256SUMS";
/// The signature.
pub const SIGNATURE: &str = "SHA256SUMS.minisig";
/// The signer's public key, copied into the bundle for convenience (verification should use a
/// key obtained independently).
pub const PUBLIC_KEY: &str = "custodian-report.pub";

pub use crate::model::sha256_hex;

fn io_err(path: &Path, e: &std::io::Error) -> String {
    format!("cannot write {}: {e}", path.display())
}

/// Picks a fresh bundle directory `OUT/LABEL` (`LABEL-r2`, `-r3`… when regenerated).
#[must_use]
pub fn fresh_dir(out: &Path, label: &str) -> PathBuf {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut dir = out.join(&safe);
    let mut n = 2;
    while dir.exists() {
        dir = out.join(format!("{safe}-r{n}"));
        n += 1;
    }
    dir
}

/// Adds the manifest of `files` (in `sha256sum` format) and its signature to them; returns the
/// manifest's sha256.
///
/// # Errors
/// When signing fails.
pub fn sign_files(
    files: &mut Vec<(String, Vec<u8>)>,
    pk: &PublicKey,
    sk: &SecretKey,
    trusted_comment: &str,
) -> Result<String, String> {
    let mut manifest = String::new();
    for (file, bytes) in files.iter() {
        manifest.push_str(&format!("{}  {file}\n", sha256_hex(bytes)));
    }
    let signature =
        sign::sign(pk, sk, manifest.as_bytes(), trusted_comment).map_err(|e| e.to_string())?;
    let digest = sha256_hex(manifest.as_bytes());
    files.push((MANIFEST.into(), manifest.into_bytes()));
    files.push((SIGNATURE.into(), signature.into_bytes()));
    Ok(digest)
}

/// Writes a bundle's files into `dir` (0750, files 0640), through a hidden temporary directory
/// renamed into place: the bundle is complete or absent.
///
/// # Errors
/// [`ReportError::Write`], naming the path, when a directory or file cannot be written; nothing
/// is left half-written.
pub fn write_dir(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), ReportError> {
    write_dir_text(dir, files).map_err(ReportError::Write)
}

fn write_dir_text(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    let parent = dir
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", dir.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(parent)
        .map_err(|e| io_err(parent, &e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::DirBuilder::new()
        .mode(0o750)
        .create(&tmp)
        .map_err(|e| io_err(&tmp, &e))?;
    let result = (|| {
        for (file, bytes) in files {
            write_file(&tmp.join(file), bytes)?;
        }
        fs::rename(&tmp, dir).map_err(|e| io_err(dir, &e))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io_err(path, &e))?;
    f.write_all(bytes).map_err(|e| io_err(path, &e))?;
    f.sync_all().map_err(|e| io_err(path, &e))
}

/// One file's check against the manifest.
#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    pub name: String,
    pub ok: bool,
    pub problem: Option<String>,
}

/// A check that passed (with what it found) or failed (with why).
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub ok: bool,
    /// The signature's trusted comment, or the chain's summary; or what is wrong.
    pub detail: String,
}

impl Check {
    fn ok(detail: impl Into<String>) -> Self {
        Self {
            ok: true,
            detail: detail.into(),
        }
    }

    fn bad(detail: impl Into<String>) -> Self {
        Self {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// One report of the chain, walked back from the one verified.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub period: String,
    pub dir: String,
    pub manifest_sha256: String,
    /// Its signature verified with the same key.
    pub signature_ok: bool,
}

/// What `custodian report verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub dir: String,
    pub ok: bool,
    pub key_id: Option<String>,
    pub signature: Check,
    pub files: Vec<FileCheck>,
    /// The whole chain back to its first report: every link must be present and signed.
    pub chain: Check,
    /// The earlier reports walked, newest first.
    pub links: Vec<Link>,
    pub period: Option<String>,
    pub overall: Option<String>,
    pub manifest_sha256: Option<String>,
}

/// Verifies a bundle with a trusted public key (or the bundle's own copy when `pk` is `None`,
/// which proves integrity but not authorship — the result says which key was used): the
/// signature, every file against the signed manifest, and the whole chain of earlier reports.
#[must_use]
pub fn verify_bundle(dir: &Path, pk: Option<&PublicKey>) -> Verification {
    let mut v = Verification {
        dir: dir.display().to_string(),
        ok: false,
        key_id: None,
        signature: Check::bad("not checked"),
        files: Vec::new(),
        chain: Check::bad("not checked"),
        links: Vec::new(),
        period: None,
        overall: None,
        manifest_sha256: None,
    };
    let manifest = match fs::read(dir.join(MANIFEST)) {
        Ok(m) => m,
        Err(e) => {
            v.signature = Check::bad(format!(
                "{} is missing or unreadable: {e}",
                dir.join(MANIFEST).display()
            ));
            return v;
        }
    };
    v.manifest_sha256 = Some(sha256_hex(&manifest));
    let own;
    let key = match pk {
        Some(k) => k,
        None => match sign::read_public(&dir.join(PUBLIC_KEY)) {
            Ok(k) => {
                own = k;
                &own
            }
            Err(e) => {
                v.signature = Check::bad(e.to_string());
                return v;
            }
        },
    };
    v.key_id = Some(sign::key_id(key));
    v.signature = match fs::read_to_string(dir.join(SIGNATURE)) {
        Ok(sig) => match sign::verify(key, &manifest, &sig) {
            Ok(comment) => Check::ok(comment),
            Err(e) => Check::bad(e),
        },
        Err(e) => Check::bad(format!("{SIGNATURE} is missing or unreadable: {e}")),
    };
    let text = String::from_utf8_lossy(&manifest);
    let mut listed = Vec::new();
    for line in text.lines() {
        let Some((hash, name)) = line.split_once("  ") else {
            v.files.push(FileCheck {
                name: line.to_string(),
                ok: false,
                problem: Some("malformed manifest line".into()),
            });
            continue;
        };
        listed.push(name.to_string());
        let check = match fs::read(dir.join(name)) {
            Ok(bytes) if sha256_hex(&bytes) == hash => FileCheck {
                name: name.to_string(),
                ok: true,
                problem: None,
            },
            Ok(_) => FileCheck {
                name: name.to_string(),
                ok: false,
                problem: Some("content differs from the signed manifest (modified)".into()),
            },
            Err(e) => FileCheck {
                name: name.to_string(),
                ok: false,
                problem: Some(format!("missing: {e}")),
            },
        };
        v.files.push(check);
    }
    if !listed.iter().any(|n| n == "evidence.json") {
        v.files.push(FileCheck {
            name: "evidence.json".into(),
            ok: false,
            problem: Some("not listed in the signed manifest".into()),
        });
    }
    v.chain = match chain(dir, key, &mut v) {
        Ok(t) => Check::ok(t),
        Err(e) => Check::bad(e),
    };
    v.ok = v.signature.ok && v.files.iter().all(|f| f.ok) && v.chain.ok;
    v
}

/// What a report's evidence.json says about itself and its predecessor.
struct Head {
    period: Option<String>,
    overall: Option<String>,
    previous: serde_json::Value,
}

fn head(dir: &Path) -> Result<Head, String> {
    let evidence: serde_json::Value = fs::read(dir.join("evidence.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("{}/evidence.json is missing or not JSON", dir.display()))?;
    Ok(Head {
        period: evidence["period"]["label"].as_str().map(str::to_string),
        overall: evidence["overall"].as_str().map(str::to_string),
        previous: evidence["previous"].clone(),
    })
}

/// Walks the chain back from `dir` to its first report: each predecessor must be found (where
/// it was written, or beside this bundle: archives move together), have the manifest hash its
/// successor recorded, and carry a signature by the same key. A missing or altered link is a
/// break.
fn chain(dir: &Path, key: &PublicKey, v: &mut Verification) -> Result<String, String> {
    let first = head(dir)?;
    v.period.clone_from(&first.period);
    v.overall.clone_from(&first.overall);
    let mut previous = first.previous;
    let mut at = dir.to_path_buf();
    let mut seen = std::collections::BTreeSet::new();
    while !previous.is_null() {
        let want = previous["manifest_sha256"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let label = previous["period"].as_str().unwrap_or("?").to_string();
        if !seen.insert(want.clone()) || v.links.len() > 10_000 {
            return Err(format!("the chain loops back to {label}"));
        }
        let candidates: Vec<PathBuf> = [
            previous["dir"].as_str().map(PathBuf::from),
            previous["dir_name"]
                .as_str()
                .and_then(|n| at.parent().map(|p| p.join(n))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let Some(found) = candidates.iter().find(|p| p.join(MANIFEST).exists()) else {
            return Err(format!(
                "the report before {} ({label}, manifest sha256 {}) is missing: looked in {}",
                v.links
                    .last()
                    .map_or_else(|| "this one".to_string(), |l| l.period.clone()),
                &want[..want.len().min(16)],
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        };
        let manifest = fs::read(found.join(MANIFEST)).unwrap_or_default();
        let got = sha256_hex(&manifest);
        if got != want {
            return Err(format!(
                "the report at {} is not the one its successor chains to (manifest sha256 {} ≠ {})",
                found.display(),
                &got[..got.len().min(16)],
                &want[..want.len().min(16)]
            ));
        }
        let sig = fs::read_to_string(found.join(SIGNATURE)).unwrap_or_default();
        let signature_ok = sign::verify(key, &manifest, &sig).is_ok();
        v.links.push(Link {
            period: label.clone(),
            dir: found.display().to_string(),
            manifest_sha256: got,
            signature_ok,
        });
        if !signature_ok {
            return Err(format!(
                "the report {label} at {} is not signed by this key",
                found.display()
            ));
        }
        let next = head(found)?;
        previous = next.previous;
        at.clone_from(found);
    }
    Ok(match v.links.as_slice() {
        [] => "first report of the chain".to_string(),
        links => format!(
            "{}, back to {}, all present and signed by this key",
            crate::model::count(links.len(), "earlier report"),
            links.last().map_or("?", |l| l.period.as_str())
        ),
    })
}
