//! Secrets by reference: the only way a password enters Custodian.
//!
//! The configuration never holds a secret, only a [`SecretRef`] saying where to read it: a file,
//! an environment variable, or a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`, set by
//! `LoadCredential=`). The value is wrapped in [`Secret`], whose `Debug` prints `***` and which
//! has no `Display`, so it cannot end up in a log line or an error message by accident.

use std::fmt;
use std::fs;
use std::io::{self, BufRead};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A secret value. Deliberately not `Display`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that is already in memory (a generated password, say).
    #[must_use]
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself. Call it only where the value is handed to a library.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// First line of a file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

/// Why a secret could not be read. Messages name the reference, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{path} does not exist; create it with the secret on its first line and `chmod 600` it"
    )]
    FileMissing { path: PathBuf },
    #[error("{path} cannot be read ({source}); check its owner and permissions")]
    FileUnreadable { path: PathBuf, source: io::Error },
    #[error("{what} is empty; put the secret on its first line")]
    Empty { what: String },
    #[error("environment variable {name} is not set; export it or use a password file")]
    EnvMissing { name: String },
    #[error(
        "systemd credential {name} was requested but $CREDENTIALS_DIRECTORY is not set; \
         add `LoadCredential={name}:/path/to/file` to the unit, or use password-file outside systemd"
    )]
    NoCredentialsDirectory { name: String },
}

impl SecretRef {
    /// A human description of where the secret comes from, safe to print.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("file {}", path.display()),
            Self::Env(name) => format!("environment variable {name}"),
            Self::Credential(name) => format!("systemd credential {name}"),
        }
    }

    /// The file that holds the secret, when there is one (a file or a systemd credential
    /// whose directory is known).
    #[must_use]
    pub fn file_path(&self) -> Option<PathBuf> {
        match self {
            Self::File(path) => Some(path.clone()),
            Self::Credential(name) => {
                std::env::var_os("CREDENTIALS_DIRECTORY").map(|dir| Path::new(&dir).join(name))
            }
            Self::Env(_) => None,
        }
    }

    /// Reads the secret.
    ///
    /// # Errors
    /// When the file, variable or credential is missing, unreadable or empty.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            Self::File(path) => read_first_line(path),
            Self::Env(name) => {
                let value = std::env::var(name)
                    .map_err(|_| SecretError::EnvMissing { name: name.clone() })?;
                if value.is_empty() {
                    return Err(SecretError::Empty {
                        what: format!("environment variable {name}"),
                    });
                }
                Ok(Secret(value))
            }
            Self::Credential(name) => {
                let path = self
                    .file_path()
                    .ok_or_else(|| SecretError::NoCredentialsDirectory { name: name.clone() })?;
                read_first_line(&path)
            }
        }
    }
}

fn read_first_line(path: &Path) -> Result<Secret, SecretError> {
    let file = fs::File::open(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            SecretError::FileMissing {
                path: path.to_path_buf(),
            }
        } else {
            SecretError::FileUnreadable {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mut line = String::new();
    io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(|source| SecretError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
    let value = line.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(SecretError::Empty {
            what: path.display().to_string(),
        });
    }
    Ok(Secret(value))
}

/// A warning when a secret file can be read by its group or by everyone.
#[must_use]
pub fn loose_permissions(path: &Path) -> Option<String> {
    let mode = fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} is readable by group or others (mode {:03o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

/// Writes a new secret file readable only by its owner (mode 0600), refusing to overwrite.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn write_new_secret_file(path: &Path, value: &Secret) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{}", value.expose())?;
    file.sync_all()
}

/// Creates a key file holding a new random secret (mode 0600, in a 0700 directory). When the
/// CLI runs as root, the file is given to the owner of the state directory, so the daemon —
/// the service's user — can read the key an administrator created.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn create_key_file(path: &Path, state_dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    write_new_secret_file(path, &generate_password())?;
    if nix::unistd::geteuid().is_root()
        && let Ok(owner) = fs::metadata(state_dir)
        && owner.uid() != 0
    {
        for p in [Some(path), path.parent()].into_iter().flatten() {
            if p.starts_with(state_dir) {
                std::os::unix::fs::chown(p, Some(owner.uid()), Some(owner.gid()))?;
            }
        }
    }
    Ok(())
}

/// A random password of 32 URL-safe characters (about 190 bits).
#[must_use]
pub fn generate_password() -> Secret {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let value = (0..32)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    Secret(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn file_secret_reads_first_line_and_flags_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fs::write(&path, "s3cret\nignored\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let secret = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        assert!(loose_permissions(&path).unwrap().contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(loose_permissions(&path).is_none());
    }

    #[test]
    fn missing_and_empty_files_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = SecretRef::File(missing).resolve().unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").unwrap();
        let err = SecretRef::File(empty).resolve().unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn generated_secret_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.key");
        let secret = generate_password();
        write_new_secret_file(&path, &secret).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(SecretRef::File(path.clone()).resolve().unwrap(), secret);
        assert!(write_new_secret_file(&path, &secret).is_err());
    }
}
