-- The function catalog (flow_core::catalog): the rules a sender applies when an
-- event is sent (`idempotency` today), as the last worker to announce the
-- function wrote them, with their hash. NULL for a function without such rules.
-- A send compares the hashes it decided with against these, and stores nothing
-- when one differs (the sender reloads the catalog and sends again).
ALTER TABLE flow.functions ADD COLUMN send_rules jsonb, ADD COLUMN send_rules_hash text;

-- One run per function and idempotency key for 24 hours: the first send claims
-- the key (ON CONFLICT, so concurrent sends agree), a later one takes it over
-- only once it expired. Rows are reused, never deleted here (retention will).
CREATE TABLE flow.idempotency_keys (
    function_id text NOT NULL,
    key         text NOT NULL,
    run_id      uuid NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (function_id, key)
);
