-- `singleton(key, mode)` (flow_core::catalog): the run that last took each key of
-- a function. The key is free when that run has ended (its status says so, so
-- nothing deletes rows here when runs end). Sends lock a key (advisory,
-- transaction-scoped) before they read its holder, so that concurrent sends of a
-- key take turns.
CREATE TABLE flow.singletons (
    function_id text NOT NULL,
    key         text NOT NULL,
    run_id      uuid NOT NULL,
    PRIMARY KEY (function_id, key)
);
