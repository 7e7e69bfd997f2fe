//! Delivery of cases into dispute systems: the sans-IO [`outbox`], the
//! HMAC [`sign`]atures, the CAP 1.2 rendering ([`cap`]) and the tokio
//! [`driver`] that connects them to HTTP and the store.

pub mod cap;
pub mod driver;
pub mod outbox;
pub mod sign;
