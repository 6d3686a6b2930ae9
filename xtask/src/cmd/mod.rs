//! The subcommands of `cargo xtask`, one module each.

pub mod cell;
pub mod datastores;
pub mod test;
