//! The loyalty points service: one Temporal entity workflow per customer,
//! a gRPC API, and the worker that runs them, in one process.

pub mod activities;
pub mod domain;
pub mod ledger;
pub mod workflow;
