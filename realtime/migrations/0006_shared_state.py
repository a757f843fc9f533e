"""The state server processes share on PostgreSQL (REALTIME_BUS=postgres): realtime.pg_store.

The registry of live processes, connection slots, sliding rate logs and
the leases of exclusive jobs, each operation one function call or one
statement. PostgreSQL only (a no-op elsewhere: SQLite serves one process).

The tables are UNLOGGED: this state lives as long as the processes that
hold it, as it does in a Redis without persistence. No WAL is written for
it, and after a crash PostgreSQL empties the tables; every process then
finds itself registered anew and sets its slots again, as after a Redis
restart.
"""

from django.db import migrations

FORWARD = r"""
CREATE UNLOGGED TABLE realtime_process (
    process_id text PRIMARY KEY,
    expires timestamptz NOT NULL,
    snapshot text
);

CREATE UNLOGGED TABLE realtime_slot (
    user_id bigint NOT NULL,
    process_id text NOT NULL,
    connections integer NOT NULL,
    PRIMARY KEY (user_id, process_id)
);

-- Updated on every hit: space left in each page for HOT updates (no index on what changes).
CREATE UNLOGGED TABLE realtime_rate_log (
    key text PRIMARY KEY,
    stamps timestamptz[] NOT NULL,
    expires timestamptz NOT NULL
) WITH (fillfactor = 70);

CREATE UNLOGGED TABLE realtime_lease (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires timestamptz NOT NULL
);

-- Register (or renew) a process with its snapshot until p_ttl seconds from now; forget the
-- processes that expired, and a batch of rate logs past their window. Returns whether the
-- process was registered anew (it was not live: it just started, or its entry was lost).
CREATE FUNCTION realtime_heartbeat(p_process text, p_ttl double precision, p_snapshot text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    was_live boolean;
    gone integer;
BEGIN
    SELECT expires > now() INTO was_live FROM realtime_process WHERE process_id = p_process;
    INSERT INTO realtime_process (process_id, expires, snapshot)
    VALUES (p_process, now() + p_ttl * interval '1 second', p_snapshot)
    ON CONFLICT (process_id) DO UPDATE SET expires = excluded.expires, snapshot = excluded.snapshot;
    -- Rows another heartbeat is deleting are skipped: heartbeats never wait on each other.
    DELETE FROM realtime_process WHERE process_id IN (
        SELECT process_id FROM realtime_process WHERE expires <= now() FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS gone = ROW_COUNT;
    IF gone > 0 THEN
        -- Slots of processes no longer registered; rows a slot call holds are skipped (that
        -- call drops them itself), so a heartbeat never waits on a handshake.
        DELETE FROM realtime_slot WHERE (user_id, process_id) IN (
            SELECT s.user_id, s.process_id FROM realtime_slot s
            WHERE NOT EXISTS (SELECT 1 FROM realtime_process p WHERE p.process_id = s.process_id)
            FOR UPDATE SKIP LOCKED);
    END IF;
    DELETE FROM realtime_rate_log WHERE key IN (
        SELECT key FROM realtime_rate_log WHERE expires <= now() LIMIT 1000 FOR UPDATE SKIP LOCKED);
    RETURN was_live IS NOT TRUE;
END $$;

-- Take a connection slot of p_user for p_process unless the live processes hold p_limit.
-- Serialized per user by a transaction-scoped advisory lock; renews p_process's entry when a
-- third of its TTL went by. Returns (admitted, registered anew).
CREATE FUNCTION realtime_slot_take(
    p_user bigint, p_process text, p_limit integer, p_ttl double precision,
    OUT admitted boolean, OUT registered_anew boolean
) LANGUAGE plpgsql AS $$
DECLARE
    expires_at timestamptz;
    total bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('realtime_slot:' || p_user, 0));
    SELECT expires INTO expires_at FROM realtime_process WHERE process_id = p_process;
    registered_anew := expires_at IS NULL OR expires_at <= now();
    IF expires_at IS NULL OR expires_at < now() + (p_ttl * 2 / 3) * interval '1 second' THEN
        INSERT INTO realtime_process (process_id, expires)
        VALUES (p_process, now() + p_ttl * interval '1 second')
        ON CONFLICT (process_id) DO UPDATE SET expires = excluded.expires;
    END IF;
    DELETE FROM realtime_slot s WHERE s.user_id = p_user AND s.process_id <> p_process
        AND NOT EXISTS (SELECT 1 FROM realtime_process p
                        WHERE p.process_id = s.process_id AND p.expires > now());
    SELECT coalesce(sum(connections), 0) INTO total FROM realtime_slot WHERE user_id = p_user;
    admitted := total < p_limit;
    IF admitted THEN
        INSERT INTO realtime_slot (user_id, process_id, connections) VALUES (p_user, p_process, 1)
        ON CONFLICT (user_id, process_id) DO UPDATE SET connections = realtime_slot.connections + 1;
    END IF;
END $$;

-- Give back a slot taken by realtime_slot_take.
CREATE FUNCTION realtime_slot_give(p_user bigint, p_process text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('realtime_slot:' || p_user, 0));
    UPDATE realtime_slot SET connections = connections - 1
    WHERE user_id = p_user AND process_id = p_process;
    DELETE FROM realtime_slot WHERE user_id = p_user AND process_id = p_process AND connections <= 0;
END $$;

-- Set p_process's slot counts of the given users (after they may have been lost). Rows are
-- written in user order, as every other operation locks them: no two calls wait in a circle.
CREATE FUNCTION realtime_slots_set(p_process text, p_users bigint[], p_counts integer[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM realtime_slot s USING unnest(p_users, p_counts) AS t (u, c)
    WHERE s.process_id = p_process AND s.user_id = t.u AND t.c <= 0;
    INSERT INTO realtime_slot (user_id, process_id, connections)
    SELECT u, p_process, c FROM unnest(p_users, p_counts) AS t (u, c) WHERE c > 0 ORDER BY u
    ON CONFLICT (user_id, process_id) DO UPDATE SET connections = excluded.connections;
END $$;

-- Record a hit on p_key unless p_limit were recorded within p_seconds; returns whether recorded.
-- The log's row lock orders concurrent hits; a refused hit writes nothing.
CREATE FUNCTION realtime_rate_hit(p_key text, p_limit integer, p_seconds double precision)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    log timestamptz[];
    at timestamptz;
BEGIN
    LOOP  -- again if a heartbeat swept an expired log away meanwhile
        SELECT stamps INTO log FROM realtime_rate_log WHERE key = p_key FOR UPDATE;
        EXIT WHEN FOUND;
        INSERT INTO realtime_rate_log (key, stamps, expires) VALUES (p_key, '{}', now())
        ON CONFLICT (key) DO NOTHING;
    END LOOP;
    at := clock_timestamp();  -- after the lock: the moment this hit is counted
    log := ARRAY(SELECT s FROM unnest(log) AS s WHERE s > at - p_seconds * interval '1 second');
    IF cardinality(log) >= p_limit THEN
        RETURN false;
    END IF;
    UPDATE realtime_rate_log SET stamps = log || at, expires = at + p_seconds * interval '1 second'
    WHERE key = p_key;
    RETURN true;
END $$;
"""

BACKWARD = """
DROP FUNCTION IF EXISTS realtime_rate_hit(text, integer, double precision);
DROP FUNCTION IF EXISTS realtime_slots_set(text, bigint[], integer[]);
DROP FUNCTION IF EXISTS realtime_slot_give(bigint, text);
DROP FUNCTION IF EXISTS realtime_slot_take(bigint, text, integer, double precision);
DROP FUNCTION IF EXISTS realtime_heartbeat(text, double precision, text);
DROP TABLE IF EXISTS realtime_lease, realtime_rate_log, realtime_slot, realtime_process;
"""


def on_postgresql(sql: str):
    """Return a RunPython function that runs ``sql`` on PostgreSQL and does nothing elsewhere."""

    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("realtime", "0005_busevent")]

    operations = [migrations.RunPython(on_postgresql(FORWARD), on_postgresql(BACKWARD))]
