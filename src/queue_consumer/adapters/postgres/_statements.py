"""Every statement the PostgreSQL queue runs, and the schema file it declares; rules stay in _queue.

Each statement is one round trip in autocommit mode, except ``put`` into a message group
and ``redrive``, which take a per-group advisory lock first (see ``GROUP_LOCK``). Times
are the server's: ``now()`` is the start of the statement's transaction.
"""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["SCHEMA_VERSION", "Statements", "group_lock_key", "quote_identifier", "schema_script"]

SCHEMA_VERSION = 1

# pg_advisory_xact_lock(int, int) key space of the schema declaration: "qc" + 0x5343 ("SC").
DECLARE_LOCK_CLASS = 0x71635343


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (what psycopg.sql.Identifier renders)."""
    return '"' + name.replace('"', '""') + '"'


def schema_script(schema: str) -> str:
    """``schema.sql`` (shipped beside this module) for ``schema``: the DDL the queue runs."""
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    return text.replace(':"schema"', quote_identifier(schema))


def group_lock_key(schema: str, queue: str, group: str) -> int:
    """A signed 64-bit advisory lock key for one message group of one queue."""
    digest = hashlib.blake2b(f"{schema}\x1f{queue}\x1f{group}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# The deliveries a settle names, as two comma-separated texts: psycopg dumps a Python list
# as an array in Python code (about 0.1 ms of CPU for ten items), a text in C.
_KEYS = (
    "unnest(string_to_array(%(ids)s, ',')::bigint[], string_to_array(%(leases)s, ',')::uuid[]) "
    "AS k(id, lease)"
)
_SECONDS = "* interval '1 second'"

_DEAD_COLUMNS = (
    "id, queue, kind, body, headers, group_key, attempts, last_error, created_at, died_at"
)
# A dead letter of the same id cannot be another message (ids come from one sequence): the
# newer copy wins, so that a message removed from messages is never dropped on the floor.
_DEAD_CONFLICT = (
    "ON CONFLICT (id) DO UPDATE SET attempts = EXCLUDED.attempts, "
    "last_error = EXCLUDED.last_error, died_at = EXCLUDED.died_at"
)


class Statements:
    """The SQL text for one schema, rendered once (psycopg prepares what repeats)."""

    def __init__(self, schema: str) -> None:
        s = quote_identifier(schema)
        self.messages_table = f"{s}.messages"
        self.version = f"SELECT max(version) FROM {s}.schema_version"
        self.tables_exist = (
            "SELECT to_regclass(%(messages)s) IS NOT NULL AND to_regclass(%(dead)s) IS NOT NULL "
            "AND to_regclass(%(version)s) IS NOT NULL"
        )
        self.tables = {
            "messages": f"{s}.messages",
            "dead": f"{s}.dead_letters",
            "version": f"{s}.schema_version",
        }

        # get(): lease up to n visible messages, in one statement. A row of a message group
        # is a candidate only while no older row of its group exists (leased, waiting or
        # delayed): strict FIFO, one message of a group out at a time. FOR UPDATE SKIP
        # LOCKED lets concurrent consumers pass each other; the lock lasts this statement
        # only. A row whose last allowed delivery ended in an expired lease (its consumer
        # died, maybe because of it) is moved to the dead letters in the same statement.
        self.lease = f"""
WITH picked AS (
    SELECT m.id, m.attempts FROM {s}.messages m
    WHERE m.queue = %(queue)s AND m.visible_at <= now()
      AND (m.group_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {s}.messages o
          WHERE o.queue = m.queue AND o.group_key = m.group_key AND o.id < m.id))
    ORDER BY m.visible_at, m.id
    LIMIT %(limit)s
    FOR UPDATE OF m SKIP LOCKED
), leased AS (
    UPDATE {s}.messages m
    SET lease = gen_random_uuid(), attempts = m.attempts + 1,
        visible_at = now() + %(timeout)s {_SECONDS}
    FROM picked
    WHERE m.id = picked.id AND picked.attempts < %(max_attempts)s
    RETURNING m.id, m.kind, m.body, m.attempts, m.lease::text AS lease, m.group_key,
              extract(epoch FROM m.created_at)::float8 AS created_at, m.headers
), spent AS (
    DELETE FROM {s}.messages m USING picked
    WHERE m.id = picked.id AND picked.attempts >= %(max_attempts)s
    RETURNING m.*
), buried AS (
    INSERT INTO {s}.dead_letters ({_DEAD_COLUMNS})
    SELECT id, queue, kind, body, headers, group_key, attempts, %(expired)s, created_at, now()
    FROM spent
    {_DEAD_CONFLICT}
    RETURNING id
)
SELECT id, kind, body, attempts, lease, group_key, created_at, headers FROM leased
UNION ALL
SELECT id, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM buried
"""

        self.delete = (
            f"DELETE FROM {s}.messages m USING {_KEYS} WHERE m.id = k.id AND m.lease = k.lease "
            "RETURNING m.id, m.lease::text"
        )

        # reject(): retry after an exponential backoff, or (out of attempts) move to the dead
        # letters. One statement, so the copy and the removal commit together.
        self.reject = f"""
WITH k AS (SELECT * FROM {_KEYS}), dead AS (
    DELETE FROM {s}.messages m USING k
    WHERE m.id = k.id AND m.lease = k.lease AND m.attempts >= %(max_attempts)s
    RETURNING m.*
), buried AS (
    INSERT INTO {s}.dead_letters ({_DEAD_COLUMNS})
    SELECT id, queue, kind, body, headers, group_key, attempts, %(reason)s, created_at, now()
    FROM dead
    {_DEAD_CONFLICT}
    RETURNING id
), retried AS (
    UPDATE {s}.messages m
    SET lease = NULL, last_error = %(error)s,
        visible_at = now() + LEAST(
            %(retry_delay)s * power(2, LEAST(GREATEST(m.attempts - 1, 0), 60)),
            %(max_retry_delay)s) {_SECONDS}
    FROM k
    WHERE m.id = k.id AND m.lease = k.lease AND m.attempts < %(max_attempts)s
    RETURNING m.id
)
SELECT (SELECT count(*) FROM retried), (SELECT count(*) FROM buried)
"""

        # dead_letter(): the handler said it can never succeed (PermanentFailure).
        self.bury = f"""
WITH dead AS (
    DELETE FROM {s}.messages m USING {_KEYS}
    WHERE m.id = k.id AND m.lease = k.lease
    RETURNING m.*
)
INSERT INTO {s}.dead_letters ({_DEAD_COLUMNS})
SELECT id, queue, kind, body, headers, group_key, attempts, %(reason)s, created_at, now()
FROM dead
{_DEAD_CONFLICT}
"""

        # release(): back at once, in its place by age, the attempt not counted.
        self.release = (
            f"UPDATE {s}.messages m SET lease = NULL, visible_at = LEAST(m.created_at, now()), "
            f"attempts = GREATEST(m.attempts - 1, 0) FROM {_KEYS} "
            "WHERE m.id = k.id AND m.lease = k.lease"
        )

        self.extend = (
            f"UPDATE {s}.messages m SET visible_at = now() + %(timeout)s {_SECONDS} "
            f"FROM {_KEYS} WHERE m.id = k.id AND m.lease = k.lease "
            "RETURNING m.id, m.lease::text"
        )

        insert = (
            f"INSERT INTO {s}.messages (queue, kind, body, headers, group_key, visible_at) "
            "SELECT %(queue)s, k.kind, k.body, %(headers)s::jsonb, %(group)s, "
            f"now() + %(delay)s {_SECONDS} "
            "FROM unnest(%(kinds)s::text[], %(bodies)s::bytea[]) "
            "WITH ORDINALITY AS k(kind, body, n) "
            "ORDER BY k.n RETURNING id"
        )
        self.insert = insert
        # The NOTIFY rides on the INSERT's round trip; it is sent when the transaction commits.
        self.insert_notify = (
            f"WITH ins AS ({insert}), note AS (SELECT pg_notify(%(channel)s, '')) "
            "SELECT ins.id FROM ins CROSS JOIN note"
        )
        self.notify = "SELECT pg_notify(%(channel)s, '')"
        # Advisory lock of one message group, until the transaction ends: puts (and
        # redrives) into a group commit one after another, so ids within a group follow
        # commit order and "no older row of the group" in get() is never fooled by an older
        # id committing late.
        self.group_lock = "SELECT pg_advisory_xact_lock(key) FROM unnest(%(keys)s::bigint[]) AS key"

        self.counts = f"""
SELECT count(*) FILTER (WHERE visible_at <= now()),
       count(*) FILTER (WHERE visible_at > now() AND lease IS NULL),
       count(*) FILTER (WHERE visible_at > now() AND lease IS NOT NULL),
       (SELECT count(*) FROM {s}.dead_letters WHERE queue = %(queue)s)
FROM {s}.messages WHERE queue = %(queue)s
"""
        self.dead_letters = (
            "SELECT id, kind, body, attempts, last_error, extract(epoch FROM died_at)::float8, "
            f"extract(epoch FROM created_at)::float8, group_key FROM {s}.dead_letters "
            "WHERE queue = %(queue)s ORDER BY died_at, id LIMIT %(limit)s"
        )
        _which = "queue = %(queue)s AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))"
        self.dead_groups = (
            f"SELECT DISTINCT group_key FROM {s}.dead_letters "
            f"WHERE {_which} AND group_key IS NOT NULL"
        )
        # redrive(): back with attempts reset, in one statement. A message of a group gets a
        # new id, the tail of its group (its old id would jump ahead of a leased successor).
        self.redrive = f"""
WITH moved AS (DELETE FROM {s}.dead_letters WHERE {_which} RETURNING *)
INSERT INTO {s}.messages (id, queue, kind, body, headers, group_key, attempts, visible_at,
                         created_at, last_error)
SELECT CASE WHEN group_key IS NULL THEN id
            ELSE nextval(pg_get_serial_sequence(%(table)s, 'id')) END,
       queue, kind, body, headers, group_key, 0, now(), now(), last_error
FROM moved ORDER BY id
ON CONFLICT (id) DO NOTHING
"""
        self.purge = f"DELETE FROM {s}.messages WHERE queue = %(queue)s"
        self.purge_dead = f"DELETE FROM {s}.dead_letters WHERE queue = %(queue)s"
