//! A webhook receiver on 127.0.0.1: answers every POST with 200 and keeps the request line and
//! body, so a test can see the alerts Custodian sent.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Webhook {
    #[must_use]
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                let mut headers = serde_json::Map::new();
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().into());
                    }
                    if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; length];
                let _ = reader.read_exact(&mut body);
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                // A body that is not JSON (ntfy's plain text) is kept as `_text`, with the
                // request's headers as `_headers`.
                let value = serde_json::from_slice(&body).unwrap_or_else(|_| {
                    serde_json::json!({
                        "_text": String::from_utf8_lossy(&body),
                        "_headers": headers,
                    })
                });
                store.lock().unwrap().push((path, value));
                let mut stream = reader.into_inner();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self { url, received }
    }

    /// Every request so far: path and JSON body.
    #[must_use]
    pub fn received(&self) -> Vec<(String, serde_json::Value)> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until a request matches.
    pub fn wait_for(
        &self,
        what: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> (String, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(hit) = self.received().into_iter().find(|(p, b)| what(p, b)) {
                return hit;
            }
            assert!(
                Instant::now() < deadline,
                "no such webhook call: {:?}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
