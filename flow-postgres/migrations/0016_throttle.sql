-- `throttle(limit, period, burst, key)` (flow_core::flow_control): each throttle
-- key's theoretical arrival time (GCRA). A claim of a run that has not started
-- locks the run's throttle keys (as it locks its concurrency keys), reads these,
-- starts the run only if its keys allow a start now, and moves them on by one
-- interval; a run held waits, due again at its key's next start. The keys are
-- stored on the run after its concurrency keys (`runs.concurrency_keys`).
CREATE TABLE flow.throttles (
    key text PRIMARY KEY,
    tat timestamptz NOT NULL
);
