-- Seeds a freshly migrated cardcrm database for bench/loyalty, set-based: @N members, each
-- with a membership card, a points account, one unexpired lot, every other member also with
-- a lot that expired an hour ago, and three months of tier activity. Every tier review is
-- due (the worst case: an annual review day for the whole base). Activity is drawn so that
-- eight members in ten qualify for the tier they hold, one for the tier above and one for
-- the tier below; one upper-tier member in seven is past a grace period. Account balances
-- equal the sum of their lots and of their transfers, so `cardcrm ledger verify` passes
-- before and after the jobs. Placeholders: @N (members), @NOW (ms since the epoch),
-- @MONTH (this calendar month, year * 12 + month - 1), and @BLOB(text)@ (to bytes: the
-- one spelling the two databases do not share). Runs on SQLite and PostgreSQL.

CREATE TABLE bench_numbers (i BIGINT PRIMARY KEY);
INSERT INTO bench_numbers (i)
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < @N) SELECT i FROM n;

INSERT INTO customers (id, name, gender, source_channel, preferences_json, status, version, created_at_ms, updated_at_ms)
SELECT i, NULL, 'unknown', 'import', '{}', 'active', 1, @NOW - 34560000000, @NOW - 34560000000 FROM bench_numbers;

-- Lot A (even members): earned 400 days ago, expired an hour ago. Lot B: earned 30 days
-- ago, expires in 400 days. Lot ids: A = i, B = @N + i; operation and transfer ids follow
-- the lots.
INSERT INTO ledger_accounts (id, code, kind, asset, tracks_balance, debits_posted, credits_posted, created_at_ms)
VALUES (1, 'store:none:PTS:points_issued', 'store_points_issued', 'PTS', 0, 0, 0, @NOW - 34560000000);
INSERT INTO ledger_accounts (id, code, kind, asset, customer_id, tracks_balance, debits_posted, credits_posted, created_at_ms)
SELECT 10 + i, 'member:' || CAST(i AS TEXT) || ':points', 'member_points', 'PTS', i, 1, 0,
       CASE WHEN i % 2 = 0 THEN 100 + i % 500 ELSE 0 END + 50 + i % 300, @NOW - 34560000000
FROM bench_numbers;

-- One earning operation per lot (ids follow the lots), as purchases make them.
INSERT INTO ledger_operations (id, kind, customer_id, amount_minor, asset, detail_json, actor_kind, actor_name, occurred_at_ms)
SELECT i, 'points_earn', i, 100 + i % 500, 'PTS', '{"bench":"loyalty seed"}', 'system', 'bench seed', @NOW - 34560000000
FROM bench_numbers WHERE i % 2 = 0;
INSERT INTO ledger_operations (id, kind, customer_id, amount_minor, asset, detail_json, actor_kind, actor_name, occurred_at_ms)
SELECT @N + i, 'points_earn', i, 50 + i % 300, 'PTS', '{"bench":"loyalty seed"}', 'system', 'bench seed', @NOW - 2592000000
FROM bench_numbers;
INSERT INTO points_lots (id, customer_id, account_id, operation_id, source, points_earned, points_remaining, earned_at_ms, available_at_ms, expires_at_ms)
SELECT i, i, 10 + i, i, 'purchase', 100 + i % 500, 100 + i % 500, @NOW - 34560000000, @NOW - 34560000000, @NOW - 3600000
FROM bench_numbers WHERE i % 2 = 0;
INSERT INTO points_lots (id, customer_id, account_id, operation_id, source, points_earned, points_remaining, earned_at_ms, available_at_ms, expires_at_ms)
SELECT @N + i, i, 10 + i, @N + i, 'purchase', 50 + i % 300, 50 + i % 300, @NOW - 2592000000, @NOW - 2592000000, @NOW + 34560000000
FROM bench_numbers;
INSERT INTO ledger_transfers (id, operation_id, debit_account_id, credit_account_id, amount_minor, asset, purpose, created_at_ms)
SELECT id, id, 1, account_id, points_earned, 'PTS', 'points_earn', earned_at_ms FROM points_lots;

-- Tiers held: 70% ordinary, 20% silver, 8% gold, 2% platinum (rank by i % 100).
INSERT INTO loyalty_members (customer_id, tier, tier_since_ms, review_at_ms, grace_until_ms, version, created_at_ms, updated_at_ms)
SELECT i,
       CASE WHEN i % 100 < 70 THEN 'ordinary' WHEN i % 100 < 90 THEN 'silver' WHEN i % 100 < 98 THEN 'gold' ELSE 'platinum' END,
       @NOW - 34560000000, @NOW - 86400000,
       CASE WHEN i % 100 >= 70 AND i % 7 = 0 THEN @NOW - 86400000 END,
       1, @NOW - 34560000000, @NOW - 34560000000
FROM bench_numbers;

INSERT INTO card_products (id, code, name, kind, currency, number_prefix, bonus_rules_json, spend_order, top_up_max_minor,
                           spend_max_minor, balance_max_minor, close_policy, default_tier, status, created_at_ms, updated_at_ms)
VALUES (1, 'BENCHMEMBER', 'bench 会员卡', 'membership', 'CNY', '8800', '[]', 'proportional', 0, 0, 0, 'forfeit', 'ordinary',
        'active', @NOW - 34560000000, @NOW - 34560000000);
INSERT INTO cards (id, number_cipher, number_index, number_last4, product_id, customer_id, form, status, tier, version, issued_at_ms, activated_at_ms, updated_at_ms)
SELECT customer_id, @BLOB('bench card ' || CAST(customer_id AS TEXT))@, @BLOB('bench index ' || CAST(customer_id AS TEXT))@, '0000', 1, customer_id, 'virtual', 'active', tier, 1,
       @NOW - 34560000000, @NOW - 34560000000, @NOW - 34560000000
FROM loyalty_members;

-- Three months of activity in the 12-month window, one visit each (never enough visits to
-- qualify), spend by the tier the member qualifies for: the held rank, one above
-- ((i * 7919) % 10 = 8) or one below (= 9). Thresholds of the default programme over three
-- months: silver 200,000, gold 1,000,000, platinum 5,000,000 minor.
INSERT INTO loyalty_activity (customer_id, month_index, spend_minor, visits, points_earned)
SELECT q.i, @MONTH - k.back,
       CASE q.target WHEN 0 THEN 20000 + q.i % 40000 WHEN 1 THEN 100000 + q.i % 100000
                     WHEN 2 THEN 400000 + q.i % 600000 ELSE 1700000 + q.i % 1000000 END,
       1, 100
FROM (SELECT i, CASE WHEN held + delta < 0 THEN 0 WHEN held + delta > 3 THEN 3 ELSE held + delta END AS target
      FROM (SELECT i,
                   CASE WHEN i % 100 < 70 THEN 0 WHEN i % 100 < 90 THEN 1 WHEN i % 100 < 98 THEN 2 ELSE 3 END AS held,
                   CASE (i * 7919) % 10 WHEN 8 THEN 1 WHEN 9 THEN -1 ELSE 0 END AS delta
            FROM bench_numbers) r) q
CROSS JOIN (SELECT 0 AS back UNION ALL SELECT 3 UNION ALL SELECT 7) k;

DROP TABLE bench_numbers;
