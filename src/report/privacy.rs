//! PRIVACY-OF-REPORT: the rendered report and its evidence are scanned for e-mail addresses and
//! telephone numbers before they are signed. Findings never repeat what was found (that would
//! put it in the report): they say what kind of data, in which file, at which offset.

/// One suspected piece of personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: &'static str,
    pub offset: usize,
    pub kind: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {} of {}", self.kind, self.offset, self.file)
    }
}

fn local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"._%+-".contains(&c)
}

fn domain_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'.' || c == b'-'
}

/// E-mail addresses (`local@domain.tld`), except those in `allowed` (the configured sender
/// and recipients: staff addresses the configuration already names).
fn emails(text: &str, allowed: &[String]) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (at, _) in text.match_indices('@') {
        let mut start = at;
        while start > 0 && local_char(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain_char(b[end]) {
            end += 1;
        }
        let domain = text[at + 1..end].trim_end_matches('.');
        let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
            !host.is_empty() && tld.len() >= 2 && tld.bytes().all(|c| c.is_ascii_alphabetic())
        });
        if start < at && tld_ok {
            let found = &text[start..at + 1 + domain.len()];
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(found)) {
                out.push((start, at + 1 + domain.len()));
            }
        }
    }
    out
}

/// Telephone numbers: `+` then 8–15 digits with spaces, dashes or parentheses between groups,
/// or 9–15 digits in at least three groups separated by spaces or dashes. Plain integers (byte
/// counts), dates and hashes do not match.
fn phones(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i] == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
            || (b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()));
        if !starts {
            i += 1;
            continue;
        }
        let plus = b[i] == b'+';
        let mut j = i + usize::from(plus);
        let (mut digits, mut groups, mut in_group) = (0usize, 0usize, false);
        while j < b.len() {
            let c = b[j];
            if c.is_ascii_digit() {
                digits += 1;
                if !in_group {
                    groups += 1;
                    in_group = true;
                }
            } else if matches!(c, b' ' | b'-' | b'(' | b')')
                && b.get(j + 1)
                    .is_some_and(|n| n.is_ascii_digit() || *n == b'(')
            {
                in_group = false;
            } else {
                break;
            }
            j += 1;
        }
        // A date (`2026-12-01`) followed by a time (`2026-12-01 11:12`) is not a number.
        if !plus && is_iso_date(&b[i..]) {
            i += 10;
            continue;
        }
        let alnum_after = b.get(j).is_some_and(u8::is_ascii_alphanumeric);
        let is_phone = !alnum_after
            && ((plus && (8..=15).contains(&digits))
                || (!plus && groups >= 3 && (9..=15).contains(&digits) && {
                    // Dates (2026-11-29) have 8 digits; times and versions use other separators.
                    let s = &text[i..j];
                    !s.contains('-') || s.split('-').all(|g| g.len() >= 2) && digits >= 10
                }));
        if is_phone {
            out.push((i, j));
        }
        i = j.max(i + 1);
    }
    out
}

/// `YYYY-MM-DD` at the start of `b`.
fn is_iso_date(b: &[u8]) -> bool {
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(k, c)| {
            if k == 4 || k == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// Scans one file's text.
#[must_use]
pub fn scan(file: &'static str, text: &str, allowed_emails: &[String]) -> Vec<Finding> {
    let mut out: Vec<Finding> = emails(text, allowed_emails)
        .into_iter()
        .map(|(offset, _)| Finding {
            file,
            offset,
            kind: "an e-mail address",
        })
        .chain(phones(text).into_iter().map(|(offset, _)| Finding {
            file,
            offset,
            kind: "a telephone number",
        }))
        .collect();
    out.sort_by_key(|f| f.offset);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_addresses_and_phone_numbers_like_the_demo_crm_holds() {
        let text = r#"{"x": "contact17@customer17.example", "p": "+44 207 1234567"}"#;
        let found = scan("evidence.json", text, &[]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].kind, "an e-mail address");
        assert_eq!(found[1].kind, "a telephone number");
        assert!(!found[0].to_string().contains("contact17"));
        assert_eq!(scan("r", "call 030 1234 5678 now", &[]).len(), 1);
        assert_eq!(
            scan("r", "on 2026-12-01 call +49 30 1234 5678", &[]).len(),
            1
        );
    }

    #[test]
    fn ignores_what_reports_legitimately_hold() {
        let text = r#"{"taken_at": "2026-11-29T11:48:30.123Z", "bytes_read": 38123456789,
            "snapshot": "3f2a91c0d1e2", "rto_seconds": 31.234567891, "period": "2026-11-01..2026-11-15",
            "key": "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3",
            "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "version": "0.1.0", "mail": "ops@example.org", "at": "user@host",
            "local": "2026-12-01 11:12 CET", "day": "2026-12-01 (5 runs)"}"#;
        let found = scan("evidence.json", text, &["ops@example.org".to_string()]);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(scan("x", "ops@example.org", &[]).len(), 1);
    }
}
