"""RedisStreamQueue: a Redis stream and a consumer group, fenced settles, Lua moves."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ... import _checks as checks
from ...errors import ConfigurationError
from .._lease import LeaseKeeper
from .._lifecycle import ReopenableQueue
from .._options import redact
from . import _scripts as scripts
from ._coalesce import Coalescer
from ._messages import (
    DeadLetter,
    RedisMessage,
    carried_attempts,
    checked,
    entry_fields,
    flat_to_dict,
    read_body,
    text,
)
from ._settings import check_name, connection_url, parse_url, pool_size, secret

try:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
except ModuleNotFoundError as exc:  # pragma: no cover - the [redis] extra is installed in dev
    raise ModuleNotFoundError(
        "the Redis adapter needs redis-py: pip install queue-consumer[redis]", name=exc.name
    ) from exc

__all__ = ["RedisStreamQueue", "from_url"]

log = logging.getLogger("queue_consumer.adapters.redis")

_Key = tuple[str, int]  # (entry id, times delivered): one delivery

_PRUNE_EVERY = 60.0  # seconds between two passes deleting idle consumers
_REDRIVE_BATCH = 100


class RedisStreamQueue(ReopenableQueue):
    """A Redis stream consumed through a consumer group, for ``Consumer``::

        with RedisStreamQueue("redis://localhost:6379/0", "orders") as queue:
            queue.put({"order": 1})              # the entry's id, e.g. '1717000000000-0'
            [message] = queue.get()              # RedisMessage(id, body, delivery_count...)
            queue.cleanup([message])             # XACK + XDEL: 1

    Arguments (durations are float seconds):

    - ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
      ``redis+unix://[[user]:password@]/path/to/redis.sock`` (no query: see ``from_url``).
    - ``stream``: the stream's name; its keys are ``{stream}``, ``{stream}:dead``,
      ``{stream}:delayed`` and ``{stream}:errors``, one hash tag (one Cluster slot).
    - ``group``: the consumer group (created on first use unless ``declare=False``).
    - ``consumer``: this consumer's name in the group. Give a stable one (a StatefulSet
      pod's name) and a restart takes its pending entries back at once; by default
      ``host-pid-random``, and a dead consumer's entries come back after ``claim_idle``.
    - ``block``: how long ``get()`` waits on an empty stream (0: not at all).
    - ``max_messages``: the most entries one ``get()`` returns.
    - ``claim_idle``: an entry pending this long without a heartbeat is taken back by
      another consumer (its holder is presumed dead).
    - ``max_attempts``: deliveries before a rejected (or abandoned) entry is dead-lettered.
    - ``retry_delay`` / ``max_retry_delay``: a rejected entry waits
      ``retry_delay * 2 ** (attempts - 1)``, at most ``max_retry_delay``.
    - ``reclaim_interval``: how often ``get()`` looks for idle entries to take back.
    - ``promote_interval``: how often ``get()`` moves due delayed retries back.
    - ``prune_idle``: delete group consumers idle this long with nothing pending (None:
      never).
    - ``heartbeat``: keep every delivered entry's idle time reset until it is settled,
      so handlers may run longer than ``claim_idle``.
    - ``declare``: create the group (and the stream) if missing.
    - ``max_connections``: the connection pool's size; give at least
      ``max_workers + max_handlers + 2`` of the Consumer (the default fits its defaults).
    - ``socket_timeout``: the read timeout, by default ``block + 10``; never unbounded.
    - ``connect_timeout``: the connect timeout.
    - ``client_options``: more redis-py connection keywords (``db``, ``client_name``,
      ``ssl_*``).
    - ``password_file`` / ``password_env``: read the password from a file (a mounted
      secret) or an environment variable instead of the URL.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        stream: str = "default",
        *,
        group: str = "queue-consumer",
        consumer: str | None = None,
        block: float = 2.0,
        max_messages: int = 10,
        claim_idle: float = 60.0,
        max_attempts: int = 5,
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        reclaim_interval: float = 1.0,
        promote_interval: float = 1.0,
        prune_idle: float | None = 3600.0,
        heartbeat: bool = True,
        declare: bool = True,
        max_connections: int | None = None,
        socket_timeout: float | None = None,
        connect_timeout: float = 5.0,
        client_options: dict[str, Any] | None = None,
        password_file: str | None = None,
        password_env: str | None = None,
    ) -> None:
        pool_url, implied = connection_url(url)
        self._url = url
        self.stream = check_name("stream", stream, stream=True)
        self.group = check_name("group", group)
        self.consumer_option = checks.optional(check_name, "consumer", consumer)
        self.block = checks.seconds("block", block, maximum=3600)
        self.max_messages = checks.count("max_messages", max_messages, maximum=10_000)
        self.claim_idle = checks.seconds("claim_idle", claim_idle, positive=True)
        self.max_attempts = checks.count("max_attempts", max_attempts)
        self.retry_delay = checks.seconds("retry_delay", retry_delay)
        self.max_retry_delay = checks.seconds("max_retry_delay", max_retry_delay)
        if self.max_retry_delay < self.retry_delay:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay!r}) must be >= retry_delay ({retry_delay!r})"
            )
        self.reclaim_interval = checks.seconds("reclaim_interval", reclaim_interval)
        self.promote_interval = checks.seconds("promote_interval", promote_interval)
        self.prune_idle = checks.optional(checks.seconds, "prune_idle", prune_idle, positive=True)
        self.heartbeat = checks.flag("heartbeat", heartbeat)
        self.declare = checks.flag("declare", declare)
        self.max_connections = checks.optional(checks.count, "max_connections", max_connections)
        self.socket_timeout = checks.optional(
            checks.seconds, "socket_timeout", socket_timeout, positive=True
        )
        if self.socket_timeout is not None and self.socket_timeout <= self.block:
            raise ConfigurationError(
                f"socket_timeout ({socket_timeout!r}) must be longer than block ({block!r})"
            )
        self.connect_timeout = checks.seconds("connect_timeout", connect_timeout, positive=True)
        self.client_options = dict(client_options or {})
        self.password_file = checks.optional(check_name, "password_file", password_file)
        self.password_env = checks.optional(check_name, "password_env", password_env)
        password = secret(self.password_file, self.password_env)
        self._keys = [f"{{{self.stream}}}", *(f"{{{self.stream}}}:{s}" for s in _SUFFIXES)]
        self._consumer_name = self.consumer_option or _generated_name()
        self._pid = os.getpid()

        options: dict[str, Any] = {**implied, **self.client_options}
        # A name per queue object, so interrupt() finds its own blocked reads.
        self._client_name = str(options.setdefault("client_name", _client_name(self)))
        if password is not None:
            options["password"] = password
        if not pool_url.startswith("unix:"):
            options["socket_keepalive"] = True  # a half-open TCP connection is found out
        read_timeout = self.socket_timeout or self.block + 10.0
        self._pool = redis.BlockingConnectionPool.from_url(
            pool_url,
            max_connections=pool_size(self.max_connections),
            timeout=read_timeout,  # waiting for a free connection
            socket_timeout=read_timeout,
            socket_connect_timeout=self.connect_timeout,
            health_check_interval=30,
            protocol=2,
            # A few quick tries for a dropped connection; the consumer backs off longer.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            **options,
        )
        # Any: redis-py's reply types are a union of every shape; the code reads them.
        self._client: Any = redis.Redis(connection_pool=self._pool)
        self._scripts = {name: self._client.register_script(getattr(scripts, name)) for name in _S}
        self._lock = threading.Lock()  # counters and the schedule below
        self._group_ready = False
        self._setup = threading.Lock()
        self._own_end: str | None = None  # the last id a previous run of ours could hold
        self._own_cursor: str | None = "-"  # taking back our own entries; None: done
        self._reclaim_cursor = "-"
        self._next_reclaim = 0.0
        self._next_promote = 0.0
        self._next_prune = 0.0
        self._maintaining = threading.Lock()  # one thread at a time runs the passes
        self._server_version: tuple[int, ...] | None = None
        self._counts = dict.fromkeys(_COUNTERS, 0)
        # Concurrent cleanups (handler threads) share round trips: one script call each.
        self._cleanups: Coalescer[_Key, bool] = Coalescer(self._cleanup_keys)
        self._keeper: LeaseKeeper[_Key] = LeaseKeeper(
            self._extend_keys,
            self.claim_idle / 2,
            name=f"redis-{self.stream}",
            enabled=self.heartbeat,
        )

    # -- the queue contract ------------------------------------------------------------

    def get(self) -> list[RedisMessage]:
        """Up to ``max_messages`` deliveries: this consumer's own pending entries first
        (after a restart), then idle entries of other consumers, then new ones (waiting
        at most ``block`` seconds)."""
        self._ensure_group()
        messages = self._maintain()
        if not messages:
            messages = self._read_new()
        if messages:
            self._keeper.track((m.id, m.delivered) for m in messages)
        return messages

    def cleanup(self, messages: Iterable[RedisMessage]) -> int:
        """Acknowledge and delete entries whose handler succeeded (XACK + XDEL: the
        stream stays bounded). Returns how many were still held by these deliveries."""
        batch = self._settling(messages)
        if not batch:
            return 0
        done = sum(self._cleanups([(m.id, m.delivered) for m in batch]))
        self._count(cleaned=done, stale_settles=len(batch) - done)
        return done

    def reject(self, messages: Iterable[RedisMessage], *, error: str | None = None) -> int:
        """Retry failed entries after a backoff; dead-letter those out of attempts.

        A backoff up to ``claim_idle`` keeps the entry in place (its idle time is set so
        it becomes claimable when the backoff ends); a longer one moves it to the delayed
        set. ``error`` is kept as the last error. Returns how many were still held.
        """
        batch = self._settling(messages)
        if not batch:
            return 0
        err = "" if error is None else str(error)
        claim_ms = _ms(self.claim_idle)
        soon: list[Any] = []
        later: list[Any] = []
        dead: list[Any] = []
        for m in batch:
            if m.delivery_count >= self.max_attempts:
                dead += [m.id, m.delivered, m.delivery_count]
                continue
            delay = _ms(self.backoff(m.delivery_count))
            if delay <= claim_ms:
                soon += [m.id, m.delivered, claim_ms - delay]
            else:
                later += [m.id, m.delivered, delay, m.delivery_count]
        moved = 0
        if soon:
            moved += self._n("RETRY_SOON", [err, *soon])
            self._reclaim_soon()
        if later:
            moved += self._n("RETRY_LATER", [err, *later])
        if dead:
            fallback = f"rejected {self.max_attempts} times"
            buried = self._n("BURY", [err, fallback, *dead])
            self._count(buried=buried)
            moved += buried
        self._count(rejected=moved, stale_settles=len(batch) - moved)
        return moved

    def dead_letter(self, messages: Iterable[RedisMessage], *, error: str | None = None) -> int:
        """Move entries straight to the dead letters (the handler said they can never
        succeed: ``PermanentFailure``), whatever their attempts. Returns how many were held."""
        batch = self._settling(messages)
        if not batch:
            return 0
        dead = [x for m in batch for x in (m.id, m.delivered, m.delivery_count)]
        buried = self._n("BURY", ["" if error is None else str(error), "dead-lettered", *dead])
        self._count(buried=buried, stale_settles=len(batch) - buried)
        return buried

    def interrupt(self) -> None:
        """Make a ``get()`` blocked in ``XREADGROUP`` return now, empty (the consumer's
        shutdown calls it): ``CLIENT UNBLOCK`` of this queue's blocked connections, found
        by their client name."""
        for client in self._client.client_list():
            if client.get("name") == self._client_name and client.get("cmd") == "xreadgroup":
                self._client.client_unblock(int(client["id"]))

    def release(self, messages: Iterable[RedisMessage]) -> int:
        """Hand back entries never handled: claimable at once, the attempt not counted
        (the group's delivery counter goes back by one). Returns how many were held."""
        batch = self._settling(messages)
        if not batch:
            return 0
        done = self._n("RELEASE", [_ms(self.claim_idle) + 1, *_pairs(batch)])
        self._reclaim_soon()
        self._count(released=done, stale_settles=len(batch) - done)
        return done

    def extend(self, messages: Iterable[RedisMessage], timeout: float | None = None) -> int:
        """Keep held entries from being taken back for another ``claim_idle`` (their idle
        time goes back to 0; owner-checked, so an entry another consumer took is never
        stolen back). Redis has no longer lease: a ``timeout`` above ``claim_idle``
        cannot be honoured and is an error. Returns how many were still held."""
        if timeout is not None:
            checks.seconds("timeout", timeout, positive=True, maximum=self.claim_idle)
        keys = [(m.id, m.delivered) for m in checked(messages)]
        if not keys:
            return 0
        return len(keys) - len(self._extend_keys(dict.fromkeys(keys, 0.0)))

    # -- producing ---------------------------------------------------------------------

    def put(self, body: Any) -> str:
        """Add one entry (str, bytes or JSON value); returns its id."""
        return self.put_many([body])[0]

    def put_many(self, bodies: Iterable[Any]) -> list[str]:
        """Add entries in one round trip (a pipeline); returns their ids in order.

        A pipeline retried after a lost reply may add some twice: at-least-once.
        """
        entries = [entry_fields(body) for body in bodies]  # a bad body fails before any
        if not entries:
            return []
        pipe = self._client.pipeline(transaction=False)
        for fields in entries:
            pipe.xadd(self._keys[0], fields)
        return [text(i) for i in pipe.execute()]

    # -- dead letters and inspection ---------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Seconds an entry rejected after ``attempts`` deliveries waits."""
        exponent = min(max(attempts - 1, 0), 64)
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))

    def stats(self) -> dict[str, int | None]:
        """``depth`` (``visible`` + ``delayed``), ``visible`` (never delivered to the
        group), ``delayed`` (long retries waiting), ``in_flight`` (pending in the group:
        held, or released / rejected and waiting to be claimed again), ``dead_letters``,
        ``stream_length``, ``consumers``; then what this process did."""
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command("XINFO", "GROUPS", self._keys[0])
        pipe.xlen(self._keys[0])
        pipe.zcard(self._keys[2])
        pipe.xlen(self._keys[1])
        groups, length, delayed, dead = pipe.execute(raise_on_error=False)
        group: dict[str, Any] = {}
        if isinstance(groups, list):
            for flat in groups:
                info = {text(k): v for k, v in flat_to_dict(flat).items()}
                if text(info.get("name", b"")) == self.group:
                    group = info
        elif not _is_missing_key(groups):
            raise groups
        for value in (length, delayed, dead):
            if isinstance(value, Exception):
                raise value
        pending = int(group.get("pending", 0))
        lag = group.get("lag")
        # Acked entries are deleted, so the stream holds the pending and the undelivered.
        visible = int(lag) if lag is not None else max(int(length) - pending, 0)
        if not group:
            visible = int(length)
        with self._lock:
            counts = dict(self._counts)
        return {
            "depth": visible + int(delayed),
            "visible": visible,
            "delayed": int(delayed),
            "in_flight": pending,
            "dead_letters": int(dead),
            "stream_length": int(length),
            "consumers": int(group.get("consumers", 0)),
            "held": self._keeper.held(),
            **counts,
            "cleanup_calls": self._cleanups.calls,
            "cleanup_round_trips": self._cleanups.round_trips,
        }

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""
        limit = checks.count("limit", limit)
        rows = self._client.xrange(self._keys[1], count=limit)
        return [self._dead_letter(i, f) for i, f in rows]

    def redrive(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those ``ids``) back to the stream, attempts reset.
        Each move is one script (XADD, then XDEL from the dead letters)."""
        if ids is not None:
            wanted = [
                check_name("dead letter id", text(i) if isinstance(i, (bytes, str)) else str(i))
                for i in ids
            ]
            moved = 0
            for start in range(0, len(wanted), _REDRIVE_BATCH):
                moved += self._n("REDRIVE", wanted[start : start + _REDRIVE_BATCH])
            return moved
        # All of them, up to the newest one now: what dies meanwhile waits for next time.
        newest = self._client.xrevrange(self._keys[1], count=1)
        if not newest:
            return 0
        last = text(newest[0][0])
        moved = 0
        cursor = "-"
        while True:
            rows = self._client.xrange(self._keys[1], min=cursor, max=last, count=_REDRIVE_BATCH)
            if not rows:
                return moved
            batch = [text(i) for i, _ in rows]
            moved += self._n("REDRIVE", batch)
            cursor = "(" + batch[-1]

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every entry of the stream (pending ones too) and the delayed retries,
        and the dead letters if asked; the group is created again at once. Returns how
        many entries went. Settles of entries handed out before are counted as stale."""
        return self._n("PURGE", ["1" if dead_letters else "0"])

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def consumer(self) -> str:
        """This consumer's name in the group (a forked copy makes its own)."""
        if self.consumer_option is None and self._pid != os.getpid():
            self._consumer_name, self._pid = _generated_name(), os.getpid()
        return self._consumer_name

    @property
    def url(self) -> str:
        """The connection URL with its password masked."""
        return redact(self._url)

    @property
    def keys(self) -> dict[str, str]:
        return dict(zip(("stream", *_SUFFIXES), self._keys, strict=True))

    def server_version(self) -> tuple[int, ...]:
        """The server's version, e.g. ``(7, 0, 15)`` (read once)."""
        if self._server_version is None:
            info = self._client.info("server")
            version = str(info.get("redis_version", "0"))
            self._server_version = tuple(int(p) for p in version.split(".") if p.isdigit())
        return self._server_version

    def close(self) -> None:
        """Stop the heartbeat and close the connections. Safe to call twice. Entries still
        held stay pending and come back to a consumer after ``claim_idle``."""
        self._keeper.close()
        self._pool.disconnect()

    def __repr__(self) -> str:
        return f"RedisStreamQueue({self.url!r}, stream={self.stream!r}, group={self.group!r})"

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again (the password included)."""
        return {
            "url": self._url,
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer_option,
            "block": self.block,
            "max_messages": self.max_messages,
            "claim_idle": self.claim_idle,
            "max_attempts": self.max_attempts,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "reclaim_interval": self.reclaim_interval,
            "promote_interval": self.promote_interval,
            "prune_idle": self.prune_idle,
            "heartbeat": self.heartbeat,
            "declare": self.declare,
            "max_connections": self.max_connections,
            "socket_timeout": self.socket_timeout,
            "connect_timeout": self.connect_timeout,
            "client_options": self.client_options,
            "password_file": self.password_file,
            "password_env": self.password_env,
        }

    # -- internals ---------------------------------------------------------------------

    def _run(self, script: str, args: Sequence[Any]) -> Any:
        """Run a script; a group that vanished (a server restarted without persistence,
        the stream deleted) is created again and the script retried once."""
        try:
            return self._scripts[script](self._keys, [self.group, self.consumer, *args])
        except redis.ResponseError as exc:
            if not _is_nogroup(exc) or not self.declare:
                raise
        self._group_ready = False
        self._ensure_group()
        return self._scripts[script](self._keys, [self.group, self.consumer, *args])

    def _n(self, script: str, args: Sequence[Any]) -> int:
        """Run a script that returns how many entries it moved."""
        return int(self._run(script, args))

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        with self._setup:
            if self._group_ready:
                return
            if self.declare:
                try:
                    # From the start: entries put before the first consumer are delivered.
                    self._client.xgroup_create(self._keys[0], self.group, id="0", mkstream=True)
                    log.info("created consumer group %r on %r", self.group, self._keys[0])
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            if self._own_end is None:
                # Our own entries up to here are a previous run's: taken back first. Any
                # read from now on delivers entries after this id, so none of those.
                self._own_end = self._last_delivered()
            self._group_ready = True

    def _last_delivered(self) -> str:
        for flat in self._client.execute_command("XINFO", "GROUPS", self._keys[0]):
            info = flat_to_dict(flat)
            if text(info.get(b"name", b"")) == self.group:
                return text(info.get(b"last-delivered-id", b"0-0"))
        raise ConfigurationError(f"no consumer group {self.group!r} on {self._keys[0]!r}")

    def _read_new(self) -> list[RedisMessage]:
        try:
            reply = self._client.xreadgroup(
                self.group,
                self.consumer,
                {self._keys[0]: ">"},
                count=self.max_messages,
                block=_ms(self.block) if self.block > 0 else None,
            )
        except redis.ResponseError as exc:
            if not _is_nogroup(exc) or not self.declare:
                raise
            self._group_ready = False
            return []
        consumer = self.consumer
        messages = []
        for _, entries in reply or ():
            for raw_id, fields in entries:
                if fields is None:  # pragma: no cover - a deleted entry (id 0 reads only)
                    continue
                messages.append(
                    RedisMessage(
                        text(raw_id),
                        read_body(fields),
                        carried_attempts(fields) + 1,
                        1,
                        self.stream,
                        consumer,
                    )
                )
        return messages

    def _maintain(self) -> list[RedisMessage]:
        """The passes that are due: own entries back, promote, reclaim, prune. One thread
        at a time; the others skip straight to reading new entries."""
        if not self._maintaining.acquire(blocking=False):
            return []
        try:
            if self._own_cursor is not None and self._own_end is not None:
                messages = self._reclaim(own=True)
                if messages:
                    return messages
            now = time.monotonic()
            if now >= self._next_promote:
                self._next_promote = now + self.promote_interval
                promoted = self._n("PROMOTE", [1000])
                if promoted:
                    self._count(promoted=promoted)
            if self.prune_idle is not None and now >= self._next_prune:
                self._next_prune = now + _PRUNE_EVERY
                pruned = self._n("PRUNE", [_ms(self.prune_idle)])
                if pruned:
                    self._count(pruned=pruned)
                    log.info("deleted %d idle consumer(s) of group %r", pruned, self.group)
            if now >= self._next_reclaim:
                messages = self._reclaim(own=False)
                # A full batch: more may be waiting, look again next time.
                full = len(messages) >= self.max_messages or self._reclaim_cursor != "-"
                self._next_reclaim = now if full else now + self.reclaim_interval
                return messages
            return []
        finally:
            self._maintaining.release()

    def _reclaim(self, *, own: bool) -> list[RedisMessage]:
        """One pass of the RECLAIM script from its cursor."""
        cursor = (self._own_cursor or "-") if own else self._reclaim_cursor
        consumer = self.consumer
        reply = self._run(
            "RECLAIM",
            [
                0 if own else _ms(self.claim_idle),
                self.max_messages,
                cursor,
                self.max_attempts,
                consumer if own else "",
                self._own_end or "+",
            ],
        )
        nxt, entries, buried = text(reply[0]), reply[1], int(reply[2])
        if own:
            self._own_cursor = None if nxt == "-" else nxt
        else:
            self._reclaim_cursor = nxt
        messages = [
            RedisMessage(
                text(raw_id),
                read_body(flat_to_dict(flat)),
                int(count),
                int(delivered),
                self.stream,
                consumer,
            )
            for raw_id, flat, count, delivered in entries
        ]
        if messages or buried:
            self._count(reclaimed=len(messages), buried=buried)
            if messages and own:
                log.info("took back %d of our own pending entries", len(messages))
        return messages

    def _cleanup_keys(self, keys: list[_Key]) -> list[bool]:
        done = text(self._run("CLEANUP", [x for key in keys for x in key]))
        return [flag == "1" for flag in done]

    def _extend_keys(self, due: dict[_Key, float]) -> list[_Key]:
        """Reset the idle time of held entries; return the keys no longer held."""
        keys = list(due)
        lost = {text(i) for i in self._run("EXTEND", [x for key in keys for x in key])}
        self._count(extended=len(keys) - len(lost))
        return [key for key in keys if key[0] in lost]

    def _settling(self, messages: Iterable[RedisMessage]) -> list[RedisMessage]:
        batch = checked(messages)
        self._keeper.untrack((m.id, m.delivered) for m in batch)
        return batch

    def _reclaim_soon(self) -> None:
        self._next_reclaim = 0.0

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

    def _dead_letter(self, raw_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
        error = fields.pop(b"qc_error", None)
        attempts = int(fields.pop(b"qc_attempts", b"0"))
        died = int(fields.pop(b"qc_died", b"0")) / 1000
        source = text(fields.pop(b"qc_source_id", b""))
        return DeadLetter(
            text(raw_id),
            read_body(fields),
            attempts,
            None if error is None else text(error),
            died,
            source,
            self.stream,
        )


_SUFFIXES = ("dead", "delayed", "errors")
_S = (
    "BURY",
    "CLEANUP",
    "EXTEND",
    "PROMOTE",
    "PRUNE",
    "PURGE",
    "RECLAIM",
    "REDRIVE",
    "RELEASE",
    "RETRY_LATER",
    "RETRY_SOON",
)
_COUNTERS = (
    "cleaned",
    "rejected",
    "released",
    "extended",
    "reclaimed",
    "promoted",
    "buried",
    "pruned",
    "stale_settles",
)


def _pairs(batch: Sequence[RedisMessage]) -> list[Any]:
    return [x for m in batch for x in (m.id, m.delivered)]


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _client_name(queue: RedisStreamQueue) -> str:
    name = "".join(c if c.isalnum() or c in "-_.:" else "_" for c in queue.consumer)
    return f"qc:{name}:{secrets.token_hex(3)}"


def _generated_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _is_nogroup(exc: Exception) -> bool:
    return "NOGROUP" in str(exc)


def _is_missing_key(exc: object) -> bool:
    return isinstance(exc, redis.ResponseError) and "no such key" in str(exc).lower()


def from_url(url: str) -> RedisStreamQueue:
    """Open ``redis://[[user]:password@]host[:port][/db]?stream=NAME&group=NAME&...``
    (``rediss://`` for TLS, ``redis+unix:///path/to/redis.sock?stream=NAME&db=0``).

    Query options are ``RedisStreamQueue`` keyword arguments: ``stream`` (required),
    ``group``, ``consumer``, ``block``, ``max_messages``, ``claim_idle``,
    ``max_attempts``, ``retry_delay``, ``max_retry_delay``, ``reclaim_interval``,
    ``promote_interval``, ``prune_idle`` (``none``: never), ``heartbeat``, ``declare``,
    ``max_connections``, ``socket_timeout``, ``connect_timeout``; and for redis-py ``db``,
    ``client_name``, ``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``; ``password_file`` or ``password_env`` for a password kept out of the
    URL. Unknown options are errors.
    """
    connection, kwargs = parse_url(url)
    return RedisStreamQueue(connection, **kwargs)


if TYPE_CHECKING:  # mypy proves the capabilities RedisStreamQueue claims
    from ..._protocols import (
        Queue,
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetter,
        SupportsDeadLetters,
        SupportsExtend,
        SupportsInterrupt,
        SupportsRejectWithError,
        SupportsRelease,
        SupportsStats,
    )

    def _claims(queue: RedisStreamQueue) -> None:
        _get: Queue[RedisMessage] = queue
        _cleanup: SupportsCleanup[RedisMessage] = queue
        _reject: SupportsRejectWithError[RedisMessage] = queue
        _dead_letter: SupportsDeadLetter[RedisMessage] = queue
        _release: SupportsRelease[RedisMessage] = queue
        _extend: SupportsExtend[RedisMessage] = queue
        _interrupt: SupportsInterrupt = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
        _dead: SupportsDeadLetters = queue
