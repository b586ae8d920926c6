//! The loyalty points service: one Temporal entity workflow per customer,
//! a gRPC API, and the worker that runs them, in one process.

pub mod activities;
pub mod domain;
pub mod ledger;
pub mod workflow;
pub mod config;
pub mod devserver;
pub mod grpc;
pub mod app;
pub mod telemetry;
pub mod cli;
