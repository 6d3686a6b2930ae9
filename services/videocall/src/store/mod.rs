//! Where calls live: PostgreSQL ([`pg`]). Live frames go through kit's hub, not a store.

pub mod pg;
