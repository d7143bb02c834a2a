//! Soak: the daemon on second-level schedules (backup every 2 s, copy every 5 s, check every
//! 7 s) for `CUSTODIAN_SOAK_SECS` (default 120) keeps a flat memory and file-descriptor
//! footprint. Samples are printed (`cargo test --test soak -- --nocapture`).
//!
//! The daemon runs with the environment of the shipped unit (`MALLOC_ARENA_MAX=2`): without it,
//! glibc's per-thread malloc arenas made the RSS creep up (~40 KiB/s here), which this test
//! found.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Workspace, sqlite};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn the_daemon_keeps_a_flat_footprint() {
    let secs: u64 = std::env::var("CUSTODIAN_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let ws = Workspace::new();
    let config = common::default_config().replacen(
        "hostname = \"test-host\"\n",
        "hostname = \"test-host\"\nschedules = \"schedules\"\ncontrol-socket = \"control.sock\"\n",
        1,
    );
    ws.write_config(&config);
    std::fs::create_dir(ws.path("schedules")).unwrap();
    std::fs::write(
        ws.path("schedules/soak.toml"),
        "[[job]]\nname = \"b\"\nkind = \"backup\"\ncron = \"*/2 * * * * *\"\n\n\
         [[job]]\nname = \"c\"\nkind = \"copy\"\ncron = \"*/5 * * * * *\"\n\n\
         [[job]]\nname = \"k\"\nkind = \"check\"\ncron = \"*/7 * * * * *\"\nread-data = \"none\"\n",
    )
    .unwrap();
    ws.custodian_json(&["init"], 0);
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/custodian.service"),
    )
    .unwrap();
    let arenas = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=MALLOC_ARENA_MAX="))
        .expect("the unit limits malloc arenas");
    let mut daemon = common::custodian_cmd()
        .arg("--config")
        .arg(ws.config_path())
        .arg("daemon")
        .env("MALLOC_ARENA_MAX", arenas)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    let started = Instant::now();
    let warmup = Duration::from_secs(secs.min(600) / 6);
    let mut samples: Vec<(u64, u64, usize)> = Vec::new();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(5));
        // The CRM changes, so backups really add data.
        n += 1;
        sqlite(
            &ws.path("crm.sqlite"),
            &format!(
                "UPDATE deals SET amount = amount + 1 WHERE id % 10 = {};",
                n % 10
            ),
        );
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon died");
        if started.elapsed() >= warmup {
            samples.push((started.elapsed().as_secs(), rss_kib(pid), fds(pid)));
        }
    }
    let backups: u64 = sqlite(
        &ws.path("state/catalog.db"),
        "SELECT count(*) FROM runs WHERE kind = 'backup' AND outcome = 'succeeded';",
    )
    .trim()
    .parse()
    .unwrap();
    let failed = sqlite(
        &ws.path("state/catalog.db"),
        // A copy job meeting the copy a backup runs finds the location busy: recorded, and
        // the next run does it. Anything else is a failure of the soak.
        "SELECT count(*) FROM runs WHERE outcome = 'failed' AND error_code <> 'job.busy';",
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(daemon.wait().unwrap().success());

    let first = samples.first().copied().unwrap();
    let rss_max = samples.iter().map(|s| s.1).max().unwrap();
    let fd_min = samples.iter().map(|s| s.2).min().unwrap();
    let fd_max = samples.iter().map(|s| s.2).max().unwrap();
    let last = samples.last().copied().unwrap();
    eprintln!(
        "soak {secs} s: {backups} backups; RSS {} KiB after warm-up, {} KiB at the end, {} KiB max; fds {}..{}",
        first.1, last.1, rss_max, fd_min, fd_max
    );
    for (t, rss, fd) in &samples {
        eprintln!("  t={t:>4}s rss={rss:>7} KiB fds={fd}");
    }
    assert!(
        backups as f64 >= secs as f64 / 2.0 * 0.6,
        "{backups} backups in {secs} s"
    );
    assert_eq!(failed.trim(), "0", "no run failed");
    // Flat: no growth beyond noise (allocator slack) after the warm-up.
    assert!(
        rss_max <= first.1 + first.1 / 4 + 8 * 1024,
        "RSS grew from {} to {rss_max} KiB",
        first.1
    );
    // The catalog's pool opens connections on demand (at most 4, each with its database, WAL
    // and shared-memory files): descriptors may rise by that much, never more — a leak of one
    // per run would pass it within the first few dozen backups.
    assert!(
        fd_max <= first.2 + 12,
        "file descriptors grew from {} to {fd_max} (last {}, min {fd_min})",
        first.2,
        last.2
    );
}
