//! `loyalty accrue | redeem | summary`: call a running service. Output is
//! human-readable, or JSON with `--json`; a failure prints the gRPC status
//! and exits with its numeric code.

use std::process::ExitCode;

use serde_json::json;
use tonic::transport::Channel;

use crate::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};

/// Where the service is, and how to print.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Address of the loyalty gRPC API.
    #[arg(long, env = "LOYALTY_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

/// The account, idempotency key and amount of an accrual or redemption.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    #[arg(long)]
    customer: String,
    /// Idempotency key: reuse it to retry safely.
    #[arg(long)]
    event: String,
    #[arg(long)]
    points: i64,
}

/// Options of `loyalty accrue`.
#[derive(Debug, clap::Args)]
pub struct AccrueArgs {
    #[command(flatten)]
    event: EventArgs,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long, default_value = "cli")]
    source: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty redeem`.
#[derive(Debug, clap::Args)]
pub struct RedeemArgs {
    #[command(flatten)]
    event: EventArgs,
    #[arg(long, default_value = "")]
    reward: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[arg(long)]
    customer: String,
    #[command(flatten)]
    target: Target,
}

async fn connect(target: &Target) -> Result<LoyaltyServiceClient<Channel>, tonic::Status> {
    let server =
        if target.server.contains("://") { target.server.clone() } else { format!("http://{}", target.server) };
    LoyaltyServiceClient::connect(server)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot reach {}: {e}", target.server)))
}

/// Prints the outcome: `human` or `json` on success, the status on failure.
fn report<T>(
    result: Result<T, tonic::Status>,
    as_json: bool,
    json: impl Fn(&T) -> serde_json::Value,
    human: impl Fn(&T) -> String,
) -> ExitCode {
    match result {
        Ok(v) if as_json => {
            println!("{}", json(&v));
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!("{}", human(&v));
            ExitCode::SUCCESS
        }
        Err(status) => {
            if as_json {
                eprintln!("{}", json!({"code": format!("{:?}", status.code()), "message": status.message()}));
            } else {
                eprintln!("error: {:?}: {}", status.code(), status.message());
            }
            // gRPC codes are 1..=16 for errors, so the exit code is never 0.
            ExitCode::from(status.code() as u8)
        }
    }
}

pub async fn accrue(args: AccrueArgs) -> ExitCode {
    let EventArgs { customer, event, points } = args.event;
    let request = pb::AccrueRequest {
        customer_id: customer.clone(),
        event_id: event.clone(),
        points,
        reason: args.reason,
        source: args.source,
    };
    let result = async { Ok(connect(&args.target).await?.accrue(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |r| json!({"accepted": true, "customer_id": customer, "event_id": event, "points": points, "workflow_id": r.workflow_id}),
        |_| format!("accepted {points} points for {customer} (event {event})"),
    )
}

pub async fn redeem(args: RedeemArgs) -> ExitCode {
    let EventArgs { customer, event, points } = args.event;
    let request = pb::RedeemRequest { customer_id: customer.clone(), event_id: event, points, reward: args.reward };
    let result = async { Ok(connect(&args.target).await?.redeem(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |r| json!({"redeemed": r.redeemed, "remaining_balance": r.remaining_balance, "reward": r.reward}),
        |r| format!("redeemed {} points for {:?}; {} has {} left", r.redeemed, r.reward, customer, r.remaining_balance),
    )
}

pub async fn summary(args: SummaryArgs) -> ExitCode {
    let request = pb::GetSummaryRequest { customer_id: args.customer };
    let result = async { Ok(connect(&args.target).await?.get_summary(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |s| {
            json!({"customer_id": s.customer_id, "points_balance": s.points_balance, "lifetime_points": s.lifetime_points,
                   "tier": s.tier, "is_active": s.is_active, "points_to_next_tier": s.points_to_next_tier})
        },
        |s| {
            format!(
                "customer {}\n  balance   {}\n  lifetime  {}\n  tier      {}{}\n  status    {}",
                s.customer_id,
                s.points_balance,
                s.lifetime_points,
                s.tier,
                if s.points_to_next_tier > 0 {
                    format!(" ({} to next tier)", s.points_to_next_tier)
                } else {
                    String::new()
                },
                if s.is_active { "active" } else { "closed" }
            )
        },
    )
}
