//! The result of an approved operation belongs to its requester. A restored file is made
//! theirs: owned by them (mode 0600) when this process may change owners (root), else — the
//! daemon under its unit has no capabilities — readable and writable by them through a POSIX
//! ACL entry, which the file's owner may always set.
//!
//! The ACL is written as the kernel's `system.posix_acl_access` attribute (with the `xattr`
//! crate): the format is a stable kernel ABI (a version word, then tag/permission/id entries),
//! and libacl would be a C library every build machine must have for five entries.

use std::path::Path;

const ACL_VERSION: u32 = 2;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
const UNDEFINED_ID: u32 = u32::MAX;

fn entry(tag: u16, perm: u16, id: u32) -> [u8; 8] {
    let mut e = [0u8; 8];
    e[..2].copy_from_slice(&tag.to_le_bytes());
    e[2..4].copy_from_slice(&perm.to_le_bytes());
    e[4..].copy_from_slice(&id.to_le_bytes());
    e
}

/// The ACL: owner rw, `uid` rw, nobody else.
fn acl_for(uid: u32) -> Vec<u8> {
    let mut acl = ACL_VERSION.to_le_bytes().to_vec();
    for e in [
        entry(USER_OBJ, 6, UNDEFINED_ID),
        entry(USER, 6, uid),
        entry(GROUP_OBJ, 0, UNDEFINED_ID),
        entry(MASK, 6, UNDEFINED_ID),
        entry(OTHER, 0, UNDEFINED_ID),
    ] {
        acl.extend_from_slice(&e);
    }
    acl
}

/// How the file was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Handoff {
    /// The requester owns it (mode 0600).
    Owner,
    /// The requester has read and write access through an ACL entry.
    Acl,
}

/// Makes `path` the requester's.
///
/// # Errors
/// When neither changing the owner nor setting an ACL is possible (the file stays private to
/// this process's user, and the error says so).
pub fn give(path: &Path, uid: u32, gid: u32) -> std::io::Result<Handoff> {
    use std::os::unix::fs::PermissionsExt;
    if std::os::unix::fs::chown(path, Some(uid), Some(gid)).is_ok() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        return Ok(Handoff::Owner);
    }
    xattr::set(path, "system.posix_acl_access", &acl_for(uid))
        .map(|()| Handoff::Acl)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{} cannot be given to its requester: changing its owner is not permitted here and setting an ACL failed ({e}); the file system must support POSIX ACLs",
                    path.display()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::acl_for;

    #[test]
    fn the_acl_grants_the_requester_and_nobody_else() {
        let acl = acl_for(1001);
        assert_eq!(acl.len(), 4 + 5 * 8);
        assert_eq!(&acl[..4], &2u32.to_le_bytes());
        // The named-user entry: tag 2, rw, uid 1001.
        assert_eq!(&acl[12..20], &[2, 0, 6, 0, 0xe9, 0x03, 0, 0]);
        // Other: no access.
        assert_eq!(&acl[36..40], &[0x20, 0, 0, 0]);
    }
}
