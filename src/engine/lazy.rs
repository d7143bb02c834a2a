//! A table stream produced in-process: a task on the runtime runs the query and hands its
//! bytes, piece by piece, to the archiver's thread that reads the stream. The task starts when
//! the archiver first reads (so at most as many run as the archiver reads at once, and a
//! dump's own limit on top); a failed query is a read error that fails the dump and stops its
//! other parts; another part's failure stops it; dropping the stream stops the query.

use std::io::{self, Read};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::process::ProcessGroups;

/// What a producing task hands to the reader.
pub enum Piece {
    Data(Bytes),
    /// The last row has been sent.
    End,
    /// The query failed: why.
    Failed(String),
}

/// Starts the producing task: given where to send the pieces, the future that sends them
/// (ending with [`Piece::End`] or [`Piece::Failed`]).
pub type Start = Box<dyn FnOnce(mpsc::Sender<Piece>) -> BoxFuture<'static, ()> + Send>;

/// Pieces in flight between the task and the reader.
const QUEUE: usize = 4;

/// The reading side (see the module docs).
pub struct LazyStream {
    /// What it streams, for messages ("table public.notes").
    what: String,
    start: Option<Start>,
    groups: ProcessGroups,
    runtime: tokio::runtime::Handle,
    pieces: Option<mpsc::Receiver<Piece>>,
    current: Bytes,
    done: bool,
    /// Why it failed: every later read fails the same way, never a clean end.
    failed: Option<String>,
}

impl LazyStream {
    #[must_use]
    pub fn new(
        what: String,
        start: Start,
        groups: ProcessGroups,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            what,
            start: Some(start),
            groups,
            runtime,
            pieces: None,
            current: Bytes::new(),
            done: false,
            failed: None,
        }
    }

    fn begin(&mut self) {
        let Some(start) = self.start.take() else {
            return;
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let groups = self.groups.clone();
        let produce = start(tx.clone());
        self.runtime.spawn(async move {
            tokio::select! {
                () = produce => {}
                () = groups.stopped() => {
                    let _ = tx
                        .send(Piece::Failed(
                            "stopped because another part of the dump failed".into(),
                        ))
                        .await;
                }
            }
        });
        self.pieces = Some(rx);
    }

    fn failure(&mut self, message: &str) -> io::Error {
        let message = format!("reading {}: {message}", self.what);
        self.groups.fail(message.clone());
        self.failed = Some(message.clone());
        io::Error::other(message)
    }
}

impl Read for LazyStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(message) = &self.failed {
            return Err(io::Error::other(message.clone()));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.begin();
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            let Some(pieces) = &mut self.pieces else {
                return Ok(0);
            };
            match pieces.blocking_recv() {
                Some(Piece::Data(piece)) => self.current = piece,
                Some(Piece::End) => self.done = true,
                Some(Piece::Failed(message)) => return Err(self.failure(&message)),
                None => return Err(self.failure("the stream ended before its last row")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
