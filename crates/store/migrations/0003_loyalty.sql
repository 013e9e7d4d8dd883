-- cardcrm schema 3: the loyalty engine. Points are a second asset (PTS) on the ledger of
-- schema 2: a member's points are one balance-tracking account, and every earning is a
-- lot 积分批次 with its own expiry. The lots say which points are left; the account says
-- how many; `cardcrm ledger verify` checks that the two agree.

ALTER TABLE ledger_accounts ADD COLUMN customer_id {int} REFERENCES customers(id);
CREATE INDEX ledger_accounts_customer ON ledger_accounts (customer_id) WHERE customer_id IS NOT NULL;

-- Versions of the programme's rules; the one in force at a moment is the newest version
-- whose effective_from_ms is not after it. '{}' is the documented default programme.
CREATE TABLE loyalty_programmes (
    version {int} PRIMARY KEY,
    effective_from_ms {int} NOT NULL,
    rules_json TEXT NOT NULL,
    note TEXT,
    created_by TEXT NOT NULL,
    created_at_ms {int} NOT NULL
);
INSERT INTO loyalty_programmes (version, effective_from_ms, rules_json, note, created_by, created_at_ms)
VALUES (1, 0, '{}', 'default programme', 'system', 0);

CREATE TABLE loyalty_members (
    customer_id {int} PRIMARY KEY REFERENCES customers(id),
    tier TEXT NOT NULL REFERENCES card_tiers(code),
    tier_since_ms {int} NOT NULL,
    review_at_ms {int} NOT NULL,
    grace_until_ms {int},
    override_tier TEXT REFERENCES card_tiers(code),
    override_until_ms {int},
    override_by TEXT,
    override_reason TEXT,
    first_purchase_at_ms {int},
    referred_by {int} REFERENCES customers(id),
    version {int} NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);
CREATE INDEX loyalty_members_review ON loyalty_members (review_at_ms);

-- What counts toward tiers, per member and calendar month (year * 12 + month - 1).
CREATE TABLE loyalty_activity (
    customer_id {int} NOT NULL REFERENCES customers(id),
    month_index {int} NOT NULL,
    spend_minor {int} NOT NULL,
    visits {int} NOT NULL,
    points_earned {int} NOT NULL,
    PRIMARY KEY (customer_id, month_index)
);

CREATE TABLE loyalty_tier_history (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    from_tier TEXT,
    to_tier TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail_json TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at_ms {int} NOT NULL
);
CREATE INDEX loyalty_tier_history_customer ON loyalty_tier_history (customer_id, id);

CREATE TABLE points_lots (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    account_id {int} NOT NULL REFERENCES ledger_accounts(id),
    operation_id {int} NOT NULL REFERENCES ledger_operations(id),
    -- purchase, signup, referral, transfer_in, partner_in, adjustment
    source TEXT NOT NULL,
    points_earned {int} NOT NULL,
    points_remaining {int} NOT NULL,
    points_expired {int} NOT NULL DEFAULT 0,
    earned_at_ms {int} NOT NULL,
    available_at_ms {int} NOT NULL,
    expires_at_ms {int},
    CHECK (points_earned > 0 AND points_remaining >= 0 AND points_expired >= 0),
    CHECK (points_remaining <= points_earned)
);
CREATE INDEX points_lots_customer ON points_lots (customer_id, expires_at_ms, id);
CREATE INDEX points_lots_operation ON points_lots (operation_id);

-- Every change to a lot but expiry: taken (negative) by a redemption, transfer or refund
-- take-back, given back (positive) when what took it is reversed.
CREATE TABLE points_lot_moves (
    id {serial},
    lot_id {int} NOT NULL REFERENCES points_lots(id),
    operation_id {int} NOT NULL REFERENCES ledger_operations(id),
    points {int} NOT NULL,
    kind TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    CHECK (points <> 0)
);
CREATE INDEX points_lot_moves_operation ON points_lot_moves (operation_id);
CREATE INDEX points_lot_moves_lot ON points_lot_moves (lot_id);

-- An offline sale earns once: its till reference is kept with the operation it made.
CREATE TABLE loyalty_sales (
    store_key TEXT NOT NULL,
    external_id TEXT NOT NULL,
    operation_id {int} NOT NULL REFERENCES ledger_operations(id),
    PRIMARY KEY (store_key, external_id)
);

-- Events for the engagement features (points expiring soon, tier changes) to act on.
CREATE TABLE loyalty_events (
    id {serial},
    kind TEXT NOT NULL,
    customer_id {int} NOT NULL REFERENCES customers(id),
    due_at_ms {int} NOT NULL,
    detail_json TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    UNIQUE (kind, customer_id, due_at_ms)
);

CREATE TABLE coupon_templates (
    id {serial},
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- amount_off, percent_off, threshold_off (满减), gift
    kind TEXT NOT NULL,
    amount_off_minor {int} NOT NULL,
    percent_off_bp {int} NOT NULL,
    cap_minor {int},
    threshold_minor {int} NOT NULL,
    category TEXT,
    gift_name TEXT,
    valid_from_ms {int},
    valid_to_ms {int},
    -- Days a coupon is valid from its issue (NULL: the template's window).
    valid_days {int},
    stackable {int} NOT NULL,
    per_member_max {int},
    issue_max {int},
    issued_count {int} NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL,
    CHECK (issue_max IS NULL OR issued_count <= issue_max)
);

CREATE TABLE coupons (
    id {serial},
    template_id {int} NOT NULL REFERENCES coupon_templates(id),
    code TEXT NOT NULL UNIQUE,
    customer_id {int} NOT NULL REFERENCES customers(id),
    -- issued, redeemed, cancelled
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    valid_from_ms {int} NOT NULL,
    valid_to_ms {int} NOT NULL,
    redeemed_operation_id {int} REFERENCES ledger_operations(id),
    redeemed_at_ms {int},
    cancelled_at_ms {int},
    issued_at_ms {int} NOT NULL
);
CREATE INDEX coupons_customer ON coupons (customer_id, status, id);
CREATE INDEX coupons_template ON coupons (template_id, customer_id);
CREATE INDEX coupons_redeemed ON coupons (redeemed_operation_id) WHERE redeemed_operation_id IS NOT NULL;

CREATE TABLE mall_rewards (
    id {serial},
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- goods, service, coupon
    kind TEXT NOT NULL,
    points_price {int} NOT NULL,
    cash_price_minor {int} NOT NULL,
    coupon_template_id {int} REFERENCES coupon_templates(id),
    -- NULL: unlimited
    stock {int},
    per_member_max {int},
    status TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL,
    CHECK (points_price >= 0 AND cash_price_minor >= 0 AND (stock IS NULL OR stock >= 0))
);

CREATE TABLE mall_orders (
    id {serial},
    reward_id {int} NOT NULL REFERENCES mall_rewards(id),
    customer_id {int} NOT NULL REFERENCES customers(id),
    quantity {int} NOT NULL,
    points {int} NOT NULL,
    cash_minor {int} NOT NULL,
    -- placed, fulfilled, cancelled
    status TEXT NOT NULL,
    operation_id {int} NOT NULL REFERENCES ledger_operations(id),
    cancel_operation_id {int} REFERENCES ledger_operations(id),
    coupon_ids TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);
CREATE INDEX mall_orders_customer ON mall_orders (customer_id, id);
CREATE INDEX mall_orders_reward ON mall_orders (reward_id, customer_id);

-- Co-branded partners 联名 whose points exchange with ours.
CREATE TABLE loyalty_partners (
    id {serial},
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    -- Our points for 100 of the partner's, and the partner's for 100 of ours.
    points_in_per_100 {int} NOT NULL,
    points_out_per_100 {int} NOT NULL,
    status TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);
