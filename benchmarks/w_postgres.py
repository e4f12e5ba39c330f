"""PG PostgreSQL, no-op handler: the consumer through PostgresQueue (bulk 1 and 10) beside a
bare psycopg SKIP LOCKED loop and beside procrastinate, on the local server, in one run.

Every trial fills its own queue before the clock starts and stops it at the n-th cleanup
(procrastinate: when its worker, ``wait=False``, ran out of jobs); then it checks that
nothing is left. ``statements/msg`` counts the statements the runner sent (psycopg
``execute`` calls, the pool's connection checks included): each is one round trip.
The environment is a schema of its own on the shared server, dropped at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from . import _runners
from ._harness import Plan, Row, Target

SERVER = os.environ.get("QC_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 10  # messages per get / lease statement, for every runner
BARE_THREADS = (1, 4)
WORKERS = 4
HANDLERS = {10: 8, 1: 32}  # bulk -> handler slots: bulk 1 needs more slots in flight per commit
PROCRASTINATE_CONCURRENCY = 8
# procrastinate handles ~30-100 jobs/s on this machine: 20,000 would take 4-12 minutes a
# run. Its rate is steady from the first hundred jobs on, so it runs on fewer.
PROCRASTINATE_N = 2_000


def noop(messages: Iterator[Any]) -> None:
    for _ in messages:
        pass


@contextlib.contextmanager
def environment() -> Iterator[dict[str, Any]]:
    import psycopg

    schema = f"qc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield {"server": SERVER, "schema": schema}
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def plan(quick: bool) -> Plan:
    n = 4_000 if quick else 20_000
    spec = {"module": "w_postgres"}
    rows = [
        Row(
            f"bare{threads}",
            "bare psycopg loop",
            f"{threads} thread{'s' if threads > 1 else ''}: lease {BATCH} (SKIP LOCKED), "
            "handle, delete batch",
            n,
            {**spec, "runner": "bare", "threads": threads},
        )
        for threads in BARE_THREADS
    ]
    rows += [
        Row(
            f"bulk{bulk}",
            "Consumer + PostgresQueue",
            f"max_workers={WORKERS}, max_handlers={HANDLERS[bulk]}, get {BATCH}, bulk {bulk}",
            n,
            {**spec, "runner": "consumer", "bulk": bulk, "handlers": HANDLERS[bulk]},
        )
        for bulk in (10, 1)
    ]
    rows.append(
        Row(
            "adapter4",
            "bare loop over PostgresQueue",
            f"4 threads: get {BATCH}, handle, cleanup (the adapter without the consumer)",
            n,
            {**spec, "runner": "adapter-loop", "threads": 4},
        )
    )
    rows.append(
        Row(
            "procrastinate",
            "procrastinate 3 worker",
            f"concurrency={PROCRASTINATE_CONCURRENCY}, async no-op task, delete_jobs=successful",
            min(n, PROCRASTINATE_N),
            {**spec, "runner": "procrastinate"},
        )
    )
    return Plan(
        "PG",
        "PG PostgreSQL (local server), no-op handler",
        rows,
        references=["bare1", "bare4"],
        targets=[
            Target("PG bulk 10 vs bare psycopg loop (4 threads)", "bulk10", "bare4", 0.90),
            Target("PG bulk 1 vs bare psycopg loop (4 threads)", "bulk1", "bare4", 0.50),
            Target("PG bulk 10 vs procrastinate", "bulk10", "procrastinate", 1.0),
        ],
        notes=[NOTE],
        runs=3,
    )


NOTE = (
    "Same server, same N, no-op handlers. The bare loop leases 10 rows of a minimal table "
    "(`UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 10) RETURNING`) and deletes "
    "them in one statement; the consumer does the same through the adapter, plus its "
    "per-delivery lease tokens, attempts and fenced deletes; concurrent cleanups of its "
    "handler slots share one DELETE (so bulk 1 is not one statement per message). "
    "procrastinate runs one fetch and one finish statement (a stored procedure) per job, "
    f"on {PROCRASTINATE_N:,} jobs (about 0.1k/s here: 20,000 would take minutes a run). "
    "`statements/msg` = psycopg statements per message (one round trip each)."
)


class Statements:
    """Counts statements sent through psycopg in this process (sync and async cursors)."""

    def __init__(self) -> None:
        import psycopg

        self._counter = itertools.count()
        self.base = 0
        counter = self._counter
        sync_execute = psycopg.Cursor.execute
        async_execute = psycopg.AsyncCursor.execute

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            next(counter)
            return sync_execute(self, *args, **kwargs)

        async def counted_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            next(counter)
            return await async_execute(self, *args, **kwargs)

        psycopg.Cursor.execute = counted  # type: ignore[assignment,method-assign]
        psycopg.AsyncCursor.execute = counted_async  # type: ignore[assignment,method-assign]

    def now(self) -> int:
        # itertools.count has no read: reading it advances it once, so correct for that.
        value = next(self._counter)
        self.base += 1
        return value - self.base + 1

    def reset(self) -> None:
        self.start = self.now()

    def since(self) -> int:
        return self.now() - self.start


class _Finish:
    """What every benchmark queue shares: tick off cleanups, stamp the n-th."""

    def __init__(self, n: int, statements: Statements) -> None:
        self.n = n
        self.statements = statements
        self.done = threading.Event()
        self.finished_at = 0.0
        self.sent = 0
        self._cleaned = 0
        self._received = 0
        self._lock = threading.Lock()

    def _got(self, count: int) -> None:
        with self._lock:
            self._received += count

    def _tick(self, count: int) -> None:
        with self._lock:
            self._cleaned += count
            if self._cleaned >= self.n and not self.done.is_set():
                self.finished_at = time.perf_counter()
                self.sent = self.statements.since()
                self.done.set()

    @property
    def exhausted(self) -> bool:
        return self._received >= self.n


class BareQueue(_Finish):
    """A hand-written SKIP LOCKED loop on a minimal table, one connection per thread."""

    def __init__(self, server: str, schema: str, n: int, statements: Statements) -> None:
        super().__init__(n, statements)
        self.server = server
        self.table = f'"{schema}".bare_{uuid.uuid4().hex[:8]}'
        self._local = threading.local()
        self._connections: list[Any] = []
        self.lease = (
            f"WITH c AS (SELECT id FROM {self.table} WHERE visible_at <= now() "
            f"ORDER BY id LIMIT {BATCH} FOR UPDATE SKIP LOCKED) "
            f"UPDATE {self.table} t SET visible_at = now() + interval '30 seconds' "
            "FROM c WHERE t.id = c.id RETURNING t.id, t.body"
        )
        self.delete = f"DELETE FROM {self.table} WHERE id = ANY(%s)"

    def fill(self) -> None:
        conn = self._conn()
        conn.execute(
            f"CREATE TABLE {self.table} (id bigserial PRIMARY KEY, body bytea NOT NULL, "
            "visible_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(f"CREATE INDEX ON {self.table} (visible_at, id)")
        conn.execute(
            f"INSERT INTO {self.table} (body) SELECT convert_to(g::text, 'UTF8') "
            "FROM generate_series(1, %s) g",
            (self.n,),
        )
        conn.execute(f"VACUUM ANALYZE {self.table}")

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import psycopg

            conn = self._local.conn = psycopg.connect(self.server, autocommit=True)
            self._connections.append(conn)
        return conn

    def get(self) -> list[tuple[int, bytes]]:
        rows: list[tuple[int, bytes]] = self._conn().execute(self.lease).fetchall()
        self._got(len(rows))
        return rows

    def cleanup(self, messages: list[tuple[int, bytes]]) -> None:
        self._conn().execute(self.delete, ([m[0] for m in messages],))
        self._tick(len(messages))

    def left(self) -> int:
        row = self._conn().execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn().execute(f"DROP TABLE {self.table}")
        for conn in self._connections:
            conn.close()


def _adapter_queue(server: str, schema: str, n: int, statements: Statements, pool_size: int) -> Any:
    from queue_consumer.adapters.postgres import PostgresMessage, PostgresQueue

    class AdapterQueue(PostgresQueue, _Finish):
        def __init__(self) -> None:
            PostgresQueue.__init__(
                self,
                server,
                f"bench-{uuid.uuid4().hex[:8]}",
                schema=schema,
                max_messages=BATCH,
                pool_size=pool_size,
            )
            _Finish.__init__(self, n, statements)

        def get(self) -> list[PostgresMessage]:
            messages = PostgresQueue.get(self)
            self._got(len(messages))
            return messages

        def cleanup(self, messages: Any) -> int:
            done = PostgresQueue.cleanup(self, messages)
            self._tick(done)
            return done

        def fill(self) -> None:
            for start in range(0, n, 1000):
                self.put_many(str(i) for i in range(start, min(start + 1000, n)))
            # As the bare table: fresh statistics, so the planner walks the index (with none
            # it sorts the whole backlog on every get; see the README, autovacuum).
            with self._connections.pool().connection() as conn:
                conn.execute(f'VACUUM ANALYZE "{schema}".messages')

        def left(self) -> int:
            stats = self.stats()
            return stats["depth"] + stats["in_flight"] + stats["dead_letters"]

    return AdapterQueue()


def _cpu() -> float:
    """CPU seconds this process used so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def trial(spec: dict[str, Any]) -> dict[str, Any]:
    statements = Statements()
    if spec["runner"] == "procrastinate":
        return _procrastinate(spec, statements)
    n = spec["n"]
    queue: Any
    if spec["runner"] == "bare":
        queue = BareQueue(spec["server"], spec["schema"], n, statements)
    else:
        size = WORKERS + spec.get("handlers", 0) + 2
        queue = _adapter_queue(spec["server"], spec["schema"], n, statements, size)
    problems: list[str] = []
    try:
        queue.fill()
        statements.reset()
        cpu = _cpu()
        if spec["runner"] in ("bare", "adapter-loop"):
            threads = spec["threads"]
            drain = None if threads == 1 else (lambda: None)
            seconds = _runners.bare_loop(queue, noop, threads=threads, drain=drain)
        else:
            seconds, stats = _runners.consumer(
                queue,
                noop,
                max_workers=WORKERS,
                max_handlers=spec["handlers"],
                messages_bulk_size=spec["bulk"],
            )
            problems += _runners.check_statistics(stats, n)
        cpu = _cpu() - cpu
        left = queue.left()
        if left:
            problems.append(f"{left} messages left in the queue")
    finally:
        queue.close()
    notes = {"statements/msg": round(queue.sent / n, 3), "client CPU µs/msg": round(cpu / n * 1e6)}
    return {"ok": not problems, "seconds": seconds, "error": "; ".join(problems), "notes": notes}


def _procrastinate(spec: dict[str, Any], statements: Statements) -> dict[str, Any]:
    """procrastinate's own worker on a schema of its own (search_path), same N."""
    import asyncio
    import logging

    try:
        import procrastinate
    except ModuleNotFoundError:
        return {"ok": False, "error": "procrastinate is not installed (pip install procrastinate)"}
    import psycopg

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    n = spec["n"]
    schema = f"{spec['schema']}_p{uuid.uuid4().hex[:6]}"
    with psycopg.connect(spec["server"], autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    conninfo = f"{spec['server']}?options=-csearch_path%3D{schema}"
    try:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @app.task(name="noop", queue="bench")
        async def task(i: int) -> None:
            return None

        async def run() -> float:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                for start in range(0, n, 1000):
                    await task.batch_defer_async(
                        *({"i": i} for i in range(start, min(start + 1000, n)))
                    )
                statements.reset()
                started = time.perf_counter()
                await app.run_worker_async(
                    queues=["bench"],
                    wait=False,
                    concurrency=PROCRASTINATE_CONCURRENCY,
                    delete_jobs="successful",
                    install_signal_handlers=False,
                )
                seconds = time.perf_counter() - started
                sent = statements.since()
                async with app.connector.pool.connection() as conn:  # type: ignore[attr-defined]
                    cursor = await conn.execute("SELECT count(*) FROM procrastinate_jobs")
                    row = await cursor.fetchone()
                left = int(row[0]) if row else -1
                if left:
                    raise RuntimeError(f"{left} procrastinate jobs left")
                return seconds, sent  # type: ignore[return-value]

        seconds, sent = asyncio.run(run())  # type: ignore[misc]
    finally:
        with psycopg.connect(spec["server"], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {"ok": True, "seconds": seconds, "notes": {"statements/msg": round(sent / n, 3)}}
