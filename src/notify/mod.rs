//! Notifications: e-mail through an SMTP relay (the only place lettre appears) and webhooks,
//! used by the compliance reports and the alerts alike.

pub mod mail;
pub mod sinks;
pub mod webhook;
