//! S3-compatible servers for integration tests, started by the tests: s3s-fs (checks SigV4
//! signatures; no Object Lock) for the storage conformance suite, and moto (Object Lock
//! semantics, versioning, delete markers). Both come from `scripts/test-all`, which installs
//! them under `$CUSTODIAN_TOOLS` (default `/var/tmp/custodian-tools`); a missing one fails the
//! test. Buckets are set up with boto3 from moto's virtualenv, as an administrator would.
//!
//! Also a fault-injecting TCP proxy to put between Custodian and a server.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::assert_success;

pub const ACCESS_KEY: &str = "custodian-test-access-key";
pub const SECRET_KEY: &str = "custodian-test-secret-key-0123456789";

fn tools() -> PathBuf {
    std::env::var_os("CUSTODIAN_TOOLS")
        .map_or_else(|| PathBuf::from("/var/tmp/custodian-tools"), PathBuf::from)
}

fn tool(path: &str) -> PathBuf {
    let p = tools().join(path);
    assert!(
        p.exists(),
        "{} is missing; scripts/test-all installs the S3 test servers",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Moto,
    S3sFs,
}

/// A running S3-compatible server.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub kind: Kind,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// moto: Object Lock, versioning, delete markers (signatures not checked).
    pub fn moto() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(tool("moto/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "moto_server");
        Self {
            child,
            port,
            kind: Kind::Moto,
            _dir: dir,
        }
    }

    /// s3s-fs: a file-system-backed server that checks SigV4 signatures.
    pub fn s3s_fs() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(tool("bin/s3s-fs"))
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "s3s-fs");
        Self {
            child,
            port,
            kind: Kind::S3sFs,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a Python snippet with a boto3 client `s3` bound to this server; returns stdout.
    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, datetime, json\n\
             from botocore.config import Config\n\
             s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{ACCESS_KEY}', \
             aws_secret_access_key='{SECRET_KEY}', region_name='us-east-1', \
             config=Config(s3={{'addressing_style': 'path'}}))\n{code}\n",
            self.endpoint()
        );
        let out = Command::new(tool("moto/bin/python"))
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_success(&out, &format!("boto3: {code}"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Creates a bucket; with `lock`, Object Lock enabled and versioning on, as an administrator
    /// must set up an immutable location.
    pub fn create_bucket(&self, name: &str, lock: bool) {
        if lock {
            self.boto(&format!(
                "s3.create_bucket(Bucket='{name}', ObjectLockEnabledForBucket=True)\n\
                 s3.put_bucket_versioning(Bucket='{name}', VersioningConfiguration={{'Status': 'Enabled'}})"
            ));
        } else {
            self.boto(&format!("s3.create_bucket(Bucket='{name}')"));
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Files holding the test credentials (0600), for `access-key-id-file` and friends.
pub fn credential_files(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let akid = dir.join("s3.akid");
    let secret = dir.join("s3.secret");
    std::fs::write(&akid, format!("{ACCESS_KEY}\n")).unwrap();
    std::fs::write(&secret, format!("{SECRET_KEY}\n")).unwrap();
    for p in [&akid, &secret] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (akid, secret)
}

/// What the fault proxy does with new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// Forward everything.
    Pass = 0,
    /// Answer every request with 503 Slow Down.
    Unavailable = 1,
    /// Accept and close at once (connection reset).
    Reset = 2,
    /// Answer every request with 500 Internal Error.
    ServerError = 3,
}

/// A TCP proxy in front of a server that injects faults on request.
pub struct FaultProxy {
    pub port: u16,
    mode: Arc<AtomicU8>,
    /// With `Pass`: the next N connections get a 503 first, then pass.
    flaky: Arc<AtomicU32>,
    /// With `Pass`: the next N responses are delivered slowly (8 KiB per 25 ms).
    slow: Arc<AtomicU32>,
    /// With `Pass`: the next N responses that have a body are cut after a few body bytes.
    truncate: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    pub faults_served: Arc<AtomicU32>,
}

impl FaultProxy {
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Fault::Pass as u8));
        let flaky = Arc::new(AtomicU32::new(0));
        let slow = Arc::new(AtomicU32::new(0));
        let truncate = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let faults_served = Arc::new(AtomicU32::new(0));
        let (m, f, s, served) = (
            mode.clone(),
            flaky.clone(),
            stop.clone(),
            faults_served.clone(),
        );
        let (sl, tr) = (slow.clone(), truncate.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let mode = m.load(Ordering::SeqCst);
                let flaky_now = mode == Fault::Pass as u8
                    && f.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                if mode == Fault::Reset as u8 {
                    served.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if mode == Fault::Unavailable as u8 || flaky_now {
                    served.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || answer_error(client, 503));
                    continue;
                }
                if mode == Fault::ServerError as u8 {
                    served.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || answer_error(client, 500));
                    continue;
                }
                let take = |counter: &AtomicU32| {
                    counter
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                };
                let damage = if take(&tr) {
                    Damage::Truncate(served.clone())
                } else if take(&sl) {
                    Damage::Slow(served.clone())
                } else {
                    Damage::None
                };
                std::thread::spawn(move || forward(client, upstream, damage));
            }
        });
        Self {
            port,
            mode,
            flaky,
            slow,
            truncate,
            stop,
            faults_served,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }

    /// The next `n` connections each get one 503 before the proxy passes again.
    pub fn flaky(&self, n: u32) {
        self.flaky.store(n, Ordering::SeqCst);
    }

    /// The next `n` responses trickle in slowly.
    pub fn slow(&self, n: u32) {
        self.slow.store(n, Ordering::SeqCst);
    }

    /// The next `n` connections have their response body cut short (when it has one).
    pub fn truncate(&self, n: u32) {
        self.truncate.store(n, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request (head and a Content-Length body) and answers 503 or 500, closing the
/// connection.
fn answer_error(mut client: TcpStream, status: u16) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; 64 * 1024];
    let mut left = length;
    while left > 0 {
        match client.read(&mut body[..left.min(64 * 1024)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => left -= n,
        }
    }
    let (code, reason) = if status == 500 {
        ("InternalError", "Internal Server Error")
    } else {
        ("SlowDown", "Slow Down")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes());
    let _ = client.shutdown(Shutdown::Both);
}

/// What happens to a forwarded response.
enum Damage {
    None,
    Slow(Arc<AtomicU32>),
    Truncate(Arc<AtomicU32>),
}

fn forward(client: TcpStream, upstream: u16, damage: Damage) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut s_read, mut c_write) = (server, client);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(Shutdown::Write);
    });
    match damage {
        Damage::None => {
            let _ = std::io::copy(&mut s_read, &mut c_write);
        }
        Damage::Slow(served) => {
            served.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 8192];
            while let Ok(n) = s_read.read(&mut buf) {
                if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        Damage::Truncate(served) => {
            // Pass the head whole, then a few bytes of a body that has more, then hang up.
            let mut seen = Vec::new();
            let mut buf = [0u8; 8192];
            let mut cut = false;
            while let Ok(n) = s_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if length > 64 {
                    let _ = c_write.write_all(&seen[..(end + 4 + 16).min(seen.len())]);
                    served.fetch_add(1, Ordering::SeqCst);
                    cut = true;
                } else {
                    let _ = c_write.write_all(&seen);
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                }
                break;
            }
            if cut {
                let _ = c_write.shutdown(Shutdown::Both);
                let _ = s_read.shutdown(Shutdown::Both);
                let _ = up.join();
                return;
            }
        }
    }
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
}

/// A `[location.NAME]` of kind s3 on a test server, with the credential files of
/// [`credential_files`] and the `offsite` password; `lock` is an `object-lock` value.
pub fn location_config(
    name: &str,
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    lock: Option<&str>,
) -> String {
    format!(
        r#"
[location.{name}]
kind = "s3"
bucket = "{bucket}"
prefix = "{prefix}"
region = "us-east-1"
endpoint = "{endpoint}"
path-style = true
access-key-id-file = "keys/s3.akid"
secret-access-key-file = "keys/s3.secret"
password-file = "keys/offsite.key"
{}"#,
        lock.map(|l| format!("object-lock = {l}\n"))
            .unwrap_or_default()
    )
}
