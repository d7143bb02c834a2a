//! Custodian's integration tests, in one binary (a fresh machine links the crate once for
//! all of them, not once per file): the CLI, the daemon and its control socket, every database
//! engine and location against real servers started by the tests themselves, the real
//! `restic`, `minisign`, `promtool` and Chromium. `cargo test --test suite NAME` runs one
//! module or test; the long variants keep their knobs (`CUSTODIAN_CRASH_TRIALS`,
//! `CUSTODIAN_SOAK_SECS`).

mod common;

mod access;
mod archive;
mod bad_input;
mod config_check;
mod control;
mod copy_restore;
mod crash;
mod daemon;
mod demo;
mod doctor;
mod drills;
mod erasure;
mod failures;
mod faults;
mod fidelity;
mod json_contract;
mod mysql;
mod pitr;
mod pitr_mysql;
mod postgres;
mod repo_guards;
mod reports;
mod restic_compat;
mod retention;
mod s3;
mod sandbox;
mod secrets;
mod soak;
mod storage_conformance;
