//! The account's decisions, through `LoyaltyState::apply` as the workflow
//! calls it: pure rules, no server (the domain's public API only).

use loyalty::domain::answers::RESULTS_WINDOW;
use loyalty::domain::command::{Command, Reply};
use loyalty::domain::compaction::UNMERGED_LOTS;
use loyalty::domain::corrections::{AdjustmentRequest, BalanceChange, ReversalRequest};
use loyalty::domain::dedup::DEDUP_WINDOW;
use loyalty::domain::holds::{CaptureRequest, HoldResult, HoldStatus, ReleaseRequest, ReserveRequest};
use loyalty::domain::kind::EntryKind;
use loyalty::domain::lots::{CARRIED_LOT, drawn};
use loyalty::domain::messages::{PointsEvent, RedemptionRequest, RedemptionResult};
use loyalty::domain::movement::{Original, Refusal, Totals};
use loyalty::domain::originals::{LedgerView, ORIGINALS_WINDOW};
use loyalty::domain::projection::{Known, MAX_BATCH};
use loyalty::domain::rejection::{Ignored, Rejection};
use loyalty::domain::state::{LoyaltyState, STATE_VERSION};
use loyalty::domain::tier::Tier;
use loyalty::domain::time::Millis;

fn event(id: &str, points: i64) -> PointsEvent {
    PointsEvent {
        event_id: id.into(),
        points,
        reason: "purchase".into(),
        source: "web".into(),
        ledger_checked: true,
        ..Default::default()
    }
}

fn dated(id: &str, points: i64, active_from: Option<Millis>, expires: Option<Millis>) -> PointsEvent {
    PointsEvent { active_from_ms: active_from, expires_at_ms: expires, ..event(id, points) }
}

fn reversal(id: &str, original: &str, points: Option<i64>) -> ReversalRequest {
    ReversalRequest {
        event_id: id.into(),
        original_event_id: original.into(),
        points,
        reason: "refund".into(),
        ..Default::default()
    }
}

fn adjustment(id: &str, points: i64) -> AdjustmentRequest {
    AdjustmentRequest { event_id: id.into(), points, reason: "goodwill".into(), ..Default::default() }
}

fn reserve_req(id: &str, points: i64, ttl_ms: Millis) -> ReserveRequest {
    ReserveRequest { hold_id: id.into(), points, ttl_ms, ledger_known: false }
}

/// The commands as tests send them, answers unwrapped.
trait Account {
    fn accrue_at(&mut self, e: PointsEvent, now: Millis) -> Vec<(String, Ignored)>;
    fn redeem_at(&mut self, id: &str, points: i64, now: Millis) -> Result<RedemptionResult, Rejection>;
    fn change(&mut self, command: Command, now: Millis) -> Result<BalanceChange, Rejection>;
    fn hold(&mut self, command: Command, now: Millis) -> Result<HoldResult, Rejection>;
    fn project_all(&mut self, now: Millis) -> Vec<(String, Ignored)>;
    fn hold_draws(&self, id: &str) -> Vec<(String, i64)>;
    fn next_due_at(&self) -> Option<Millis>;
}

impl Account for LoyaltyState {
    fn accrue_at(&mut self, e: PointsEvent, now: Millis) -> Vec<(String, Ignored)> {
        match self.apply(Command::Accrue(e), now) {
            Ok(Reply::Accrued(ignored)) => ignored,
            other => panic!("{other:?}"),
        }
    }

    fn redeem_at(&mut self, id: &str, points: i64, now: Millis) -> Result<RedemptionResult, Rejection> {
        let req = RedemptionRequest { event_id: id.into(), points, reward: "coffee".into() };
        self.apply(Command::Redeem(req), now).map(|r| match r {
            Reply::Redeemed(r) => r,
            other => panic!("{other:?}"),
        })
    }

    fn change(&mut self, command: Command, now: Millis) -> Result<BalanceChange, Rejection> {
        self.apply(command, now).map(|r| match r {
            Reply::Changed(c) => c,
            other => panic!("{other:?}"),
        })
    }

    fn hold(&mut self, command: Command, now: Millis) -> Result<HoldResult, Rejection> {
        self.apply(command, now).map(|r| match r {
            Reply::Hold(h) => h,
            other => panic!("{other:?}"),
        })
    }

    /// The ledger takes every entry and holds none of the checked accruals.
    fn project_all(&mut self, now: Millis) -> Vec<(String, Ignored)> {
        let batch = self.projection(usize::MAX, usize::MAX);
        self.written(&batch);
        let verdicts = vec![Ok(()); batch.check.len()];
        match self.apply(Command::Checked(verdicts), now) {
            Ok(Reply::Accrued(ignored)) => ignored,
            other => panic!("{other:?}"),
        }
    }

    fn hold_draws(&self, id: &str) -> Vec<(String, i64)> {
        let hold = self.holds.iter().find(|h| h.hold_id == id).unwrap();
        hold.draws.iter().map(|d| (d.lot.clone(), d.points)).collect()
    }

    fn next_due_at(&self) -> Option<Millis> {
        self.next_due().map(|(at, _)| at)
    }
}

#[test]
fn decisions_are_numbered_in_arrival_order_and_move_totals_at_once() {
    let mut s = LoyaltyState::open("c");
    assert!(s.accrue_at(event("a", 600), 0).is_empty());
    assert_eq!(s.redeem_at("r", 100, 0).unwrap().remaining_balance, 500);
    s.accrue_at(event("b", 500), 0);
    assert_eq!((s.points_balance, s.lifetime_points, s.tier), (1_000, 1_100, Tier::Silver));
    let seqs: Vec<_> = s.unprojected.iter().map(|e| (e.seq, e.movement.event_id.as_str())).collect();
    assert_eq!(seqs, vec![(1, "a"), (2, "r"), (3, "b")]);
    let tier = s.unprojected[2].tier_change.as_ref().expect("the entry that crossed 1,000 carries the change");
    assert_eq!((tier.new_tier, tier.caused_by.as_str()), (Tier::Silver, "b"));
    assert_eq!(s.unprojected[2].before(), Totals { balance: 500, lifetime: 600 });
}

#[test]
fn a_resend_is_caught_while_its_entry_waits_for_the_ledger_and_after() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("a", 10), 0);
    assert_eq!(s.accrue_at(event("a", 10), 0), vec![("a".to_owned(), Ignored::Duplicate)]);
    let first = s.redeem_at("r", 4, 0).unwrap();
    assert_eq!(s.redeem_at("r", 4, 0), Ok(first.clone()), "the original answer");
    assert_eq!(s.redeem_at("r", 5, 0), Err(Rejection::EventIdReused("r".into())));
    assert_eq!(s.redeem_at("a", 1, 0), Err(Rejection::EventIdReused("a".into())), "an accrual's id");
    s.project_all(0);
    assert_eq!(s.redeem_at("r", 4, 0), Ok(first), "answers outlive their projection");
    assert_eq!(s.redeem_at("a", 1, 0), Err(Rejection::Forgotten("a".into())), "the ledger knows");
    assert_eq!(s.points_balance, 6);
}

#[test]
fn a_refusal_changes_nothing() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("a", 100), 0);
    let before = s.clone();
    assert_eq!(s.redeem_at("r", 101, 0), Err(Rejection::Insufficient { requested: 101, available: 100 }));
    assert_eq!(s.redeem_at("r", 0, 0).unwrap_err().failure_type(), "ValidationError");
    assert_eq!(s.redeem_at("bad id", 1, 0).unwrap_err().failure_type(), "ValidationError");
    assert_eq!(s.change(Command::Adjust(adjustment("j", 0)), 0).unwrap_err().failure_type(), "ValidationError");
    assert_eq!(s, before, "a refusal changes nothing");
    s.apply(Command::Close, 0).unwrap();
    assert_eq!(s.redeem_at("r", 1, 0), Err(Rejection::Inactive));
}

#[test]
fn reversals_act_on_what_the_original_still_holds() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("a", 100), 0);
    s.redeem_at("r", 30, 0).unwrap();
    let part = s.change(Command::Reverse(reversal("v1", "a", Some(40))), 0).unwrap();
    assert_eq!((part.balance_delta, part.lifetime_delta, part.points_balance), (-40, -40, 30));
    let rest = s.change(Command::Reverse(reversal("v2", "a", None)), 0).unwrap();
    assert_eq!((rest.balance_delta, rest.shortfall, rest.points_balance), (-30, 30, 0), "floors at zero");
    assert!(matches!(
        s.change(Command::Reverse(reversal("v3", "a", None)), 0),
        Err(Rejection::Refused(Refusal::ExceedsOriginal { remaining: 0, .. }))
    ));
    assert_eq!(s.change(Command::Reverse(reversal("v2", "a", None)), 0), Ok(rest), "a resend is answered");
    let back = s.change(Command::Reverse(reversal("v4", "r", None)), 0).unwrap();
    assert_eq!((back.balance_delta, back.lifetime_delta), (30, 0), "a cancelled reward returns its points");
    assert!(matches!(s.change(Command::Reverse(reversal("v5", "v1", None)), 0), Err(Rejection::Refused(_))));
    assert_eq!(s.change(Command::Adjust(adjustment("j", -31)), 0).unwrap_err().failure_type(), "InsufficientPoints");
    assert_eq!(s.change(Command::Adjust(adjustment("j", 5)), 0).unwrap().points_balance, 35);
}

#[test]
fn an_old_original_needs_a_ledger_view_newer_than_what_memory_forgot() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("old", 50), 0);
    for i in 0..ORIGINALS_WINDOW {
        s.accrue_at(event(&format!("e{i}"), 1), 0);
    }
    let with_view = |view| ReversalRequest { ledger: view, ..reversal("v", "old", None) };
    assert_eq!(s.change(Command::Reverse(with_view(None)), 0), Err(Rejection::OriginalUnknown("old".into())));
    let held = Original { kind: EntryKind::Accrual, requested: 50, reversed: 10 };
    let stale = LedgerView { as_of_seq: 0, original: Some(held) };
    assert_eq!(s.change(Command::Reverse(with_view(Some(stale))), 0), Err(Rejection::OriginalUnknown("old".into())));
    let fresh = LedgerView { as_of_seq: 1, original: Some(held) };
    assert_eq!(s.change(Command::Reverse(with_view(Some(fresh))), 0).unwrap().balance_delta, -40);
    let again = ReversalRequest { ledger: Some(fresh), ..reversal("v2", "old", None) };
    assert!(
        matches!(s.change(Command::Reverse(again), 0), Err(Rejection::Refused(Refusal::ExceedsOriginal { .. }))),
        "memory now tracks it, whatever the (older) view says"
    );
    let none = LedgerView { as_of_seq: s.seq, original: None };
    let unknown = ReversalRequest { ledger: Some(none), ..reversal("v3", "nope", None) };
    assert!(matches!(s.change(Command::Reverse(unknown), 0), Err(Rejection::Refused(Refusal::OriginalNotFound(_)))));
}

#[test]
fn unchecked_accruals_wait_for_the_ledger_then_apply_in_order() {
    let mut s = LoyaltyState::open("c");
    let unchecked = |id: &str, p| PointsEvent { ledger_checked: false, ..event(id, p) };
    let batch = vec![unchecked("x", 5), unchecked("y", 7), unchecked("z", 9), unchecked("bad", -1)];
    let ignored = match s.apply(Command::AccrueBatch(batch), 0) {
        Ok(Reply::Accrued(ignored)) => ignored,
        other => panic!("{other:?}"),
    };
    assert_eq!(ignored.len(), 1, "an invalid signal is never queued: {ignored:?}");
    assert_eq!((s.points_balance, s.unapplied_points()), (0, 21));
    let batch = s.projection(10, usize::MAX);
    assert_eq!(batch.check.len(), 3);
    s.written(&batch);
    let verdicts = [Known::New, Known::Same, Known::Other].map(Known::verdict).to_vec();
    let ignored = match s.apply(Command::Checked(verdicts), 0) {
        Ok(Reply::Accrued(ignored)) => ignored,
        other => panic!("{other:?}"),
    };
    assert_eq!(ignored, vec![("y".into(), Ignored::InLedger), ("z".into(), Ignored::ReusedInLedger)]);
    assert_eq!((s.points_balance, s.unapplied_points()), (5, 0));
    assert_eq!(s.unprojected.len(), 1, "x waits for the next write");
}

#[test]
fn a_write_is_bounded_in_bytes_but_always_takes_something() {
    let mut s = LoyaltyState::open("c");
    let long = "\u{1F600}".repeat(256);
    for i in 0..10 {
        s.accrue_at(PointsEvent { reason: long.clone(), source: long.clone(), ..event(&format!("e{i}"), 1) }, 0);
    }
    let one = s.unprojected[0].movement.approximate_size();
    assert!(one > 2_000, "two 256-character 4-byte texts: {one}");
    assert_eq!(s.projection(100, 3 * one).entries.len(), 3);
    assert_eq!(s.projection(100, 0).entries.len(), 1, "a zero budget still takes one entry");
}

#[test]
fn every_unwritten_entry_stays_in_the_window() {
    let mut s = LoyaltyState::open("c");
    for i in 0..DEDUP_WINDOW + 50 {
        s.accrue_at(event(&format!("e{i}"), 1), 0);
    }
    assert_eq!(s.accrue_at(event("e0", 1), 0).len(), 1, "e0 is not written yet: still known");
    s.project_all(0);
    s.accrue_at(event("next", 1), 0);
    assert!(s.accrue_at(event("e0", 1), 0).is_empty(), "written and out of the window: the ledger check guards it");
}

#[test]
fn the_ledger_write_starts_where_the_ledger_is_and_answers_are_bounded() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("a", 1_000), 0);
    s.project_all(0);
    for i in 0..RESULTS_WINDOW + 10 {
        s.redeem_at(&format!("r{i}"), 1, 0).unwrap();
    }
    let batch = s.projection(5, usize::MAX);
    assert_eq!((batch.after_seq, batch.entries.len()), (1, 5));
    assert_eq!(batch.totals_before, Totals { balance: 1_000, lifetime: 1_000 });
    assert_eq!(s.recent_redemptions.len(), RESULTS_WINDOW + 10, "unwritten answers are all kept");
    s.written(&batch);
    assert_eq!(s.projected_seq, 6);
    s.project_all(0);
    assert_eq!(s.recent_redemptions.len(), RESULTS_WINDOW);
    assert_eq!(s.recent_redemptions[0].request.event_id, "r10", "the oldest go first");
    assert!(s.unprojected.is_empty());
}

#[test]
fn a_pending_lot_is_not_spendable_nor_counted_until_it_activates_at_its_time() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("a", 1_000, Some(100), None), 10);
    assert_eq!((s.points_balance, s.lifetime_points, s.lots.pending()), (0, 0, 1_000));
    assert_eq!(s.redeem_at("r", 1, 50).unwrap_err(), Rejection::Insufficient { requested: 1, available: 0 });
    assert_eq!(s.next_due_at(), Some(100));
    assert_eq!(s.advance(99), 0);
    // The worker was down: the activation is applied late, dated when due.
    assert_eq!(s.advance(5_000), 1);
    assert_eq!((s.points_balance, s.lifetime_points, s.tier), (1_000, 1_000, Tier::Silver));
    let activation = s.unprojected.last().unwrap();
    assert_eq!((activation.movement.kind, activation.at_ms), (EntryKind::Activation, 100));
    assert!(activation.tier_change.is_some(), "the tier is re-evaluated at activation");
    assert_eq!(s.summary().pending_points, 0);
}

#[test]
fn points_are_announced_once_a_warning_period_before_they_expire() {
    let mut s = LoyaltyState::open("c");
    let with_warning = |id: &str, points, expires| PointsEvent {
        expiry_warning_ms: Some(5_000),
        ..dated(id, points, None, Some(expires))
    };
    s.accrue_at(with_warning("a", 100, 100_000), 0);
    s.accrue_at(with_warning("b", 50, 103_000), 0);
    s.accrue_at(with_warning("c", 70, 200_000), 0);
    s.accrue_at(with_warning("d", 30, 300_000), 0);
    assert_eq!(s.next_due_at(), Some(95_000));
    assert_eq!(s.advance(94_999), 0);
    // Lots expiring within the period (and as long again) make one announcement.
    assert_eq!(s.advance(95_000), 1);
    let e = s.unprojected.last().unwrap();
    assert_eq!((e.movement.kind, e.effect.requested, e.effect.balance_delta), (EntryKind::Expiring, 150, 0));
    assert_eq!((e.at_ms, e.expires_at_ms, e.draws.len()), (95_000, Some(100_000), 2));
    assert_eq!(s.points_balance, 250, "an announcement moves nothing");
    assert_eq!(s.advance(99_999), 0, "announced once");
    assert_eq!(s.advance(100_000), 1, "then they expire");
    // Points spent before their announcement are not announced.
    s.redeem_at("r", 120, 101_000).unwrap();
    assert_eq!(s.next_due_at(), Some(295_000), "c was spent: only d is left to announce");
    // A longer period from a new accrual moves every lot's announcement.
    s.accrue_at(PointsEvent { expiry_warning_ms: Some(200_000), ..dated("e", 1, None, None) }, 150_000);
    let last = s.unprojected.last().unwrap();
    assert_eq!(
        (last.movement.kind, last.effect.requested),
        (EntryKind::Expiring, 30),
        "d is inside the new period: announced now"
    );
}

#[test]
fn entries_are_dated_in_sequence_order() {
    // A lot pending for 5 s that expires inside the warning period: its
    // announcement comes due (by the warning rule) before its activation,
    // and is found only once the lot is active.
    let mut s = LoyaltyState::open("c");
    let e = PointsEvent { expiry_warning_ms: Some(60_000), ..dated("a", 100, Some(5_000), Some(30_000)) };
    s.accrue_at(e, 0);
    assert_eq!(s.advance(10_000), 2);
    let kinds: Vec<_> = s.unprojected.iter().map(|e| (e.seq, e.movement.kind, e.at_ms)).collect();
    assert_eq!(
        kinds,
        vec![(1, EntryKind::Accrual, 0), (2, EntryKind::Activation, 5_000), (3, EntryKind::Expiring, 5_000)],
        "the announcement is dated no earlier than the activation before it"
    );
}

#[test]
fn lots_expire_soonest_first_and_spent_points_never_expire() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("old", 100, None, Some(1_000)), 0);
    s.accrue_at(dated("new", 100, None, Some(2_000)), 0);
    s.redeem_at("r", 150, 10).unwrap();
    assert_eq!(s.unprojected.last().unwrap().draws.len(), 2, "the redemption records its lots");
    assert_eq!(s.summary().next_expiry_at_ms, Some(2_000), "old is spent; new has 50 left");
    assert_eq!(s.advance(3_000), 1, "one expiry");
    assert_eq!((s.points_balance, s.lifetime_points), (0, 200), "expiry leaves lifetime alone");
    let expiry = s.unprojected.last().unwrap();
    assert_eq!((expiry.movement.kind, expiry.effect.balance_delta, expiry.at_ms), (EntryKind::Expiry, -50, 2_000));
    s.compact_lots();
    assert!(s.lots.lots.is_empty(), "spent and expired lots leave the state");
    assert_eq!(s.next_due(), None);
}

#[test]
fn a_redemption_after_a_missed_expiry_cannot_spend_the_expired_points() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("a", 100, None, Some(1_000)), 0);
    assert!(matches!(s.redeem_at("r", 1, 1_500), Err(Rejection::Insufficient { .. })));
    assert_eq!(s.unprojected.last().unwrap().movement.kind, EntryKind::Expiry, "applied before the command");
}

#[test]
fn a_clawback_takes_its_own_lot_first_pending_or_active() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("active", 100, None, Some(5_000)), 0);
    s.accrue_at(dated("pending", 40, Some(1_000), None), 0);
    let change = s.change(Command::Reverse(reversal("v1", "pending", None)), 10).unwrap();
    assert_eq!((change.balance_delta, change.lifetime_delta), (0, 0), "never counted, nothing to take back");
    assert_eq!((s.points_balance, s.lots.pending()), (100, 0));
    assert_eq!(s.advance(2_000), 0, "nothing left to activate");
    let change = s.change(Command::Reverse(reversal("v2", "active", None)), 20).unwrap();
    assert_eq!((change.balance_delta, change.lifetime_delta, s.points_balance), (-100, -100, 0));
}

#[test]
fn a_refund_beyond_the_balance_floors_or_goes_negative_as_the_program_says() {
    for allow_negative in [false, true] {
        let mut s = LoyaltyState::open("c");
        s.accrue_at(event("a", 100), 0);
        s.redeem_at("r", 80, 1).unwrap();
        let refund = ReversalRequest { allow_negative, ..reversal("v", "a", None) };
        let change = s.change(Command::Reverse(refund), 2).unwrap();
        assert_eq!(s.lifetime_points, 0, "the purchase did not happen");
        if allow_negative {
            assert_eq!((change.balance_delta, change.shortfall, s.points_balance), (-100, 0, -80));
            assert!(matches!(s.redeem_at("r2", 1, 3), Err(Rejection::Insufficient { .. })), "refused while negative");
            s.accrue_at(event("b", 50), 3);
            assert_eq!((s.points_balance, s.lots.active()), (-30, 0), "new points pay the debt first");
            s.accrue_at(event("c", 50), 4);
            assert_eq!((s.points_balance, s.lots.active(), s.lots.debt), (20, 20, 0));
        } else {
            assert_eq!((change.balance_delta, change.shortfall, s.points_balance), (-20, 80, 0));
        }
    }
}

#[test]
fn holds_set_points_aside_then_capture_release_or_expire() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("soon", 50, None, Some(10_000)), 0);
    s.accrue_at(dated("late", 100, None, None), 0);
    let held = s.hold(Command::Reserve(reserve_req("h1", 80, 5_000)), 100).unwrap();
    assert_eq!((held.status, held.points_balance, held.held_points), (HoldStatus::Held, 70, 80));
    assert_eq!(s.hold(Command::Reserve(reserve_req("h1", 80, 5_000)), 200), Ok(held.clone()), "a resend");
    assert!(matches!(s.hold(Command::Reserve(reserve_req("h1", 81, 5_000)), 200), Err(Rejection::EventIdReused(_))));
    assert!(matches!(s.hold(Command::Reserve(reserve_req("h2", 71, 5_000)), 200), Err(Rejection::Insufficient { .. })));

    let capture = CaptureRequest { hold_id: "h1".into(), points: 60, event_id: "c1".into(), reward: "mug".into() };
    assert!(matches!(
        s.hold(Command::Capture(CaptureRequest { points: 81, ..capture.clone() }), 300),
        Err(Rejection::Invalid(_))
    ));
    let done = s.hold(Command::Capture(capture.clone()), 300).unwrap();
    assert_eq!((done.status, done.captured, done.points_balance, done.held_points), (HoldStatus::Captured, 60, 90, 0));
    let entry = s.unprojected.last().unwrap();
    assert_eq!((entry.movement.kind, entry.effect.balance_delta), (EntryKind::Capture, 20), "the rest given back");
    assert_eq!(entry.draws[0].lot, "soon", "the capture spent the soonest-expiring points");
    assert_eq!(s.hold(Command::Capture(capture), 400), Ok(done), "a resend is answered");
    let release = |id: &str| Command::Release(ReleaseRequest { hold_id: id.into() });
    assert!(matches!(s.hold(release("h1"), 400), Err(Rejection::HoldNotOpen { .. })));
    assert!(matches!(s.hold(release("nope"), 400), Err(Rejection::HoldNotFound(_))));

    s.hold(Command::Reserve(reserve_req("h2", 90, 1_000)), 500).unwrap();
    assert_eq!(s.next_due_at(), Some(1_500));
    assert_eq!(s.advance(1_600), 1, "the hold released itself");
    assert_eq!((s.points_balance, s.held_points()), (90, 0));
    assert_eq!(s.hold(release("h2"), 1_700).unwrap().status, HoldStatus::Expired, "answers as before");

    // Held points do not expire while held; given back late, they expire at once.
    s.accrue_at(dated("soon2", 40, None, Some(10_000)), 2_000);
    s.hold(Command::Reserve(reserve_req("h3", 90, 20_000)), 2_000).unwrap();
    assert_eq!(s.hold_draws("h3"), vec![("soon2".to_owned(), 40), ("late".to_owned(), 50)]);
    assert_eq!(s.advance(12_000), 0, "the soon2 lot's points are held");
    s.hold(release("h3"), 12_000).unwrap();
    let kinds: Vec<_> = s.unprojected.iter().rev().take(2).map(|e| e.movement.kind).collect();
    assert_eq!(kinds, [EntryKind::Expiry, EntryKind::Release], "given back, then expired in the same decision");
    assert_eq!(s.points_balance, 90, "soon2's 40 points came back and expired at once");
}

#[test]
fn an_idle_balance_expires_after_the_inactivity_period_and_activity_resets_it() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(PointsEvent { expire_inactive_after_ms: Some(1_000), ..event("a", 100) }, 0);
    s.redeem_at("r", 10, 800).unwrap();
    assert_eq!(s.next_due_at(), Some(1_800), "the spend was activity");
    assert_eq!(s.advance(5_000), 1);
    assert_eq!((s.points_balance, s.unprojected.last().unwrap().at_ms), (0, 1_800));
    assert_eq!(s.next_due(), None, "nothing left to expire");
}

#[test]
fn a_closing_account_gives_holds_back_and_finished_holds_forget_their_draws() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(event("a", 100), 0);
    s.hold(Command::Reserve(reserve_req("h1", 30, 60_000)), 1).unwrap();
    s.hold(Command::Reserve(reserve_req("h2", 20, 60_000)), 1).unwrap();
    let capture = CaptureRequest { hold_id: "h1".into(), points: 30, event_id: "k1".into(), reward: String::new() };
    s.hold(Command::Capture(capture.clone()), 2).unwrap();
    assert!(s.finished_holds[0].hold.draws.is_empty());
    let again = CaptureRequest { event_id: "k2".into(), ..capture };
    assert!(matches!(
        s.hold(Command::Capture(again), 3),
        Err(Rejection::HoldNotOpen { status: HoldStatus::Captured, .. })
    ));
    s.apply(Command::Close, 4).unwrap();
    assert_eq!((s.points_balance, s.held_points(), s.is_active), (70, 0, false));
    let known = ReserveRequest { ledger_known: true, ..reserve_req("old", 1, 60_000) };
    assert!(matches!(s.hold(Command::Reserve(known), 5), Err(Rejection::EventIdReused(_))), "a hold id the ledger has");
}

/// A validator decides what `apply` would at the task's time, on a copy
/// advanced to it when something fell due; without the time it leaves "not
/// enough points" to the handler while points may have come due.
#[test]
fn a_validator_at_the_tasks_time_decides_as_the_handler_would() {
    let mut s = LoyaltyState::open("c");
    s.accrue_at(dated("a", 200, Some(1_000), None), 0);
    let redeem = Command::Redeem(RedemptionRequest { event_id: "r".into(), points: 200, reward: String::new() });
    for now in [500, 999, 1_000, 5_000] {
        let vetted = s.vet(&redeem, Some(now));
        let applied = s.clone().apply(redeem.clone(), now).map(drop);
        assert_eq!(vetted, applied, "at {now}");
    }
    assert!(matches!(s.vet(&redeem, Some(500)), Err(Rejection::Insufficient { .. })), "still pending at 500");
    let before = s.clone();
    assert_eq!(s.vet(&redeem, Some(1_000)), Ok(()), "active by then");
    assert_eq!(s, before, "the validator changes nothing");
    assert_eq!(s.vet(&redeem, None), Ok(()), "no clock: the points may be active by the handler's time");
    s.advance(1_000);
    s.redeem_at("x", 200, 1_000).unwrap();
    assert!(matches!(s.vet(&redeem, None), Err(Rejection::Insufficient { .. })), "nothing can come due: refused");
}

/// The longest id (128 characters, all the alphabet allows) and the
/// longest text (256 characters of 4 bytes each).
fn longest(i: usize) -> (String, String) {
    (format!("{i:0>128}"), "\u{1F600}".repeat(256))
}

#[test]
fn a_full_account_carries_a_bounded_state_and_its_estimate_is_close() {
    let mut s = LoyaltyState::open("c");
    for i in 0..2 * DEDUP_WINDOW {
        let (id, text) = longest(i);
        s.accrue_at(PointsEvent { reason: text.clone(), source: text, ..event(&id, 1_000) }, 0);
        s.project_all(0);
    }
    for i in 0..2 * RESULTS_WINDOW {
        let (id, text) = longest(100_000 + i);
        let req = RedemptionRequest { event_id: id, points: 1, reward: text.clone() };
        s.apply(Command::Redeem(req), 0).unwrap();
        let (adjustment_id, _) = longest(300_000 + i);
        let adjust = AdjustmentRequest { event_id: adjustment_id, points: 1, reason: text, ..Default::default() };
        s.apply(Command::Adjust(adjust), 0).unwrap();
        s.project_all(0);
    }
    s.compact_lots();
    let lots = serde_json::to_vec(&s.lots).unwrap().len();
    let windows = serde_json::to_vec(&s).unwrap().len() - lots;
    // Ids (1,000) and originals (1,000) of 128 characters, 64 redemption
    // and 64 correction answers with 1 KiB texts: about 0.6 MB.
    assert!(windows < 640 * 1024, "windows {windows} bytes");
    // Past the budget, all but the newest 500 lots merge by expiry day (one "never" lot here).
    assert!(s.lots.approximate_bytes() <= UNMERGED_LOTS * (128 + 48) + 1_024, "lots {}", s.lots.approximate_bytes());
    // A ledger outage: 500 entries of the longest texts wait unwritten.
    for i in 0..MAX_BATCH {
        let (id, text) = longest(200_000 + i);
        s.accrue_at(PointsEvent { reason: text.clone(), source: text, ..event(&id, 1) }, 0);
    }
    let actual = serde_json::to_vec(&s).unwrap().len();
    let estimate = s.approximate_size();
    println!(
        "carried state, longest values: windows {windows} bytes, lots {lots}, with 500 unwritten {actual}; estimate {estimate}"
    );
    assert!(actual > 1024 * 1024, "the continue-as-new rule, not luck, bounds this: {actual}");
    assert!(actual <= estimate && estimate <= 2 * actual, "the estimate bounds it: {estimate} for {actual}");
}

/// Text that JSON escapes (quotes, backslashes) in every place the state
/// keeps text: the estimate is still never below the JSON.
#[test]
fn the_size_estimate_bounds_a_state_of_escaped_text() {
    let mut s = LoyaltyState::open("c");
    let text = "\"\\".repeat(128);
    let id = |i: usize| format!("{i:0>128}");
    for i in 0..300 {
        let e = PointsEvent { reason: text.clone(), source: text.clone(), ..event(&id(i), 1_000) };
        s.accrue_at(e, 0);
        let req = RedemptionRequest { event_id: id(10_000 + i), points: 1, reward: text.clone() };
        s.apply(Command::Redeem(req), 0).unwrap();
        let adjust =
            AdjustmentRequest { event_id: id(20_000 + i), points: 1, reason: text.clone(), ..Default::default() };
        s.apply(Command::Adjust(adjust), 0).unwrap();
        s.hold(Command::Reserve(reserve_req(&id(30_000 + i), 1, 60_000)), 0).unwrap();
        let capture =
            CaptureRequest { hold_id: id(30_000 + i), points: 1, event_id: id(40_000 + i), reward: text.clone() };
        s.hold(Command::Capture(capture), 0).unwrap();
        let queued = PointsEvent {
            ledger_checked: false,
            reason: text.clone(),
            source: text.clone(),
            ..event(&id(50_000 + i), 1)
        };
        s.accrue_at(queued, 0);
    }
    s.hold(Command::Reserve(reserve_req(&id(60_000), 1, 60_000)), 0).unwrap();
    assert!(s.unprojected.iter().any(|e| e.tier_change.is_some()));
    let (actual, estimate) = (serde_json::to_vec(&s).unwrap().len(), s.approximate_size());
    assert!(actual <= estimate, "{estimate} for {actual}");
}

/// What an account that took 10,000 lots carries, each lot expiring on its
/// own date over a year: the newest 500 as they are, the others merged per
/// expiry day.
#[test]
fn ten_thousand_lots_carry_in_a_small_state() {
    let mut s = LoyaltyState::open("c");
    let year = 365 * 86_400_000;
    for i in 0..10_000_i64 {
        let expires = Some(86_400_000 + year * i / 10_000);
        s.accrue_at(dated(&format!("order-{i}"), 1, None, expires), i);
        if i % 500 == 0 {
            s.project_all(i);
            s.tidy_lots();
        }
    }
    s.project_all(10_000);
    s.compact_lots();
    let bytes = serde_json::to_vec(&s).unwrap().len();
    let lots = serde_json::to_vec(&s.lots).unwrap().len();
    println!("10,000 lots: {} carried, lots {lots} bytes, whole state {bytes} bytes", s.lots.lots.len());
    assert_eq!(s.lots.active(), 10_000, "every point kept");
    assert!(s.lots.lots.len() <= UNMERGED_LOTS + 366, "{}", s.lots.lots.len());
    assert!(bytes < 192 * 1024, "{bytes}");
    assert!(bytes <= s.approximate_size(), "the estimate bounds it");
}

/// Many mixed operations at random times: after each, the totals equal
/// the sum of the entries, the balance equals the lots, entries are dated
/// in order, and nothing due is left behind.
#[test]
fn mixed_operations_keep_the_books_exact() {
    let mut s = LoyaltyState::open("c");
    s.expiry_warning_ms = 300;
    let mut rng = 0x9e3779b97f4a7c15_u64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut now = 0;
    for i in 0..3_000 {
        now += next(50) as Millis;
        let id = format!("e{i}");
        let target = format!("e{}", next(i as u64 + 1)).replace(&format!("e{i}"), "none");
        let command = match next(8) {
            0 | 1 => {
                let pending = (next(3) == 0).then(|| now + next(500) as Millis);
                let expires = (next(2) == 0).then(|| now + 500 + next(2_000) as Millis);
                Command::Accrue(dated(&id, 1 + next(100) as i64, pending, expires))
            }
            2 => {
                Command::Redeem(RedemptionRequest { event_id: id, points: 1 + next(60) as i64, reward: String::new() })
            }
            3 => Command::Reverse(ReversalRequest { allow_negative: next(2) == 0, ..reversal(&id, &target, None) }),
            4 => Command::Reserve(reserve_req(&id, 1 + next(40) as i64, 1_000 + next(1_000) as Millis)),
            5 => Command::Capture(CaptureRequest {
                hold_id: target,
                points: 1 + next(20) as i64,
                event_id: id,
                reward: String::new(),
            }),
            6 => Command::Release(ReleaseRequest { hold_id: target }),
            _ => Command::Adjust(AdjustmentRequest {
                event_id: id,
                points: next(41) as i64 - 20,
                reason: "x".into(),
                expires_at_ms: Some(now + 700),
            }),
        };
        let _ = s.apply(command, now);
        let balance: i64 = s.unprojected.iter().map(|e| e.effect.balance_delta).sum();
        let lifetime: i64 = s.unprojected.iter().map(|e| e.effect.lifetime_delta).sum();
        assert_eq!((balance, lifetime), (s.points_balance, s.lifetime_points), "step {i}");
        assert_eq!(s.points_balance, s.lots.active() - s.lots.debt, "step {i}");
        assert!(s.lots.sums_hold(), "step {i}");
        assert!(s.unprojected.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "dated in order at step {i}");
        if next(10) == 0 {
            s.compact_lots();
        }
        let held: i64 = s.holds.iter().map(|h| drawn(&h.draws)).sum();
        assert_eq!(held, s.held_points(), "a hold holds exactly its draws");
        assert!(s.next_due_at().is_none_or(|due| due > now), "nothing due is left behind at step {i}");
    }
    for kind in [EntryKind::Expiry, EntryKind::Expiring, EntryKind::Activation, EntryKind::Capture, EntryKind::Release]
    {
        assert!(s.unprojected.iter().any(|e| e.movement.kind == kind), "{kind:?}");
    }
}

#[test]
fn a_guide_made_state_drops_queued_accruals_this_service_would_refuse() {
    let guide = r#"{"customer_id":"c","points_balance":0,"lifetime_points":0,"tier":"Bronze","is_active":true,
        "processed_event_ids":[],"pending_events":[{"event_id":"minus","points":-5,"reason":"x"},
        {"event_id":"ok","points":5,"reason":"x"}]}"#;
    let s = LoyaltyState::upgrade(Some(serde_json::from_str(guide).unwrap()), "c", 1);
    assert_eq!(s.pending_events.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["ok"]);
    assert!(s.unprojected.is_empty(), "zero totals open nothing");
}

#[test]
fn a_state_the_guide_made_keeps_its_totals_and_opens_the_ledger_with_them() {
    let guide = include_str!("states/guide.json");
    let carried: LoyaltyState = serde_json::from_str(guide).unwrap();
    let s = LoyaltyState::upgrade(Some(carried), "c-guide", 5_000);
    assert_eq!((s.points_balance, s.lifetime_points, s.tier, s.is_active), (1_050, 1_200, Tier::Silver, true));
    assert!(s.processed_event_ids.contains("order-7"), "its recent ids stay");
    assert_eq!(s.pending_events.len(), 1, "its queued accrual waits for its ledger check, first in line");
    assert_eq!(s.version, STATE_VERSION);
    let opening = &s.unprojected[0];
    assert_eq!((opening.seq, opening.movement.kind, opening.at_ms), (1, EntryKind::Opening, 5_000));
    assert_eq!((opening.before(), opening.after), (Totals::default(), Totals { balance: 1_050, lifetime: 1_200 }));
    assert!(opening.tier_change.is_none(), "the tier is carried, not changed");
    assert_eq!((s.lots.active(), s.lots.lots[0].id.as_str()), (1_050, CARRIED_LOT));
    let batch = s.projection(MAX_BATCH, usize::MAX);
    assert_eq!((batch.after_seq, batch.totals_before), (0, Totals::default()), "fits an empty ledger");

    let mut spent = s.clone();
    spent.redeem_at("r", 1_050, 6_000).unwrap();
    assert_eq!(spent.unprojected[1].draws[0].lot, CARRIED_LOT);
}

#[test]
fn a_ledger_holding_exactly_the_carried_totals_is_continued_and_any_other_stays_fenced() {
    let guide = include_str!("states/guide.json");
    let mut s = LoyaltyState::upgrade(Some(serde_json::from_str(guide).unwrap()), "c-guide", 5_000);
    s.advance(6_000);
    s.redeem_at("r", 50, 6_000).unwrap();
    s.apply(Command::Reserve(reserve_req("h", 10, 60_000)), 6_000).unwrap();
    let carried = Totals { balance: 1_050, lifetime: 1_200 };
    let mut other = s.clone();
    assert!(!other.rebase(40, Totals { balance: 1_049, lifetime: 1_200 }, (0, 0)), "a ledger that disagrees");
    assert!(!other.rebase(40, carried, (100, 0)), "points pending in the ledger that the state does not have");
    assert!(!other.rebase(40, carried, (0, 5)), "points held in the ledger that the state does not have");
    assert!(!other.rebase(0, carried, (0, 0)), "an empty ledger takes the opening entry");
    assert_eq!(other, s);
    assert!(s.rebase(40, carried, (0, 0)));
    let seqs: Vec<_> = s.unprojected.iter().map(|e| (e.seq, e.movement.event_id.as_str())).collect();
    assert_eq!(seqs, vec![(41, "r"), (42, "hold/h")]);
    assert_eq!((s.seq, s.projected_seq, s.recent_redemptions[0].seq), (42, 40, 41));
    let batch = s.projection(MAX_BATCH, usize::MAX);
    assert_eq!((batch.after_seq, batch.totals_before), (40, carried));
    assert!(!s.rebase(40, carried, (0, 0)), "once");

    // A caller's hold id that looks like a sequence number keeps its name.
    let mut s = LoyaltyState::upgrade(Some(serde_json::from_str(guide).unwrap()), "c-guide", 5_000);
    s.apply(Command::Reserve(reserve_req("2", 10, 60_000)), 6_000).unwrap();
    assert!(s.rebase(40, carried, (0, 0)));
    assert_eq!(s.unprojected[0].movement.event_id, "hold/2");
}

/// The 1.0 state fixture's account: lots pending and expiring, a spend, a
/// refund, an open hold and a finished one, one entry the ledger has not
/// taken and one accrual waiting for its check.
fn v1_account() -> LoyaltyState {
    let mut s = LoyaltyState::open("c-v1");
    let day = 86_400_000;
    s.accrue_at(PointsEvent { expiry_warning_ms: Some(7 * day), ..dated("o-1", 500, None, Some(400 * day)) }, day);
    s.accrue_at(dated("o-2", 300, Some(20 * day), Some(400 * day)), 2 * day);
    s.redeem_at("r-1", 120, 3 * day).unwrap();
    s.change(Command::Reverse(reversal("v-1", "o-1", Some(50))), 4 * day).unwrap();
    s.hold(Command::Reserve(reserve_req("h-1", 40, 30 * day)), 5 * day).unwrap();
    s.hold(Command::Reserve(reserve_req("h-2", 10, day)), 5 * day).unwrap();
    s.hold(Command::Release(ReleaseRequest { hold_id: "h-2".into() }), 5 * day).unwrap();
    s.project_all(5 * day);
    s.change(Command::Adjust(adjustment("a-1", 25)), 6 * day).unwrap();
    s.accrue_at(PointsEvent { ledger_checked: false, ..event("o-3", 70) }, 6 * day);
    s
}

/// `tests/states/v1.json` is what 1.0 to 1.3 carried for [`v1_account`]:
/// this build takes it in through `upgrade` to what it builds itself.
#[test]
fn a_version_1_state_is_taken_in_as_it_was() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/states/v1.json");
    let carried: LoyaltyState = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(carried.version, 1);
    let s = LoyaltyState::upgrade(Some(carried), "c-v1", 9 * 86_400_000);
    assert_eq!(s, v1_account(), "version 1 lacks only the campaign usage, which starts empty");
    assert_eq!((s.points_balance, s.lots.pending(), s.held_points(), s.pending_events.len()), (315, 300, 40, 1));
    assert!(LoyaltyState::upgrade(None, "n", 1).unprojected.is_empty(), "a new account opens nothing");
}

/// The 1.4 fixture's account: [`v1_account`] and an order accrual under a
/// campaign capped per customer, so it carries campaign usage.
fn v2_account() -> LoyaltyState {
    use loyalty::domain::earning::{Order, OrderLine, RuleBook};
    use loyalty::domain::orders::OrderAccrual;
    let rules = r#"{"rule_sets":[{"id":"fixture","version":1,"effective_from":"1970-01-01",
        "rates":{"USD":{"points":1,"per":100}},
        "campaigns":[{"id":"promo","effect":{"bonus":30},"max_per_customer":{"points":50,"period":"month"}}]}]}"#;
    let book = RuleBook::parse(rules, false).unwrap();
    let day = 86_400_000;
    let order = Order {
        order_id: "o-4".into(),
        currency: "USD".into(),
        occurred_at_ms: 7 * day,
        lines: vec![OrderLine { sku: "S".into(), quantity: 2, unit_price: 1_250, ..Default::default() }],
        ..Default::default()
    };
    let accrual = OrderAccrual::evaluate(&order, book.effective_at(order.occurred_at_ms).unwrap()).unwrap();
    let mut s = v1_account();
    let e = PointsEvent { points: accrual.most_points(), order: Some(Box::new(accrual)), ..event("o-4", 1) };
    s.accrue_at(e, 7 * day);
    s
}

/// `tests/states/v2.json` is what 1.4 carries for [`v2_account`]. A later
/// version keeps the file and takes it in through `upgrade`; this build
/// must write it byte for byte (rewrite it only for a new version's file:
/// `LOYALTY_WRITE_STATE_FIXTURES=1 cargo test --test domain state_fixture`).
#[test]
fn a_state_fixture_of_this_version_is_written_and_taken_as_it_is() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/states/v2.json");
    let written = serde_json::to_string_pretty(&v2_account()).unwrap() + "\n";
    if std::env::var_os("LOYALTY_WRITE_STATE_FIXTURES").is_some() {
        std::fs::write(path, &written).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap();
    assert_eq!(written, committed, "this build carries a 1.4 state as 1.4 wrote it");
    let carried: LoyaltyState = serde_json::from_str(&committed).unwrap();
    assert_eq!(carried.version, STATE_VERSION);
    assert_eq!(carried.campaign_usage.0.len(), 1, "the capped campaign's use is carried");
    assert_eq!(carried.unprojected.last().and_then(|e| e.earned.as_ref()).map(|e| e.points), Some(55));
    let s = LoyaltyState::upgrade(Some(carried.clone()), "c-v1", 9 * 86_400_000);
    assert_eq!(s, carried, "nothing to upgrade");
}
