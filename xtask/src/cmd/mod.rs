//! The subcommands of `cargo xtask`, one module each.

pub mod bench;
pub mod cell;
pub mod chart;
pub mod datastores;
pub mod kube_bench;
pub mod test;
