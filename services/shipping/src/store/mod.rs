//! Where the service keeps its state: PostgreSQL ([`pg`]). Labels go to object storage
//! from the use cases, before the row that names them.

pub mod pg;
