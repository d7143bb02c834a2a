//! The control socket's protocol: one JSON request line, one JSON response line. Requests are
//! at most [`MAX_REQUEST`] bytes; the caller's identity is never part of a request — the daemon
//! takes it from the socket's peer credentials.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What a caller asks the daemon.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// What runs, what is next, the health of every location (viewer). (A struct variant, so
    /// that unknown fields are refused like everywhere else.)
    Status {},
    /// Run a scheduled job now (operator; administrator for drill and prune jobs): answers at
    /// once with the invocation's id.
    Run { job: String },
    /// How an invocation (a job the daemon runs or ran) stands (viewer).
    Job { id: String },
    /// Back up now (operator).
    Backup { source: Option<String> },
    /// A restore drill now (administrator).
    Drill {
        source: Option<String>,
        location: Option<String>,
        snapshot: Option<String>,
    },
    /// A restore (administrator; a second administrator must approve it unless the target is
    /// the source's configured scratch server).
    Restore {
        snapshot: String,
        source: Option<String>,
        location: Option<String>,
        to: Option<PathBuf>,
        target: Option<String>,
        #[serde(default)]
        force: bool,
        /// The requester's TOTP code, when they are enrolled (never recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        second_factor: Option<String>,
    },
    /// Generate (and e-mail) the compliance report for a period, default the last complete
    /// one (operator).
    Report { period: Option<String> },
    /// Approve another administrator's pending request (administrator).
    Approve {
        request: String,
        /// The approver's TOTP code, when they are enrolled (never recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        second_factor: Option<String>,
    },
    /// Requests waiting for a second administrator, and recent ones with their outcome
    /// (administrator).
    Approvals {},
    /// Audit log entries (viewer).
    Audit {
        since: Option<String>,
        until: Option<String>,
        actor: Option<String>,
        action: Option<String>,
    },
}

impl Request {
    /// The action's name in the audit log.
    #[must_use]
    pub fn action(&self) -> &'static str {
        match self {
            Self::Status {} => "status",
            Self::Run { .. } => "run",
            Self::Job { .. } => "job",
            Self::Backup { .. } => "backup",
            Self::Drill { .. } => "drill",
            Self::Restore { .. } => "restore",
            Self::Approve { .. } => "approve",
            Self::Approvals {} => "approvals",
            Self::Report { .. } => "report",
            Self::Audit { .. } => "audit",
        }
    }

    /// The request as the audit log and the approvals table keep it: without a second-factor
    /// code.
    #[must_use]
    pub fn redacted(&self) -> Self {
        let mut r = self.clone();
        match &mut r {
            Self::Restore { second_factor, .. } | Self::Approve { second_factor, .. } => {
                *second_factor = None;
            }
            _ => {}
        }
        r
    }

    /// The same request carrying `code` as its second factor (for requests that take one).
    #[must_use]
    pub fn with_second_factor(mut self, code: String) -> Self {
        if let Self::Restore { second_factor, .. } | Self::Approve { second_factor, .. } = &mut self
        {
            *second_factor = Some(code);
        }
        self
    }
}

/// The daemon's answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub result: serde_json::Value,
}

impl Response {
    #[must_use]
    pub fn success(result: serde_json::Value) -> Self {
        Self {
            ok: true,
            result,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn failure(code: &str, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            code: Some(code.to_string()),
            error: Some(error.into()),
            result: serde_json::Value::Null,
        }
    }
}

/// Sends one request and waits for the answer (jobs may take long: no read timeout).
///
/// # Errors
/// When the daemon cannot be reached or answers with something unreadable.
pub fn call(socket: &Path, request: &Request) -> std::io::Result<Response> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot reach the daemon at {}: {e}; is `custodian daemon` running, and are you in the group that may use its socket?",
                socket.display()
            ),
        )
    })?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    serde_json::from_str(&answer).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the daemon's answer is not readable: {e}"),
        )
    })
}
