-- cardcrm schema 1: organisation, staff and access, audit, customers, purchases, imports.
-- Conventions: money in integer minor units (`*_minor`), times in UTC epoch milliseconds
-- (`*_at_ms`), booleans as 0/1 integers, personal data as AEAD ciphertext (`*_cipher`) with a
-- keyed blind index (`*_index`) for exact lookups. Tokens in braces are replaced per backend.

-- Facts about this installation, such as the check values that prove the configured
-- encryption keys are the ones this database was written with.
CREATE TABLE system_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at_ms {int} NOT NULL
);

CREATE TABLE stores (
    id {serial},
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    city TEXT,
    address TEXT,
    time_zone TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);

CREATE TABLE staff (
    id {serial},
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    store_id {int} REFERENCES stores(id),
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    failed_login_count {int} NOT NULL DEFAULT 0,
    locked_until_ms {int},
    password_changed_at_ms {int} NOT NULL,
    last_login_at_ms {int},
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);

CREATE TABLE sessions (
    id {serial},
    token_hash {blob} NOT NULL UNIQUE,
    staff_id {int} NOT NULL REFERENCES staff(id),
    csrf_token TEXT NOT NULL,
    source_ip TEXT,
    user_agent TEXT,
    created_at_ms {int} NOT NULL,
    expires_at_ms {int} NOT NULL,
    last_seen_at_ms {int} NOT NULL
);
CREATE INDEX sessions_staff ON sessions (staff_id);

CREATE TABLE api_tokens (
    id {serial},
    name TEXT NOT NULL,
    token_hash {blob} NOT NULL UNIQUE,
    token_prefix TEXT NOT NULL,
    scopes TEXT NOT NULL,
    store_id {int} REFERENCES stores(id),
    created_by {int} NOT NULL REFERENCES staff(id),
    created_at_ms {int} NOT NULL,
    expires_at_ms {int},
    revoked_at_ms {int},
    last_used_at_ms {int}
);

CREATE TABLE audit_log (
    id {serial},
    at_ms {int} NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id {int},
    actor_name TEXT NOT NULL,
    actor_role TEXT,
    actor_store_id {int},
    source_ip TEXT,
    request_id TEXT,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_entity ON audit_log (entity_type, entity_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor_kind, actor_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE TABLE customers (
    id {serial},
    name TEXT,
    name_key {text_c},
    gender TEXT NOT NULL,
    birthday TEXT,
    phone_cipher {blob},
    phone_index {blob},
    email_cipher {blob},
    email_index {blob},
    id_kind TEXT,
    id_number_cipher {blob},
    id_number_index {blob},
    address_cipher {blob},
    occupation TEXT,
    income_band TEXT,
    province TEXT,
    city TEXT,
    source_channel TEXT NOT NULL,
    home_store_id {int} REFERENCES stores(id),
    external_id TEXT,
    preferences_json TEXT NOT NULL,
    status TEXT NOT NULL,
    merged_into_id {int} REFERENCES customers(id),
    version {int} NOT NULL,
    created_at_ms {int} NOT NULL,
    updated_at_ms {int} NOT NULL
);
CREATE INDEX customers_phone_index ON customers (phone_index) WHERE phone_index IS NOT NULL;
CREATE INDEX customers_email_index ON customers (email_index) WHERE email_index IS NOT NULL;
CREATE INDEX customers_id_number_index ON customers (id_number_index) WHERE id_number_index IS NOT NULL;
CREATE UNIQUE INDEX customers_external_id ON customers (source_channel, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX customers_name_key ON customers (name_key, id);
CREATE INDEX customers_home_store ON customers (home_store_id, id);

CREATE TABLE customer_tags (
    customer_id {int} NOT NULL REFERENCES customers(id),
    tag TEXT NOT NULL,
    created_at_ms {int} NOT NULL,
    PRIMARY KEY (customer_id, tag)
);
CREATE INDEX customer_tags_tag ON customer_tags (tag, customer_id);

CREATE TABLE customer_consents (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    channel TEXT NOT NULL,
    granted {int} NOT NULL,
    source TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    recorded_at_ms {int} NOT NULL
);
CREATE INDEX customer_consents_customer ON customer_consents (customer_id, channel, id);

CREATE TABLE customer_events (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    occurred_at_ms {int} NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    store_id {int} REFERENCES stores(id),
    detail_json TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    created_at_ms {int} NOT NULL
);
CREATE INDEX customer_events_customer ON customer_events (customer_id, occurred_at_ms, id);

CREATE TABLE imports (
    id {serial},
    kind TEXT NOT NULL,
    file_name TEXT NOT NULL,
    status TEXT NOT NULL,
    dry_run {int} NOT NULL,
    skip_invalid {int} NOT NULL,
    rows_total {int} NOT NULL,
    rows_inserted {int} NOT NULL,
    rows_updated {int} NOT NULL,
    rows_rejected {int} NOT NULL,
    report_json TEXT NOT NULL,
    rejects_csv TEXT,
    started_by TEXT NOT NULL,
    started_at_ms {int} NOT NULL,
    finished_at_ms {int}
);

CREATE TABLE purchases (
    id {serial},
    customer_id {int} NOT NULL REFERENCES customers(id),
    store_id {int} REFERENCES stores(id),
    occurred_at_ms {int} NOT NULL,
    amount_minor {int} NOT NULL,
    currency TEXT NOT NULL,
    category TEXT,
    channel TEXT NOT NULL,
    external_id TEXT,
    import_id {int} REFERENCES imports(id),
    created_at_ms {int} NOT NULL
);
CREATE INDEX purchases_customer ON purchases (customer_id, occurred_at_ms);
CREATE UNIQUE INDEX purchases_external_id ON purchases (external_id) WHERE external_id IS NOT NULL;

-- @sqlite
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- @postgres
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$body$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
