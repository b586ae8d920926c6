-- Every applied accrual and redemption, keyed by (customer_id, event_id) so a
-- retried write never duplicates a row.
CREATE TABLE ledger_entries (
    customer_id   TEXT    NOT NULL,
    event_id      TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('accrual', 'redemption')),
    points        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL,
    reason        TEXT    NOT NULL DEFAULT '',
    source        TEXT    NOT NULL DEFAULT '',
    recorded_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (customer_id, event_id)
);

-- Outbox of tier changes for a notifier to deliver; one row per change.
CREATE TABLE tier_notifications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     TEXT    NOT NULL,
    old_tier        TEXT    NOT NULL,
    new_tier        TEXT    NOT NULL,
    lifetime_points INTEGER NOT NULL,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    delivered_at    TEXT,
    UNIQUE (customer_id, new_tier, lifetime_points)
);
