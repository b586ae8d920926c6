//! The loyalty points service: one Temporal entity workflow per customer,
//! a gRPC API, and the worker that runs them, in one process.

#![warn(missing_docs)]

// The SDK's handler macros generate undocumented constants in these two.
#[allow(missing_docs)]
pub mod activities;
pub mod app;
#[allow(missing_docs)]
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod devserver;
pub mod domain;
pub mod grpc;
pub mod ledger;
pub mod metrics;
pub mod otel;
pub mod payload;
pub mod readiness;
pub mod reconcile;
pub mod setting;
pub mod telemetry;
pub mod webhooks;
#[allow(missing_docs)]
pub mod workflow;
