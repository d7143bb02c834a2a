//! Second factors: TOTP (RFC 6238; SHA-1, 6 digits, 30-second steps — what every authenticator
//! app reads from an `otpauth://` URI), one secret per person, stored in the catalog encrypted
//! with ChaCha20-Poly1305 under `[access] totp-key` (default `STATE/keys/totp.key`, created
//! 0600 on first enrolment) with the user name as associated data, so a secret copied to
//! another person's row does not decrypt.
//!
//! A code is accepted once: only for a later time step than the last one accepted (atomically
//! in the catalog, so the CLI and the daemon cannot both accept it). After a failed attempt the
//! next one waits [`RETRY_AFTER`]; after [`MAX_FAILURES`] consecutive failures the person is
//! locked out for [`LOCKOUT`]. Every attempt, good or bad, is audited.

use std::time::Duration;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use rand::RngExt;
use serde::Serialize;
use totp_rs::{Algorithm, Builder, Totp};

use super::AccessError;
use super::roles::Person;
use crate::audit::NewEntry;
use crate::job::Context;
use crate::model::time;
use crate::secret::SecretRef;

/// Consecutive failures before a lockout.
pub const MAX_FAILURES: u32 = 5;
/// How long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// The wait after a failed attempt before the next one is checked.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

const STEP: u64 = 30;
const NONCE: usize = 12;

/// What an enrolment gives the person: the URI (and its QR code) for the authenticator app.
#[derive(Clone, Debug, Serialize)]
pub struct Enrolment {
    pub user: String,
    /// `otpauth://totp/Custodian:alice@host?secret=…&issuer=Custodian` — shown once.
    pub uri: String,
    /// The URI as a QR code for a terminal (two rows per line).
    #[serde(skip)]
    pub qr: String,
    pub enrolled_by: String,
    pub replaced: bool,
}

fn key_ref(ctx: &Context) -> SecretRef {
    ctx.config
        .access
        .totp_key
        .clone()
        .unwrap_or_else(|| SecretRef::File(ctx.config.state_dir.join("keys/totp.key")))
}

/// The encryption key (32 bytes, the SHA-256 of the secret's first line); the default file is
/// created when `create` is set.
fn key(ctx: &Context, create: bool) -> Result<[u8; 32], AccessError> {
    let reference = key_ref(ctx);
    if let SecretRef::File(path) = &reference
        && create
        && !path.exists()
    {
        crate::secret::create_key_file(path, &ctx.config.state_dir)
            .map_err(|e| AccessError::Key(format!("cannot create {}: {e}", path.display())))?;
    }
    let secret = reference.resolve().map_err(|e| {
        AccessError::Key(format!(
            "the key that encrypts second factors ({}) cannot be read: {e}",
            reference.describe()
        ))
    })?;
    Ok(sha2_32(secret.expose().as_bytes()))
}

fn sha2_32(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn seal(key: &[u8; 32], user: &str, secret: &[u8]) -> Result<String, AccessError> {
    let cipher = ChaCha20Poly1305::new(key.into());
    let nonce: [u8; NONCE] = rand::rng().random();
    let sealed = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: secret,
                aad: user.as_bytes(),
            },
        )
        .map_err(|_| AccessError::Key("encrypting a second factor failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(hex::encode(out))
}

fn open(key: &[u8; 32], user: &str, sealed: &str) -> Result<Vec<u8>, AccessError> {
    let bad = || {
        AccessError::Key(format!(
            "the second factor of {user} does not decrypt: [access] totp-key is not the key it was enrolled under (re-enrol {user})"
        ))
    };
    let bytes = hex::decode(sealed).map_err(|_| bad())?;
    if bytes.len() <= NONCE {
        return Err(bad());
    }
    let (nonce, body) = bytes.split_at(NONCE);
    let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| bad())?;
    ChaCha20Poly1305::new(key.into())
        .decrypt(
            &nonce.into(),
            Payload {
                msg: body,
                aad: user.as_bytes(),
            },
        )
        .map_err(|_| bad())
}

fn totp(user: &str, host: &str, secret: Vec<u8>) -> Result<Totp, AccessError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_issuer(Some("Custodian"))
        .with_account_name(format!("{user}@{host}"))
        .build()
        .map_err(|e| AccessError::Key(format!("cannot build the TOTP for {user}: {e}")))
}

/// Enrols `user` (replacing an earlier enrolment when `replace`), returning what to show them
/// once. The caller has checked that `by` may do it.
///
/// # Errors
/// When the key cannot be read or created, or the catalog written.
pub async fn enrol(
    ctx: &Context,
    user: &str,
    by: &Person,
    replace: bool,
) -> Result<Enrolment, AccessError> {
    let existing = ctx.catalog.factor(user).await?;
    if existing.is_some() && !replace {
        return Err(AccessError::Usage(format!(
            "{user} is already enrolled; `--replace` gives them a new secret (the old one stops working)"
        )));
    }
    let key = key(ctx, true)?;
    let secret: [u8; 20] = rand::rng().random();
    let t = totp(user, &ctx.config.hostname, secret.to_vec())?;
    let uri = t
        .to_url()
        .map_err(|e| AccessError::Key(format!("cannot write the otpauth URI: {e}")))?;
    let sealed = seal(&key, user, &secret)?;
    ctx.catalog
        .enrol_factor(user, &sealed, &time::format(time::now()), &by.user)
        .await?;
    let qr = qrcode::QrCode::new(uri.as_bytes())
        .map(|code| {
            code.render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default();
    audit(
        ctx,
        by,
        "totp.enroll",
        user,
        if existing.is_some() {
            "replaced"
        } else {
            "enrolled"
        },
        None,
    );
    Ok(Enrolment {
        user: user.to_string(),
        uri,
        qr,
        enrolled_by: by.user.clone(),
        replaced: existing.is_some(),
    })
}

/// Removes `user`'s enrolment (audited).
///
/// # Errors
/// When the catalog cannot be written or `user` is not enrolled.
pub async fn remove(ctx: &Context, user: &str, by: &Person) -> Result<(), AccessError> {
    if !ctx.catalog.remove_factor(user).await? {
        return Err(AccessError::Usage(format!("{user} is not enrolled")));
    }
    audit(ctx, by, "totp.remove", user, "removed", None);
    Ok(())
}

/// Whether `user` has a second factor enrolled.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn enrolled(ctx: &Context, user: &str) -> Result<bool, AccessError> {
    Ok(ctx.catalog.factor(user).await?.is_some())
}

/// Checks `person`'s code for `operation` (its action name, for the audit log).
///
/// # Errors
/// [`AccessError::NotEnrolled`], [`AccessError::LockedOut`], [`AccessError::RateLimited`],
/// [`AccessError::FactorRejected`] or [`AccessError::FactorReplayed`] — each attempt is audited
/// with its outcome.
pub async fn verify(
    ctx: &Context,
    person: &Person,
    code: &str,
    operation: &str,
) -> Result<(), AccessError> {
    let user = person.user.as_str();
    let fail = |outcome: &str, detail: Option<String>| {
        audit(ctx, person, "second-factor", operation, outcome, detail);
    };
    let Some(factor) = ctx.catalog.factor(user).await? else {
        fail("not-enrolled", None);
        return Err(AccessError::NotEnrolled {
            user: user.to_string(),
        });
    };
    let now = time::now();
    let ts = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    if let Some(until) = ts(&factor.locked_until).filter(|u| *u > now) {
        fail("locked", None);
        return Err(AccessError::LockedOut {
            user: user.to_string(),
            until: time::format(until),
        });
    }
    if factor.failures > 0
        && let Some(last) = ts(&factor.last_failure)
    {
        let ready = last + jiff::SignedDuration::try_from(RETRY_AFTER).unwrap_or_default();
        if ready > now {
            fail("rate-limited", None);
            return Err(AccessError::RateLimited {
                seconds: RETRY_AFTER.as_secs(),
            });
        }
    }
    let key = key(ctx, false)?;
    let secret = open(&key, user, &factor.secret)?;
    let t = totp(user, &ctx.config.hostname, secret)?;
    let code = code.trim();
    let unix = u64::try_from(now.as_second()).unwrap_or(0);
    let matched = (code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.check(code, unix))
        .flatten();
    let Some(step) = matched else {
        let failures = factor.failures + 1;
        let lock = (failures >= MAX_FAILURES).then(|| {
            time::format(now + jiff::SignedDuration::try_from(LOCKOUT).unwrap_or_default())
        });
        ctx.catalog
            .fail_factor(user, &time::format(now), lock.as_deref())
            .await?;
        fail(
            "rejected",
            Some(format!("failure {failures} of {MAX_FAILURES}")),
        );
        return Err(match lock {
            Some(until) => AccessError::LockedOut {
                user: user.to_string(),
                until,
            },
            None => AccessError::FactorRejected {
                user: user.to_string(),
                left: MAX_FAILURES - failures,
            },
        });
    };
    if step <= factor.last_step || !ctx.catalog.accept_factor_step(user, step).await? {
        fail("replayed", None);
        return Err(AccessError::FactorReplayed {
            user: user.to_string(),
        });
    }
    audit(ctx, person, "second-factor", operation, "accepted", None);
    Ok(())
}

fn audit(
    ctx: &Context,
    person: &Person,
    action: &str,
    target: &str,
    outcome: &str,
    detail: Option<String>,
) {
    ctx.audit_action(NewEntry {
        actor: person.user.clone(),
        uid: person.uid,
        role: person
            .role
            .map_or("none", super::roles::Role::as_str)
            .to_string(),
        trigger: ctx.trigger.as_str().to_string(),
        action: action.to_string(),
        target: Some(target.to_string()),
        params: serde_json::json!({ "identified_by": person.how }),
        outcome: outcome.to_string(),
        detail,
    });
}

#[cfg(test)]
mod tests {
    use super::{open, seal};

    #[test]
    fn a_sealed_secret_opens_only_for_its_user_and_key() {
        let key = [7u8; 32];
        let sealed = seal(&key, "alice", b"twenty bytes secret!").unwrap();
        assert_eq!(
            open(&key, "alice", &sealed).unwrap(),
            b"twenty bytes secret!"
        );
        assert!(open(&key, "mallory", &sealed).is_err());
        assert!(open(&[8u8; 32], "alice", &sealed).is_err());
        assert_ne!(
            seal(&key, "alice", b"x").unwrap(),
            seal(&key, "alice", b"x").unwrap()
        );
    }
}
