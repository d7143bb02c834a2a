use std::io::Read;
use std::sync::Arc;

mod cut;
mod fixed_size;
pub mod rabin;

use fixed_size::ChunkIter as FixedSizeChunkIter;
use rabin::ChunkIter as RabinChunkIter;
use rustic_cdc::Rabin64;

use crate::{
    RusticResult,
    repofile::{ConfigFile, configfile::Chunker},
};

/// Custodian patch: the offsets in a stream where a chunk must end (and the next begin),
/// learnt while the stream is read — a tar's member boundaries — so that an unchanged member
/// is stored as the same chunks whatever changed around it.
pub trait CutPoints: Send + Sync {
    /// The first cut at or after `offset` known so far. Every cut at or before the last byte
    /// the stream's reader handed over must be known by the time it hands it over.
    fn next_cut(&self, offset: u64) -> Option<u64>;
}

/// `ChunkIter` is an iterator that chunks data.
pub(crate) enum ChunkIter<R: Read + Send> {
    Rabin(Box<RabinChunkIter<R>>),
    FixedSize(FixedSizeChunkIter<R>),
    Cut(Box<cut::ChunkIter<R>>),
}

impl<R: Read + Send> ChunkIter<R> {
    pub(crate) fn from_config(
        config: &ConfigFile,
        reader: R,
        size_hint: usize,
        cuts: Option<Arc<dyn CutPoints>>,
    ) -> RusticResult<Self> {
        let iter = match (config.chunker(), cuts) {
            (Chunker::Rabin, Some(cuts)) => {
                let poly = config.poly()?;
                let rabin = Rabin64::new_with_polynom(6, &poly);
                Self::Cut(Box::new(cut::ChunkIter::new(
                    rabin,
                    config.chunk_size(),
                    config.chunk_min_size(),
                    config.chunk_max_size(),
                    reader,
                    cuts,
                )?))
            }
            (Chunker::Rabin, None) => {
                let poly = config.poly()?;
                let rabin = Rabin64::new_with_polynom(6, &poly);
                Self::Rabin(Box::new(RabinChunkIter::new(
                    rabin,
                    config.chunk_size(),
                    config.chunk_min_size(),
                    config.chunk_max_size(),
                    reader,
                    size_hint,
                )?))
            }
            (Chunker::FixedSize, _) => Self::FixedSize(FixedSizeChunkIter::new(
                config.chunk_size(),
                reader,
                size_hint,
            )),
        };
        Ok(iter)
    }
}

impl<R: Read + Send> Iterator for ChunkIter<R> {
    type Item = RusticResult<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Rabin(rabin) => rabin.next(),
            Self::FixedSize(fixed_size) => fixed_size.next(),
            Self::Cut(cut) => cut.next(),
        }
    }
}
