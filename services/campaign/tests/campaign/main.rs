//! The campaign service against real servers: PostgreSQL, ClickHouse (a hand-made
//! analytics_events data set), a real SMTP server (aiosmtpd, started per test from
//! `TITAN_TEST_AIOSMTPD`, writing each message to a maildir the test reads) and an HTTP
//! provider stub; a person's export and erasure.

mod privacy;
mod report;
mod rules;
mod sending;
mod support;
mod triggers;
mod variants;
