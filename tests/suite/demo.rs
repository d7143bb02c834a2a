//! `custodian demo --dir DIR`: the whole cycle on the embedded default, twice.

use crate::common;

use std::path::Path;

use common::{assert_success, custodian_cmd, restic, stderr};

fn demo(dir: &Path) -> serde_json::Value {
    let out = custodian_cmd()
        .args(["demo", "--json", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    common::reply(&out)["data"].clone()
}

#[test]
fn the_demo_runs_the_whole_cycle_and_the_second_run_adds_little() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");

    let first = demo(&dir);
    assert_eq!(first["ok"], true, "{first:#}");
    assert_eq!(first["crm"]["created"], true);
    let counts = first["verification"]["counts"].as_object().unwrap();
    let rows: u64 = counts.values().map(|v| v.as_u64().unwrap()).sum();
    assert!(rows >= 50_000, "{counts:?}");
    for table in ["companies", "contacts", "deals", "activities", "notes"] {
        assert!(counts[table].as_u64().unwrap() > 0, "{table}");
    }
    assert_eq!(first["verification"]["status"], "verified");
    assert_eq!(first["verification"]["location"], "offsite");
    // The drill restores the copy into a private file, verifies, asserts, and times it.
    let drill = &first["drill"];
    assert_eq!(drill["status"], "passed", "{drill:#}");
    assert_eq!(drill["location"], "offsite");
    assert_eq!(drill["backup_id"], first["backup"]["snapshot"]["backup_id"]);
    let rto = drill["rto_seconds"].as_f64().unwrap();
    assert!(rto > 0.0, "{drill:#}");
    let phases: Vec<&str> = drill["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "fetch",
            "provision",
            "restore.data",
            "verify",
            "erasure",
            "assertions",
            "teardown"
        ]
    );
    let assertions = drill["assertions"].as_array().unwrap();
    assert!(!assertions.is_empty() && assertions.iter().all(|a| a["held"] == true));
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name().to_string_lossy().contains(&format!(
                "custodian-drill-{}",
                drill["run_id"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_lowercase()
            ))
        })
        .collect();
    assert!(leftovers.is_empty(), "the drill's scratch file is removed");
    let chinese = common::sqlite(
        &dir.join("crm.sqlite"),
        "SELECT count(*) FROM contacts WHERE last_name IN ('王', '李', '张');",
    );
    assert!(chinese.trim().parse::<u64>().unwrap() > 0);

    let locations = first["locations"].as_array().unwrap();
    assert_eq!(locations.len(), 2);
    for location in locations {
        let name = location["name"].as_str().unwrap();
        let repo = Path::new(location["repository"].as_str().unwrap());
        let key = Path::new(location["password_file"].as_str().unwrap());
        assert!(repo.starts_with(&dir) && key.starts_with(&dir));
        assert_eq!(location["check"], "ok");
        assert_eq!(first["snapshots"][name].as_array().unwrap().len(), 1);
        assert_success(
            &restic(repo, key, &["check", "--read-data"]),
            "restic check --read-data",
        );
    }
    check_report(&dir, &first["report"]);
    let first_added = first["backup"]["snapshot"]["added_stored"]
        .as_u64()
        .unwrap();

    let second = demo(&dir);
    assert_eq!(second["ok"], true, "{second:#}");
    assert_eq!(second["crm"]["created"], false);
    assert!(second["crm"]["rows_changed"].as_u64().unwrap() > 0);
    for name in ["local", "offsite"] {
        assert_eq!(second["snapshots"][name].as_array().unwrap().len(), 2);
    }
    let second_added = second["backup"]["snapshot"]["added_stored"]
        .as_u64()
        .unwrap();
    let read = second["backup"]["snapshot"]["bytes"].as_u64().unwrap();
    assert!(
        second_added * 4 < first_added && second_added * 10 < read,
        "the increment should add little: first {first_added}, second {second_added} of {read} read"
    );
    assert_eq!(second["verification"]["status"], "verified");
}

/// The demo's report: signed, verifiable with the minisign CLI exactly as `demo --json` says,
/// and free of the CRM's personal data.
fn check_report(dir: &Path, report: &serde_json::Value) {
    assert_eq!(report["verified"], true, "{report:#}");
    let path = |k: &str| Path::new(report[k].as_str().unwrap()).to_path_buf();
    for k in ["html", "evidence", "signed", "signature", "public_key"] {
        assert!(path(k).is_file(), "{k}: {report:#}");
    }
    let out = std::process::Command::new("minisign")
        .args(["-V", "-m"])
        .arg(path("signed"))
        .arg("-x")
        .arg(path("signature"))
        .arg("-p")
        .arg(path("public_key"))
        .output()
        .expect("the minisign CLI is required (scripts/test-all installs it)");
    assert_success(&out, "minisign -V on the demo report");
    let verdicts = report["verdicts"].as_object().unwrap();
    assert_eq!(verdicts.len(), 16, "{verdicts:?}");
    // Measured from the demo's own evidence: the drill of the copy, the full checks, no
    // immutable location (the demo has only local disks).
    assert_eq!(verdicts["INTEGRITY"], "pass");
    assert_eq!(verdicts["RPO"], "pass");
    assert_eq!(verdicts["IMMUTABILITY"], "fail");
    assert_eq!(verdicts["PRIVACY-OF-REPORT"], "pass");
    // The demo configures erasure rules: its restore and drill replayed the (empty) ledger.
    assert_eq!(verdicts["ERASURE"], "pass");
    // Its own restore went into Custodian's scratch directory: no four-eyes breach. It fails
    // only for what a real deployment would also fix: no immutable copy, a location never
    // drilled.
    assert_eq!(verdicts["ACCESS"], "pass");
    let failing: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == "fail")
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(failing, ["COPIES", "DRILL", "IMMUTABILITY"], "{verdicts:?}");

    // No e-mail address, telephone number or full name from the CRM appears in the report.
    let crm = dir.join("crm.sqlite");
    let personal = common::sqlite(
        &crm,
        "SELECT email FROM contacts UNION ALL SELECT phone FROM contacts WHERE phone IS NOT NULL
         UNION ALL SELECT first_name || ' ' || last_name FROM contacts;",
    );
    let values: std::collections::HashSet<&str> =
        personal.lines().filter(|l| l.len() > 4).collect();
    assert!(values.len() > 30_000, "{}", values.len());
    let lengths: std::collections::BTreeSet<usize> = values.iter().map(|v| v.len()).collect();
    let html = std::fs::read_to_string(path("html")).unwrap();
    let evidence = std::fs::read_to_string(path("evidence")).unwrap();
    for (file, text) in [("report.html", &html), ("evidence.json", &evidence)] {
        // Every window of every length a CRM value has, looked up in the set of values.
        for start in (0..text.len()).filter(|i| text.is_char_boundary(*i)) {
            for len in &lengths {
                if let Some(window) = text.get(start..start + len) {
                    assert!(
                        !values.contains(window),
                        "{file} contains CRM data: {window}"
                    );
                }
            }
        }
    }
    assert!(!html.contains("@customer") && !evidence.contains("@customer"));
}

/// The layout probe appended to a copy of the report: it measures the page as Chromium laid it
/// out and writes the result into the DOM, which `--dump-dom` prints.
const PROBE: &str = r#"<script>
window.addEventListener('load', () => {
  const main = document.querySelector('main').getBoundingClientRect();
  const scrolls = (e) => { for (let p = e; p; p = p.parentElement) { const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; } return false; };
  const overflowing = [];
  for (const e of document.querySelectorAll('main *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || scrolls(e.parentElement)) continue;
    const name = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : '');
    if (r.right > main.right + 1 || r.left < main.left - 1) overflowing.push(name + ' leaves the page');
    const box = getComputedStyle(e).display;
    if ((box === 'block' || box === 'table-cell' || box === 'flex') && e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0) overflowing.push(name + ' overflows its box');
  }
  const summary = document.getElementById('executive-summary').getBoundingClientRect();
  const charts = [...document.querySelectorAll('.chart svg')].map(s => { const r = s.getBoundingClientRect(); return { width: r.width, height: r.height, texts: s.querySelectorAll('text').length }; });
  const sparklines = [...document.querySelectorAll('#scorecard td.trend svg')].length;
  const rows = document.querySelectorAll('#scorecard tr').length - 1;
  const out = document.createElement('pre');
  out.id = 'layout-probe';
  out.textContent = JSON.stringify({ viewport: [innerWidth, innerHeight], page_width: document.documentElement.scrollWidth, overflowing, summary_bottom: summary.bottom, summary_items: document.querySelectorAll('#executive-summary tr').length, charts, sparklines, rows });
  document.body.appendChild(out);
});
</script>"#;

#[test]
fn the_demo_report_lays_out_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let report = demo(&dir)["report"].clone();
    let html = std::fs::read_to_string(report["html"].as_str().unwrap()).unwrap();
    let probed = tmp.path().join("probed.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{PROBE}</body>"))).unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,800",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", probed.display()))
        .output()
        .expect("Debian's chromium is required (scripts/test-all installs it)");
    assert_success(&out, "chromium --dump-dom");
    let dom = common::stdout(&out);
    let marker = "<pre id=\"layout-probe\">";
    let start = dom.find(marker).expect("the probe ran") + marker.len();
    let end = start + dom[start..].find("</pre>").unwrap();
    let text = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let layout: serde_json::Value = serde_json::from_str(&text).unwrap();
    // A 1280×800 window; headless Chromium keeps some of it for its own frame, so the page's
    // viewport (the fold) is at most 800 pixels high.
    assert_eq!(layout["viewport"][0], 1280, "{layout:#}");
    let fold = layout["viewport"][1].as_f64().unwrap();
    assert!(fold <= 800.0, "{layout:#}");
    assert!(
        layout["page_width"].as_f64().unwrap() <= 1280.0,
        "{layout:#}"
    );
    assert_eq!(layout["overflowing"], serde_json::json!([]), "{layout:#}");
    // A manager sees the verdict and every failing rule with its action without scrolling.
    assert!(
        layout["summary_bottom"].as_f64().unwrap() <= fold,
        "{layout:#}"
    );
    assert!(layout["summary_items"].as_u64().unwrap() >= 3, "{layout:#}");
    // Both charts (RPO timeline, RTO trend) are drawn, with their labels, and every rule has
    // its trend sparkline.
    let charts = layout["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 2, "{layout:#}");
    for c in charts {
        assert!(c["width"].as_f64().unwrap() > 300.0 && c["height"].as_f64().unwrap() > 150.0);
        assert!(c["texts"].as_u64().unwrap() > 5, "{c}");
    }
    assert_eq!(layout["sparklines"], layout["rows"], "{layout:#}");
    assert_eq!(layout["rows"], 16);
}
