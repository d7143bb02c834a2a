//! Custodian patch: content-defined chunks that also end wherever the stream says a new part
//! begins (a tar member), so that a part which did not change is stored as the same chunks
//! whatever changed around it. Within a part the chunks are the content-defined ones of the
//! Rabin chunker, with the same minimum, average and maximum sizes.

use std::io::{self, Read};
use std::sync::Arc;

use rustic_cdc::{Rabin64, RollingHash64};

use super::CutPoints;
use crate::error::{ErrorKind, RusticError, RusticResult};

/// The read buffer: large reads, and a cut check per read rather than per byte.
const BUF_SIZE: usize = 64 * 1024;

/// The rolling hash's window, which is filled from a chunk's last bytes once it reaches its
/// minimum size.
const WINDOW: usize = 64;

/// `ChunkIter` is an iterator that chunks data, ending a chunk at every cut point.
pub(crate) struct ChunkIter<R: Read + Send> {
    reader: R,
    cuts: Arc<dyn CutPoints>,
    rabin: Rabin64,
    split_mask: u64,
    min_size: usize,
    max_size: usize,
    /// Bytes read and not chunked yet: `buf[pos..len]`.
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The stream offset of `buf[pos]`.
    offset: u64,
    eof: bool,
}

impl<R: Read + Send> ChunkIter<R> {
    pub(crate) fn new(
        rabin: Rabin64,
        chunk_size: usize,
        chunk_min_size: usize,
        chunk_max_size: usize,
        reader: R,
        cuts: Arc<dyn CutPoints>,
    ) -> RusticResult<Self> {
        super::rabin::check_rabin_params(chunk_size, chunk_min_size, chunk_max_size)?;
        Ok(Self {
            reader,
            cuts,
            rabin,
            split_mask: chunk_size as u64 - 1,
            min_size: chunk_min_size.max(WINDOW),
            max_size: chunk_max_size,
            buf: vec![0; BUF_SIZE].into_boxed_slice(),
            pos: 0,
            len: 0,
            offset: 0,
            eof: false,
        })
    }

    /// Reads more into the buffer; `false` at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.pos = 0;
                    self.len = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn advance(&mut self, chunk: &mut Vec<u8>, n: usize) {
        chunk.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.offset += n as u64;
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.offset;
        let mut chunk = Vec::with_capacity(self.min_size);
        // A cut at or before a byte is known once the reader handed that byte over, so the
        // first cut after the chunk's start is looked for again only while none is known.
        let mut cut = self.cuts.next_cut(start + 1);
        loop {
            if self.pos == self.len {
                if self.eof {
                    break;
                }
                match self.fill() {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(err) => {
                        return Some(Err(RusticError::with_source(
                            ErrorKind::InputOutput,
                            "Failed to read from reader in iterator",
                            err,
                        )));
                    }
                }
                if cut.is_none() {
                    cut = self.cuts.next_cut(start + 1);
                }
            }
            let mut n = self.len - self.pos;
            if let Some(cut) = cut {
                let to_cut = usize::try_from(cut - self.offset).unwrap_or(usize::MAX);
                if to_cut == 0 {
                    break;
                }
                n = n.min(to_cut);
            }
            if chunk.len() < self.min_size {
                n = n.min(self.min_size - chunk.len());
                self.advance(&mut chunk, n);
                if chunk.len() == self.min_size {
                    _ = self.rabin.reset_and_prefill_window(
                        &mut chunk[chunk.len() - WINDOW..].iter().copied(),
                    );
                }
                continue;
            }
            // As rustic's Rabin chunker: the boundary is checked before each further byte.
            let mut taken = 0;
            let mut boundary = false;
            for &byte in &self.buf[self.pos..self.pos + n] {
                if chunk.len() + taken >= self.max_size || (self.rabin.hash & self.split_mask) == 0
                {
                    boundary = true;
                    break;
                }
                self.rabin.slide(byte);
                taken += 1;
            }
            self.advance(&mut chunk, taken);
            if boundary {
                break;
            }
        }
        if chunk.is_empty() {
            None
        } else {
            Some(Ok(chunk))
        }
    }
}
