-- The ledger becomes a fenced projection of the account workflow's
-- decisions: each entry carries the account's sequence number, and each
-- account the newest one it holds. A write applies only on top of the
-- sequence it expects. Rows written before (no sequence) keep NULL.
ALTER TABLE ledger_entries ADD COLUMN account_seq INTEGER;
CREATE UNIQUE INDEX ledger_entries_account_seq ON ledger_entries (customer_id, account_seq)
    WHERE account_seq IS NOT NULL;
ALTER TABLE accounts ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
