//! systemd's notification protocol (`Type=notify`); no-ops when not started by systemd.
//! Messages are sent from a thread of their own: a slow or stuck receiver must never stall the
//! scheduler (a full datagram queue blocks the sender). When the queue is full, status updates
//! are dropped, never the scheduler's time.

use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Duration;

use sd_notify::NotifyState;

enum Message {
    Ready(String),
    Status(String),
    Watchdog,
    Stopping,
}

fn sender() -> Option<&'static SyncSender<Message>> {
    static SENDER: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Message>(64);
            std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for message in rx {
                        let result = match &message {
                            Message::Ready(status) => sd_notify::notify(
                                false,
                                &[NotifyState::Ready, NotifyState::Status(status)],
                            ),
                            Message::Status(status) => {
                                sd_notify::notify(false, &[NotifyState::Status(status)])
                            }
                            Message::Watchdog => sd_notify::notify(false, &[NotifyState::Watchdog]),
                            Message::Stopping => sd_notify::notify(
                                false,
                                &[NotifyState::Stopping, NotifyState::Status("stopping")],
                            ),
                        };
                        if let Err(e) = result {
                            tracing::debug!("sd_notify: {e}");
                        }
                    }
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

fn send(message: Message) {
    if let Some(tx) = sender() {
        let _ = tx.try_send(message);
    }
}

pub fn ready(status: &str) {
    send(Message::Ready(status.to_string()));
}

pub fn status(status: &str) {
    send(Message::Status(status.to_string()));
}

pub fn watchdog() {
    send(Message::Watchdog);
}

/// Waits (briefly) until STOPPING=1 is handed over, since the process exits right after.
pub fn stopping() {
    if let Some(tx) = sender() {
        let _ = tx.send(Message::Stopping);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Half the watchdog timeout systemd set (`WatchdogSec=`), if any: how often to pet it.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}
