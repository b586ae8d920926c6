//! The domain's and the ledger's answers as wire messages.

use super::pb;
use super::requests::timestamp;
use crate::domain::earning::{Earned, ReturnedLine, RuleRef};
use crate::domain::{BalanceChange, HoldResult, HoldStatus};
use crate::ledger::HistoryEntry;

/// A reversal's or adjustment's answer.
pub(super) fn balance_change(c: BalanceChange) -> pb::BalanceChange {
    pb::BalanceChange {
        points: c.balance_delta,
        lifetime_delta: c.lifetime_delta,
        shortfall: c.shortfall,
        points_balance: c.points_balance,
        lifetime_points: c.lifetime_points,
        tier: c.tier.as_str().to_owned(),
    }
}

/// A ledger row as history shows it.
pub(super) fn history_entry(e: HistoryEntry) -> pb::HistoryEntry {
    use crate::domain::EntryKind as K;
    let kind = match e.kind {
        K::Accrual => pb::EntryKind::Accrual,
        K::Redemption => pb::EntryKind::Redemption,
        K::Reversal => pb::EntryKind::Reversal,
        K::Adjustment => pb::EntryKind::Adjustment,
        K::Expiry => pb::EntryKind::Expiry,
        K::Activation => pb::EntryKind::Activation,
        K::Hold => pb::EntryKind::Hold,
        K::Capture => pb::EntryKind::Capture,
        K::Release => pb::EntryKind::Release,
        K::Expiring => pb::EntryKind::Expiring,
        K::Opening => pb::EntryKind::Opening,
    };
    pb::HistoryEntry {
        event_id: e.event_id,
        kind: kind.into(),
        points: e.points,
        balance_after: e.balance_after,
        reason: e.reason,
        source: e.source,
        recorded_at: Some(timestamp(e.recorded_at_ms)),
        effective_at: Some(timestamp(if e.effective_at_ms > 0 { e.effective_at_ms } else { e.recorded_at_ms })),
        lots: e.draws.into_iter().map(|d| pb::LotDraw { lot_id: d.lot, points: d.points }).collect(),
        lifetime_delta: e.lifetime_delta,
        shortfall: e.shortfall,
        original_event_id: e.reverses.unwrap_or_default(),
        breakdown: e.order.earned.map(|earned| breakdown(&earned)),
        returned_lines: e.order.returned.iter().map(returned_line).collect(),
    }
}

/// A rule set version's reference.
pub(super) fn rule_set(r: &RuleRef) -> pb::RuleSetRef {
    pb::RuleSetRef { id: r.id.clone(), version: r.version, checksum: r.checksum.clone() }
}

/// How an order's points were computed.
pub(super) fn breakdown(e: &Earned) -> pb::AccrualBreakdown {
    pb::AccrualBreakdown {
        order_id: e.order_id.clone(),
        rule_set: Some(rule_set(&e.rule_set)),
        rounding: serde_json::to_value(e.rounding).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        exact_points: e.exact.to_string(),
        lines: e
            .lines
            .iter()
            .map(|l| pb::LineBreakdown {
                line: l.line as i32,
                sku: l.sku.clone(),
                quantity: l.quantity,
                points: l.points.to_string(),
            })
            .collect(),
        order_points: e.order.to_string(),
        rules: e
            .rules
            .iter()
            .map(|r| pb::RuleBreakdown { rule: r.rule.clone(), points: r.points.to_string(), capped: r.capped })
            .collect(),
    }
}

fn returned_line(l: &ReturnedLine) -> pb::ReturnedLine {
    pb::ReturnedLine { line: l.line as i32, quantity: l.quantity }
}

/// A hold's answer.
pub(super) fn hold(r: HoldResult) -> pb::Hold {
    let status = match r.status {
        HoldStatus::Held => pb::HoldStatus::Held,
        HoldStatus::Captured => pb::HoldStatus::Captured,
        HoldStatus::Released => pb::HoldStatus::Released,
        HoldStatus::Expired => pb::HoldStatus::Expired,
    };
    pb::Hold {
        hold_id: r.hold_id,
        status: status.into(),
        held: r.held,
        captured: r.captured,
        expires_at: Some(timestamp(r.expires_at_ms)),
        points_balance: r.points_balance,
        held_points: r.held_points,
    }
}
