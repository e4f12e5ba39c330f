"""JetStreamQueue: a durable JetStream pull consumer behind the synchronous queue contract.

nats-py is asyncio-only: the queue owns an event loop in a daemon thread (``_loop``) and
every method runs its coroutine there and waits for it with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from queue_consumer.errors import ConsumerStateError

from .._bodies import encode, to_bytes
from .._lease import LeaseKeeper
from ._loop import LoopThread
from ._messages import (
    ATTEMPTS,
    DEAD_HEADERS,
    DIED_AT,
    ERROR,
    KIND,
    MSG_ID,
    ORIGIN_SEQ,
    ORIGIN_SUBJECT,
    DeadLetter,
    JetStreamMessage,
    JetStreamStatistics,
    body_of,
    checked,
    error_header,
    read_error_header,
    snapshot,
)
from ._settings import Settings

__all__ = ["JetStreamError", "JetStreamQueue"]

log = logging.getLogger("queue_consumer.adapters.nats")

_Q = TypeVar("_Q", bound="JetStreamQueue")

Raw = tuple[str, str, bytes, "dict[str, str] | None"]

_ACK = b"+ACK"
_NAK = b"-NAK"
_WPI = b"+WPI"
_TERM = b"+TERM"
_PUT_CHUNK = 500  # publishes in flight at once in put_many
_PAGE = 100  # dead letters read per redrive round


class JetStreamError(RuntimeError):
    """A JetStream request failed or was refused (the consumer retries, then redelivers)."""


class JetStreamQueue:
    """A JetStream stream consumed through a durable pull consumer with explicit acks.

    >>> with JetStreamQueue("ORDERS", "orders.new", servers="nats://127.0.0.1:4222") as q:
    ...     q.put({"id": 1})
    ...     [message] = q.get()
    ...     q.cleanup([message])

    Arguments (durations in float seconds; every one also a ``nats://`` URL option):

    - ``stream`` / ``subject``: the stream and the subject its consumer reads (default:
      the stream's name); ``put`` publishes there. ``consumer``: the durable consumer's
      name (default ``<stream>_workers``), shared by every process consuming the queue.
    - ``servers``: ``nats://HOST:PORT`` (a list for a cluster; ``user:password@`` or
      ``token@`` in it authenticate).
    - ``ack_wait``: the visibility timeout: a delivery not settled in that time is
      delivered again. The heartbeat (``heartbeat=True``) sends "in progress" for every
      held message each ``ack_wait / 2``, so handlers may take longer.
    - ``max_messages``: the most messages one ``get()`` returns; ``wait_time``: how long
      ``get()`` waits on an empty stream (keep it short: it bounds shutdown).
    - ``max_attempts``, ``retry_delay``, ``max_retry_delay``: a rejected message comes
      back after ``retry_delay * 2 ** (deliveries - 1)`` (at most ``max_retry_delay``);
      after ``max_attempts`` deliveries it goes to ``dead_letter_stream`` (default
      ``<stream>_DEAD``, subject ``dead_letter_subject``, default its name).
    - ``handler_slots`` / ``max_ack_pending``: the consumer's cap on unacknowledged
      messages (all processes together), by default ``handler_slots * max_messages``.
    - ``declare``: create the streams and the consumer when missing (default); with
      ``False`` they must exist. ``storage``: ``file`` or ``memory`` for created streams.
    - TLS: ``tls=True`` (or a ``nats+tls://`` URL), ``tls_ca``, ``tls_cert``, ``tls_key``,
      ``tls_hostname``. Credentials: ``creds`` (a ``.creds`` file), ``nkey_seed`` (a seed
      file), ``token`` or ``token_file``; else ``NATS_CREDS``, ``NATS_NKEY_SEED`` or
      ``NATS_TOKEN`` from the environment. None is ever logged or shown by ``repr``.
    - ``connect_timeout``, ``request_timeout``, ``reconnect_wait``,
      ``max_reconnect_attempts`` (-1: for ever), ``name`` (the connection's name).
    """

    def __init__(self, stream: str, subject: str | None = None, **options: Any) -> None:
        self._settings = settings = Settings.build(stream, subject, **options)
        self.stream = settings.stream
        self.subject = settings.subject
        self.consumer = settings.consumer
        self.max_messages = settings.max_messages
        self.max_attempts = settings.max_attempts
        self.wait_time = settings.wait_time
        self.ack_wait = settings.ack_wait
        self._tls = settings.tls_context()  # bad files fail here, not on first use
        self._loop = LoopThread(f"queue_consumer-nats-{settings.stream}")
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._ready = False
        self._setup_lock: asyncio.Lock | None = None
        self._inboxes: dict[int, Subscription] = {}
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{settings.stream}.{settings.consumer}"
        self._no_wait = json.dumps({"batch": settings.max_messages, "no_wait": True}).encode()
        self._linger = json.dumps(
            {"batch": 1, "expires": max(int(settings.wait_time * 1e9), 1_000_000)}
        ).encode()
        self._closing = False
        self._closed = False
        self._counts = dict.fromkeys(JetStreamStatistics.__dataclass_fields__, 0)
        self._counts_lock = threading.Lock()
        self._leases = self._lease_keeper(settings.ack_wait)

    # -- the queue contract ----------------------------------------------------------

    def get(self) -> list[JetStreamMessage]:
        """Up to ``max_messages`` deliveries; waits at most ``wait_time`` when there are none."""
        if self._closed:
            raise ConsumerStateError(
                "Cannot receive from a JetStreamQueue once it has been closed."
            )
        s = self._settings
        budget = s.wait_time + 2 * s.request_timeout + s.connect_timeout + 1
        raw = self._loop.run(self._pull(threading.get_ident()), budget)
        if not raw:
            return []
        messages = [snapshot(*item) for item in raw]
        self._leases.track(m.reply for m in messages)
        self._count(received=len(messages))
        return messages

    def cleanup(self, messages: Iterable[JetStreamMessage]) -> int:
        """Acknowledge messages whose handler succeeded, waiting for the server to confirm
        each (all of a batch at once). Returns how many were confirmed."""
        batch = self._settling(messages)
        if not batch:
            return 0
        self._settle("cleanup", [(m.reply, _ACK) for m in batch])
        self._count(acked=len(batch))
        return len(batch)

    def reject(self, messages: Iterable[JetStreamMessage], *, error: str | None = None) -> int:
        """Failed messages: back after a backoff (``nak`` with a delay), or after
        ``max_attempts`` deliveries into the dead-letter stream (the copy confirmed by the
        server first, then the original terminated). Returns how many were settled."""
        batch = self._settling(messages)
        if not batch:
            return 0
        dead = [m for m in batch if m.delivery_count >= self.max_attempts]
        retry = [m for m in batch if m.delivery_count < self.max_attempts]
        if dead:
            retry += self._loop.run(self._dead_letter(dead, error), self._budget(len(dead)))
        if retry:
            self._settle("reject", [(m.reply, self._nak_after(m)) for m in retry])
            self._count(rejected=len(retry))
        return len(batch)

    def release(self, messages: Iterable[JetStreamMessage]) -> int:
        """Messages never handled: delivered again at once (``nak``). JetStream counts the
        delivery: a released message has one attempt fewer left."""
        batch = self._settling(messages)
        if not batch:
            return 0
        self._settle("release", [(m.reply, _NAK) for m in batch])
        self._count(released=len(batch))
        return len(batch)

    def extend(self, messages: Iterable[JetStreamMessage], timeout: float | None = None) -> int:
        """Send "in progress" for these deliveries: each is held for a full ``ack_wait``
        again (JetStream cannot set another duration, so ``timeout`` is not used)."""
        batch = checked(messages)
        if batch:
            self._settle("extend", [(m.reply, _WPI) for m in batch])
            self._count(extended=len(batch))
        return len(batch)

    # -- producing ---------------------------------------------------------------------

    def put(
        self, body: Any, *, subject: str | None = None, headers: Mapping[str, str] | None = None
    ) -> int:
        """Publish one message (``str``, ``bytes`` or a JSON value) and wait for the
        stream to store it. Returns its stream sequence."""
        return self.put_many([body], subject=subject, headers=headers)[0]

    def put_many(
        self,
        bodies: Iterable[Any],
        *,
        subject: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> list[int]:
        """Publish messages, many in flight at once; each is confirmed by the stream.
        Returns their stream sequences, in order."""
        target = self._publish_subject(subject)
        encoded = [encode(body) for body in bodies]  # a bad body fails before any is sent
        if not encoded:
            return []
        extra = dict(headers or {})
        items = [(to_bytes(data), {**extra, KIND: kind}) for kind, data in encoded]
        return self._loop.run(self._publish(target, items), self._budget(len(items)))

    # -- dead letters and inspection -----------------------------------------------------

    def backoff(self, attempts: int) -> float:
        """Seconds a message rejected after ``attempts`` deliveries waits."""
        return self._settings.backoff(attempts)

    def stats(self) -> dict[str, int | None]:
        """``depth`` (the consumer's ``num_pending``: not yet delivered), ``in_flight``
        (``num_ack_pending``: delivered, not acknowledged, including nak'ed messages waiting
        for their delay), ``dead_letters`` (messages in the dead-letter stream),
        ``redelivered``, ``waiting_pulls`` and ``stream_messages``."""
        return self._loop.run(self._stats(), self._budget(3))

    def statistics(self) -> JetStreamStatistics:
        """A snapshot of what this queue object did."""
        with self._counts_lock:
            counts = dict(self._counts)
        counts["extended"] += self._leases.extensions
        counts["held"] = self._leases.held()
        return JetStreamStatistics(**counts)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` messages of the dead-letter stream."""
        from queue_consumer import _checks as checks

        limit = checks.count("limit", limit)
        return self._loop.run(self._read_dead(limit), self._budget(limit))

    def redrive(self, ids: Iterable[int] | None = None) -> int:
        """Publish dead letters (all, or those ``ids``) back to their subject, and delete
        each from the dead-letter stream once the stream confirmed the copy. Returns how
        many went back. A redriven message is a new message: its delivery count starts at 1."""
        wanted = None if ids is None else sorted({_seq(i) for i in ids})
        total = 0
        while True:
            moved, more = self._loop.run(self._redrive_page(wanted), self._budget(_PAGE))
            total += moved
            self._count(redriven=moved)
            if not more:
                return total

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every message of the queue's subject (and of the dead-letter stream if
        asked). Returns how many went."""
        return self._loop.run(self._purge(dead_letters), self._budget(2))

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading: messages delivered since (an open pull request) are handed back
        at once, then the connection and the event loop thread end. Idempotent. Messages
        still held are left to their ``ack_wait``."""
        if self._closed:
            return
        self._closed = True
        self._leases.close()
        if self._loop.started():
            try:
                self._loop.run(self._shutdown(), self._settings.request_timeout + 5)
            except Exception as exc:
                log.warning("%s: closing: %s", self._settings.describe(), exc)
        self._loop.close()

    def __enter__(self: _Q) -> _Q:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JetStreamQueue({self._settings.describe()})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its settings: a copy in another process opens its own connection.
        return (_restore, (type(self), self._settings.kwargs()))

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again (secrets included)."""
        return self._settings.kwargs()

    # -- internals: settling -------------------------------------------------------------

    def _settling(self, messages: Iterable[JetStreamMessage]) -> list[JetStreamMessage]:
        batch = checked(messages)
        held = self._leases.untrack(m.reply for m in batch)
        unknown = len(batch) - len(held)
        if unknown:
            # Settled already, or a delivery of another queue object: JetStream decides.
            self._count(unknown_settles=unknown)
        return batch

    def _nak_after(self, message: JetStreamMessage) -> bytes:
        delay = int(self.backoff(message.delivery_count) * 1e9)
        return _NAK if delay <= 0 else b'-NAK {"delay": %d}' % delay

    def _settle(self, what: str, entries: list[tuple[str, bytes]]) -> None:
        self._loop.run(self._confirm(what, entries), self._budget(len(entries)))

    def _budget(self, items: int) -> float:
        s = self._settings
        return s.connect_timeout + s.request_timeout * (2 + items // 1000) + 1

    async def _confirm(self, what: str, entries: list[tuple[str, bytes]]) -> None:
        """Send acks as requests, all at once, and wait for every confirmation."""
        nc = await self._connection()
        timeout = self._settings.request_timeout
        results = await asyncio.gather(
            *(nc.request(reply, payload, timeout=timeout) for reply, payload in entries),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            self._count(settle_errors=len(failed))
            raise JetStreamError(
                f"{what}: {len(failed)} of {len(entries)} not confirmed by the server "
                f"({failed[0]!r}); unconfirmed messages come back after ack_wait"
            )

    async def _dead_letter(
        self, messages: list[JetStreamMessage], error: str | None
    ) -> list[JetStreamMessage]:
        """Copy to the dead-letter stream (PubAck awaited), then terminate the originals.
        Returns the messages that could not be copied (the caller rejects them)."""
        js = await self._jetstream()
        s = self._settings
        reason = error or f"rejected on all {self.max_attempts} attempts"
        now = f"{time.time():.6f}"

        def headers(m: JetStreamMessage) -> dict[str, str]:
            kept = _resendable(m.headers)
            return {
                **kept,
                MSG_ID: f"{m.stream}:{m.stream_seq}",  # a retried move stores one copy
                ERROR: error_header(reason),
                ORIGIN_SUBJECT: m.subject,
                ORIGIN_SEQ: str(m.stream_seq),
                ATTEMPTS: str(m.delivery_count),
                DIED_AT: now,
            }

        results = await asyncio.gather(
            *(
                js.publish(
                    s.dead_letter_subject,
                    m.data,
                    timeout=s.request_timeout,
                    headers=headers(m),
                )
                for m in messages
            ),
            return_exceptions=True,
        )
        outcomes = list(zip(messages, results, strict=True))
        copied = [m for m, r in outcomes if not isinstance(r, BaseException)]
        unsent = [m for m, r in outcomes if isinstance(r, BaseException)]
        if unsent:
            first = next(r for r in results if isinstance(r, BaseException))
            log.error(
                "could not dead-letter %d message(s) to %s (%r); rejecting them",
                len(unsent),
                s.dead_letter_stream,
                first,
            )
        if copied:
            # Terminated only now: a failure here leaves a copy in both (a duplicate).
            await self._confirm("dead-letter", [(m.reply, _TERM) for m in copied])
            self._count(dead_lettered=len(copied))
            log.warning(
                "moved %d message(s) to the dead-letter stream %s",
                len(copied),
                s.dead_letter_stream,
            )
        return unsent

    async def _extend_keys(self, replies: list[str]) -> None:
        await self._confirm("extend", [(reply, _WPI) for reply in replies])

    def _lease_keeper(self, ack_wait: float) -> LeaseKeeper[str]:
        def extend(held: dict[str, float]) -> list[str]:
            self._loop.run(self._extend_keys(list(held)), self._budget(len(held)))
            return []  # JetStream does not say whether a delivery is still this one's

        return LeaseKeeper(
            extend,
            ack_wait / 2,
            name="nats",
            enabled=self._settings.heartbeat,
            on_error=lambda exc: self._count(settle_errors=1),
        )

    # -- internals: connection and pulls ---------------------------------------------------

    async def _connection(self) -> Client:
        await self._setup()
        assert self._nc is not None
        return self._nc

    async def _jetstream(self) -> JetStreamContext:
        await self._setup()
        assert self._js is not None
        return self._js

    async def _setup(self) -> None:
        """Connect, and create or bind the streams and the consumer (once)."""
        if self._ready and self._nc is not None and not self._nc.is_closed:
            return
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if self._ready and self._nc is not None and not self._nc.is_closed:
                return
            if self._nc is None or self._nc.is_closed:
                # Closed for good (max_reconnect_attempts ran out): start over.
                self._inboxes.clear()
                self._nc = await self._connect()
                self._js = self._nc.jetstream(timeout=self._settings.request_timeout)
            assert self._js is not None
            await self._ensure(self._js)
            self._ready = True

    async def _connect(self) -> Client:
        s = self._settings
        options: dict[str, Any] = {
            "servers": list(s.servers),
            "connect_timeout": s.connect_timeout,
            "reconnect_time_wait": s.reconnect_wait,
            # The first connection fails fast (get() raises; the consumer backs off and
            # calls again); once connected, reconnects follow max_reconnect_attempts.
            "max_reconnect_attempts": 1,
            "allow_reconnect": True,
            "ping_interval": 10,
            "max_outstanding_pings": 3,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            **s.credentials(),
        }
        if s.name is not None:
            options["name"] = s.name
        if self._tls is not None:
            options["tls"] = self._tls
            if s.tls_hostname is not None:
                options["tls_hostname"] = s.tls_hostname
        try:
            nc = await nats.connect(**options)
        except Exception as exc:
            # nats-py may name the server URL it tried: never show its user info.
            raise JetStreamError(
                f"cannot connect to {s.describe()}: {type(exc).__name__}: {_scrub(str(exc), s)}"
            ) from None
        nc.options["max_reconnect_attempts"] = s.max_reconnect_attempts
        return nc

    async def _ensure(self, js: JetStreamContext) -> None:
        s = self._settings
        await self._ensure_stream(js, s.stream, s.subject, api.RetentionPolicy.WORK_QUEUE)
        if s.declare:
            await self._ensure_stream(
                js, s.dead_letter_stream, s.dead_letter_subject, api.RetentionPolicy.LIMITS
            )
        try:
            info = await js.consumer_info(s.stream, s.consumer)
        except nats.js.errors.NotFoundError:
            if not s.declare:
                raise JetStreamError(
                    f"consumer {s.consumer!r} of stream {s.stream!r} does not exist "
                    "(declare=false: create it, or let the queue do it)"
                ) from None
            config = api.ConsumerConfig(
                durable_name=s.consumer,
                ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.ALL,
                ack_wait=s.ack_wait,
                max_deliver=-1,  # the adapter dead-letters after max_attempts itself
                max_ack_pending=s.max_ack_pending,
                filter_subject=s.subject,
            )
            try:
                # The same config from several processes at once is idempotent on the server.
                info = await js.add_consumer(s.stream, config)
            except nats.js.errors.BadRequestError:
                # Created meanwhile with other settings: bind it as it is.
                info = await js.consumer_info(s.stream, s.consumer)
        ack_wait = info.config.ack_wait
        if ack_wait and abs(ack_wait - self.ack_wait) > 1e-3:
            log.info(
                "%s: the consumer's ack_wait is %gs (not %gs): its heartbeat follows it",
                s.describe(),
                ack_wait,
                self.ack_wait,
            )
            self.ack_wait = ack_wait
            old, self._leases = self._leases, self._lease_keeper(ack_wait)
            old.close()

    async def _ensure_stream(
        self, js: JetStreamContext, name: str, subject: str, retention: api.RetentionPolicy
    ) -> None:
        try:
            await js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            if not self._settings.declare:
                raise JetStreamError(
                    f"stream {name!r} does not exist (declare=false: create it first)"
                ) from None
        config = api.StreamConfig(
            name=name,
            subjects=[subject],
            retention=retention,
            storage=api.StorageType(self._settings.storage),
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.stream_info(name)  # created by another process meanwhile: fine

    async def _pull(self, key: int) -> list[Raw]:
        """One get(): what already arrived, else a no-wait pull, else one lingering pull."""
        nc = await self._connection()
        sub = self._inboxes.get(key)
        if sub is None:
            sub = await nc.subscribe(nc.new_inbox())
            self._inboxes[key] = sub
        n = self.max_messages
        msgs = _drain(sub, n)
        try:
            if not msgs:
                await nc.publish(self._next_subject, self._no_wait, reply=sub.subject)
                msgs = await self._collect(sub, n, self._settings.request_timeout, msgs)
            if not msgs and self.wait_time > 0 and not self._closing:
                await nc.publish(self._next_subject, self._linger, reply=sub.subject)
                msgs = await self._collect(sub, n, self.wait_time + 1.0, msgs)
        except asyncio.CancelledError:  # get() gave up waiting: hand back what came
            with contextlib.suppress(Exception):
                await asyncio.shield(self._hand_back(msgs))
            raise
        if self._closing and msgs:  # delivered while the queue was closing: hand back
            await self._hand_back(msgs)
            return []
        return [(m.subject, m.reply, m.data, m.headers) for m in msgs]

    async def _collect(
        self, sub: Subscription, n: int, timeout: float, msgs: list[Msg]
    ) -> list[Msg]:
        """Messages of one pull request (appended to ``msgs``), until ``n``, the server's
        end-of-request status, or ``timeout`` (a request lost with a server that went away)."""
        deadline = time.monotonic() + timeout
        while len(msgs) < n:
            got = _drain(sub, n - len(msgs), statuses=True)
            if not got:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    got = [await sub.next_msg(timeout=remaining)]
                except nats.errors.TimeoutError:
                    break
            for msg in got:
                status = msg.headers.get("Status") if msg.headers else None
                if status is None:
                    msgs.append(msg)
                elif status == "100":  # an idle heartbeat
                    continue
                else:
                    if status == "409":
                        self._on_conflict(msg)
                    return msgs  # 404 no messages, 408 expired, 409 ...: this pull is over
        return msgs

    def _on_conflict(self, msg: Msg) -> None:
        description = str((msg.headers or {}).get("Description", ""))
        if "deleted" in description.lower():
            log.warning("%s: the consumer was deleted; binding again", self._settings.describe())
            self._ready = False
        else:
            log.debug("%s: pull ended: %s", self._settings.describe(), description)

    async def _hand_back(self, msgs: list[Msg]) -> None:
        nc = self._nc
        if nc is None or not msgs:
            return
        for msg in msgs:
            if msg.reply:
                await nc.publish(msg.reply, _NAK)
        await nc.flush(timeout=int(self._settings.request_timeout) or 1)
        self._count(handed_back=len(msgs))

    async def _shutdown(self) -> None:
        self._closing = True
        nc = self._nc
        if nc is None:
            return
        try:
            if not nc.is_closed:
                late = [m for sub in self._inboxes.values() for m in _drain(sub, 1 << 30)]
                for sub in self._inboxes.values():
                    await sub.unsubscribe()
                late += [m for sub in self._inboxes.values() for m in _drain(sub, 1 << 30)]
                if late:
                    log.info(
                        "%s: handing back %d late deliveries", self._settings.describe(), len(late)
                    )
                    await self._hand_back(late)
        finally:
            self._inboxes.clear()
            await nc.close()

    # -- internals: producing and inspection ------------------------------------------------

    def _publish_subject(self, subject: str | None) -> str:
        target = subject or self.subject
        if "*" in target.split(".") or ">" in target.split("."):
            raise ValueError(
                f"the queue's subject {self.subject!r} has wildcards: "
                "give put(..., subject=...) a subject to publish to"
            )
        return target

    async def _publish(self, subject: str, items: list[tuple[bytes, dict[str, str]]]) -> list[int]:
        js = await self._jetstream()
        s = self._settings
        sequences: list[int] = []
        for start in range(0, len(items), _PUT_CHUNK):
            chunk = items[start : start + _PUT_CHUNK]
            acks = await asyncio.gather(
                *(
                    js.publish(subject, data, timeout=s.request_timeout, headers=headers)
                    for data, headers in chunk
                )
            )
            sequences.extend(ack.seq for ack in acks)
        return sequences

    async def _stats(self) -> dict[str, int | None]:
        js = await self._jetstream()
        s = self._settings
        info = await js.consumer_info(s.stream, s.consumer)
        stream = await js.stream_info(s.stream)
        try:
            dead = (await js.stream_info(s.dead_letter_stream)).state.messages
        except nats.js.errors.NotFoundError:
            dead = 0
        return {
            "depth": info.num_pending,
            "in_flight": info.num_ack_pending,
            "dead_letters": dead,
            "redelivered": info.num_redelivered,
            "waiting_pulls": info.num_waiting,
            "stream_messages": stream.state.messages,
        }

    async def _dead_page(self, after: int, limit: int) -> list[api.RawStreamMsg]:
        js = await self._jetstream()
        s = self._settings
        found: list[api.RawStreamMsg] = []
        seq = after + 1
        while len(found) < limit:
            try:
                raw = await js.get_msg(
                    s.dead_letter_stream, seq=seq, subject=s.dead_letter_subject, next=True
                )
            except nats.js.errors.NotFoundError:
                break
            if raw.seq is None:
                break
            found.append(raw)
            seq = raw.seq + 1
        return found

    async def _read_dead(self, limit: int) -> list[DeadLetter]:
        return [_dead_letter(raw) for raw in await self._dead_page(0, limit)]

    async def _get_dead(self, seq: int) -> api.RawStreamMsg | None:
        js = await self._jetstream()
        try:
            raw = await js.get_msg(self._settings.dead_letter_stream, seq=seq)
        except nats.js.errors.NotFoundError:
            return None
        return raw

    async def _redrive_page(self, wanted: list[int] | None) -> tuple[int, bool]:
        """Redrive up to one page; returns (moved, more to do). ``wanted`` is consumed."""
        js = await self._jetstream()
        s = self._settings
        if wanted is None:
            page = await self._dead_page(0, _PAGE)
            more = len(page) == _PAGE
        else:
            ids, wanted[:] = wanted[:_PAGE], wanted[_PAGE:]
            more = bool(wanted)
            fetched = await asyncio.gather(*(self._get_dead(i) for i in ids))
            page = [raw for raw in fetched if raw is not None]
        if not page:
            return 0, more

        async def back(raw: api.RawStreamMsg) -> None:
            headers = dict(raw.headers or {})
            subject = headers.get(ORIGIN_SUBJECT) or self._publish_subject(None)
            kept = _resendable(headers)
            kept[MSG_ID] = f"redrive:{s.dead_letter_stream}:{raw.seq}"
            await js.publish(subject, raw.data or b"", timeout=s.request_timeout, headers=kept)
            assert raw.seq is not None
            await js.delete_msg(s.dead_letter_stream, raw.seq)  # only after the PubAck

        await asyncio.gather(*(back(raw) for raw in page))
        return len(page), more

    async def _purge(self, dead_letters: bool) -> int:
        js = await self._jetstream()
        s = self._settings
        purged = await _purged(js, s.stream, s.subject if s.subject != s.stream else None)
        if dead_letters:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                purged += await _purged(js, s.dead_letter_stream, None)
        return purged

    # -- internals: callbacks and counters -------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        log.warning("%s: %s", self._settings.describe(), _scrub(repr(exc), self._settings))

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self._count(disconnects=1)
        log.warning("%s: disconnected; reconnecting", self._settings.describe())

    async def _on_reconnected(self) -> None:
        self._count(reconnects=1)
        log.warning("%s: reconnected", self._settings.describe())

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for key, delta in deltas.items():
                self._counts[key] += delta


def _drain(sub: Subscription, limit: int, *, statuses: bool = False) -> list[Msg]:
    """What already arrived in ``sub``'s queue (no waiting, no task per message)."""
    queue = sub._pending_queue
    msgs: list[Msg] = []
    while len(msgs) < limit and not queue.empty():
        msg = queue.get_nowait()
        sub._pending_size -= len(msg.data)
        queue.task_done()
        if statuses or not (msg.headers and "Status" in msg.headers):
            msgs.append(msg)
    return msgs


def _resendable(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A message's headers without the dead-letter ones and the server's expectations."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k not in DEAD_HEADERS and not k.startswith("Nats-Expected")
    }


async def _purged(js: JetStreamContext, stream: str, subject: str | None) -> int:
    before = (await js.stream_info(stream)).state.messages
    await js.purge_stream(stream, subject=subject)
    after = (await js.stream_info(stream)).state.messages
    return max(before - after, 0)


def _dead_letter(raw: api.RawStreamMsg) -> DeadLetter:
    headers = dict(raw.headers or {})
    return DeadLetter(
        id=int(raw.seq or 0),
        body=body_of(raw.data or b"", headers),
        attempts=int(headers.get(ATTEMPTS, "0") or 0),
        last_error=read_error_header(headers.get(ERROR)),
        died_at=float(headers.get(DIED_AT, "0") or 0),
        subject=headers.get(ORIGIN_SUBJECT, ""),
        stream_seq=int(headers.get(ORIGIN_SEQ, "0") or 0),
        headers=headers,
    )


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"dead letter ids are positive ints, not {value!r}")
    return value


def _scrub(text: str, settings: Settings) -> str:
    """``text`` with any secret of ``settings`` masked (nats-py errors may quote a URL)."""
    from ._settings import redact_server

    for server in settings.servers:
        text = text.replace(server, redact_server(server))
    if settings.token:
        text = text.replace(settings.token, "***")
    return text


def _restore(cls: type[JetStreamQueue], settings: dict[str, Any]) -> JetStreamQueue:
    return cls(**settings)


if TYPE_CHECKING:
    from queue_consumer._protocols import (
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetters,
        SupportsExtend,
        SupportsRejectWithError,
        SupportsRelease,
        SupportsStats,
    )

    _queue = cast(JetStreamQueue, None)
    _cleanup: SupportsCleanup[JetStreamMessage] = _queue
    _reject: SupportsRejectWithError[JetStreamMessage] = _queue
    _release: SupportsRelease[JetStreamMessage] = _queue
    _extend: SupportsExtend[JetStreamMessage] = _queue
    _close: SupportsClose = _queue
    _stats: SupportsStats = _queue
    _dead: SupportsDeadLetters = _queue
