//! The digest of a table stream: its rows as text lines (PostgreSQL `COPY` text format, or the
//! MariaDB `LOAD DATA` format, where every row is one line and newlines inside values are
//! escaped).
//!
//! The digest counts the lines and adds up the 128-bit XXH3 hash of each, wrapping: the sum
//! does not depend on the order of the rows, so a restored table read back in whatever order
//! its heap holds gives the same value without a sort, while a changed, lost or duplicated row
//! changes it. XXH3 is specified and stable (unlike std's hasher), and fast enough to run on
//! every byte of a backup beside the archiver. The checksum a manifest records is
//! `sha256:` of `rows:<n>:xxh3-128-sum:<hex>`, the shape of every other table checksum.

use std::io::{self, Read};

use sha2::{Digest, Sha256};
use xxhash_rust::xxh3::xxh3_128;

/// A name as part of a stream's file name: anything but letters, digits, `_` and `-`
/// percent-encoded, so that any table name makes a safe, unique file name.
#[must_use]
pub fn encode_file_part(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Digest of a stream of rows, fed in pieces of any size.
#[derive(Debug, Default, Clone)]
pub struct RowDigest {
    rows: u64,
    bytes: u64,
    sum: u128,
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
}

impl RowDigest {
    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while let Some(end) = memchr::memchr(b'\n', data) {
            let line = &data[..end];
            if self.partial.is_empty() {
                self.add(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.add(&whole);
                whole.clear();
                self.partial = whole;
            }
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn add(&mut self, line: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxh3_128(line));
    }

    /// The number of rows, the bytes fed and the checksum, once the stream has ended. A last
    /// line without its newline counts as a row (COPY always ends rows with one, so a truncated
    /// stream shows as a different digest, never as a shorter valid one).
    #[must_use]
    pub fn finish(mut self) -> Finished {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.add(&last);
        }
        Finished::new(self.rows, self.bytes, self.sum)
    }
}

/// A finished digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub rows: u64,
    pub bytes: u64,
    pub checksum: String,
    /// The sum the checksum is made of: parts of one table add up to the whole.
    sum: u128,
}

impl Finished {
    fn new(rows: u64, bytes: u64, sum: u128) -> Self {
        let text = format!("rows:{rows}:xxh3-128-sum:{sum:032x}");
        Self {
            rows,
            bytes,
            checksum: format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
            sum,
        }
    }

    /// The digest of a table whose rows came in several parts (key ranges): exactly the
    /// digest one stream of all of them would have had, since the sum ignores order.
    #[must_use]
    pub fn combine(parts: impl IntoIterator<Item = Finished>) -> Self {
        let (rows, bytes, sum) = parts.into_iter().fold((0, 0, 0u128), |(r, b, s), p| {
            (r + p.rows, b + p.bytes, s.wrapping_add(p.sum))
        });
        Self::new(rows, bytes, sum)
    }
}

/// Digests everything `inner` yields on its way through; at its end, hands the digest to
/// `done` (once).
pub struct DigestReader<R> {
    inner: R,
    digest: Option<RowDigest>,
    done: Option<Box<dyn FnOnce(Finished) + Send>>,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R, done: Box<dyn FnOnce(Finished) + Send>) -> Self {
        Self {
            inner,
            digest: Some(RowDigest::default()),
            done: Some(done),
        }
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if !buf.is_empty()
                && let (Some(digest), Some(done)) = (self.digest.take(), self.done.take())
            {
                done(digest.finish());
            }
        } else if let Some(digest) = &mut self.digest {
            digest.update(&buf[..n]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(pieces: &[&[u8]]) -> Finished {
        let mut d = RowDigest::default();
        for p in pieces {
            d.update(p);
        }
        d.finish()
    }

    #[test]
    fn pieces_and_order_do_not_matter() {
        let whole = digest(&[b"1\ta\n2\tb\n3\tc\n"]);
        assert_eq!(whole.rows, 3);
        assert_eq!(whole, digest(&[b"1\t", b"a\n2", b"\tb\n3\tc", b"\n"]));
        let reordered = digest(&[b"3\tc\n1\ta\n2\tb\n"]);
        assert_eq!(whole.checksum, reordered.checksum);
    }

    #[test]
    fn parts_combine_into_the_whole() {
        let whole = digest(&[b"1\ta\n2\tb\n3\tc\n"]);
        let parts = Finished::combine([digest(&[b"3\tc\n"]), digest(&[b"1\ta\n2\tb\n"])]);
        assert_eq!(whole, parts);
    }

    #[test]
    fn a_changed_lost_or_doubled_row_changes_the_digest() {
        let whole = digest(&[b"1\ta\n2\tb\n"]).checksum;
        assert_ne!(whole, digest(&[b"1\ta\n2\tc\n"]).checksum);
        assert_ne!(whole, digest(&[b"1\ta\n"]).checksum);
        assert_ne!(whole, digest(&[b"1\ta\n2\tb\n2\tb\n"]).checksum);
        // Two rows swapping content between them is a different table.
        assert_ne!(
            digest(&[b"1\ta\n2\tb\n"]).checksum,
            digest(&[b"1\tb\n2\ta\n"]).checksum
        );
    }

    #[test]
    fn empty_lines_are_rows() {
        // A table without columns has one empty line per row.
        assert_eq!(digest(&[b"\n\n\n"]).rows, 3);
        assert_eq!(digest(&[b""]).rows, 0);
    }
}
