-- flow's tables live in their own schema, so they never meet the application's.

CREATE TABLE flow.events (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    data        jsonb NOT NULL,
    producer_id text,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL
);

-- Producer-supplied event ids seen in the last 24 hours (dedupe across all names).
CREATE TABLE flow.event_ids (
    producer_id text PRIMARY KEY,
    event_id    uuid NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- What workers serve; `send` creates one run per function whose trigger matches.
CREATE TABLE flow.functions (
    id        text PRIMARY KEY,
    trigger   text NOT NULL,
    last_seen timestamptz NOT NULL
);
CREATE INDEX functions_by_trigger ON flow.functions (trigger);

-- The hot table: every state change of a run is one fenced UPDATE here. Few
-- indexes, and room on each page for HOT updates.
CREATE TABLE flow.runs (
    id               uuid PRIMARY KEY,
    function_id      text NOT NULL,
    event_id         uuid NOT NULL,
    status           text NOT NULL CHECK (status IN
                       ('queued', 'running', 'sleeping', 'waiting', 'completed', 'failed', 'cancelled')),
    not_before       timestamptz NOT NULL,
    lease_owner      text,
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_at timestamptz,
    lost_count       integer NOT NULL DEFAULT 0,
    current_step     text,
    output           jsonb,
    error            text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (fillfactor = 70);
CREATE INDEX runs_due ON flow.runs (not_before) WHERE status IN ('queued', 'sleeping');
CREATE INDEX runs_leased ON flow.runs (lease_expires_at) WHERE status = 'running';
CREATE INDEX runs_by_event ON flow.runs (event_id);

-- One row per checkpoint. No foreign key: the checkpoint statement already locks
-- the run row through its fenced UPDATE, and a key check would cost a lookup more.
CREATE TABLE flow.steps (
    run_id      uuid NOT NULL,
    key         text NOT NULL,
    position    integer NOT NULL,
    kind        text NOT NULL,
    output      jsonb,
    error       jsonb,
    attempts    integer NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    wake_at     timestamptz,
    PRIMARY KEY (run_id, key)
);

-- One row per failed attempt that was retried.
CREATE TABLE flow.attempts (
    run_id      uuid NOT NULL,
    key         text NOT NULL,
    attempt     integer NOT NULL,
    error       jsonb NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    retry_at    timestamptz NOT NULL,
    PRIMARY KEY (run_id, key, attempt)
);
