//! Logging under systemd: when stderr is the journal (`JOURNAL_STREAM` names the very stream
//! stderr is, as systemd sets it), every line starts with its syslog priority (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug) — journald reads it (`SyslogLevelPrefix=`, on by
//! default), so `journalctl -u custodian -p err` shows exactly the errors — and carries no
//! timestamp of its own (the journal has one). Fields stay `key=value` in the message.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the stream systemd connected to the journal.
#[must_use]
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    // The file behind fd 2 (a socket, a pipe or a file), not the /proc link itself.
    std::fs::metadata("/proc/self/fd/2")
        .is_ok_and(|m| dev.parse() == Ok(m.dev()) && ino.parse() == Ok(m.ino()))
}

/// The syslog priority of a tracing level.
#[must_use]
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The default format without time, behind a `<N>` priority prefix.
pub struct Prefixed(Format<Full, ()>);

impl Prefixed {
    #[must_use]
    pub fn new() -> Self {
        Self(
            Format::default()
                .without_time()
                .with_target(false)
                .with_ansi(false),
        )
    }
}

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The field formatter that goes with [`Prefixed`].
pub type Fields = DefaultFields;
