-- Versions of each function's send-time rules (flow_core::catalog), so that two
-- versions of a function served at once (a rolling deploy) do not flip the
-- catalog back and forth as their workers start. A version is the hash of the
-- rules ('' for none); workers mark the versions they serve as seen when they
-- announce and then every VERSION_HEARTBEAT. The catalog (`functions.send_rules`)
-- follows the version first seen last among those seen within VERSION_LIVENESS:
-- a restarted worker of an older version does not take it back, and once no
-- worker serves the newer version any more (a rollback), the older one returns.
CREATE TABLE flow.function_versions (
    function_id text NOT NULL,
    hash        text NOT NULL,
    send_rules  jsonb,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    PRIMARY KEY (function_id, hash)
);

-- The functions announced before versions were kept: their rules as they are.
INSERT INTO flow.function_versions (function_id, hash, send_rules, first_seen, last_seen)
SELECT id, COALESCE(send_rules_hash, ''), send_rules, last_seen, last_seen FROM flow.functions;
