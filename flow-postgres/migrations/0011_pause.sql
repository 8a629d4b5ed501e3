-- Pausing a function (Client::pause): while `paused_at` is set, no claim takes its
-- runs (sends still create them, timers and waits still make them due), and no
-- idle worker counts them in its next due time. Resuming clears it; the held runs
-- are then claimed in their order.
ALTER TABLE flow.functions ADD COLUMN paused_at timestamptz;
