//! The daemon the way the shipped unit runs it: `systemd/custodian.service` is read, and its
//! user and mount sandboxing is reproduced without systemd — `User=`/`Group=` with no
//! capabilities and `NoNewPrivileges=` (setpriv), `UMask=`, `ProtectSystem=strict` (the whole
//! tree read-only but the state, runtime and read-write paths), `ProtectHome=`, `PrivateTmp=`,
//! and `PrivateUsers=` when the unit sets it (a user namespace mapping only root and the
//! service's user, written by tests/support/userns.py). Non-root users with each role then drive
//! it with `custodian ctl`, and both the decision and the uid in the audit log are checked: the
//! identities survive the sandbox. A second test shows what `PrivateUsers=yes` would do.

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::users::{custodian_as, ensure, uid};
use common::{Workspace, assert_success};
use serde_json::Value;

const ADMIN1: &str = "custodian-s-admin1";
const ADMIN2: &str = "custodian-s-admin2";
const OPERATOR: &str = "custodian-s-operator";
const VIEWER: &str = "custodian-s-viewer";

/// `[Service]` settings of the shipped unit: every value of each key, in order.
fn unit() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/custodian.service"),
    )
    .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut in_service = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    out
}

fn one<'a>(unit: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    unit.get(key).and_then(|v| v.last()).map(String::as_str)
}

/// The directories a sandboxed daemon lives in, under /var/lib and /run like the unit's
/// StateDirectory= and RuntimeDirectory= (PrivateTmp= hides /tmp from it).
struct Root {
    state: PathBuf,
    runtime: PathBuf,
    outbox: PathBuf,
}

impl Root {
    fn new(service: &str) -> Self {
        let tag = format!("{}-{}", std::process::id(), rand_tag());
        let root = Self {
            state: PathBuf::from(format!("/var/lib/custodian-sandbox-{tag}")),
            runtime: PathBuf::from(format!("/run/custodian-sandbox-{tag}")),
            outbox: PathBuf::from(format!("/var/lib/custodian-sandbox-{tag}-out")),
        };
        let unit = unit();
        let mode = |key: &str, default: u32| {
            one(&unit, key).map_or(default, |m| u32::from_str_radix(m, 8).unwrap())
        };
        for (dir, m) in [
            (&root.state, mode("StateDirectoryMode", 0o700)),
            (&root.runtime, mode("RuntimeDirectoryMode", 0o755)),
            // A ReadWritePaths= directory the requesters can reach.
            (&root.outbox, 0o755),
        ] {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap();
            chown(dir, service);
        }
        root
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for d in [&self.state, &self.runtime, &self.outbox] {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_file(self.outbox.with_extension("log"));
    }
}

fn rand_tag() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

fn chown(path: &Path, user: &str) {
    assert_success(
        &Command::new("chown")
            .args(["-R", &format!("{user}:{user}")])
            .arg(path)
            .output()
            .unwrap(),
        "chown",
    );
}

/// Puts the CRM, keys, configuration and binary into the state directory (the daemon sees
/// neither /tmp nor the build tree) and returns the configuration's path.
fn install(root: &Root, service: &str, extra_access: &str) -> PathBuf {
    install_with(root, service, extra_access, "")
}

/// [`install`], with more sources (whose password files are in `keys/`).
fn install_with(root: &Root, service: &str, extra_access: &str, sources: &str) -> PathBuf {
    let ws = Workspace::new();
    let s = &root.state;
    for dir in ["keys", "bin", "state", "repos"] {
        std::fs::create_dir_all(s.join(dir)).unwrap();
    }
    std::fs::copy(ws.path("crm.sqlite"), s.join("crm.sqlite")).unwrap();
    for key in ["local.key", "offsite.key"] {
        std::fs::copy(ws.path(&format!("keys/{key}")), s.join("keys").join(key)).unwrap();
    }
    common::servers::password_file(&s.join("keys"));
    std::fs::copy(env!("CARGO_BIN_EXE_custodian"), s.join("bin/custodian")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/userns.py"),
        s.join("bin/userns.py"),
    )
    .unwrap();
    let config = format!(
        r#"[custodian]
state-dir = "{state}/state"
hostname = "sandbox"
control-socket = "{runtime}/control.sock"

[source.crm]
kind = "sqlite"
path = "{state}/crm.sqlite"
locations = ["local", "offsite"]

{sources}
[location.local]
kind = "local"
path = "{state}/repos/local"
password-file = "{state}/keys/local.key"

[location.offsite]
kind = "local"
path = "{state}/repos/offsite"
password-file = "{state}/keys/offsite.key"

[access]
administrators = ["{ADMIN1}", "{ADMIN2}"]
operators = ["{OPERATOR}"]
viewers = ["@custodian-s-viewers"]
socket-group = "{service}"
{extra_access}
"#,
        state = s.display(),
        runtime = root.runtime.display(),
    );
    let path = s.join("custodian.toml");
    std::fs::write(&path, config).unwrap();
    chown(s, service);
    for key in ["local.key", "offsite.key", "db.pass"] {
        std::fs::set_permissions(
            s.join("keys").join(key),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    // The repositories, created by the service's user (as `sudo -u custodian custodian init`).
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            service,
            "--regid",
            service,
            "--init-groups",
            "--",
        ])
        .arg(s.join("bin/custodian"))
        .arg("--config")
        .arg(&path)
        .arg("init")
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_success(&out, "init as the service's user");
    path
}

/// Starts `custodian daemon` as the unit would: a private mount namespace with the unit's
/// mount protections, then (with PrivateUsers=yes) a user namespace, then the service's user
/// without capabilities.
fn start(root: &Root, config: &Path, private_users: bool) -> Child {
    let unit = unit();
    let service = one(&unit, "User").unwrap();
    let group = one(&unit, "Group").unwrap_or(service);
    let umask = one(&unit, "UMask").unwrap_or("0022");
    assert_eq!(one(&unit, "ProtectSystem"), Some("strict"));
    assert_eq!(one(&unit, "NoNewPrivileges"), Some("yes"));
    assert_eq!(one(&unit, "CapabilityBoundingSet"), Some(""));
    let user = nix::unistd::User::from_name(service).unwrap().unwrap();
    let gid = nix::unistd::Group::from_name(group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let rw: Vec<String> = [&root.state, &root.runtime, &root.outbox]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut script = String::from("set -e\n");
    // ReadWritePaths= (and the state and runtime directories): bound to themselves first, so
    // they stay writable when everything else becomes read-only.
    for d in &rw {
        script.push_str(&format!("mount --bind '{d}' '{d}'\n"));
    }
    // ProtectSystem=strict: every other mount read-only, API file systems excepted.
    script.push_str(&format!(
        "awk '{{print $5}}' /proc/self/mountinfo | sort -u | while read -r m; do\n  case \"$m\" in /proc*|/sys*|/dev*|{}) ;; *) mount -o remount,bind,ro \"$m\" ;; esac\ndone\n",
        rw.join("|")
    ));
    if one(&unit, "PrivateTmp") == Some("yes") {
        script.push_str(
            "mount -t tmpfs -o mode=1777 tmpfs /tmp\nmount -t tmpfs -o mode=1777 tmpfs /var/tmp\n",
        );
    }
    if one(&unit, "ProtectHome") == Some("yes") {
        script.push_str(
            "for h in /home /root /run/user; do [ -d \"$h\" ] && mount -t tmpfs -o mode=000 tmpfs \"$h\"; done; true\n",
        );
    }
    script.push_str(&format!("umask {umask}\n"));
    let bin = root.state.join("bin");
    let userns = if private_users {
        format!(
            "python3 '{}/userns.py' --uid 0 --uid {uid} --gid 0 --gid {gid} -- ",
            bin.display(),
            uid = user.uid.as_raw()
        )
    } else {
        String::new()
    };
    // Supplementary groups from the user database, as systemd sets them (none can be set in a
    // user namespace that does not map them).
    let groups = if private_users {
        "--clear-groups"
    } else {
        "--init-groups"
    };
    script.push_str(&format!(
        "exec {userns}setpriv --reuid {uid} --regid {gid} {groups} --no-new-privs --bounding-set=-all --inh-caps=-all -- env -i PATH=/usr/bin:/bin MALLOC_ARENA_MAX=2 '{}/custodian' --config '{}' daemon\n",
        bin.display(),
        config.display(),
        uid = user.uid.as_raw(),
    ));
    let log = root.outbox.with_extension("log");
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let socket = root.runtime.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "the sandboxed daemon did not open {} ({exited:?}):\n{}\nscript:\n{script}",
            socket.display(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn stop(mut daemon: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let status = daemon.wait().unwrap();
    assert!(
        status.success(),
        "the sandboxed daemon did not stop cleanly: {status}"
    );
}

fn users(service: &str) {
    ensure(service, &[ADMIN1, ADMIN2, OPERATOR, VIEWER], &[]);
    ensure("custodian-s-viewers", &[VIEWER], &[]);
}

/// The service user of the unit (created, like systemd-sysusers would, when missing).
fn service_user() -> String {
    let unit = unit();
    let service = one(&unit, "User").unwrap().to_string();
    if nix::unistd::User::from_name(&service).unwrap().is_none() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&service)
            .status();
    }
    service
}

fn audit(config: &Path) -> Vec<Value> {
    let out = common::custodian_cmd()
        .arg("--json")
        .arg("--config")
        .arg(config)
        .args(["audit", "list"])
        .output()
        .unwrap();
    assert_success(&out, "audit list");
    common::reply(&out)["data"].as_array().unwrap().clone()
}

fn entry<'a>(entries: &'a [Value], action: &str, actor: &str, outcome: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| e["action"] == action && e["actor"] == actor && e["outcome"] == outcome)
        .unwrap_or_else(|| panic!("no {action} by {actor} ({outcome}) in {entries:#?}"))
}

#[test]
fn under_the_shipped_unit_every_caller_keeps_their_identity_and_role() {
    let service = service_user();
    users(&service);
    let root = Root::new(&service);
    let config = install(&root, &service, "");
    let unit = unit();
    assert_ne!(
        one(&unit, "PrivateUsers"),
        Some("yes"),
        "PrivateUsers=yes makes every caller uid 65534 (see the next test)"
    );
    let private_users = one(&unit, "PrivateUsers").is_some_and(|v| v == "yes" || v == "true");
    let daemon = start(&root, &config, private_users);
    let socket = root.runtime.join("control.sock");
    let s = socket.to_str().unwrap();
    let ctl = |user: &str, args: &[&str]| {
        let mut all = vec!["ctl", "--socket", s];
        all.extend_from_slice(args);
        custodian_as(user, &all, "")
    };

    // A viewer sees the status and nothing more.
    let (code, status) = ctl(VIEWER, &["status"]);
    assert_eq!(code, Some(0), "{status:#}");
    let (code, denied) = ctl(VIEWER, &["backup"]);
    assert_eq!(code, Some(1));
    assert_eq!(denied["error"]["code"], "access.denied");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{VIEWER} (viewer) may not backup")),
        "{denied:#}"
    );
    // An operator backs up: the daemon writes as its own user into its read-write paths.
    let (code, backup) = ctl(OPERATOR, &["backup"]);
    assert_eq!(code, Some(0), "{backup:#}");
    // An administrator's restore outside scratch waits for another administrator, who
    // approves; the restored file goes to the requester (an ACL: the daemon may not chown).
    let target = root.outbox.join("restored.sqlite");
    let t = target.to_str().unwrap();
    let (code, pending) = ctl(ADMIN1, &["restore", "--snapshot", "latest", "--to", t]);
    assert_eq!(
        (code, pending["error"]["code"].as_str()),
        (Some(1), Some("approval.required")),
        "{pending:#}"
    );
    let id = pending["data"]["request"].as_str().unwrap().to_string();
    let (code, refused) = ctl(OPERATOR, &["approvals"]);
    assert_eq!(
        (code, refused["error"]["code"].as_str()),
        (Some(1), Some("access.denied"))
    );
    let (code, approved) = custodian_as(ADMIN2, &["approve", &id, "--socket", s, "--yes"], "");
    assert_eq!(code, Some(0), "{approved:#}");
    assert_eq!(approved["data"]["handed_to"]["how"], "acl", "{approved:#}");
    let head = |user: &str| {
        let out = run_as_shell(user, &format!("head -c 15 '{t}'"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(head(ADMIN1), (true, "SQLite format 3".to_string()));
    assert!(!head(ADMIN2).0, "only the requester is given the file");

    // The audit log names each caller by their own name and uid — nobody is 65534.
    stop(daemon);
    let entries = audit(&config);
    for (action, actor, outcome) in [
        ("status", VIEWER, "succeeded"),
        ("backup", VIEWER, "refused"),
        ("backup", OPERATOR, "succeeded"),
        ("restore", ADMIN1, "approval-requested"),
        ("approvals", OPERATOR, "refused"),
        ("approve", ADMIN2, "approved"),
        ("restore", ADMIN1, "succeeded"),
    ] {
        let e = entry(&entries, action, actor, outcome);
        assert_eq!(e["uid"], uid(actor), "{e:#}");
    }
    assert!(entries.iter().all(|e| e["uid"] != 65534), "{entries:#?}");
    let restore = entry(&entries, "restore", ADMIN1, "succeeded");
    assert_eq!(
        restore["params"]["access"]["approved_by"], ADMIN2,
        "{restore:#}"
    );
}

#[test]
fn private_users_would_make_every_caller_nobody() {
    // Why the unit has no PrivateUsers=: reproduced, the administrator becomes uid 65534.
    let service = service_user();
    users(&service);
    let root = Root::new(&service);
    let config = install(&root, &service, "");
    let daemon = start(&root, &config, true);
    let s = root.runtime.join("control.sock");
    let (code, refused) = custodian_as(
        ADMIN1,
        &["ctl", "--socket", s.to_str().unwrap(), "status"],
        "",
    );
    assert_eq!(code, Some(1), "{refused:#}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("nobody (no role) may not status"),
        "{refused:#}"
    );
    stop(daemon);
    let entries = audit(&config);
    let e = entry(&entries, "status", "nobody", "refused");
    assert_eq!(e["uid"], 65534);
}

/// Runs a shell command as `user` with their groups.
fn run_as_shell(user: &str, command: &str) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            &gid_of(user),
            "--init-groups",
            "--",
            "sh",
            "-c",
            command,
        ])
        .output()
        .unwrap()
}

fn gid_of(user: &str) -> String {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
        .to_string()
}

#[test]
fn table_streams_back_up_under_the_shipped_unit() {
    // PostgreSQL's streams are psql processes and MariaDB's are connections of the daemon's
    // own, each table at a time in parallel: all of it must work as the unit's user, in its
    // read-only tree, with a private /tmp.
    let service = service_user();
    users(&service);
    let pg = common::servers::PgServer::start();
    let maria = common::servers::MariaServer::start();
    let ws = Workspace::new();
    let pass = common::servers::password_file(&ws.path("keys"));
    pg.create_db("streams");
    maria.create_db("streams");
    for url in [pg.url("streams"), maria.url("streams")] {
        let out = ws.custodian(&[
            "generate-crm",
            "--url",
            &url,
            "--password-file",
            pass.to_str().unwrap(),
            "--scale",
            "0.002",
        ]);
        assert_success(&out, "custodian generate-crm");
    }
    let root = Root::new(&service);
    let sources = format!(
        r#"
[source.pg]
kind = "postgres"
url = "{pg}"
password-file = "{state}/keys/db.pass"
parallel = 2
locations = ["local"]

[source.maria]
kind = "mysql"
url = "{maria}"
password-file = "{state}/keys/db.pass"
parallel = 2
locations = ["local"]
"#,
        pg = pg.url("streams"),
        maria = maria.url("streams"),
        state = root.state.display(),
    );
    let config = install_with(&root, &service, "", &sources);
    let private_users = one(&unit(), "PrivateUsers").is_some_and(|v| v == "yes" || v == "true");
    let daemon = start(&root, &config, private_users);
    let socket = root.runtime.join("control.sock");
    let s = socket.to_str().unwrap();
    for source in ["pg", "maria"] {
        let (code, backup) = custodian_as(
            OPERATOR,
            &["ctl", "--socket", s, "backup", "--source", source],
            "",
        );
        assert_eq!(code, Some(0), "{backup:#}");
        assert_eq!(backup["data"][0]["status"], "succeeded", "{backup:#}");
        assert_eq!(backup["data"][0]["tables"], 5, "{backup:#}");
    }
    stop(daemon);
    // Every table is a stream of its own in the snapshot, as restic lists it.
    let key = root.state.join("keys/local.key");
    for (source, suffix, tool_files) in [
        ("pg", ".copy", ["streams.dump", "streams.schema.dump"]),
        ("maria", ".tsv", ["streams.sql", "streams.triggers.sql"]),
    ] {
        let out = common::restic(
            &root.state.join("repos/local"),
            &key,
            &["ls", "latest", "--path", &format!("/custodian/{source}")],
        );
        assert_success(&out, "restic ls");
        let listing = String::from_utf8_lossy(&out.stdout);
        let streams = listing.lines().filter(|l| l.ends_with(suffix)).count();
        assert_eq!(streams, 5, "{listing}");
        for file in tool_files {
            assert!(listing.contains(file), "{file} in {listing}");
        }
    }
}
