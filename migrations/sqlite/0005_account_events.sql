-- A new entry kind, `expiring` (points about to expire were announced;
-- it moves nothing). SQLite cannot change a CHECK: the table is rebuilt
-- with its rows, sequence and indexes, as in 0004.
CREATE TABLE ledger_entries_v4 (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry',
                                    'activation', 'hold', 'capture', 'release', 'expiring')),
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
INSERT INTO ledger_entries_v4 SELECT * FROM ledger_entries ORDER BY seq;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_v4 RENAME TO ledger_entries;
CREATE INDEX ledger_entries_history ON ledger_entries (customer_id, seq);
CREATE INDEX ledger_entries_reverses ON ledger_entries (customer_id, reverses) WHERE reverses IS NOT NULL;
CREATE UNIQUE INDEX ledger_entries_account_seq ON ledger_entries (customer_id, account_seq)
    WHERE account_seq IS NOT NULL;

-- The account's event stream (a transactional outbox): one row per applied
-- entry and per tier change, written in the entry's own transaction and
-- numbered per account (`seq`, from `accounts.event_seq`). `body` is the
-- exact JSON a webhook delivers.
CREATE TABLE account_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id    TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    occurred_at_ms INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    body           TEXT    NOT NULL,
    UNIQUE (customer_id, seq)
);
ALTER TABLE accounts ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;

-- Entries a previous build writes after this migration (its workers may run
-- beside this build's during a rollout) carry no events: this build adds
-- them when it next writes the account, from `evented_seq` (the newest
-- entry with its event), or, until then, from the account's newest entry at
-- this migration (`event_epochs`).
ALTER TABLE accounts ADD COLUMN evented_seq INTEGER;
CREATE TABLE event_epochs (
    customer_id TEXT    PRIMARY KEY,
    last_seq    INTEGER NOT NULL
);
INSERT INTO event_epochs (customer_id, last_seq) SELECT customer_id, last_seq FROM accounts;

-- Accounts with events some endpoint may not have yet. A writer sets
-- `head_seq`; a relay leases the row, delivers, and deletes it only if
-- `head_seq` is still what it delivered up to.
CREATE TABLE event_outbox (
    customer_id     TEXT    PRIMARY KEY,
    head_seq        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT    NOT NULL DEFAULT '',
    lease_until_ms  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX event_outbox_due ON event_outbox (next_attempt_ms);

-- Webhook endpoints as first configured: an endpoint receives the events
-- recorded from then on.
CREATE TABLE webhook_endpoints (
    name          TEXT    PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL
);

-- Where each endpoint is in each account's stream. A parked row (retries
-- exhausted) holds its account's events for that endpoint as dead letters
-- until redelivered.
CREATE TABLE webhook_cursors (
    endpoint         TEXT    NOT NULL,
    customer_id      TEXT    NOT NULL,
    delivered_seq    INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL DEFAULT 0,
    failing_since_ms INTEGER,
    last_error       TEXT    NOT NULL DEFAULT '',
    parked_at_ms     INTEGER,
    -- Bumped by every redelivery: a relay that read an older cursor writes nothing.
    generation       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, customer_id)
);
CREATE INDEX webhook_cursors_parked ON webhook_cursors (endpoint) WHERE parked_at_ms IS NOT NULL;

-- The tier-change outbox nobody read becomes the first events of each
-- account's stream (their balances were not recorded, so no `account`);
-- they are history, not pushed to endpoints.
INSERT INTO accounts (customer_id, balance, lifetime, updated_at_ms)
SELECT DISTINCT customer_id, 0, 0, 0 FROM tier_notifications
WHERE customer_id NOT IN (SELECT customer_id FROM accounts);
INSERT INTO account_events (customer_id, seq, event_id, type, occurred_at_ms, recorded_at_ms, body)
SELECT customer_id, n, 'evt_' || customer_id || '_' || n, 'tier.changed', at_ms, at_ms,
       json_object('id', 'evt_' || customer_id || '_' || n, 'type', 'tier.changed', 'timestamp', created_at,
                   'customer_id', customer_id, 'sequence', n,
                   'data', json_object('old_tier', old_tier, 'new_tier', new_tier,
                                       'lifetime_points', lifetime_points, 'caused_by', caused_by))
FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY id) AS n,
             CAST((julianday(created_at) - 2440587.5) * 86400000 AS INTEGER) AS at_ms
      FROM tier_notifications t);
UPDATE accounts SET event_seq = (SELECT COUNT(*) FROM account_events e WHERE e.customer_id = accounts.customer_id)
WHERE customer_id IN (SELECT customer_id FROM account_events);
-- tier_notifications stays (unread) while a previous build may still write it;
-- a later version drops it.
