"""JetStreamQueue: a durable JetStream pull consumer behind the synchronous queue contract.

nats-py is asyncio-only: the queue owns an event loop in a daemon thread (``_loop``); what
lives on it is in ``_session`` (connection, pulls, confirmed acks) and ``_dead`` (dead
letters). Every method here runs its coroutine there and waits for it with a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import nats.js.errors

from queue_consumer.errors import ConsumerStateError

from ...observability.propagation import inject_trace_context
from .._bodies import encode, to_bytes
from .._lease import LeaseKeeper
from .._lifecycle import ReopenableQueue
from . import _dead
from ._loop import LoopThread
from ._messages import (
    KIND,
    DeadLetter,
    JetStreamMessage,
    JetStreamStatistics,
    checked,
    snapshot,
)
from ._session import NAK, JetStreamError, Session
from ._settings import Settings

__all__ = ["JetStreamError", "JetStreamQueue"]


_ACK = b"+ACK"
_WPI = b"+WPI"
log = logging.getLogger("queue_consumer.adapters.nats")

_PUT_CHUNK = 500  # publishes in flight at once in put_many
_MAX_LATEST = 100_000  # deliveries remembered for fencing late settles


class JetStreamQueue(ReopenableQueue):
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
        tls = settings.tls_context()  # bad files fail here, not on first use
        self._loop = LoopThread(f"queue_consumer-nats-{settings.stream}")
        self._session = Session(settings, tls, self._count, self._follow_ack_wait)
        self._closed = False
        self._counts = dict.fromkeys(JetStreamStatistics.__dataclass_fields__, 0)
        self._counts_lock = threading.Lock()
        self._latest: dict[int, int] = {}  # stream_seq -> latest delivery handed out here
        self._latest_lock = threading.Lock()
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
        raw = self._loop.run(self._session.pull(threading.current_thread()), budget)
        if not raw:
            return []
        messages = [snapshot(*item) for item in raw]
        self._handed_out(messages)
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
        self._move(retry, dead, error or f"rejected on all {self.max_attempts} attempts")
        return len(batch)

    def dead_letter(self, messages: Iterable[JetStreamMessage], *, error: str | None = None) -> int:
        """Messages that can never succeed (the handler raised ``PermanentFailure``): into the
        dead-letter stream now, whatever their attempts. One that cannot be copied is
        rejected as usual. Returns how many were settled."""
        batch = self._settling(messages)
        if batch:
            self._move([], batch, error or "a permanent failure")
        return len(batch)

    def release(self, messages: Iterable[JetStreamMessage]) -> int:
        """Messages never handled: delivered again at once (``nak``). JetStream counts the
        delivery: a released message has one attempt fewer left."""
        batch = self._settling(messages)
        if not batch:
            return 0
        self._settle("release", [(m.reply, NAK) for m in batch])
        self._count(released=len(batch))
        return len(batch)

    def extend(self, messages: Iterable[JetStreamMessage], timeout: float | None = None) -> int:
        """Send "in progress" for these deliveries: each is held for a full ``ack_wait``
        again (JetStream cannot set another duration, so ``timeout`` is not used)."""
        batch = checked(messages)
        with self._latest_lock:
            batch = [m for m in batch if self._latest.get(m.stream_seq, 0) <= m.delivery_count]
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
        extra = dict(inject_trace_context(headers) or {})  # the trace context, with tracing on
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
        raws = self._loop.run(_dead.read(self._session, limit), self._budget(limit))
        return [_dead.dead_letter(raw) for raw in raws]

    def redrive(self, ids: Iterable[int] | None = None) -> int:
        """Publish dead letters (all, or those ``ids``) back to their subject, and delete
        each from the dead-letter stream once the stream confirmed the copy. Returns how
        many went back. A redriven message is a new message: its delivery count starts at 1."""
        wanted = None if ids is None else sorted({_seq(i) for i in ids})
        total = 0
        while True:
            page = _dead.redrive_page(self._session, wanted, self._publish_subject(None))
            moved, more = self._loop.run(page, self._budget(_dead.PAGE))
            total += moved
            self._count(redriven=moved)
            if not more:
                return total

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every message of the queue's subject (and of the dead-letter stream if
        asked). Returns how many went."""
        return self._loop.run(_dead.purge(self._session, dead_letters), self._budget(2))

    # -- lifecycle ---------------------------------------------------------------------

    def interrupt(self) -> None:
        """Make a ``get()`` waiting for messages return now (the consumer is stopping)."""
        if self._loop.started() and not self._closed:
            self._loop.loop.call_soon_threadsafe(self._session.interrupt)

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
                self._loop.run(self._session.shutdown(), self._settings.request_timeout + 5)
            except Exception as exc:
                log.warning("%s: closing: %s", self._settings.describe(), exc)
        self._loop.close()

    def __repr__(self) -> str:
        return f"JetStreamQueue({self._settings.describe()})"

    def settings(self) -> dict[str, Any]:
        """The keyword arguments that open this queue again (secrets included)."""
        return self._settings.kwargs()

    # -- internals -----------------------------------------------------------------------

    def _settling(self, messages: Iterable[JetStreamMessage]) -> list[JetStreamMessage]:
        """The deliveries of ``messages`` that may still be settled, no longer heartbeated.

        JetStream applies an ack from any delivery of a message, even one whose ack_wait
        ran out while the message went out again. So the fence is here: a delivery older
        than one this object handed out since is skipped and counted (``late_settles``).
        """
        batch = checked(messages)
        held = self._leases.untrack(m.reply for m in batch)
        with self._latest_lock:
            latest = self._latest
            fresh = [m for m in batch if latest.get(m.stream_seq, 0) <= m.delivery_count]
            for m in fresh:
                latest.pop(m.stream_seq, None)
        late = len(batch) - len(fresh)
        if late:
            log.warning("%d late settle(s) skipped: delivered again since", late)
        unknown = len(batch) - len(held) - late
        self._count(late_settles=late, unknown_settles=max(unknown, 0))
        return fresh

    def _handed_out(self, messages: list[JetStreamMessage]) -> None:
        with self._latest_lock:
            latest = self._latest
            for m in messages:
                if latest.get(m.stream_seq, 0) < m.delivery_count:
                    latest[m.stream_seq] = m.delivery_count
            if len(latest) > _MAX_LATEST:  # never settled here (handed to another queue?)
                for seq in list(latest)[: len(latest) - _MAX_LATEST]:
                    del latest[seq]

    def _move(
        self, retry: list[JetStreamMessage], dead: list[JetStreamMessage], reason: str
    ) -> None:
        """Dead-letter ``dead`` (those that cannot be copied join ``retry``); nak ``retry``
        with its backoff."""
        if dead:
            unsent = self._loop.run(
                _dead.move(self._session, dead, reason), self._budget(len(dead))
            )
            self._count(dead_lettered=len(dead) - len(unsent))
            retry = retry + unsent
        if retry:
            self._settle("reject", [(m.reply, self._nak_after(m)) for m in retry])
            self._count(rejected=len(retry))

    def _nak_after(self, message: JetStreamMessage) -> bytes:
        delay = int(self.backoff(message.delivery_count) * 1e9)
        return NAK if delay <= 0 else b'-NAK {"delay": %d}' % delay

    def _settle(self, what: str, entries: list[tuple[str, bytes]]) -> None:
        self._loop.run(self._session.confirm(what, entries), self._budget(len(entries)))

    def _budget(self, items: int) -> float:
        s = self._settings
        # Connecting, then up to three rounds of confirmations (with their pauses).
        return s.connect_timeout + s.request_timeout * (4 + items // 1000) + 2

    def _lease_keeper(self, ack_wait: float) -> LeaseKeeper[str]:
        def extend(held: dict[str, float]) -> list[str]:
            self._settle("extend", [(reply, _WPI) for reply in held])
            return []  # JetStream does not say whether a delivery is still this one's

        return LeaseKeeper(
            extend,
            ack_wait / 2,
            name="nats",
            enabled=self._settings.heartbeat,
            on_error=lambda exc: self._count(settle_errors=1),
        )

    def _follow_ack_wait(self, ack_wait: float) -> None:
        """The consumer exists with another ack_wait: the heartbeat follows the server's."""
        if abs(ack_wait - self.ack_wait) <= 1e-3:
            return
        self.ack_wait = ack_wait
        old, self._leases = self._leases, self._lease_keeper(ack_wait)
        old.close()

    def _publish_subject(self, subject: str | None) -> str:
        target = subject or self.subject
        if "*" in target.split(".") or ">" in target.split("."):
            raise ValueError(
                f"the queue's subject {self.subject!r} has wildcards: "
                "give put(..., subject=...) a subject to publish to"
            )
        return target

    async def _publish(self, subject: str, items: list[tuple[bytes, dict[str, str]]]) -> list[int]:
        js = await self._session.jetstream()
        timeout = self._settings.request_timeout
        sequences: list[int] = []
        for start in range(0, len(items), _PUT_CHUNK):
            acks = await asyncio.gather(
                *(
                    js.publish(subject, data, timeout=timeout, headers=headers)
                    for data, headers in items[start : start + _PUT_CHUNK]
                )
            )
            sequences.extend(ack.seq for ack in acks)
        return sequences

    async def _stats(self) -> dict[str, int | None]:
        js = await self._session.jetstream()
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

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for key, delta in deltas.items():
                self._counts[key] += delta


def _seq(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"dead letter ids are positive ints, not {value!r}")
    return value


if TYPE_CHECKING:
    from queue_consumer._protocols import (
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

    def _capabilities(queue: JetStreamQueue) -> None:
        _cleanup: SupportsCleanup[JetStreamMessage] = queue
        _reject: SupportsRejectWithError[JetStreamMessage] = queue
        _dead_letter: SupportsDeadLetter[JetStreamMessage] = queue
        _release: SupportsRelease[JetStreamMessage] = queue
        _extend: SupportsExtend[JetStreamMessage] = queue
        _interrupt: SupportsInterrupt = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
        _dead_letters: SupportsDeadLetters = queue
