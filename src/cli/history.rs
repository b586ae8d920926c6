//! `loyalty history | reverse | adjust`: the account's ledger entries, and
//! the corrections that add to them.

use std::process::ExitCode;

use serde_json::json;

use super::client::{Paging, Target, connect, pages, report};
use crate::grpc::pb;

/// Options of `loyalty history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[arg(long)]
    customer: String,
    #[command(flatten)]
    paging: Paging,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty reverse`.
#[derive(Debug, clap::Args)]
pub struct ReverseArgs {
    #[arg(long)]
    customer: String,
    /// Idempotency key of the reversal.
    #[arg(long)]
    event: String,
    /// The accrual or redemption to reverse.
    #[arg(long)]
    original: String,
    /// Points to reverse; all that the original still holds when absent.
    #[arg(long)]
    points: Option<i64>,
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty adjust`.
#[derive(Debug, clap::Args)]
pub struct AdjustArgs {
    #[arg(long)]
    customer: String,
    /// Idempotency key.
    #[arg(long)]
    event: String,
    /// Signed correction, e.g. --points=-50.
    #[arg(long, allow_hyphen_values = true)]
    points: i64,
    /// Required: why.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    target: Target,
}

fn kind_name(kind: i32) -> &'static str {
    match pb::EntryKind::try_from(kind).unwrap_or(pb::EntryKind::Unspecified) {
        pb::EntryKind::Accrual => "accrual",
        pb::EntryKind::Redemption => "redemption",
        pb::EntryKind::Reversal => "reversal",
        pb::EntryKind::Adjustment => "adjustment",
        pb::EntryKind::Expiry => "expiry",
        pb::EntryKind::Activation => "activation",
        pb::EntryKind::Hold => "hold",
        pb::EntryKind::Capture => "capture",
        pb::EntryKind::Release => "release",
        pb::EntryKind::Expiring => "expiring",
        pb::EntryKind::Opening => "opening",
        pb::EntryKind::Unspecified => "unknown",
    }
}

fn entry_json(e: &pb::HistoryEntry) -> serde_json::Value {
    let at = e.recorded_at.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000).unwrap_or(0);
    json!({"event_id": e.event_id, "kind": kind_name(e.kind), "points": e.points, "balance_after": e.balance_after,
           "lifetime_delta": e.lifetime_delta, "shortfall": e.shortfall, "reason": e.reason, "source": e.source,
           "original_event_id": e.original_event_id, "recorded_at_ms": at,
           "effective_at": e.effective_at.as_ref().map(ToString::to_string),
           "lots": e.lots.iter().map(|d| json!([d.lot_id, d.points])).collect::<Vec<_>>()})
}

fn entry_line(e: &pb::HistoryEntry) -> String {
    let at = e.effective_at.as_ref().or(e.recorded_at.as_ref()).map(prost_types::Timestamp::to_string);
    let at = at.unwrap_or_default();
    let mut line = format!(
        "{at}  {:<10} {:>+10}  balance {:>10}  {}  {}",
        kind_name(e.kind),
        e.points,
        e.balance_after,
        e.event_id,
        e.reason
    );
    if !e.original_event_id.is_empty() {
        line.push_str(&format!("  (reverses {})", e.original_event_id));
    }
    if e.shortfall > 0 {
        line.push_str(&format!("  shortfall {}", e.shortfall));
    }
    if !e.lots.is_empty() {
        let lots: Vec<String> = e.lots.iter().take(5).map(|d| format!("{} {}", d.lot_id, d.points)).collect();
        let more = if e.lots.len() > 5 { format!(" +{} more", e.lots.len() - 5) } else { String::new() };
        line.push_str(&format!("  lots [{}{more}]", lots.join(", ")));
    }
    line
}

pub async fn history(args: HistoryArgs) -> ExitCode {
    let result = async {
        let client = connect(&args.target).await?;
        pages(&args.paging, |page_token| {
            let (mut client, customer_id) = (client.clone(), args.customer.clone());
            async move {
                let request = pb::GetHistoryRequest { customer_id, page_size: args.paging.page_size, page_token };
                let page = client.get_history(request).await?.into_inner();
                Ok((page.entries, page.next_page_token))
            }
        })
        .await
    }
    .await;
    report(
        result,
        args.target.json,
        |(entries, next)| json!({"entries": entries.iter().map(entry_json).collect::<Vec<_>>(), "next_page_token": next}),
        |(entries, next)| {
            let mut out: Vec<String> = entries.iter().map(entry_line).collect();
            if !next.is_empty() {
                out.push(format!("(more: --page-token {next})"));
            }
            out.join("\n")
        },
    )
}

fn change_json(c: &pb::BalanceChange) -> serde_json::Value {
    json!({"points": c.points, "lifetime_delta": c.lifetime_delta, "shortfall": c.shortfall,
           "points_balance": c.points_balance, "lifetime_points": c.lifetime_points, "tier": c.tier})
}

fn change_line(customer: &str, c: &pb::BalanceChange) -> String {
    let shortfall = if c.shortfall > 0 { format!(" (shortfall {})", c.shortfall) } else { String::new() };
    format!(
        "{customer}: balance {:+}{shortfall}, lifetime {:+}; now {} points, {} lifetime, {}",
        c.points, c.lifetime_delta, c.points_balance, c.lifetime_points, c.tier
    )
}

pub async fn reverse(args: ReverseArgs) -> ExitCode {
    let request = pb::ReverseRequest {
        lines: Vec::new(),
        customer_id: args.customer.clone(),
        reverse_event_id: args.event,
        original_event_id: args.original,
        points: args.points,
        reason: args.reason,
    };
    let result =
        async { Ok(connect(&args.target).await?.reverse(request).await?.into_inner().change.unwrap_or_default()) }
            .await;
    report(result, args.target.json, change_json, |c| change_line(&args.customer, c))
}

pub async fn adjust(args: AdjustArgs) -> ExitCode {
    let request = pb::AdjustRequest {
        customer_id: args.customer.clone(),
        event_id: args.event,
        points: args.points,
        reason: args.reason,
    };
    let result =
        async { Ok(connect(&args.target).await?.adjust(request).await?.into_inner().change.unwrap_or_default()) }.await;
    report(result, args.target.json, change_json, |c| change_line(&args.customer, c))
}
