//! Who is acting, and with which role: a control-socket caller from the socket's peer
//! credentials, a CLI user from the process's own identity. Roles come from `[access]`: user
//! names or `@group`s; root is always an administrator.

use serde::Serialize;

use crate::config::Access;

/// What a person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Administrator,
}

impl Role {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Administrator => "administrator",
        }
    }
}

/// Who is acting.
#[derive(Clone, Debug, Serialize)]
pub struct Person {
    pub user: String,
    pub uid: u32,
    pub groups: Vec<String>,
    pub role: Option<Role>,
    /// How the identity was established: `peer credentials`, `process`, or `sudo` (the
    /// invoking user of `sudo`, for a CLI run as root or as the service's user).
    pub how: &'static str,
}

impl Person {
    /// `alice (administrator)`, `bob (no role)`.
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.user,
            self.role.map_or("no role", Role::as_str)
        )
    }
}

/// Maps a uid (and its primary gid) to its user, groups and role.
#[must_use]
pub fn identify(access: &Access, uid: u32, gid: u32, how: &'static str) -> Person {
    use nix::unistd::{Gid, Group, Uid, User};
    let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
    let name = user
        .as_ref()
        .map_or_else(|| format!("uid:{uid}"), |u| u.name.clone());
    let mut gids = vec![Gid::from_raw(gid)];
    if let Some(u) = &user
        && let Ok(cname) = std::ffi::CString::new(u.name.clone())
        && let Ok(list) = nix::unistd::getgrouplist(&cname, u.gid)
    {
        gids.extend(list);
    }
    let mut groups: Vec<String> = gids
        .iter()
        .filter_map(|g| Group::from_gid(*g).ok().flatten().map(|g| g.name))
        .collect();
    groups.sort();
    groups.dedup();
    let listed = |list: &[String]| {
        list.iter().any(|entry| match entry.strip_prefix('@') {
            Some(group) => groups.iter().any(|g| g == group),
            None => *entry == name,
        })
    };
    let role = if uid == 0 || listed(&access.administrators) {
        Some(Role::Administrator)
    } else if listed(&access.operators) {
        Some(Role::Operator)
    } else if listed(&access.viewers) {
        Some(Role::Viewer)
    } else {
        None
    };
    Person {
        user: name,
        uid,
        groups,
        role,
        how,
    }
}

/// The person behind this CLI process: its real uid — or, when it runs as root or as the
/// owner of the state directory (the service's user) through `sudo`, the user who invoked
/// `sudo` (`SUDO_UID`), so that `sudo -u custodian custodian restore …` is done by the
/// administrator who typed it, with her role and her second factor.
#[must_use]
pub fn local_person(access: &Access, state_dir: &std::path::Path) -> Person {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let service = std::fs::metadata(state_dir).map(|m| m.uid()).ok();
    let privileged = uid == 0 || service == Some(uid);
    let sudo = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    match (privileged, sudo("SUDO_UID"), sudo("SUDO_GID")) {
        (true, Some(sudo_uid), Some(sudo_gid)) if sudo_uid != uid => {
            identify(access, sudo_uid, sudo_gid, "sudo")
        }
        _ => identify(access, uid, gid, "process"),
    }
}
