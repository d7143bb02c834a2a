//! Timestamps: always UTC, always the same textual form in the catalog and in JSON, so that
//! text order is time order.

use jiff::Timestamp;

/// The current time.
#[must_use]
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `2026-11-29T11:48:30.123Z`: fixed width, millisecond precision, sortable as text.
#[must_use]
pub fn format(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses what [`format`] wrote (and any RFC 3339 timestamp).
///
/// # Errors
/// When the text is not an RFC 3339 timestamp.
pub fn parse(text: &str) -> Result<Timestamp, jiff::Error> {
    text.parse()
}

/// Parses a point in time an operator typed: RFC 3339 with a `T` or a space, and an offset
/// (`2026-12-01 10:04:00+01:00`, `2026-12-01T09:04:00Z`).
///
/// # Errors
/// A sentence saying how to write it.
pub fn parse_instant(text: &str) -> Result<Timestamp, String> {
    text.trim().parse().map_err(|_| {
        format!(
            "`{text}` is not a point in time with its offset; write it like \"2026-12-01 10:04:00+01:00\" or 2026-12-01T09:04:00Z"
        )
    })
}

/// Serde adapter for fields that hold a [`Timestamp`] in the [`format`] form.
pub mod serde_utc {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    /// # Errors
    /// Never, for a valid timestamp.
    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*ts))
    }

    /// # Errors
    /// When the text is not an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_is_fixed_width_and_round_trips() {
        let ts: jiff::Timestamp = "2026-11-29T11:48:30Z".parse().unwrap();
        let text = super::format(ts);
        assert_eq!(text, "2026-11-29T11:48:30.000Z");
        assert_eq!(super::parse(&text).unwrap(), ts);
    }
}
