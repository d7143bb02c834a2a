//! Notifications: e-mail through an SMTP relay (the only place lettre appears), used by the
//! compliance reports and the daemon's alerts alike.

pub mod mail;
