-- The ledger becomes the durable record of every event of an account's life:
-- a global sequence for stable history paging, the id of the write that
-- inserted each row (to tell an activity retry from a true duplicate), the
-- content needed to compare a resent event, reversals and adjustments, and
-- per-account running totals that the entity workflow mirrors.
CREATE TABLE ledger_entries_v2 (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id    TEXT    NOT NULL,
    event_id       TEXT    NOT NULL,
    kind           TEXT    NOT NULL
                   CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry')),
    requested      INTEGER NOT NULL,
    points         INTEGER NOT NULL,
    lifetime_delta INTEGER NOT NULL,
    shortfall      INTEGER NOT NULL DEFAULT 0,
    balance_after  INTEGER NOT NULL,
    reason         TEXT    NOT NULL DEFAULT '',
    source         TEXT    NOT NULL DEFAULT '',
    reverses       TEXT,
    write_id       TEXT    NOT NULL DEFAULT '',
    recorded_at_ms INTEGER NOT NULL,
    UNIQUE (customer_id, event_id)
);

INSERT INTO ledger_entries_v2
    (customer_id, event_id, kind, requested, points, lifetime_delta, balance_after, reason, source, recorded_at_ms)
SELECT customer_id, event_id, kind, abs(points), points,
       CASE kind WHEN 'accrual' THEN points ELSE 0 END,
       balance_after, reason, source,
       CAST(round((julianday(recorded_at) - 2440587.5) * 86400000) AS INTEGER)
FROM ledger_entries ORDER BY rowid;

DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v2 RENAME TO ledger_entries;
CREATE INDEX ledger_entries_history ON ledger_entries (customer_id, seq);
CREATE INDEX ledger_entries_reverses ON ledger_entries (customer_id, reverses) WHERE reverses IS NOT NULL;

CREATE TABLE accounts (
    customer_id   TEXT    PRIMARY KEY,
    balance       INTEGER NOT NULL,
    lifetime      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

INSERT INTO accounts (customer_id, balance, lifetime, updated_at_ms)
SELECT customer_id, SUM(points), SUM(lifetime_delta), MAX(recorded_at_ms)
FROM ledger_entries GROUP BY customer_id;

-- A tier can be reached twice at the same lifetime points once clawbacks can
-- lower it, so a notification is keyed by the write that caused it as well.
CREATE TABLE tier_notifications_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     TEXT    NOT NULL,
    old_tier        TEXT    NOT NULL,
    new_tier        TEXT    NOT NULL,
    lifetime_points INTEGER NOT NULL,
    caused_by       TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    delivered_at    TEXT,
    UNIQUE (customer_id, new_tier, lifetime_points, caused_by)
);
INSERT INTO tier_notifications_v2 (id, customer_id, old_tier, new_tier, lifetime_points, created_at, delivered_at)
SELECT id, customer_id, old_tier, new_tier, lifetime_points, created_at, delivered_at FROM tier_notifications;
DROP TABLE tier_notifications;
ALTER TABLE tier_notifications_v2 RENAME TO tier_notifications;
