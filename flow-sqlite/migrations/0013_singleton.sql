-- As PostgreSQL's migration 15: the run that last took each singleton key of a
-- function; the key is free once that run has ended. Sends read and take keys
-- inside their one write transaction.
CREATE TABLE flow_singletons (
    function_id TEXT NOT NULL,
    key         TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    PRIMARY KEY (function_id, key)
);
