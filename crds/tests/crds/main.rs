//! Integration tests of `titan-crds`: one binary with a module per area.

mod cel;
mod examples;
