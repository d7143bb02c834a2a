//! Custodian keeps a CRM database safe: it snapshots the database into encrypted,
//! deduplicated, restic-compatible repositories, keeps copies in several locations, proves that
//! restores work, and reports on all of it.
//!
//! Dependencies point one way: `cli` → `job` → adapters (`engine`, `repo`, `catalog`) →
//! `config` / `model` / `secret`. Adapters never import each other.

pub mod access;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod erasure;
pub mod job;
pub mod location;
pub mod model;
pub mod notify;
pub mod repo;
pub mod report;
pub mod secret;
