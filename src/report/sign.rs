//! Report signing with minisign: key generation, signing the bundle's manifest (`SHA256SUMS`,
//! in `sha256sum` format), and verification. The `minisign` CLI verifies what this signs:
//! `minisign -Vm SHA256SUMS -P <public key>` followed by `sha256sum -c SHA256SUMS`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};

use crate::secret::{Secret, SecretRef};

/// Why signing or verifying failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "the report signing key {path} does not exist; create it with `custodian keys generate`"
    )]
    NoKey { path: PathBuf },
    #[error("cannot read the report signing key {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "the report signing key {path} is protected by a password and it does not open it (wrong password in reports.secret-key-password?)"
    )]
    WrongPassword { path: PathBuf },
    #[error(
        "the report signing key {path} is password-protected; configure reports.secret-key-password-file (or -env, -credential)"
    )]
    NeedsPassword { path: PathBuf },
    #[error("{path} already exists; pass --force to replace the report signing key")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The key id as minisign prints it (16 upper-case hex digits).
#[must_use]
pub fn key_id(pk: &PublicKey) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&pk.keynum()[..8]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// The public key as the one base64 line `minisign -P` takes.
///
/// # Errors
/// Never for a valid key.
pub fn public_base64(pk: &PublicKey) -> Result<String, SignError> {
    let boxed = pk
        .to_box()
        .map_err(|e| SignError::Sign(e.to_string()))?
        .to_string();
    Ok(boxed.lines().nth(1).unwrap_or_default().trim().to_string())
}

/// A public key given on the command line: a minisign public key file, or the key itself (the
/// one base64 line `minisign -P` takes, as printed on a report's cover).
///
/// # Errors
/// When it is neither.
pub fn public_from_arg(arg: &str) -> Result<PublicKey, SignError> {
    let path = Path::new(arg);
    if path.exists() {
        return read_public(path);
    }
    PublicKey::from_base64(arg.trim()).map_err(|e| SignError::Read {
        path: path.to_path_buf(),
        message: format!(
            "neither a minisign public key file nor a base64 public key like RWQ… ({e})"
        ),
    })
}

/// Reads a public key file (minisign format).
///
/// # Errors
/// When the file is missing or not a minisign public key.
pub fn read_public(path: &Path) -> Result<PublicKey, SignError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SignError::NoKey {
            path: path.to_path_buf(),
        },
        _ => SignError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    PublicKeyBox::from_string(&text)
        .and_then(PublicKeyBox::into_public_key)
        .map_err(|e| SignError::Read {
            path: path.to_path_buf(),
            message: format!("not a minisign public key ({e})"),
        })
}

/// Reads and opens the secret key.
///
/// # Errors
/// When it is missing, unreadable, or its password is wrong or missing.
pub fn read_secret(path: &Path, password: Option<&SecretRef>) -> Result<SecretKey, SignError> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SignError::NoKey {
            path: path.to_path_buf(),
        },
        _ => SignError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    let boxed = SecretKeyBox::from_string(&text).map_err(|e| SignError::Read {
        path: path.to_path_buf(),
        message: format!("not a minisign secret key ({e})"),
    })?;
    let key = match password {
        Some(r) => {
            let secret = r.resolve().map_err(|e| SignError::Read {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let pw = secret.expose().to_string();
            boxed
                .into_secret_key(Some(pw))
                .map_err(|_| SignError::WrongPassword {
                    path: path.to_path_buf(),
                })?
        }
        None => boxed
            .into_unencrypted_secret_key()
            .map_err(|_| SignError::NeedsPassword {
                path: path.to_path_buf(),
            })?,
    };
    if key.is_encrypted() {
        return Err(SignError::NeedsPassword {
            path: path.to_path_buf(),
        });
    }
    Ok(key)
}

fn write_private(path: &Path, data: &[u8], mode: u32) -> Result<(), SignError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| SignError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Generates a key pair: the secret key (0600, password-protected when a password is given)
/// and the public key (0644). Refuses to replace an existing key unless `force`.
///
/// # Errors
/// When a key exists (without `force`) or the files cannot be written.
pub fn generate(
    secret_path: &Path,
    public_path: &Path,
    password: Option<&Secret>,
    force: bool,
) -> Result<PublicKey, SignError> {
    if !force && secret_path.exists() {
        return Err(SignError::Exists {
            path: secret_path.to_path_buf(),
        });
    }
    let pair = match password {
        Some(p) => KeyPair::generate_encrypted_keypair(Some(p.expose().to_string())),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| SignError::Sign(e.to_string()))?;
    let id = key_id(&pair.pk);
    let sk = pair
        .sk
        .to_box(Some(&format!("custodian report signing secret key {id}")))
        .map_err(|e| SignError::Sign(e.to_string()))?;
    let pk = pair
        .pk
        .to_box()
        .map_err(|e| SignError::Sign(e.to_string()))?;
    write_private(secret_path, sk.to_string().as_bytes(), 0o600)?;
    write_private(public_path, pk.to_string().as_bytes(), 0o644)?;
    Ok(pair.pk)
}

/// Signs `data`; returns the `.minisig` text.
///
/// # Errors
/// When signing fails.
pub fn sign(
    pk: &PublicKey,
    sk: &SecretKey,
    data: &[u8],
    trusted_comment: &str,
) -> Result<String, SignError> {
    let signature = minisign::sign(
        Some(pk),
        sk,
        Cursor::new(data),
        Some(trusted_comment),
        Some("signature from custodian report key"),
    )
    .map_err(|e| SignError::Sign(e.to_string()))?;
    Ok(signature.to_string())
}

/// Verifies a `.minisig` over `data`; returns the trusted comment.
///
/// # Errors
/// A sentence saying why the signature does not hold.
pub fn verify(pk: &PublicKey, data: &[u8], signature: &str) -> Result<String, String> {
    let boxed = SignatureBox::from_string(signature)
        .map_err(|e| format!("the signature file is not a minisign signature ({e})"))?;
    minisign::verify(pk, &boxed, Cursor::new(data), true, false, false)
        .map_err(|e| format!("the signature does not verify: {e}"))?;
    boxed
        .trusted_comment()
        .map_err(|e| format!("the signature's trusted comment is unreadable ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (sk_path, pk_path) = (dir.path().join("k.key"), dir.path().join("k.pub"));
        let pk = generate(&sk_path, &pk_path, None, false).unwrap();
        assert!(matches!(
            generate(&sk_path, &pk_path, None, false),
            Err(SignError::Exists { .. })
        ));
        let sk = read_secret(&sk_path, None).unwrap();
        let pk2 = read_public(&pk_path).unwrap();
        assert_eq!(key_id(&pk), key_id(&pk2));
        let sig = sign(&pk2, &sk, b"hello", "custodian test").unwrap();
        assert_eq!(verify(&pk2, b"hello", &sig).unwrap(), "custodian test");
        assert!(verify(&pk2, b"hellO", &sig).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn password_protected_key_needs_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let (sk_path, pk_path) = (dir.path().join("k.key"), dir.path().join("k.pub"));
        std::fs::write(dir.path().join("pw"), "correct horse\n").unwrap();
        let good = SecretRef::File(dir.path().join("pw"));
        let secret = good.resolve().unwrap();
        generate(&sk_path, &pk_path, Some(&secret), false).unwrap();
        assert!(matches!(
            read_secret(&sk_path, None),
            Err(SignError::NeedsPassword { .. })
        ));
        std::fs::write(dir.path().join("bad"), "wrong\n").unwrap();
        let bad = SecretRef::File(dir.path().join("bad"));
        assert!(matches!(
            read_secret(&sk_path, Some(&bad)),
            Err(SignError::WrongPassword { .. })
        ));
        assert!(read_secret(&sk_path, Some(&good)).is_ok());
    }
}
