//! Warehouse: warehouses with zones and bins, a stock ledger per (warehouse, product, bin)
//! where every change is a movement row written in the same transaction and neither
//! `available` nor `reserved` ever goes below zero, reservations for orders (reserve, pick,
//! ship, or release; expired ones released by a periodic job), allocation of an order across
//! ACTIVE warehouses, putaway suggestions and pick lists in bin walk order.
//!
//! [`domain`] holds the rules, pure and unit tested.

#![forbid(unsafe_code)]

pub mod domain;
