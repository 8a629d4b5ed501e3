-- As PostgreSQL's migration 13: the send-time rules each function was announced
-- with (JSON text, NULL for none), and one run per function and idempotency key
-- for 24 hours. Sends read the rules inside their write transaction, so no hash
-- is compared here; it is kept for readers of the catalog.
ALTER TABLE flow_functions ADD COLUMN send_rules TEXT;
ALTER TABLE flow_functions ADD COLUMN send_rules_hash TEXT;

CREATE TABLE flow_idempotency_keys (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (function_id, key)
);
