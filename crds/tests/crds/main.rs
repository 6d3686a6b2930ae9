//! Integration tests of `titan-crds`: one binary with a module per area.

mod admission;
mod cel;
mod examples;
