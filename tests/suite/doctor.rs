//! `custodian doctor` against a unit like the shipped one: a SQLite source in WAL mode whose
//! directory the sandbox does not let the service write is named with the line to add; with
//! the paths listed, nothing fails. Its JSON follows docs/schema/doctor.json.

use crate::common;

use common::Workspace;

#[test]
fn doctor_names_what_the_sandbox_hides_and_what_to_add() {
    let ws = Workspace::new();
    common::sqlite(&ws.path("crm.sqlite"), "PRAGMA journal_mode=WAL;");
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/custodian.service"),
    )
    .unwrap();
    let unit = ws.path("custodian.service");
    std::fs::write(&unit, &shipped).unwrap();
    let u = unit.to_str().unwrap();

    let report = ws.custodian_json(&["doctor", "--unit", u], 1);
    let findings = report["findings"].as_array().unwrap();
    let wal = findings
        .iter()
        .find(|f| f["subject"].as_str().unwrap().contains("WAL mode"))
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(wal["verdict"], "fail", "{wal:#}");
    let root = ws.root().to_str().unwrap();
    assert_eq!(
        wal["fix"].as_str().unwrap(),
        format!(
            "add `ReadWritePaths={root}` to the unit (systemctl edit custodian), then systemctl restart custodian"
        )
    );
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "credentials" && f["verdict"] == "ok")
    );
    let error = ws.custodian_error(&["doctor", "--unit", u], 1);
    assert_eq!(error["code"], "doctor.found_problems");

    // A drop-in that lists the workspace: the sandbox is right, nothing fails.
    let dropins = ws.path("custodian.service.d");
    std::fs::create_dir(&dropins).unwrap();
    std::fs::write(
        dropins.join("paths.conf"),
        format!("[Service]\nReadWritePaths={root}\n"),
    )
    .unwrap();
    let report = ws.custodian_json(&["doctor", "--unit", u], 0);
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["verdict"] != "fail"),
        "{report:#}"
    );

    // For people: one line per finding, what to do under it.
    let out = ws.custodian(&["doctor", "--unit", u]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok      sandbox"), "{text}");
}
