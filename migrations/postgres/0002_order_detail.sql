-- An order accrual's breakdown ({"earned": ...}) or a line return's lines
-- ({"returned": [...]}), as JSON: what line refunds are computed from.
ALTER TABLE ledger_entries ADD COLUMN order_detail TEXT;
