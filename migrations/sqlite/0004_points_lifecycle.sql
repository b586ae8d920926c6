-- The lifecycle of a point: entries of the new kinds (activation, hold,
-- capture, release), the lots each entry drew from (JSON [[lot, points]]),
-- when each took effect on the account's clock, and the account's pending
-- and held points beside its totals. SQLite cannot change a CHECK, so the
-- table is rebuilt with its rows, sequence and indexes.
CREATE TABLE ledger_entries_v3 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry',
                                    'activation', 'hold', 'capture', 'release')),
    requested       INTEGER NOT NULL,
    points          INTEGER NOT NULL,
    lifetime_delta  INTEGER NOT NULL,
    shortfall       INTEGER NOT NULL DEFAULT 0,
    balance_after   INTEGER NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    source          TEXT    NOT NULL DEFAULT '',
    reverses        TEXT,
    write_id        TEXT    NOT NULL DEFAULT '',
    recorded_at_ms  INTEGER NOT NULL,
    account_seq     INTEGER,
    draws           TEXT,
    effective_at_ms INTEGER NOT NULL DEFAULT 0,
    UNIQUE (customer_id, event_id)
);

INSERT INTO ledger_entries_v3
    (seq, customer_id, event_id, kind, requested, points, lifetime_delta, shortfall, balance_after, reason, source,
     reverses, write_id, recorded_at_ms, account_seq)
SELECT seq, customer_id, event_id, kind, requested, points, lifetime_delta, shortfall, balance_after, reason, source,
       reverses, write_id, recorded_at_ms, account_seq
FROM ledger_entries ORDER BY seq;

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v3 RENAME TO ledger_entries;
CREATE INDEX ledger_entries_history ON ledger_entries (customer_id, seq);
CREATE INDEX ledger_entries_reverses ON ledger_entries (customer_id, reverses) WHERE reverses IS NOT NULL;
CREATE UNIQUE INDEX ledger_entries_account_seq ON ledger_entries (customer_id, account_seq)
    WHERE account_seq IS NOT NULL;

ALTER TABLE accounts ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
