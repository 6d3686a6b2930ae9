//! titan-shipping's integration tests: the HTTP carrier adapter against a local stub, the
//! label read back by a barcode scanner, the use cases with carriers that fail on demand
//! ([`shipments`]), and the service over gRPC on real PostgreSQL, Redis and S3; a person's
//! export and erasure ([`privacy`]).

mod carriers;
mod grpc;
mod label;
mod privacy;
mod shipments;
