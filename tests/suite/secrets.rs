//! Secrets never leak: with debug logging, every command's output, the audit log and the catalog
//! are searched for the repository passwords and S3 keys; state files are owner-only.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY, credential_files};
use common::{Workspace, default_config};

const LOCAL_PW: &str = "correct horse battery staple local";
const OFFSITE_PW: &str = "another password for offsite";

#[test]
fn no_secret_in_output_logs_audit_or_catalog() {
    let s3 = S3Server::s3s_fs();
    s3.create_bucket("secrets", false);
    let ws = Workspace::new();
    credential_files(&ws.path("keys"));
    let config = default_config().replace(
        "locations = [\"local\", \"offsite\"]",
        "locations = [\"local\", \"offsite\", \"s3\"]",
    ) + &common::s3::location_config("s3", &s3.endpoint(), "secrets", "crm", None);
    ws.write_config(&config);
    let mut seen = String::new();
    let mut run = |args: &[&str]| {
        let out = common::custodian_cmd()
            .arg("--config")
            .arg(ws.config_path())
            .args(["-vv"])
            .args(args)
            .output()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
        out.status.code()
    };
    assert_eq!(run(&["init"]), Some(0));
    assert_eq!(run(&["backup"]), Some(0));
    assert_eq!(run(&["--json", "backup"]), Some(0));
    assert_eq!(run(&["check", "--read-data-subset", "100%"]), Some(0));
    assert_eq!(run(&["drill", "--location", "s3"]), Some(0));
    for args in [
        &["snapshots"][..],
        &["status"],
        &["runs"],
        &["drills"],
        &["audit", "list"],
        &["config", "check"],
        &["forget"],
    ] {
        run(args);
    }
    // Failures print their errors: a wrong password and a wrong S3 secret.
    ws.write_key("offsite", "not the offsite password");
    assert_ne!(run(&["backup"]), Some(0));
    std::fs::write(ws.path("keys/s3.secret"), "a-wrong-secret-key-value\n").unwrap();
    assert_ne!(run(&["status"]), Some(0));

    let audit = std::fs::read_to_string(ws.path("state/audit.log")).unwrap();
    let catalog = std::fs::read(ws.path("state/catalog.db")).unwrap();
    let catalog = String::from_utf8_lossy(&catalog);
    assert!(seen.contains("DEBUG"), "debug logging was on");
    assert!(audit.contains("\"action\":\"drill\""));
    for secret in [
        LOCAL_PW,
        OFFSITE_PW,
        ACCESS_KEY,
        SECRET_KEY,
        "a-wrong-secret-key-value",
    ] {
        for (name, text) in [
            ("output", &seen),
            ("audit log", &audit),
            ("catalog", &catalog.to_string()),
        ] {
            if let Some(at) = text.find(secret) {
                let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
                let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
                panic!("`{secret}` appears in the {name}: {}", &text[from..to]);
            }
        }
    }

    for file in ["state/catalog.db", "state/audit.log"] {
        let mode = std::fs::metadata(ws.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
    let state = std::fs::metadata(ws.path("state"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(state, 0o700, "the state directory is owner-only");
}
