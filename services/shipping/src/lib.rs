//! Shipping: carriers, rate shopping, shipments and their labels.
#![forbid(unsafe_code)]

pub mod carrier;
pub mod domain;
pub mod label;
