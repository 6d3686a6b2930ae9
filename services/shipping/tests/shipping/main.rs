//! titan-shipping's integration tests: the HTTP carrier adapter against a local stub, and the
//! label read back by a barcode scanner.

mod carriers;
mod label;
