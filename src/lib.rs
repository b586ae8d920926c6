//! The loyalty points service: one Temporal entity workflow per customer,
//! a gRPC API, and the worker that runs them, in one process.
//!
//! The modules, from the rules outwards (each uses only those before it,
//! and `config`, `app` and `cli` the ones they assemble):
//! - [`domain`]: the pure loyalty rules; the account's decisions are one
//!   `Command` and one `LoyaltyState::apply` (`domain::command`).
//! - [`workflow`]: `LoyaltyEntityWorkflow`, whose handlers hand commands to
//!   `apply` and whose run loop writes the decisions behind; [`activities`]
//!   its activities (the ledger write, the notice period), and [`payload`] its
//!   input and the notice its update results carry.
//! - [`ledger`]: the database, the fenced projection of the decisions, the
//!   lifelong guard of exactly once and the outbox of events; [`webhooks`]
//!   delivers them; [`reconcile`] compares ledger and workflows.
//! - [`grpc`]: `loyalty.v1.LoyaltyService` over the Temporal client and the
//!   ledger; [`readiness`], [`metrics`], [`otel`], [`telemetry`] around it.
//! - [`setting`], [`config`]: settings from the environment, checked at start;
//!   [`clock`]: the wall clock of everything outside the workflow; [`crash`]:
//!   the fault suite's crash points.
//! - [`app`]: one process of any role; [`cli`]: the `loyalty` command;
//!   [`devserver`]: the local Temporal server; [`bench`](mod@bench): `loyalty bench`.

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
pub mod crash;
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
