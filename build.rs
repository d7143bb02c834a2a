//! Build facts for `custodian --version`: the commit (when built from a git checkout), the
//! build date (`SOURCE_DATE_EPOCH` when set, for reproducible builds) and the rustic_core
//! version vendored in `vendor/`.

use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CUSTODIAN_COMMIT={commit}");
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map_or_else(
            || {
                Command::new("date")
                    .args(["-u", "+%Y-%m-%d"])
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_else(|| "unknown".into())
            },
            |epoch| {
                Command::new("date")
                    .args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%d"])
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                    .unwrap_or_else(|| "unknown".into())
            },
        );
    println!("cargo:rustc-env=CUSTODIAN_BUILD_DATE={date}");
    let rustic = std::fs::read_to_string("vendor/rustic_core/Cargo.toml")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("version"))
                .and_then(|l| l.split('"').nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=CUSTODIAN_RUSTIC_CORE={rustic}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    println!("cargo:rerun-if-changed=vendor/rustic_core/Cargo.toml");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
