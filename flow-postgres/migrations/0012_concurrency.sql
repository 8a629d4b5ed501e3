-- Concurrency limits (flow_core::flow_control): the keys a run of a limited
-- function counts under while it is running, one per rule of its function, each
-- `<scope>\x1f<value>`. NULL until the first worker that considers the run for a
-- claim evaluates them (with the configuration it serves) and stores them.
--
-- Claims of limited functions lock their candidates' keys (transaction-scoped
-- advisory locks, in the two-int space, hashed) and then count the running runs
-- of each key with a live lease, through `runs_leased`: the running runs are few
-- (at most the workers' slots), so no index by key is kept.
ALTER TABLE flow.runs ADD COLUMN concurrency_keys text[];
