-- The account's event stream (a transactional outbox) and the `expiring`
-- entry kind, as in migrations/sqlite/0005_account_events.sql.
ALTER TABLE ledger_entries DROP CONSTRAINT IF EXISTS ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
    CHECK (kind IN ('accrual', 'redemption', 'reversal', 'adjustment', 'expiry',
                    'activation', 'hold', 'capture', 'release', 'expiring'));

CREATE TABLE account_events (
    id             BIGSERIAL PRIMARY KEY,
    customer_id    TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    event_id       TEXT   NOT NULL UNIQUE,
    type           TEXT   NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    body           TEXT   NOT NULL,
    UNIQUE (customer_id, seq)
);
ALTER TABLE accounts ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;

-- Entries a previous build writes after this migration (its workers may run
-- beside this build's during a rollout) carry no events: this build adds
-- them when it next writes the account, from `evented_seq` (the newest
-- entry with its event), or, until then, from the account's newest entry at
-- this migration (`event_epochs`).
ALTER TABLE accounts ADD COLUMN evented_seq BIGINT;
CREATE TABLE event_epochs (
    customer_id TEXT    PRIMARY KEY,
    last_seq    BIGINT NOT NULL
);
INSERT INTO event_epochs (customer_id, last_seq) SELECT customer_id, last_seq FROM accounts;

CREATE TABLE event_outbox (
    customer_id     TEXT   PRIMARY KEY,
    head_seq        BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,
    lease_owner     TEXT   NOT NULL DEFAULT '',
    lease_until_ms  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX event_outbox_due ON event_outbox (next_attempt_ms);

CREATE TABLE webhook_endpoints (
    name          TEXT   PRIMARY KEY,
    first_seen_ms BIGINT NOT NULL
);

CREATE TABLE webhook_cursors (
    endpoint         TEXT   NOT NULL,
    customer_id      TEXT   NOT NULL,
    delivered_seq    BIGINT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  BIGINT NOT NULL DEFAULT 0,
    failing_since_ms BIGINT,
    last_error       TEXT   NOT NULL DEFAULT '',
    parked_at_ms     BIGINT,
    generation       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (endpoint, customer_id)
);
CREATE INDEX webhook_cursors_parked ON webhook_cursors (endpoint) WHERE parked_at_ms IS NOT NULL;

INSERT INTO accounts (customer_id, balance, lifetime, updated_at_ms)
SELECT DISTINCT customer_id, 0, 0, 0 FROM tier_notifications
WHERE customer_id NOT IN (SELECT customer_id FROM accounts);
INSERT INTO account_events (customer_id, seq, event_id, type, occurred_at_ms, recorded_at_ms, body)
SELECT customer_id, n, 'evt_' || customer_id || '_' || n, 'tier.changed', at_ms, at_ms,
       json_build_object('id', 'evt_' || customer_id || '_' || n, 'type', 'tier.changed',
                         'timestamp', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                         'customer_id', customer_id, 'sequence', n,
                         'data', json_build_object('old_tier', old_tier, 'new_tier', new_tier,
                                                   'lifetime_points', lifetime_points,
                                                   'caused_by', caused_by))::text
FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY id) AS n,
             (EXTRACT(EPOCH FROM created_at) * 1000)::BIGINT AS at_ms
      FROM tier_notifications t) numbered;
UPDATE accounts SET event_seq = (SELECT COUNT(*) FROM account_events e WHERE e.customer_id = accounts.customer_id)
WHERE customer_id IN (SELECT customer_id FROM account_events);
-- tier_notifications stays (unread) while a previous build may still write it;
-- a later version drops it.
