-- Run ids ordered by creation time (UUID version 7: 48 bits of Unix milliseconds,
-- then random bits), so a new run's primary-key entry lands at the right edge of
-- the index instead of on a random page. Event ids are made by the client, already
-- version 7; a run's id is made here, one per matching function.
CREATE FUNCTION flow.uuid_v7() RETURNS uuid LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;
