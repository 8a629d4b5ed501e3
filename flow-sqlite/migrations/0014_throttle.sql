-- As PostgreSQL's migration 16: each throttle key's theoretical arrival time
-- (GCRA), read and moved by claims inside their write transaction.
CREATE TABLE flow_throttles (
    key TEXT PRIMARY KEY,
    tat INTEGER NOT NULL
);
