//! The domain's and the ledger's answers as wire messages.

use super::pb;
use super::requests::timestamp;
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
    }
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
