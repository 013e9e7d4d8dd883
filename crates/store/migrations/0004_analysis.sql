-- cardcrm schema 4: analysis runs and the segments they made. A run is one analysis
-- (rfm, kmeans, lifecycle, churn, clv, loyalty) of the database's purchases as of a day; each of
-- its segments is a list of customers, which campaigns and the console target by
-- (run, segment). Runs are never changed; a newer run of the same kind supersedes an
-- older one only in what people choose to look at.

CREATE TABLE analysis_runs (
    id {serial},
    kind TEXT NOT NULL,
    -- The analysis day, YYYY-MM-DD in the business's time zone.
    as_of TEXT NOT NULL,
    parameters_json TEXT NOT NULL,
    -- The figures the run printed: fitted parameters, cuts, cluster profiles, the report.
    summary_json TEXT NOT NULL,
    purchases {int} NOT NULL,
    customers {int} NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    duration_ms {int} NOT NULL,
    CHECK (kind IN ('rfm', 'kmeans', 'lifecycle', 'churn', 'clv', 'loyalty'))
);
CREATE INDEX analysis_runs_kind ON analysis_runs (kind, id);

-- One row per segment of a run: its code, its names and the rule that puts a customer in it.
CREATE TABLE analysis_segments (
    run_id {int} NOT NULL REFERENCES analysis_runs(id),
    code TEXT NOT NULL,
    name_en TEXT NOT NULL,
    name_zh TEXT NOT NULL,
    rule TEXT NOT NULL,
    customers {int} NOT NULL,
    PRIMARY KEY (run_id, code)
);

-- Memberships: a customer is in at most one segment per dimension of a run (an RFM run has
-- two: the classic group and the score segment). score is the figure the segment was cut
-- on where there is one (churn probability, predicted CLV), for sorting within a segment.
CREATE TABLE analysis_members (
    run_id {int} NOT NULL REFERENCES analysis_runs(id),
    segment TEXT NOT NULL,
    customer_id {int} NOT NULL REFERENCES customers(id),
    score {real},
    PRIMARY KEY (run_id, segment, customer_id)
);
CREATE INDEX analysis_members_customer ON analysis_members (customer_id, run_id);
