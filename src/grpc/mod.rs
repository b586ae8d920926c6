//! The tonic service: request -> domain command -> Temporal call -> response.

pub mod auth;
pub mod batcher;
pub mod closing;
pub mod deadline;
pub mod error;
mod events;
#[cfg(test)]
mod fuzz_tests;
pub mod gate;
mod holds;
pub mod limit;
pub mod orders;
pub mod queue;
pub mod rate;
pub mod requests;
mod responses;
pub mod scope;
pub mod service;
mod updates;

/// Code generated from `proto/loyalty/v1/loyalty.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("loyalty.v1");

    /// Encoded descriptors for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("loyalty_descriptor");
}

pub use error::ApiError;
pub use service::LoyaltyApi;

/// The methods of `loyalty.v1.LoyaltyService` (checked against the proto's
/// descriptor by a test): metrics label only these, so a caller cannot make
/// label values up.
pub const METHODS: [&str; 11] = [
    "Accrue",
    "Redeem",
    "GetSummary",
    "GetHistory",
    "Reverse",
    "Adjust",
    "Reserve",
    "Capture",
    "Release",
    "ListEvents",
    "PreviewAccrual",
];

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn the_method_list_is_the_protos() {
        let set = prost_types::FileDescriptorSet::decode(super::pb::FILE_DESCRIPTOR_SET).unwrap();
        let service = set.file.iter().flat_map(|f| &f.service).find(|s| s.name() == "LoyaltyService").unwrap();
        let mut from_proto: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        let mut listed = super::METHODS.to_vec();
        from_proto.sort();
        listed.sort();
        assert_eq!(listed, from_proto);
    }
}
