//! Where the table comes from: a ConfigMap watched through the API server ([`configmap`], in a
//! cluster) or a file read again periodically ([`file`], tests and laptops). Both hand what
//! they read to [`Router::reload`](crate::app::Router::reload), which keeps the served table
//! when the new one is refused.

pub mod configmap;
pub mod file;
