-- Every trigger of every function, as in PostgreSQL's migration 21:
-- `flow_functions.trigger` stays the first, as declared.
CREATE TABLE flow_function_triggers (
    trigger     TEXT NOT NULL,
    function_id TEXT NOT NULL,
    PRIMARY KEY (trigger, function_id)
);
INSERT INTO flow_function_triggers (trigger, function_id) SELECT trigger, id FROM flow_functions;
