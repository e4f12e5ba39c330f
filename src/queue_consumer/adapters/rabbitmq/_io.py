"""The I/O thread: the one owner of the pika connection, its channels and its deliveries.

pika is not thread-safe, except for ``add_callback_threadsafe``. So one thread per queue
owns a ``BlockingConnection`` and nothing else touches it::

    basic_consume ─(I/O thread)─> buffer ─get()─> workers, handlers
    cleanup / reject / release / put / stats ─> ops deque ─add_callback_threadsafe─┐
        (the caller waits on a Future, or not at all for ack and nack)             │
    I/O thread: process_data_events(0.2 s) <─ woken ─────────────────────────────┘
                -> run the ops -> check the channels -> again

``process_data_events`` runs all the time, so heartbeats flow however long handlers run.
A lost connection (or a channel the broker closed) ends a *session*: the deliveries of
that channel generation are forgotten (the broker requeues them), the buffer is emptied,
and the thread reconnects with a doubling backoff, redeclares and consumes again. A
settle for a delivery of an older generation is dropped and counted, never sent on the new
channel (RabbitMQ closes a channel that acks a tag it did not deliver).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pika
import pika.exceptions

from ...errors import ConfigurationError, ConsumerStateError, QueueConsumerError
from ._messages import RabbitMQMessage

__all__ = ["Delivery", "Link", "RabbitMQError", "Session"]

log = logging.getLogger("queue_consumer.adapters.rabbitmq")

T = TypeVar("T")
M = TypeVar("M", bound=RabbitMQMessage)

_TICK = 0.2  # seconds process_data_events waits when nothing happens
_AGE_CHECK = 1.0  # how often the oldest unacknowledged delivery is looked at


class RabbitMQError(QueueConsumerError):
    """A RabbitMQ operation failed (no connection in time, a publish not confirmed, ...)."""


@dataclass
class Delivery:
    """What the I/O thread keeps of an unacknowledged delivery (to republish it)."""

    tag: int
    body: bytes
    properties: Any  # pika.BasicProperties
    received_at: float
    warned: bool = False


class Session:
    """One connection, its channels and deliveries: one generation. I/O thread only."""

    def __init__(self, connection: Any, generation: int) -> None:
        self.connection = connection
        self.generation = generation
        self.consume = connection.channel()
        self._raw = getattr(self.consume, "_impl", self.consume)  # pika's async channel
        self.publisher = connection.channel()
        self.publisher.confirm_delivery()
        self.unacked: dict[int, Delivery] = {}
        self.consumer_tag: str | None = None
        self.declared: set[str] = set()
        self.cancelled = False
        self._scratch: Any = None

    def ack(self, tag: int) -> None:
        """``basic.ack`` of one tag, written out with the next ``process_data_events``.

        pika's blocking channel flushes the socket after every call: one ``send`` (and one
        GIL hand-over) per ack. Its underlying channel queues the frame instead, so the acks
        of one pass of the I/O loop leave in one write."""
        self._raw.basic_ack(delivery_tag=tag, multiple=False)

    def nack(self, tag: int) -> None:
        """``basic.nack(requeue=True)`` of one tag (never ``multiple``), queued like ``ack``."""
        self._raw.basic_nack(delivery_tag=tag, multiple=False, requeue=True)

    def publish(self, routing_key: str, body: bytes, properties: Any) -> bool:
        """Publish to the default exchange, mandatory, and wait for the broker's confirm.
        False if the broker refused it (nack) or could not route it (no such queue)."""
        try:
            self.publisher.basic_publish("", routing_key, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            log.error("RabbitMQ refused a publish to %r: %s", routing_key, type(exc).__name__)
            return False
        return True

    def scratch(self) -> Any:
        """A throwaway channel for declarations: a refused one closes only this channel."""
        if self._scratch is None or not self._scratch.is_open:
            self._scratch = self.connection.channel()
        return self._scratch

    def counts(self, queue: str) -> tuple[int, int] | None:
        """(ready messages, consumers) from a passive declare; None if there is no queue."""
        try:
            ok = self.scratch().queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._scratch = None
            if exc.reply_code == 404:
                return None
            raise
        return int(ok.method.message_count), int(ok.method.consumer_count)

    def declare(self, queue: str, arguments: dict[str, Any]) -> None:
        """Declare a durable queue; an existing one with other arguments is a clear error."""
        try:
            self.scratch().queue_declare(queue, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._scratch = None
            if exc.reply_code == 406:
                raise ConfigurationError(
                    f"RabbitMQ queue {queue!r} exists with other arguments than "
                    f"{arguments or 'none'} ({exc.reply_text}); declare it the same way, "
                    "delete it, or open it with declare=false"
                ) from None
            if exc.reply_code == 403:
                raise ConfigurationError(
                    f"not allowed to declare RabbitMQ queue {queue!r} ({exc.reply_text}); "
                    "create it beforehand and open it with declare=passive or declare=false"
                ) from None
            raise
        self.declared.add(queue)

    def broken(self) -> str | None:
        """Why this session cannot go on, or None."""
        if not self.connection.is_open:
            return "connection closed"
        if not self.consume.is_open or not self.publisher.is_open:
            return "a channel was closed by the broker"
        if self.cancelled:
            return "the broker cancelled the consumer (queue deleted?)"
        return None


@dataclass
class _Op:
    fn: Callable[[Session | None], Any]
    needs_session: bool
    future: Future[Any] = field(default_factory=Future)


def _nothing() -> None:
    """What add_callback_threadsafe runs: waking process_data_events is the point."""


class Link(Generic[M]):
    """The I/O thread of one queue: connection, reconnection, buffer, operations."""

    def __init__(
        self,
        parameters: Any,
        *,
        queue: str,
        prefetch: int,
        owner: str,
        describe: str,
        setup: Callable[[Session], None],
        make_message: Callable[[int, Any, Any, bytes], M],
        reconnect: tuple[float, float],
        consumer_timeout: float,
    ) -> None:
        self._parameters = parameters
        self._queue = queue
        self._prefetch = prefetch
        self.owner = owner
        self.describe = describe
        self._setup = setup
        self._make_message = make_message
        self._reconnect = reconnect
        self._warn_age = 0.9 * consumer_timeout
        self._lock = threading.Lock()
        self._ops: deque[_Op] = deque()
        self._wake_pending = False
        self._kick = threading.Event()
        self._connection: Any = None
        self._session: Session | None = None
        self._buffer: deque[M] = deque()
        self._available = threading.Condition()
        self._interrupts = 0
        self._want_consume = False
        self._cancelled = False  # close() began: get() must not consume again
        self._stopping = False
        self._closed = False
        self._started: Future[None] = Future()
        self._generation = 0
        self._counts_lock = threading.Lock()
        self.counts = dict.fromkeys(
            ("reconnects", "connect_errors", "invalid_receipts", "aging_deliveries"), 0
        )
        self._thread = threading.Thread(target=self._run, name=f"rabbitmq-io:{queue}", daemon=True)

    # -- for other threads ---------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Connect (and declare) on the I/O thread; raise what the first attempt raised."""
        self._thread.start()
        try:
            self._started.result(timeout)
        except FutureTimeout:
            self.stop(0)
            raise RabbitMQError(
                f"RabbitMQ {self.describe}: no connection in {timeout:g}s"
            ) from None
        except (ConfigurationError, RabbitMQError):
            raise
        except Exception as exc:
            raise RabbitMQError(f"cannot connect to RabbitMQ {self.describe}: {_why(exc)}") from exc

    def consume(self) -> None:
        """Start consuming (from now on, and after every reconnect). Idempotent."""
        if self._want_consume or self._cancelled:
            return
        self._want_consume = True
        self._submit(self._consume_now, needs_session=True)

    def take(self, limit: int, wait: float) -> list[M]:
        """Up to ``limit`` buffered deliveries, waiting at most ``wait`` for the first."""
        self.consume()
        deadline = time.monotonic() + wait
        with self._available:
            epoch = self._interrupts
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping or self._interrupts != epoch:
                    return []
                self._available.wait(remaining)
            count = min(limit, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def call(self, fn: Callable[[Session], T], timeout: float) -> T:
        """Run ``fn(session)`` on the I/O thread once connected; its result or error."""
        future: Future[T] = self._submit(fn, needs_session=True)  # type: ignore[arg-type]
        return self._wait(future, timeout)

    def settle(
        self,
        messages: Sequence[M],
        action: Callable[[Session, list[tuple[M, Delivery]]], T],
        *,
        wait: float | None,
    ) -> T | None:
        """Run ``action`` on the deliveries of ``messages`` this channel still holds;
        the others (older channel, another queue, settled already) are dropped and
        counted as ``invalid_receipts``. ``wait=None``: do not wait for it (ack, nack)."""

        def run(session: Session | None) -> T | None:
            live = self._claim(session, messages)
            return action(session, live) if live and session is not None else None

        future = self._submit(run, needs_session=False)
        return None if wait is None else self._wait(future, wait)

    def interrupt(self) -> None:
        """Make every ``take`` waiting now return at once (later ones wait as usual)."""
        with self._available:
            self._interrupts += 1
            self._available.notify_all()

    def buffered(self) -> int:
        return len(self._buffer)

    def held(self) -> int:
        """Deliveries handed out by ``take`` and not settled yet, on the live channel."""
        session = self._session
        return 0 if session is None else max(len(session.unacked) - len(self._buffer), 0)

    def recover(self, timeout: float) -> None:
        """Close the consuming channel: the broker requeues every unacknowledged delivery
        (as when the connection is lost), and the thread opens a new session."""
        self.call(lambda session: session.consume.close(), timeout)

    def drain_buffer(self) -> list[M]:
        with self._available:
            messages = list(self._buffer)
            self._buffer.clear()
        return messages

    def cancel(self, timeout: float) -> None:
        """Stop consuming: the broker sends no more (pika nacks what it had not dispatched)."""
        self._cancelled = True
        self._want_consume = False
        if self._session is not None:
            self.call(self._cancel_now, timeout)

    def stop(self, timeout: float) -> None:
        """End the I/O thread: close the connection (unacknowledged deliveries go back)."""
        with self._lock:
            self._stopping = True
            self._closed = True
            connection = self._connection
        self._wake(connection)
        with self._available:
            self._available.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def count(self, **deltas: int) -> None:
        with self._counts_lock:
            for name, delta in deltas.items():
                self.counts[name] = self.counts.get(name, 0) + delta

    # -- internals -------------------------------------------------------------------

    def _submit(self, fn: Callable[[Session | None], Any], *, needs_session: bool) -> Future[Any]:
        op = _Op(fn, needs_session)
        with self._lock:
            if self._closed:
                raise ConsumerStateError("Cannot use a RabbitMQQueue once it has been closed.")
            self._ops.append(op)
            wake = not self._wake_pending
            self._wake_pending = True
            connection = self._connection
        if wake:
            self._wake(connection)
        return op.future

    def _wake(self, connection: Any) -> None:
        self._kick.set()
        if connection is not None:
            # Closing: the I/O thread runs the ops after reconnecting.
            with contextlib.suppress(Exception):
                connection.add_callback_threadsafe(_nothing)

    def _wait(self, future: Future[T], timeout: float) -> T:
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise RabbitMQError(
                f"RabbitMQ {self.describe}: no answer in {timeout:g}s (no connection?)"
            ) from None

    def _claim(self, session: Session | None, messages: Sequence[M]) -> list[tuple[M, Delivery]]:
        live: list[tuple[M, Delivery]] = []
        for message in messages:
            delivery = None
            if (
                session is not None
                and message.owner == self.owner
                and message.generation == session.generation
            ):
                delivery = session.unacked.pop(message.delivery_tag, None)
            if delivery is None:
                self.count(invalid_receipts=1)
            else:
                live.append((message, delivery))
        stale = len(messages) - len(live)
        if stale:
            log.warning(
                "RabbitMQ %s: %d settle(s) for deliveries of an earlier channel dropped "
                "(the broker delivers those messages again)",
                self.describe,
                stale,
            )
        return live

    def _run(self) -> None:
        delay = self._reconnect[0]
        first = True
        while not self._stopping:
            try:
                session = self._open()
            except BaseException as exc:
                if first:
                    self._started.set_exception(exc)
                    self._stopping = self._closed = True
                    break
                self.count(connect_errors=1)
                log.warning(
                    "RabbitMQ %s: cannot reconnect (%s); next try in %.1fs",
                    self.describe,
                    _why(exc),
                    delay,
                )
                self._pause(delay)
                delay = min(delay * 2, self._reconnect[1])
                continue
            if first:
                first = False
                self._started.set_result(None)
            else:
                log.warning(
                    "RabbitMQ %s: reconnected (generation %d)", self.describe, session.generation
                )
            delay = self._reconnect[0]
            try:
                self._serve(session)
            except Exception as exc:
                if not self._stopping:
                    self.count(reconnects=1)
                    log.warning(
                        "RabbitMQ %s: connection lost (%s); reconnecting", self.describe, _why(exc)
                    )
            finally:
                self._drop(session)
        self._fail_ops(ConsumerStateError("the RabbitMQ queue was closed"))

    def _open(self) -> Session:
        connection = pika.BlockingConnection(self._parameters)
        try:
            self._generation += 1
            session = Session(connection, self._generation)
            self._setup(session)
            if self._want_consume:
                self._consume_now(session)
        except BaseException:
            _quietly(connection.close)
            raise
        with self._lock:
            self._connection = connection
            self._session = session
        return session

    def _consume_now(self, session: Session | None) -> None:
        assert session is not None
        if session.consumer_tag is not None or not self._want_consume:
            return
        session.consume.basic_qos(prefetch_count=self._prefetch)
        session.consume.add_on_cancel_callback(lambda _frame: setattr(session, "cancelled", True))
        session.consumer_tag = session.consume.basic_consume(
            self._queue, functools.partial(self._on_message, session), auto_ack=False
        )

    def _cancel_now(self, session: Session) -> None:
        if session.consumer_tag is not None and session.consume.is_open:
            session.consume.basic_cancel(session.consumer_tag)
        session.consumer_tag = None

    def _on_message(
        self, session: Session, channel: Any, method: Any, properties: Any, body: bytes
    ) -> None:
        tag = method.delivery_tag
        try:
            message = self._make_message(session.generation, method, properties, body)
        except Exception:  # never leave a delivery unaccounted for: back it goes
            log.exception("RabbitMQ %s: cannot read a delivery; requeued", self.describe)
            session.nack(tag)
            return
        session.unacked[tag] = Delivery(tag, body, properties, time.monotonic())
        with self._available:
            self._buffer.append(message)
            self._available.notify()

    def _serve(self, session: Session) -> None:
        next_check = time.monotonic() + _AGE_CHECK
        while not self._stopping:
            self._run_ops(session)
            session.connection.process_data_events(time_limit=_TICK)
            why = session.broken()
            if why is not None:
                raise RabbitMQError(why)
            now = time.monotonic()
            if now >= next_check:
                next_check = now + _AGE_CHECK
                self._watch_ages(session, now)
        self._run_ops(session)  # what close() asked last

    def _run_ops(self, session: Session | None) -> None:
        with self._lock:
            batch = list(self._ops)
            self._ops.clear()
            self._wake_pending = False
            self._kick.clear()
        kept: list[_Op] = []
        for index, op in enumerate(batch):
            if op.needs_session and session is None:
                kept.append(op)
                continue
            if not op.future.set_running_or_notify_cancel():
                continue  # the caller gave up waiting
            try:
                result = op.fn(session)
            except BaseException as exc:
                op.future.set_exception(exc)
                if session is not None and (
                    session.broken() or isinstance(exc, pika.exceptions.AMQPConnectionError)
                ):
                    kept.extend(batch[index + 1 :])
                    self._requeue(kept)
                    raise
            else:
                op.future.set_result(result)
        self._requeue(kept)

    def _requeue(self, ops: list[_Op]) -> None:
        if ops:
            with self._lock:
                self._ops.extendleft(reversed(ops))

    def _pause(self, seconds: float) -> None:
        """Wait before reconnecting; meanwhile settles (all stale now) are answered."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            self._run_ops(None)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._kick.wait(min(remaining, 0.5))

    def _drop(self, session: Session) -> None:
        with self._lock:
            self._connection = None
            self._session = None
        dropped = len(session.unacked)
        session.unacked.clear()
        with self._available:
            self._buffer.clear()
        if dropped and not self._stopping:
            log.warning(
                "RabbitMQ %s: %d unacknowledged deliveries of the lost channel go back to the "
                "queue (handlers still running on them will have their settles dropped)",
                self.describe,
                dropped,
            )
        if session.connection.is_open:
            _quietly(session.connection.close)

    def _fail_ops(self, exc: BaseException) -> None:
        with self._lock:
            self._closed = True
            batch = list(self._ops)
            self._ops.clear()
        for op in batch:
            if op.future.set_running_or_notify_cancel():
                op.future.set_exception(exc)
        with self._available:
            self._available.notify_all()

    def _watch_ages(self, session: Session, now: float) -> None:
        for delivery in session.unacked.values():
            if not delivery.warned and now - delivery.received_at > self._warn_age:
                delivery.warned = True
                self.count(aging_deliveries=1)
                log.warning(
                    "RabbitMQ %s: a delivery has been held %.0fs, close to the broker's "
                    "consumer_timeout; past it the broker closes the channel and the message "
                    "is delivered again",
                    self.describe,
                    now - delivery.received_at,
                )


def _quietly(fn: Callable[[], object]) -> None:
    with contextlib.suppress(Exception):  # closing what is already broken
        fn()


def _why(exc: BaseException) -> str:
    """An error as one line, without anything that could hold a password."""
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
