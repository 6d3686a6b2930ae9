//! Shipping: carriers, rate shopping, shipments and their labels.
#![forbid(unsafe_code)]

pub mod domain;
