//! The tonic service: request -> domain command -> Temporal call -> response.

pub mod auth;
pub mod batcher;
pub mod deadline;
pub mod error;
mod events;
#[cfg(test)]
mod fuzz_tests;
pub mod gate;
mod holds;
pub mod limit;
pub mod requests;
pub mod service;

/// Code generated from `proto/loyalty/v1/loyalty.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("loyalty.v1");

    /// Encoded descriptors for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loyalty_descriptor");
}

pub use error::ApiError;
pub use service::LoyaltyApi;
