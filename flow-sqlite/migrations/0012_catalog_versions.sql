-- As PostgreSQL's migration 14: versions of each function's send-time rules, so
-- that the catalog follows the version first seen last among those still served.
CREATE TABLE flow_function_versions (
    function_id TEXT NOT NULL,
    hash        TEXT NOT NULL,
    send_rules  TEXT,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    PRIMARY KEY (function_id, hash)
);

INSERT INTO flow_function_versions (function_id, hash, send_rules, first_seen, last_seen)
SELECT id, COALESCE(send_rules_hash, ''), send_rules, last_seen, last_seen FROM flow_functions;
