-- The PostgreSQL ledger: the same tables and meaning as the SQLite one
-- (migrations/sqlite), in PostgreSQL's types.

-- Every event of an account's life, keyed by (customer_id, event_id) so an
-- event is applied once however often it is resent. `seq` orders history
-- pages; `write_id` names the write that inserted the row, so an activity
-- retry recognises its own rows.
CREATE TABLE ledger_entries (
    seq            BIGSERIAL PRIMARY KEY,
    customer_id    TEXT   NOT NULL,
    event_id       TEXT   NOT NULL,
    kind           TEXT   NOT NULL
                   CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry')),
    requested      BIGINT NOT NULL,
    points         BIGINT NOT NULL,
    lifetime_delta BIGINT NOT NULL,
    shortfall      BIGINT NOT NULL DEFAULT 0,
    balance_after  BIGINT NOT NULL,
    reason         TEXT   NOT NULL DEFAULT '',
    source         TEXT   NOT NULL DEFAULT '',
    reverses       TEXT,
    write_id       TEXT   NOT NULL DEFAULT '',
    recorded_at_ms BIGINT NOT NULL,
    UNIQUE (customer_id, event_id)
);
CREATE INDEX ledger_entries_history ON ledger_entries (customer_id, seq);
CREATE INDEX ledger_entries_reverses ON ledger_entries (customer_id, reverses) WHERE reverses IS NOT NULL;

-- Running totals per account, updated in the same transaction as the rows;
-- the row lock serializes writers of one account.
CREATE TABLE accounts (
    customer_id   TEXT   PRIMARY KEY,
    balance       BIGINT NOT NULL,
    lifetime      BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Outbox of tier changes for a notifier to deliver; one row per change.
CREATE TABLE tier_notifications (
    id              BIGSERIAL PRIMARY KEY,
    customer_id     TEXT   NOT NULL,
    old_tier        TEXT   NOT NULL,
    new_tier        TEXT   NOT NULL,
    lifetime_points BIGINT NOT NULL,
    caused_by       TEXT   NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    UNIQUE (customer_id, new_tier, lifetime_points, caused_by)
);
