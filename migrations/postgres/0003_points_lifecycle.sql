-- The lifecycle of a point: entries of the new kinds (activation, hold,
-- capture, release), the lots each entry drew from (JSON [[lot, points]]),
-- when each took effect on the account's clock, and the account's pending
-- and held points beside its totals.
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry',
                    'activation', 'hold', 'capture', 'release'));
ALTER TABLE ledger_entries ADD COLUMN draws TEXT;
ALTER TABLE ledger_entries ADD COLUMN effective_at_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
