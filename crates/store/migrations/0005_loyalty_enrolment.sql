-- cardcrm schema 5: fewer pages written per earning and per job row, and enrolment.

-- When a member joined the programme (and got the sign-up bonus, once).
ALTER TABLE loyalty_members ADD COLUMN enrolled_at_ms {int};

-- No query reads members by review date (the tier job walks members in key order), and an
-- index on a column every review moves made each review an index write, and on PostgreSQL
-- ruled out heap-only updates of the member row.
DROP INDEX loyalty_members_review;

-- Refunds find the lots an operation made through the member's lots (they know the member);
-- this index cost every earning one more page written.
DROP INDEX points_lots_operation;

-- @sqlite
-- Monthly activity lives in its key's B-tree: an earning's upsert writes one page, not a
-- table page and an index page.
CREATE TABLE loyalty_activity_keyed (
    customer_id {int} NOT NULL REFERENCES customers(id),
    month_index {int} NOT NULL,
    spend_minor {int} NOT NULL,
    visits {int} NOT NULL,
    points_earned {int} NOT NULL,
    PRIMARY KEY (customer_id, month_index)
) WITHOUT ROWID;
INSERT INTO loyalty_activity_keyed (customer_id, month_index, spend_minor, visits, points_earned)
SELECT customer_id, month_index, spend_minor, visits, points_earned FROM loyalty_activity;
DROP TABLE loyalty_activity;
ALTER TABLE loyalty_activity_keyed RENAME TO loyalty_activity;

-- @postgres
-- Rows that are updated in place (balances, lots, tier state) leave room on their page, so
-- an update that changes no indexed column stays on the page and writes no index entry
-- (a heap-only tuple). An expiry or a review touches most of these rows at once. Existing
-- pages keep their fill until VACUUM FULL or CLUSTER rewrites them.
ALTER TABLE ledger_accounts SET (fillfactor = 70);
ALTER TABLE points_lots SET (fillfactor = 70);
ALTER TABLE loyalty_members SET (fillfactor = 70);
