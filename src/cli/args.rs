//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::model::ReadSubset;

/// Custodian keeps a CRM database safe: encrypted, deduplicated, restic-compatible backups,
/// copies in several locations, verified restores.
#[derive(Debug, Parser)]
#[command(
    name = "custodian",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        "\ncommit:                   ", env!("CUSTODIAN_COMMIT"),
        "\nbuilt:                    ", env!("CUSTODIAN_BUILD_DATE"),
        "\nrustic_core:              ", env!("CUSTODIAN_RUSTIC_CORE"),
        "\nrestic repository format: 2",
    ),
    about,
    max_term_width = 100
)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "CUSTODIAN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// With --json: stream progress events (one JSON object per line) before the result.
    #[arg(long, global = true, requires = "json")]
    pub progress: bool,

    /// More log output on stderr (-v: progress, -vv: debug). CUSTODIAN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

/// How a dangerous operation is let through (see README, "Access control").
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GuardArgs {
    /// Read the second-factor code from the first line of standard input instead of asking
    /// for it on the terminal.
    #[arg(long)]
    pub totp_stdin: bool,
    /// With [access] enforce: the approved request (by a second administrator) this run is.
    #[arg(long, value_name = "ID", conflicts_with = "break_glass")]
    pub approval: Option<String>,
    /// With [access] enforce: run without a second administrator, for this reason — audited,
    /// alerted at once, and listed by the next report.
    #[arg(long, value_name = "REASON")]
    pub break_glass: Option<String>,
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
        #[arg(long, value_parser = parse_subset, conflicts_with = "rotate")]
        read_data_subset: Option<ReadSubset>,
        /// Read the next part of a rotation that covers all data once per `check-window`.
        #[arg(long)]
        rotate: bool,
    },
    /// Remove snapshots the retention policy no longer keeps (dry run unless --apply).
    Forget {
        /// Only this location.
        #[arg(long)]
        location: Option<String>,
        /// Really delete (otherwise only show what would go).
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Forget per policy and remove data nothing references (dry run unless --apply).
    Prune {
        /// Only this location.
        #[arg(long)]
        location: Option<String>,
        /// Really delete (otherwise only show what would go).
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Health of every location: reachable, repository opens, freshness, check coverage,
    /// Object Lock as declared.
    Status,
    /// Restore a backup, verified against its manifest: a SQLite file (--to) or a database
    /// on a server (--target).
    #[command(group(clap::ArgGroup::new("into").required(true).multiple(false)))]
    Restore {
        /// Snapshot id (a prefix is enough), backup id, or `latest`.
        #[arg(long, required_unless_present_any = ["to_time", "to_lsn", "to_position", "to_restore_point", "to_latest"])]
        snapshot: Option<String>,
        /// SQLite: where to write the database file.
        #[arg(long, group = "into")]
        to: Option<PathBuf>,
        /// Point-in-time recovery (PostgreSQL with an archive): recover to the last transaction
        /// committed at or before this time, e.g. "2026-12-01 10:04:00+01:00".
        #[arg(
            long,
            group = "point",
            requires = "source",
            conflicts_with = "snapshot"
        )]
        to_time: Option<String>,
        /// Point-in-time recovery: to this WAL position (e.g. 0/3000060).
        #[arg(
            long,
            group = "point",
            requires = "source",
            conflicts_with = "snapshot"
        )]
        to_lsn: Option<String>,
        /// Point-in-time recovery (MariaDB/MySQL): to this binary log position, e.g.
        /// mysql-bin.000042:1234.
        #[arg(
            long,
            group = "point",
            requires = "source",
            conflicts_with = "snapshot"
        )]
        to_position: Option<String>,
        /// Point-in-time recovery: to a restore point made with pg_create_restore_point.
        #[arg(
            long,
            group = "point",
            requires = "source",
            conflicts_with = "snapshot"
        )]
        to_restore_point: Option<String>,
        /// Point-in-time recovery: to the end of the archive.
        #[arg(
            long,
            group = "point",
            requires = "source",
            conflicts_with = "snapshot"
        )]
        to_latest: bool,
        /// Point-in-time recovery (PostgreSQL): the new data directory (must not exist, or be
        /// empty). A MariaDB/MySQL source recovers into --target, a database that does not
        /// exist yet.
        #[arg(long, group = "into")]
        target_dir: Option<PathBuf>,
        /// Point-in-time recovery: print the plan (base backup, WAL range and size) only.
        #[arg(long, requires = "point")]
        preview: bool,
        /// Point-in-time recovery: start the recovered server on this port and leave it
        /// running (stop it with `pg_ctl -D DIR stop`).
        #[arg(long, value_name = "PORT", requires = "point")]
        start_port: Option<u16>,
        /// PostgreSQL / MariaDB: the database to restore into, e.g.
        /// postgres://admin@db2:5432/crm (no password in the URL). The restore is built in a
        /// temporary database on that server and renamed into place only once verified.
        #[arg(long, group = "into")]
        target: Option<String>,
        /// File holding the target server's password (default: the source's password).
        #[arg(long, conflicts_with = "target_password_env")]
        target_password_file: Option<PathBuf>,
        /// Environment variable holding the target server's password.
        #[arg(long)]
        target_password_env: Option<String>,
        /// PostgreSQL: tables loaded and indexes built at a time (default: the source's
        /// `parallel`, else one per CPU, at least 2). The data itself streams from the
        /// repository; nothing but the schema is written to disk.
        #[arg(long, value_name = "N")]
        jobs: Option<u32>,
        /// PostgreSQL: apply the cluster's roles (without passwords) and tablespaces first.
        #[arg(long)]
        with_globals: bool,
        /// Location to restore from (default: the source's primary).
        #[arg(long)]
        location: Option<String>,
        /// Source the snapshot belongs to (narrows `latest`).
        #[arg(long)]
        source: Option<String>,
        /// Replace the target file if it exists, or the contents of a non-empty database.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Compare a database that exists (a SQLite file or a database on a server) with a backup's
    /// manifest: every table's rows and checksum and every schema object the manifest records.
    /// Changes nothing; exit code 1 when anything differs.
    #[command(group(clap::ArgGroup::new("what").required(true).multiple(false)))]
    Verify {
        /// Snapshot id (a prefix is enough), backup id, or `latest`.
        #[arg(long, default_value = "latest")]
        snapshot: String,
        /// SQLite: the database file to compare.
        #[arg(long, group = "what")]
        to: Option<PathBuf>,
        /// PostgreSQL / MariaDB: the database to compare, e.g. postgres://admin@db2/crm.
        #[arg(long, group = "what")]
        target: Option<String>,
        /// File holding the target server's password (default: the source's password).
        #[arg(long, conflicts_with = "target_password_env")]
        target_password_file: Option<PathBuf>,
        /// Environment variable holding the target server's password.
        #[arg(long)]
        target_password_env: Option<String>,
        /// Location the snapshot is read from (default: the source's primary).
        #[arg(long)]
        location: Option<String>,
        /// Source the snapshot belongs to (narrows `latest`).
        #[arg(long)]
        source: Option<String>,
    },
    /// Restore drill: restore a snapshot into a scratch database, verify every table against
    /// the manifest, run the configured assertions, measure the RTO, and clean up. Without
    /// --source/--location, drills the pair whose last drill is oldest.
    Drill {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Restore from this location.
        #[arg(long)]
        location: Option<String>,
        /// `latest`, `random` (an older snapshot), or a snapshot id (default: alternate latest
        /// and random, and for a source with an archive PITR drills to a random point and to a
        /// backup's point).
        #[arg(long, conflicts_with = "pitr")]
        snapshot: Option<String>,
        /// A PITR drill of a source with an archive, to `random` (a point in the recoverable
        /// window), `latest`, `backup` (the newest backup's own point, then compared with its
        /// manifest), or a time such as "2026-12-01 10:04:00+01:00". PostgreSQL recovers a
        /// scratch data directory and runs pg_amcheck; MariaDB/MySQL replays binary logs onto
        /// a backup in a scratch instance and runs CHECK TABLE; both run the assertions.
        #[arg(long, value_name = "POINT")]
        pitr: Option<String>,
    },
    /// List restore drills from the catalog, newest first.
    Drills {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this location.
        #[arg(long)]
        location: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Create the demo CRM (schema and data) in an empty PostgreSQL or MariaDB database, or
    /// apply a churn model to it (for tests and the benchmark).
    GenerateCrm {
        /// postgres://… or mysql://… (no password in the URL).
        #[arg(long)]
        url: String,
        /// File holding the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Size relative to the benchmark's reference CRM (1.0 ≈ 1.1 GiB in PostgreSQL).
        #[arg(long, conflicts_with = "size")]
        scale: Option<f64>,
        /// Approximate size on disk, e.g. 1GiB (PostgreSQL measure).
        #[arg(long)]
        size: Option<String>,
        /// Instead of creating: apply a churn model (realistic or uniform) to an existing demo CRM.
        #[arg(long, value_parser = ["realistic", "uniform"])]
        churn: Option<String>,
    },
    /// Run the scheduled jobs (the systemd service): schedules from `[custodian] schedules`,
    /// Prometheus metrics on `[custodian] metrics-listen`; SIGHUP reloads, SIGTERM stops.
    Daemon,
    /// Talk to the running daemon through its control socket; the daemon identifies you by
    /// your unix user and applies the roles of [access].
    Ctl {
        /// The control socket (default: $CUSTODIAN_SOCKET, else the configuration's, else
        /// /run/custodian/control.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[command(subcommand)]
        command: CtlCommand,
    },
    /// Approve another administrator's pending request (four-eyes): shows what will run, asks
    /// for confirmation and your second factor; a request through the daemon then runs.
    Approve {
        /// The request id the first administrator was given.
        request: String,
        /// The control socket (as for `ctl`).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Read the second-factor code from standard input.
        #[arg(long)]
        totp_stdin: bool,
    },
    /// Four-eyes requests: pending ones (requester, what will run, expiry) and recent ones with
    /// their outcome, from the catalog.
    Approvals,
    /// Access control: second factors.
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// The tamper-evident audit log: verify its hash chain, or list entries.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Compliance report (ISO 27001 / GDPR): evaluate every rule for a period from the catalog,
    /// audit log and locations; write report.html, evidence.json and charts; sign the bundle
    /// with minisign; e-mail it to [notifications] report-to. Default period: the last complete
    /// one of [reports] period.
    Report {
        #[command(subcommand)]
        command: Option<ReportCommand>,
        /// A month (2026-11), ISO week (2026-W47) or quarter (2026-Q4).
        #[arg(long, conflicts_with_all = ["from", "to", "current"])]
        period: Option<String>,
        /// First day (2026-11-01), with --to.
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Last day, inclusive (2026-11-15), with --from.
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// The period still running, up to now.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        current: bool,
        /// Directory for the bundle (default: [reports] out-dir, else STATE/reports).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not e-mail the report.
        #[arg(long)]
        no_mail: bool,
    },
    /// The GDPR erasure ledger: erased customers stay erased, even after a restore.
    Erasure {
        #[command(subcommand)]
        command: ErasureCommand,
    },
    /// A physical base backup of a PostgreSQL source (pg_basebackup streamed into its
    /// repository), the start of point-in-time recovery.
    BaseBackup {
        /// Only this source (default: every source with an archive).
        #[arg(long)]
        source: Option<String>,
    },
    /// PostgreSQL's archive_command and restore_command: `wal push` stores one WAL file,
    /// `wal fetch` gets one back.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Point-in-time recovery's continuous archive of the servers' logs (WAL, binary log).
    Archive {
        #[command(subcommand)]
        command: ArchiveCommand,
    },
    /// The key pair that signs reports.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
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
    /// Print a shell completion script: `custodian completions bash >
    /// /etc/bash_completion.d/custodian` (zsh: into a directory on $fpath as `_custodian`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `custodian man > /usr/local/share/man/man1/custodian.1`.
    Man,
    /// Check what an operator checks before calling for help: the configuration, the unit's
    /// sandbox against every path Custodian writes or reads (SQLite in WAL mode included), the
    /// control socket, every secret, each source's tools and TLS, clocks and free space. Each
    /// finding says what to do; exit code 1 when something fails.
    Doctor {
        /// The systemd unit to check (default: the installed custodian.service).
        #[arg(long, value_name = "FILE")]
        unit: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// What runs, what is next, every location's health.
    Status,
    /// Run a scheduled job now: prints the run's id (follow it with `ctl job ID`).
    Run {
        /// The scheduled job's name, as in the schedule files.
        job: String,
        /// Wait until the run ends, and print how it went.
        #[arg(long)]
        wait: bool,
    },
    /// How one run the daemon started stands: its progress, or how it ended and why.
    Job {
        /// The run's id, as `ctl run` and `ctl status` print it.
        id: String,
        /// Wait until the run ends.
        #[arg(long)]
        wait: bool,
    },
    /// Back up now.
    Backup {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// A restore drill now.
    Drill {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Restore from this location.
        #[arg(long)]
        location: Option<String>,
        /// `latest`, `random` or a snapshot id.
        #[arg(long)]
        snapshot: Option<String>,
    },
    /// A restore (needs a second administrator's approval unless the target is scratch).
    #[command(group(clap::ArgGroup::new("into").required(true).multiple(false)))]
    Restore {
        /// Snapshot id (a prefix is enough), backup id, or `latest`.
        #[arg(long)]
        snapshot: String,
        /// SQLite: where the daemon writes the database file (handed to you).
        #[arg(long, group = "into")]
        to: Option<PathBuf>,
        /// PostgreSQL / MariaDB: the database to restore into (no password in the URL).
        #[arg(long, group = "into")]
        target: Option<String>,
        /// Location to restore from (default: the source's primary).
        #[arg(long)]
        location: Option<String>,
        /// Source the snapshot belongs to (narrows `latest`).
        #[arg(long)]
        source: Option<String>,
        /// Replace the target file, or the contents of a non-empty database.
        #[arg(long)]
        force: bool,
        /// Read the second-factor code from standard input.
        #[arg(long)]
        totp_stdin: bool,
        /// When it needs approval: wait for it, and print how the restore went.
        #[arg(long)]
        wait: bool,
    },
    /// Pending and recent four-eyes requests.
    Approvals,
    /// Generate and e-mail the compliance report now (default: the last complete period).
    Report {
        /// A month (2026-11), ISO week (2026-W47) or quarter (2026-Q4).
        #[arg(long)]
        period: Option<String>,
    },
    /// Audit log entries.
    Audit {
        /// From this time (UTC, e.g. 2026-11-01 or 2026-11-01T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Only this actor (unix user).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (backup, drill, restore, approve, …).
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry's hash and its link to the one before; name the first bad entry.
    Verify,
    /// List entries, oldest first.
    List {
        /// From this time (UTC, e.g. 2026-11-01 or 2026-11-01T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (exclusive).
        #[arg(long)]
        until: Option<String>,
        /// Only this actor (unix user).
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (backup, drill, restore, approve, …).
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Check a report bundle: the signature over SHA256SUMS, every file against it, and the
    /// chain to the previous report.
    Verify {
        /// The bundle directory.
        dir: PathBuf,
        /// The trusted public key: a minisign .pub file or the base64 key itself, as received
        /// independently (without it: [reports] public-key-file, else STATE/keys/report.pub).
        /// With it, no configuration is read: an auditor needs nothing but the key.
        #[arg(long, value_name = "KEY_OR_FILE")]
        public_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ErasureCommand {
    /// Record an erasure request: the subject is stored as a keyed hash (by default), and every
    /// later restore and drill erases it before the data is released.
    Record {
        /// The source whose data the subject is erased from.
        #[arg(long)]
        source: String,
        /// The subject's key as the CRM stores it (e.g. the e-mail address the rules match).
        #[arg(long)]
        subject: String,
        /// The request's reference (ticket, DSAR number).
        #[arg(long)]
        request: String,
    },
    /// Record many: a CSV file with a `subject,request` header, or a JSON array of
    /// {"subject", "request"}; or restore the ledger from a backup's `erasure-ledger.json`.
    Import {
        /// The source whose data the subjects are erased from.
        #[arg(long)]
        source: String,
        /// The CSV or JSON file.
        file: PathBuf,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// When is each erased subject gone from every backup (or one subject)?
    Status {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this subject.
        #[arg(long)]
        subject: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Check that each server source is ready to stream its log to an archive: PostgreSQL's
    /// wal_level, max_wal_senders, max_replication_slots, the role's REPLICATION attribute,
    /// max_slot_wal_keep_size, a replication connection and pg_receivewal; MariaDB's log_bin,
    /// binlog_format, binlog_row_image, server_id, privileges and mariadb-binlog. Each finding
    /// says what to change; exit code 1 when something fails.
    Check {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// Run the archivers in the foreground until SIGTERM or Ctrl-C (the daemon runs the same
    /// ones): pg_receivewal on the slot custodian_<source>, stored into every location each
    /// `flush` interval.
    Run {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
    /// Each archive: lag, newest segment, base backups, the recoverable window and its gaps.
    Status {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// archive_command = 'custodian wal push --source NAME %p': store one completed WAL file
    /// into every location of the source (exit 0 only once all hold it). For an archive with
    /// method = "archive-command".
    Push {
        #[arg(long)]
        source: String,
        /// The file (%p).
        path: PathBuf,
    },
    /// restore_command = 'custodian wal fetch --source NAME %f %p': write an archived WAL file
    /// (exit 1 when it is not archived, as the server expects at the end of the archive).
    Fetch {
        #[arg(long)]
        source: String,
        /// The file's name (%f).
        name: String,
        /// Where to write it (%p).
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the minisign key pair that signs reports ([reports] secret-key-file and
    /// public-key-file, else STATE/keys/); password-protected when
    /// reports.secret-key-password-* is configured.
    Generate {
        /// Replace an existing key (a dangerous change, audited).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        guard: GuardArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Second factors (TOTP, RFC 6238).
    Totp {
        #[command(subcommand)]
        command: TotpCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TotpCommand {
    /// Enrol a person (administrators only; audited): prints the otpauth:// URI and a QR code
    /// for their authenticator app, once.
    Enroll {
        /// The unix user name.
        user: String,
        /// Replace an existing enrolment (needs your own second factor).
        #[arg(long)]
        replace: bool,
        /// Read your second-factor code from standard input.
        #[arg(long)]
        totp_stdin: bool,
    },
    /// Who is enrolled, since when, and who is locked out.
    List,
    /// Remove a person's enrolment (needs your own second factor).
    Remove {
        /// The unix user name.
        user: String,
        /// Read your second-factor code from standard input.
        #[arg(long)]
        totp_stdin: bool,
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

/// The command line as clap describes it — for parsing, completions and the manual page. The
/// global `--config` is hidden where it means nothing (a hidden local argument of the same id
/// keeps the global one from being propagated there).
#[must_use]
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for name in ["demo", "generate-crm", "completions", "man"] {
        cmd = cmd.mut_subcommand(name, |sub| {
            sub.arg(
                clap::Arg::new("config")
                    .long("config")
                    .hide(true)
                    .value_parser(clap::value_parser!(PathBuf))
                    .default_value(DEFAULT_CONFIG_PATH),
            )
        });
    }
    cmd
}

#[cfg(test)]
mod tests {
    /// Every command that prints `--json` has its schema in docs/schema/ (docs/json.md).
    #[test]
    fn every_command_has_a_json_schema() {
        fn leaves(cmd: &clap::Command, chain: &mut Vec<String>, out: &mut Vec<String>) {
            let subs: Vec<_> = cmd
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            // A command with an optional subcommand (`report`) prints JSON itself too.
            if subs.is_empty() || !cmd.is_subcommand_required_set() {
                out.push(chain.join("-"));
            }
            for s in subs {
                chain.push(s.get_name().to_string());
                leaves(s, chain, out);
                chain.pop();
            }
        }
        let mut all = Vec::new();
        let root = super::command();
        for s in root.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut chain = vec![s.get_name().to_string()];
            leaves(s, &mut chain, &mut all);
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema");
        // Text by nature (a completion script, a manual page) or no output (the daemon logs).
        let exempt = [
            "daemon",
            "completions",
            "man",
            "access",
            "audit",
            "erasure",
            "keys",
            "config",
            "ctl",
        ];
        let missing: Vec<_> = all
            .iter()
            .filter(|c| !exempt.contains(&c.as_str()))
            .filter(|c| !dir.join(format!("{c}.json")).exists())
            .collect();
        assert!(missing.is_empty(), "commands without a schema: {missing:?}");
        assert!(all.contains(&"ctl-status".to_string()), "{all:?}");
    }
}
