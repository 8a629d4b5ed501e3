-- Every trigger of every function (a function may have up to ten: `event` given
-- several times, and `cron`): what sends match an event's name against.
-- `functions.trigger` stays the first, as declared. A worker's announce replaces
-- the rows of the functions it serves, as it does their cancel triggers.
CREATE TABLE flow.function_triggers (
    trigger     text NOT NULL,
    function_id text NOT NULL,
    PRIMARY KEY (trigger, function_id)
);
INSERT INTO flow.function_triggers (trigger, function_id) SELECT trigger, id FROM flow.functions;
