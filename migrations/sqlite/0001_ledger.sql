-- The 1.0 ledger: the fenced projection of every account's decisions, the
-- lifelong guard of exactly once, and the outbox of the account's events.

-- Per account: running totals, the newest entry written (the fence), and
-- the newest event's sequence.
CREATE TABLE accounts (
    customer_id   TEXT    PRIMARY KEY,
    balance       INTEGER NOT NULL,
    lifetime      INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    pending       INTEGER NOT NULL DEFAULT 0,
    held          INTEGER NOT NULL DEFAULT 0,
    event_seq     INTEGER NOT NULL DEFAULT 0
);

-- Every decided entry, once per (customer, event id) for the account's whole
-- life, numbered by the account (`account_seq`); `seq` orders history pages
-- stably. `draws` is the lots it took from or gave to (JSON [[lot, points]]).
CREATE TABLE ledger_entries (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id     TEXT    NOT NULL,
    event_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL
                    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry',
                                    'activation', 'hold', 'capture', 'release', 'expiring', 'opening')),
    requested       INTEGER NOT NULL,
    points          INTEGER NOT NULL,
    lifetime_delta  INTEGER NOT NULL,
    shortfall       INTEGER NOT NULL DEFAULT 0,
    balance_after   INTEGER NOT NULL,
    reason          TEXT    NOT NULL DEFAULT '',
    source          TEXT    NOT NULL DEFAULT '',
    reverses        TEXT,
    recorded_at_ms  INTEGER NOT NULL,
    account_seq     INTEGER NOT NULL,
    draws           TEXT,
    effective_at_ms INTEGER NOT NULL,
    UNIQUE (customer_id, event_id),
    UNIQUE (customer_id, account_seq)
);
CREATE INDEX ledger_entries_history ON ledger_entries (customer_id, seq);
CREATE INDEX ledger_entries_reverses ON ledger_entries (customer_id, reverses) WHERE reverses IS NOT NULL;

-- The account's event stream (a transactional outbox): one row per entry
-- and per tier change, written in the entry's own transaction and numbered
-- per account (`seq`, from `accounts.event_seq`). `body` is the exact JSON
-- a webhook delivers.
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
