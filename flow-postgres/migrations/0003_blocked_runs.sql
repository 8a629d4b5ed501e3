-- A run that cannot replay (its code changed under it) is held as `blocked`
-- instead of failed. It is retried with backoff (`blocked_count`) and at once when a
-- worker announces its function, so a fixed or rolled-back deploy resumes it.
ALTER TABLE flow.runs DROP CONSTRAINT runs_status_check;
ALTER TABLE flow.runs ADD CONSTRAINT runs_status_check CHECK (status IN
    ('queued', 'running', 'sleeping', 'waiting', 'blocked', 'completed', 'failed', 'cancelled'));
ALTER TABLE flow.runs ADD COLUMN blocked_count integer NOT NULL DEFAULT 0;

-- How many step records the run is known to have: a resumed run that loads fewer
-- reports the missing rows instead of running their steps again.
ALTER TABLE flow.runs ADD COLUMN step_count integer NOT NULL DEFAULT 0;
UPDATE flow.runs r SET step_count = s.n
FROM (SELECT run_id, count(*) AS n FROM flow.steps GROUP BY run_id) s
WHERE s.run_id = r.id AND r.status NOT IN ('completed', 'failed', 'cancelled');

DROP INDEX flow.runs_due;
CREATE INDEX runs_due ON flow.runs (not_before) WHERE status IN ('queued', 'sleeping', 'blocked');
