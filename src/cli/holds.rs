//! `loyalty reserve`, `capture` and `release`: holds at checkout.

use std::process::ExitCode;

use serde_json::json;

use super::client::{Target, connect, report};
use crate::grpc::pb;

/// Options of `loyalty reserve`.
#[derive(Debug, clap::Args)]
pub struct ReserveArgs {
    #[arg(long)]
    customer: String,
    /// Idempotency key of the hold.
    #[arg(long)]
    hold: String,
    #[arg(long)]
    points: i64,
    /// How long the hold lasts if not captured or released: 30s, 15m, 2h, 1d.
    #[arg(long, default_value = "15m")]
    ttl: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty capture`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    #[arg(long)]
    customer: String,
    #[arg(long)]
    hold: String,
    /// Idempotency key of the spend.
    #[arg(long)]
    event: String,
    /// Points to spend, at most the hold's; the rest goes back.
    #[arg(long)]
    points: i64,
    #[arg(long, default_value = "")]
    reward: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty release`.
#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    #[arg(long)]
    customer: String,
    #[arg(long)]
    hold: String,
    #[command(flatten)]
    target: Target,
}

fn printed(r: &pb::Hold) -> (serde_json::Value, String) {
    let status = match r.status() {
        pb::HoldStatus::Held => "held",
        pb::HoldStatus::Captured => "captured",
        pb::HoldStatus::Released => "released",
        pb::HoldStatus::Expired => "expired",
        pb::HoldStatus::Unspecified => "unknown",
    };
    let expires = r.expires_at.as_ref().map(ToString::to_string);
    let value = json!({"hold_id": r.hold_id, "status": status, "held": r.held, "captured": r.captured,
        "expires_at": expires, "points_balance": r.points_balance, "held_points": r.held_points});
    let mut line = format!("hold {} {status}: {} points", r.hold_id, r.held);
    if r.captured > 0 {
        line.push_str(&format!(", {} captured", r.captured));
    }
    if let Some(at) = expires.filter(|_| r.status() == pb::HoldStatus::Held) {
        line.push_str(&format!(", until {at}"));
    }
    line.push_str(&format!("; balance {}, held {}", r.points_balance, r.held_points));
    (value, line)
}

fn answer(result: Result<pb::Hold, tonic::Status>, as_json: bool) -> ExitCode {
    report(result, as_json, |r| printed(r).0, |r| printed(r).1)
}

/// Sets points aside.
pub async fn reserve(args: ReserveArgs) -> ExitCode {
    let Some(ttl_ms) = crate::setting::parse_duration_ms(&args.ttl) else {
        let status = tonic::Status::invalid_argument(format!("ttl: {:?} is not a duration like 30s or 15m", args.ttl));
        return answer(Err(status), args.target.json);
    };
    let request = pb::ReserveRequest {
        customer_id: args.customer,
        hold_id: args.hold,
        points: args.points,
        ttl: Some(prost_types::Duration { seconds: ttl_ms / 1000, nanos: ((ttl_ms % 1000) * 1_000_000) as i32 }),
    };
    let result =
        async { Ok(connect(&args.target).await?.reserve(request).await?.into_inner().hold.unwrap_or_default()) }.await;
    answer(result, args.target.json)
}

/// Spends (part of) a hold.
pub async fn capture(args: CaptureArgs) -> ExitCode {
    let request = pb::CaptureRequest {
        customer_id: args.customer,
        hold_id: args.hold,
        points: args.points,
        event_id: args.event,
        reward: args.reward,
    };
    let result =
        async { Ok(connect(&args.target).await?.capture(request).await?.into_inner().hold.unwrap_or_default()) }.await;
    answer(result, args.target.json)
}

/// Gives a hold back.
pub async fn release(args: ReleaseArgs) -> ExitCode {
    let request = pb::ReleaseRequest { customer_id: args.customer, hold_id: args.hold };
    let result =
        async { Ok(connect(&args.target).await?.release(request).await?.into_inner().hold.unwrap_or_default()) }.await;
    answer(result, args.target.json)
}
