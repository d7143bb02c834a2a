//! A real SMTP server (aiosmtpd, Debian's python3-aiosmtpd) on 127.0.0.1 with STARTTLS, AUTH
//! and a test certificate, started by the test and killed on drop. Every message it accepts is
//! stored decoded under `out/msg-N/` by `tests/support/smtp_sink.py`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub password_file: PathBuf,
    pub user: String,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// Prepares certificate and credentials for a server on a fresh port (not started).
    pub fn prepare() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        // rustls refuses a CA certificate as an end entity: mark it CA:FALSE with SANs.
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is required (scripts/test-all installs it)");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let password_file = dir.path().join("smtp-password");
        std::fs::write(&password_file, "mail-relay-secret-8c1f\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            port: free_port(),
            dir,
            cert,
            password_file,
            user: "custodian-mailer".into(),
            child: None,
        }
    }

    /// Starts (or restarts) the server; returns once it accepts connections.
    pub fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(self.dir.path().join("out"))
            .arg(self.port.to_string())
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(self.dir.path().join("key.pem"))
            .arg("--user")
            .arg(&self.user)
            .arg("--password-file")
            .arg(&self.password_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 with python3-aiosmtpd is required (scripts/test-all)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "the SMTP server did not start");
        self.child = Some(child);
    }

    /// The `[notifications]` section for this server.
    pub fn config(&self, report_to: &[&str], alert_to: &[&str]) -> String {
        let list = |l: &[&str]| {
            l.iter()
                .map(|a| format!("\"{a}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "\n[notifications]\nreport-to = [{}]\nalert-to = [{}]\n\n[notifications.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nusername = \"{}\"\npassword-file = \"{}\"\nfrom = \"custodian@example.org\"\nca-file = \"{}\"\nattempts = 2\nretry-delay = \"50ms\"\n",
            list(report_to),
            list(alert_to),
            self.port,
            self.user,
            self.password_file.display(),
            self.cert.display()
        )
    }

    /// Messages received so far (their directories), oldest first.
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path().join("out"))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let n = name.strip_prefix("msg-")?.parse().ok()?;
                        Some((n, e.path()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Waits for a message whose subject contains `needle`; returns its directory.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> PathBuf {
        let deadline = Instant::now() + timeout;
        loop {
            for m in self.messages() {
                if envelope(&m)["subject"]
                    .as_str()
                    .unwrap_or("")
                    .contains(needle)
                {
                    return m;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no message with subject containing {needle:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The stored envelope and headers of a message.
pub fn envelope(msg: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(msg.join("envelope.json")).unwrap()).unwrap()
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
