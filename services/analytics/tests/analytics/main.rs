//! Analytics tests.
