-- `run_concurrency(limit, key)` (flow_core::flow_control): the keys a run holds
-- from its first start to its end, sleeping and waiting included (its
-- `run_concurrency` keys, also among `concurrency_keys`), set when a claim first
-- starts it. A claim of a run that has not started locks its keys and counts the
-- active runs of each through this index, which holds only runs that have such
-- keys and have not ended: an unlimited run never enters it.
ALTER TABLE flow.runs ADD COLUMN active_keys text[];
CREATE INDEX runs_active_keys ON flow.runs USING gin (active_keys)
    WHERE active_keys IS NOT NULL
      AND status IN ('queued', 'running', 'sleeping', 'waiting', 'blocked');
