//! A steady writer for point-in-time recovery tests: one client session, fed one statement
//! every 100 ms until stopped, so that the tests can pick times between its rows.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    child: Child,
}

impl Writer {
    /// Starts `client` (psql, mariadb …) and writes `statement` to it every 100 ms.
    pub fn start(mut client: Command, statement: &str) -> Self {
        let mut child = client
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let statement = statement.to_string();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                if writeln!(stdin, "{statement}").is_err() {
                    break;
                }
                let _ = stdin.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            stop,
            thread: Some(thread),
            child,
        }
    }

    /// Stops writing and waits for the session to end.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        let _ = self.child.wait();
    }
}
