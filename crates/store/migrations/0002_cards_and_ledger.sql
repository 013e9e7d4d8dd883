-- cardcrm schema 2: tiers, card products, cards, the double-entry ledger with its
-- idempotency keys and alerts, and credit-card account records imported from an issuer.
-- Money is integer minor units; a ledger transfer moves a positive amount from a debit
-- account to a credit account and is never changed or removed.

CREATE TABLE card_tiers (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rank {int} NOT NULL UNIQUE,
    -- Discount at checkout in basis points: 500 is 5% off.
    discount_bp {int} NOT NULL,
    -- Points earned per unit spent, in percent of the base rate: 150 is 1.5 times.
    points_multiplier_pct {int} NOT NULL,
    benefits_json TEXT NOT NULL,
    updated_at_ms {int} NOT NULL,
    CHECK (discount_bp >= 0 AND discount_bp <= 10000),
    CHECK (points_multiplier_pct >= 0)
);
INSERT INTO card_tiers (code, name, rank, discount_bp, points_multiplier_pct, benefits_json, updated_at_ms) VALUES
    ('ordinary', '普通会员', 0, 0, 100, '[]', 0),
    ('silver', '银卡会员', 1, 200, 120, '["birthday_gift"]', 0),
    ('gold', '金卡会员', 2, 500, 150, '["birthday_gift","priority_service"]', 0),
    ('platinum', '白金会员', 3, 800, 200, '["birthday_gift","priority_service","free_parking"]', 0);

CREATE TABLE card_products (
    id {serial},
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    currency TEXT NOT NULL,
    number_prefix TEXT NOT NULL,
    bonus_rules_json TEXT NOT NULL,
    spend_order TEXT NOT NULL,
    -- A balance payment above this needs the card's PIN; NULL: never.
    pin_required_above_minor {int},
    top_up_max_minor {int} NOT NULL,
    spend_max_minor {int} NOT NULL,
    balance_max_minor {int} NOT NULL,
    -- What closing does with a remainder: refund_paid (paid part back, bonus forfeited) or forfeit.
    close_policy TEXT NOT NULL,
    validity_months {int},
    default_tier TEXT NOT NULL REFERENCES card_tiers(code),
    status TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);

CREATE TABLE cards (
    id {serial},
    number_cipher {blob} NOT NULL,
    number_index {blob} NOT NULL UNIQUE,
    number_last4 TEXT NOT NULL,
    product_id {int} NOT NULL REFERENCES card_products(id),
    customer_id {int} NOT NULL REFERENCES customers(id),
    store_id {int} REFERENCES stores(id),
    form TEXT NOT NULL,
    status TEXT NOT NULL,
    freeze_reason TEXT,
    tier TEXT NOT NULL REFERENCES card_tiers(code),
    pin_hash TEXT,
    pin_failures {int} NOT NULL DEFAULT 0,
    pin_locked_until_ms {int},
    replaces_card_id {int} REFERENCES cards(id),
    replaced_by_card_id {int} REFERENCES cards(id),
    expires_at_ms {int},
    version {int} NOT NULL,
    issued_at_ms {int} NOT NULL,
    activated_at_ms {int},
    closed_at_ms {int},
    updated_at_ms {int} NOT NULL
);
CREATE INDEX cards_customer ON cards (customer_id, id);

CREATE TABLE ledger_accounts (
    id {serial},
    -- card:12:paid, card:12:bonus, store:3:sales, store:none:payments:cash, system:breakage
    code TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    asset TEXT NOT NULL,
    card_id {int} REFERENCES cards(id),
    store_id {int} REFERENCES stores(id),
    -- 1: a customer's balance, credit-normal, kept on this row and never overdrawn. Other
    -- accounts (store and system) are the sum of their transfers, so no hot row is locked.
    tracks_balance {int} NOT NULL,
    debits_posted {int} NOT NULL DEFAULT 0,
    credits_posted {int} NOT NULL DEFAULT 0,
    created_at_ms {int} NOT NULL,
    CHECK (debits_posted >= 0 AND credits_posted >= 0),
    CHECK (tracks_balance = 0 OR credits_posted >= debits_posted)
);
CREATE INDEX ledger_accounts_card ON ledger_accounts (card_id) WHERE card_id IS NOT NULL;

CREATE TABLE ledger_operations (
    id {serial},
    kind TEXT NOT NULL,
    card_id {int} REFERENCES cards(id),
    customer_id {int} REFERENCES customers(id),
    store_id {int} REFERENCES stores(id),
    reverses_operation_id {int} REFERENCES ledger_operations(id),
    amount_minor {int} NOT NULL,
    asset TEXT NOT NULL,
    payment_method TEXT,
    detail_json TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id {int},
    actor_name TEXT NOT NULL,
    source_ip TEXT,
    request_id TEXT,
    occurred_at_ms {int} NOT NULL
);
CREATE INDEX ledger_operations_card ON ledger_operations (card_id, occurred_at_ms, id) WHERE card_id IS NOT NULL;
CREATE INDEX ledger_operations_store ON ledger_operations (store_id, occurred_at_ms);
CREATE INDEX ledger_operations_reverses ON ledger_operations (reverses_operation_id)
    WHERE reverses_operation_id IS NOT NULL;

CREATE TABLE ledger_transfers (
    id {serial},
    operation_id {int} NOT NULL REFERENCES ledger_operations(id),
    debit_account_id {int} NOT NULL REFERENCES ledger_accounts(id),
    credit_account_id {int} NOT NULL REFERENCES ledger_accounts(id),
    amount_minor {int} NOT NULL,
    asset TEXT NOT NULL,
    purpose TEXT NOT NULL,
    reverses_transfer_id {int} REFERENCES ledger_transfers(id),
    created_at_ms {int} NOT NULL,
    CHECK (amount_minor > 0),
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX ledger_transfers_operation ON ledger_transfers (operation_id);
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_account_id, id);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_account_id, id);

-- A client-chosen key per request that moves value: the same key and request give the
-- stored answer; the same key with another request is refused.
CREATE TABLE idempotency_keys (
    idempotency_key TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    request_hash {blob} NOT NULL,
    status {int} NOT NULL,
    response_json TEXT NOT NULL,
    operation_id {int} REFERENCES ledger_operations(id),
    created_at_ms {int} NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);

CREATE TABLE ledger_alerts (
    id {serial},
    kind TEXT NOT NULL,
    card_id {int} REFERENCES cards(id),
    store_id {int} REFERENCES stores(id),
    operation_id {int} REFERENCES ledger_operations(id),
    detail_json TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at_ms {int}
);
CREATE INDEX ledger_alerts_created ON ledger_alerts (created_at_ms, id);

CREATE TABLE credit_accounts (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    account_number_cipher {blob} NOT NULL,
    account_number_index {blob} NOT NULL UNIQUE,
    account_last4 TEXT NOT NULL,
    credit_limit_minor {int} NOT NULL,
    currency TEXT NOT NULL,
    statement_day {int},
    status TEXT NOT NULL,
    opened_on TEXT,
    import_id {int} REFERENCES imports(id),
    updated_at_ms {int} NOT NULL
);
CREATE INDEX credit_accounts_customer ON credit_accounts (customer_id);

CREATE TABLE credit_statements (
    id {serial},
    account_id {int} NOT NULL REFERENCES credit_accounts(id),
    statement_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    balance_minor {int} NOT NULL,
    minimum_due_minor {int} NOT NULL,
    paid_minor {int} NOT NULL,
    paid_on TEXT,
    overdue_days {int} NOT NULL,
    import_id {int} REFERENCES imports(id),
    created_at_ms {int} NOT NULL,
    UNIQUE (account_id, statement_date)
);

ALTER TABLE purchases ADD COLUMN operation_id {int} REFERENCES ledger_operations(id);
CREATE INDEX purchases_operation ON purchases (operation_id) WHERE operation_id IS NOT NULL;

-- @sqlite
CREATE TRIGGER ledger_operations_no_update BEFORE UPDATE ON ledger_operations
BEGIN SELECT RAISE(ABORT, 'ledger_operations is append-only'); END;
CREATE TRIGGER ledger_operations_no_delete BEFORE DELETE ON ledger_operations
BEGIN SELECT RAISE(ABORT, 'ledger_operations is append-only'); END;
CREATE TRIGGER ledger_transfers_no_update BEFORE UPDATE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger_transfers is append-only'); END;
CREATE TRIGGER ledger_transfers_no_delete BEFORE DELETE ON ledger_transfers
BEGIN SELECT RAISE(ABORT, 'ledger_transfers is append-only'); END;

-- @postgres
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END
$body$;
CREATE TRIGGER ledger_operations_no_change BEFORE UPDATE OR DELETE ON ledger_operations
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_transfers_no_change BEFORE UPDATE OR DELETE ON ledger_transfers
FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
