//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::repo::ReadSubset;

/// Custodian keeps a CRM database safe: encrypted, deduplicated, restic-compatible backups,
/// copies in several locations, verified restores.
#[derive(Debug, Parser)]
#[command(name = "custodian", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "CUSTODIAN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v: progress, -vv: debug). CUSTODIAN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repositories that do not exist yet; check the passwords of those that do.
    Init,
    /// Back up sources into their primary location, then copy to the others.
    Backup {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// Copy backups the secondary locations lack (idempotent).
    Copy {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// List the snapshots each location holds.
    Snapshots {
        /// Only this location.
        #[arg(long)]
        location: Option<String>,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// Check repositories; with --read-data-subset, also read and verify pack data.
    Check {
        /// Only this location.
        #[arg(long)]
        location: Option<String>,
        /// How much data to read: `all`, `10%`, `1/7` or a size like `500MiB`.
        #[arg(long, value_parser = parse_subset)]
        read_data_subset: Option<ReadSubset>,
    },
    /// Restore a SQLite backup into a file, verified against its manifest.
    Restore {
        /// Snapshot id (a prefix is enough), backup id, or `latest`.
        #[arg(long)]
        snapshot: String,
        /// Where to write the database file.
        #[arg(long)]
        to: PathBuf,
        /// Location to restore from (default: the source's primary).
        #[arg(long)]
        location: Option<String>,
        /// Source the snapshot belongs to (narrows `latest`).
        #[arg(long)]
        source: Option<String>,
        /// Replace the target file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Show recent runs from the catalog.
    Runs {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the whole cycle on a demo CRM (SQLite) with two local locations under DIR.
    Demo {
        /// Directory for the demo CRM, its configuration, keys and repositories.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print every problem.
    Check,
}

fn parse_subset(text: &str) -> Result<ReadSubset, String> {
    text.parse()
}
