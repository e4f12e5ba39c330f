"""RabbitMQQueue: the queue's rules (attempts, backoff through hold queues, dead letters,
redrive, shutdown order) over the I/O thread of ``_io``."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pika

from ...errors import ConfigurationError
from ...observability.propagation import inject_trace_context
from .. import _bodies
from .._lifecycle import ReopenableQueue, reopen
from .._options import redact
from . import _messages as wire
from ._io import Delivery, Link, RabbitMQError, Session
from ._messages import DeadLetter, RabbitMQMessage, checked
from ._settings import (
    DEFAULT_CONSUMER_TIMEOUT,
    Settings,
    check_handler_timeout,
    hold_delays,
    hold_queue,
    parse_url,
)

__all__ = ["RabbitMQQueue", "from_url"]

_Live = list[tuple[RabbitMQMessage, Delivery]]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
_MAX_ERROR = 4000  # characters of a handler error kept in a header
_COUNTERS = ("dead_lettered", "dead_letter_failures", "retried", "retry_fallbacks")


class RabbitMQQueue(ReopenableQueue):
    """A RabbitMQ queue (AMQP 0.9.1, pika) for ``Consumer``: classic or quorum.

    ::

        with RabbitMQQueue("amqp://guest:guest@127.0.0.1/%2F", "emails") as queue:
            queue.put({"to": "ann@example.com"})     # returns the message id
            [message] = queue.get()                  # message.body == {"to": ...}
            queue.cleanup([message])

    One I/O thread owns the connection; ``get()`` takes deliveries from a buffer filled by
    ``basic.consume`` with ``prefetch`` unacknowledged deliveries at most. Set ``prefetch``
    to about ``max_handlers * messages_bulk_size`` of the consumer, never more: deliveries
    buffered beyond what the handlers take age towards the broker's ``consumer_timeout``.
    ``cleanup`` acks, ``release`` nacks with requeue (back at once), ``reject`` republishes
    a copy to a hold queue whose TTL is the backoff (confirmed), then acks; after
    ``max_attempts`` deliveries the copy goes to ``dead_letter_queue`` (confirmed) instead.
    See the README section "Consuming RabbitMQ" for every argument.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        queue: str = "default",
        *,
        queue_type: str = "classic",
        prefetch: int | None = None,
        max_messages: int = 10,
        wait_time: float = 1.0,
        max_attempts: int = 5,
        retry: str = "delay",
        retry_delay: float = 1.0,
        max_retry_delay: float = 300.0,
        declare: bool | str = True,
        consumer_timeout: float = DEFAULT_CONSUMER_TIMEOUT,
        handler_timeout: float | None = None,
        dead_letter_queue: str | None = None,
        connection_name: str | None = None,
        close_timeout: float = 30.0,
        operation_timeout: float = 30.0,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 30.0,
    ) -> None:
        options = dict(locals())
        for name in ("self", "url", "queue", "__class__"):
            options.pop(name, None)
        self._settings = settings = Settings.check(url, queue, **options)
        self._closed = False
        self._counts = dict.fromkeys(_COUNTERS, 0)
        owner = secrets.token_hex(6)
        self._link: Link[RabbitMQMessage] = Link(
            self._parameters(),
            queue=settings.queue,
            prefetch=settings.prefetch,
            owner=owner,
            describe=f"{redact(settings.url)} queue {settings.queue!r}",
            setup=self._declare,
            make_message=self._message,
            reconnect=(settings.reconnect_delay, settings.max_reconnect_delay),
            consumer_timeout=settings.consumer_timeout,
        )
        self._link.start(settings.operation_timeout)

    # -- the queue contract ------------------------------------------------------------

    def get(self) -> list[RabbitMQMessage]:
        """Up to ``max_messages`` deliveries, waiting at most ``wait_time`` for the first."""
        if self._closed:
            return []
        return self._link.take(self._settings.max_messages, self._settings.wait_time)

    def interrupt(self) -> None:
        """Shutdown began: a ``get()`` waiting for deliveries returns at once."""
        self._link.interrupt()

    def cleanup(self, messages: Iterable[RabbitMQMessage]) -> None:
        """Ack messages whose handler succeeded (one tag at a time, never ``multiple``).
        Does not wait: an ack has no answer in AMQP 0.9.1."""
        self._link.settle(checked(messages), _ack, wait=None)

    def release(self, messages: Iterable[RabbitMQMessage]) -> None:
        """Never handled: ``basic.nack(requeue=True)``, back at once. The broker counts it
        anyway: a quorum queue in ``x-delivery-count`` (before 4.3), a classic queue by the
        ``redelivered`` flag (one more delivery, once)."""
        self._link.settle(checked(messages), _nack, wait=None)

    def reject(self, messages: Iterable[RabbitMQMessage], *, error: str | None = None) -> None:
        """Failed: retry after the backoff (a confirmed copy in a hold queue, then the
        original acked), or dead-letter after ``max_attempts`` deliveries."""
        batch = checked(messages)
        if batch:
            action = lambda session, live: self._reject_now(session, live, error)  # noqa: E731
            self._link.settle(batch, action, wait=self._settings.operation_timeout)

    def dead_letter(self, messages: Iterable[RabbitMQMessage], *, error: str | None = None) -> None:
        """Dead-letter at once (a handler raised ``PermanentFailure``): a confirmed copy in
        ``dead_letter_queue``, then the original acked."""
        batch = checked(messages)

        def bury(session: Session, live: _Live) -> None:
            for message, delivery in live:
                self._bury(session, message, delivery, error)

        if batch:
            self._link.settle(batch, bury, wait=self._settings.operation_timeout)

    def recover(self) -> None:
        """Give back every delivery not settled yet, as a lost connection does (AMQP has
        no lease to let expire): the consuming channel is closed, the broker requeues,
        and a new channel consumes. Later settles of those deliveries are dropped and
        counted as ``invalid_receipts``."""
        self._link.recover(self._timeout)

    def check_handler_timeout(self, handler_timeout: float | None) -> None:
        """``ConfigurationError`` unless ``handler_timeout`` is shorter than the broker's
        ``consumer_timeout`` (given to this queue: AMQP cannot read it). There is no
        ``extend()``: AMQP 0.9.1 cannot extend a delivery."""
        check_handler_timeout(handler_timeout, self._settings.consumer_timeout)

    # -- producing ---------------------------------------------------------------------

    def put(self, body: Any, *, headers: Mapping[str, Any] | None = None) -> str:
        """Publish one message (str, bytes or JSON value), confirmed. Returns its id."""
        return self.put_many([body], headers=headers)[0]

    def put_many(
        self, bodies: Iterable[Any], *, headers: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Publish messages, each confirmed by the broker (a round trip each: pika's
        blocking channel waits for every confirm). Returns their ids, in order."""
        encoded = [_bodies.encode(body) for body in bodies]  # a bad body sends nothing
        if not encoded:
            return []
        extra = dict(inject_trace_context(headers) or {})  # the trace context, with tracing on
        queue = self._settings.queue

        def publish(session: Session) -> list[str]:
            ids = []
            for kind, data in encoded:
                message_id = uuid.uuid4().hex
                properties = pika.BasicProperties(
                    content_type=wire.content_type(kind),
                    delivery_mode=2,
                    message_id=message_id,
                    headers={**extra, wire.KIND: kind},
                )
                if not session.publish(queue, _bodies.to_bytes(data), properties):
                    raise RabbitMQError(f"RabbitMQ did not take a message for queue {queue!r}")
                ids.append(message_id)
            return ids

        return self._link.call(publish, self._settings.operation_timeout)

    # -- dead letters and inspection ---------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """``depth`` = ``visible`` (ready in the queue) + ``delayed`` (in hold queues), from
        passive declares. ``in_flight`` is None: unacknowledged counts need the management
        API. ``held`` counts this queue object's own unsettled deliveries."""
        settings = self._settings
        holds = [hold_queue(settings, delay) for delay in hold_delays(settings)]

        def read(session: Session) -> tuple[Any, ...]:
            return (
                session.counts(settings.queue),
                session.counts(settings.dead_letter_queue),
                [session.counts(name) for name in holds],
            )

        main, dead, held = self._link.call(read, settings.operation_timeout)
        if main is None:
            raise RabbitMQError(f"RabbitMQ queue {settings.queue!r} does not exist")
        delayed = sum(count[0] for count in held if count is not None)
        link = self._link
        with link._counts_lock:
            counts = dict(link.counts)
        return {
            "depth": main[0] + delayed,
            "visible": main[0],
            "delayed": delayed,
            "in_flight": None,
            "dead_letters": 0 if dead is None else dead[0],
            "consumers": main[1],
            "held": link.held(),
            "buffered": link.buffered(),
            **counts,
            **self._counts,
        }

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` dead letters (read with ``basic.get`` and put back: they are
        marked redelivered, their order kept)."""
        from ... import _checks as checks

        limit = checks.count("limit", limit)
        dead = self._settings.dead_letter_queue

        def read(session: Session) -> list[DeadLetter]:
            channel = session.connection.channel()
            letters = []
            try:
                for _ in range(limit):
                    method, properties, body = channel.basic_get(dead, auto_ack=False)
                    if method is None:
                        break
                    letters.append(_dead_letter(properties, body, self._settings.queue))
            finally:
                channel.close()  # unacknowledged: back in the dead-letter queue
            return letters

        return self._link.call(read, self._settings.operation_timeout)

    def redrive(self, ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those ``ids``) back to the queue with attempts reset,
        each copy confirmed before its dead letter is acked. Returns how many moved."""
        wanted = None if ids is None else {str(i) for i in ids}
        settings = self._settings

        def move(session: Session) -> int:
            counts = session.counts(settings.dead_letter_queue)
            if counts is None:
                return 0
            channel = session.connection.channel()
            moved = 0
            try:
                for _ in range(counts[0]):
                    method, properties, body = channel.basic_get(
                        settings.dead_letter_queue, auto_ack=False
                    )
                    if method is None:
                        break
                    if wanted is not None and properties.message_id not in wanted:
                        continue  # left unacknowledged: back when the channel closes
                    copy = _copy(properties, reset=True)
                    if session.publish(settings.queue, body, copy):
                        channel.basic_ack(method.delivery_tag)
                        moved += 1
            finally:
                channel.close()
            return moved

        return self._link.call(move, settings.operation_timeout)

    def purge(self, *, dead_letters: bool = False) -> int:
        """Delete every ready message of the queue and its hold queues (and the dead
        letters if asked). Unacknowledged deliveries stay. Returns how many went."""
        names = [self._settings.queue, *self._companions(dead=dead_letters)]
        return sum(self._link.call(lambda s: _each(s, names, "purge"), self._timeout))

    def delete(self) -> int:
        """Stop consuming, then delete the queue, its hold queues and its dead-letter queue
        (tests, teardown). Returns how many messages they held. Close the queue after."""
        self._link.cancel(self._timeout)
        names = [self._settings.queue, *self._companions(dead=True)]
        return sum(self._link.call(lambda s: _each(s, names, "delete"), self._timeout))

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def queue(self) -> str:
        return self._settings.queue

    @property
    def settings(self) -> Settings:
        return self._settings

    def close(self) -> None:
        """Shut down in the order that handles nothing twice: cancel the consumer (no new
        deliveries), release what is buffered, wait up to ``close_timeout`` for handed-out
        deliveries to be settled, then close the connection (what is still unacknowledged
        goes back to the queue). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        link, timeout = self._link, self._settings.close_timeout
        try:
            link.cancel(self._timeout)
            buffered = link.drain_buffer()
            if buffered:
                link.settle(buffered, _nack, wait=self._timeout)
            deadline = time.monotonic() + timeout
            while link.held() and time.monotonic() < deadline:
                time.sleep(0.02)
        except Exception:  # no connection: closing it requeues everything anyway
            pass
        finally:
            link.stop(self._timeout)

    def __repr__(self) -> str:
        return f"RabbitMQQueue({redact(self._settings.url)!r}, queue={self._settings.queue!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its settings: a copy in another process opens its own connection.
        return (reopen, (type(self), self._settings.keywords()))

    # -- internals ---------------------------------------------------------------------

    @property
    def _timeout(self) -> float:
        return self._settings.operation_timeout

    def _parameters(self) -> Any:
        settings = self._settings
        try:
            parameters = pika.URLParameters(settings.url)
        except Exception as exc:
            raise ConfigurationError(f"bad amqp URL {redact(settings.url)!r}: {exc}") from None
        name = settings.connection_name or f"queue-consumer {settings.queue} pid {os.getpid()}"
        properties = dict(parameters.client_properties or {})
        properties["connection_name"] = name
        parameters.client_properties = properties
        return parameters

    def _arguments(self) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if self._settings.queue_type == "quorum" else {}

    def _declare(self, session: Session) -> None:
        """On every (re)connect: create the queue and its dead-letter queue, or check them."""
        settings = self._settings
        if settings.declare == "false":
            return
        for name in (settings.queue, settings.dead_letter_queue):
            if settings.declare == "true":
                session.declare(name, self._arguments())
            elif session.counts(name) is None:
                raise ConfigurationError(
                    f"RabbitMQ queue {name!r} does not exist (declare=passive): create it first"
                )

    def _hold_arguments(self, delay: float) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self._settings.queue,
        }
        if self._settings.queue_type == "quorum":
            # Dead-lettered back at least once, never dropped on the way.
            arguments.update(
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
        return arguments

    def _companions(self, *, dead: bool) -> list[str]:
        names = [hold_queue(self._settings, d) for d in hold_delays(self._settings)]
        return [*names, self._settings.dead_letter_queue] if dead else names

    def _message(
        self, generation: int, method: Any, properties: Any, body: bytes
    ) -> RabbitMQMessage:
        headers = {str(k): wire.plain(v) for k, v in (properties.headers or {}).items()}
        extra = {
            name: wire.plain(value)
            for name in (
                "content_type",
                "correlation_id",
                "reply_to",
                "timestamp",
                "type",
                "app_id",
                "priority",
            )
            if (value := getattr(properties, name, None)) is not None
        }
        return RabbitMQMessage(
            id=str(properties.message_id or f"{generation}.{method.delivery_tag}"),
            body=wire.decode_body(body, headers, properties.content_type),
            delivery_count=wire.attempts_before(headers, bool(method.redelivered)) + 1,
            delivery_tag=method.delivery_tag,
            generation=generation,
            owner=self._link.owner,
            queue=self._settings.queue,
            redelivered=bool(method.redelivered),
            headers=headers,
            properties=extra,
        )

    def _reject_now(self, session: Session, live: _Live, error: str | None) -> None:
        settings = self._settings
        for message, delivery in live:
            try:
                if message.delivery_count >= settings.max_attempts:
                    self._bury(session, message, delivery, error)
                elif settings.retry == "requeue":
                    session.consume.basic_reject(delivery.tag, requeue=True)
                    self._count(retried=1)
                else:
                    self._hold(session, message, delivery, error)
            except ConfigurationError:  # a hold queue we may not declare: retry at once
                session.consume.basic_reject(delivery.tag, requeue=True)
                self._count(retry_fallbacks=1)
                raise

    def _hold(
        self, session: Session, message: RabbitMQMessage, delivery: Delivery, error: str | None
    ) -> None:
        delay = self._settings.backoff(message.delivery_count)
        name = hold_queue(self._settings, delay)
        if self._settings.declare == "true" and name not in session.declared:
            session.declare(name, self._hold_arguments(delay))
        headers: dict[str, Any] = {wire.ATTEMPTS: message.delivery_count}
        if error:
            headers[wire.ERROR] = error[-_MAX_ERROR:]
        if session.publish(name, delivery.body, _copy(delivery.properties, headers)):
            session.ack(delivery.tag)
            self._count(retried=1)
        else:  # not confirmed: back at once rather than lost
            session.consume.basic_reject(delivery.tag, requeue=True)
            self._count(retry_fallbacks=1)

    def _bury(
        self, session: Session, message: RabbitMQMessage, delivery: Delivery, error: str | None
    ) -> None:
        headers = {
            wire.ATTEMPTS: message.delivery_count,
            wire.ERROR: (error or f"rejected {message.delivery_count} times")[-_MAX_ERROR:],
            wire.DIED_AT: int(time.time() * 1000),
            wire.ORIGIN: self._settings.queue,
        }
        properties = _copy(delivery.properties, headers)
        if session.publish(self._settings.dead_letter_queue, delivery.body, properties):
            session.ack(delivery.tag)  # the copy is confirmed: remove
            self._count(dead_lettered=1)
        else:  # a duplicate later, never a loss
            session.nack(delivery.tag)
            self._count(dead_letter_failures=1)

    def _count(self, **deltas: int) -> None:
        with self._link._counts_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta


def _ack(session: Session, live: _Live) -> None:
    for _, delivery in live:
        session.ack(delivery.tag)


def _nack(session: Session, live: _Live) -> None:
    for _, delivery in live:
        session.nack(delivery.tag)


def _copy(properties: Any, headers: Mapping[str, Any] | None = None, *, reset: bool = False) -> Any:
    """A republished copy's properties: persistent, no per-message TTL, no broker counts."""
    old = {k: v for k, v in (properties.headers or {}).items() if k not in wire.BROKER_HEADERS}
    if reset:
        for name in (wire.ATTEMPTS, wire.ERROR, wire.DIED_AT, wire.ORIGIN):
            old.pop(name, None)
    return pika.BasicProperties(
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        headers={**old, **(headers or {})},
        delivery_mode=2,
        priority=properties.priority,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        message_id=properties.message_id or uuid.uuid4().hex,
        timestamp=properties.timestamp,
        type=properties.type,
        app_id=properties.app_id,
    )


def _dead_letter(properties: Any, body: bytes, queue: str) -> DeadLetter:
    headers = {str(k): wire.plain(v) for k, v in (properties.headers or {}).items()}
    died = headers.get(wire.DIED_AT)
    error = headers.get(wire.ERROR)
    return DeadLetter(
        id=str(properties.message_id),
        body=wire.decode_body(body, headers, properties.content_type),
        # What the dead-lettering copy carried (a quorum dead-letter queue counts the reads
        # of dead_letters() in x-delivery-count: not attempts).
        attempts=int(headers.get(wire.ATTEMPTS) or headers.get(wire.QQ_COUNT) or 0),
        last_error=None if error is None else str(error),
        died_at=None if died is None else int(died) / 1000,
        queue=str(headers.get(wire.ORIGIN, queue)),
    )


def _each(session: Session, names: list[str], what: str) -> list[int]:
    """Purge or delete each queue that exists; how many messages each held."""
    counts = []
    for name in names:
        if session.counts(name) is None:
            continue
        channel = session.scratch()
        if what == "purge":
            counts.append(int(channel.queue_purge(name).method.message_count))
        else:
            counts.append(int(channel.queue_delete(name).method.message_count))
    return counts


def from_url(url: str) -> RabbitMQQueue:
    """Open ``amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME&...`` (or ``amqps://``).

    Query options are ``RabbitMQQueue`` keyword arguments (``queue`` is required); any
    other is pika's own (``heartbeat``, ``connection_attempts``, ``socket_timeout``,
    ...) and goes to ``pika.URLParameters``. The vhost ``/`` is written ``%2F``.
    """
    pika_url, kwargs = parse_url(url)
    return RabbitMQQueue(pika_url, **kwargs)


if TYPE_CHECKING:  # the capabilities RabbitMQQueue claims, checked by mypy
    from ..._protocols import (
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetter,
        SupportsDeadLetters,
        SupportsInterrupt,
        SupportsRejectWithError,
        SupportsRelease,
        SupportsStats,
    )

    def _claims(queue: RabbitMQQueue) -> None:
        _cleanup: SupportsCleanup[RabbitMQMessage] = queue
        _reject: SupportsRejectWithError[RabbitMQMessage] = queue
        _release: SupportsRelease[RabbitMQMessage] = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
        _dead: SupportsDeadLetters = queue
        _interrupt: SupportsInterrupt = queue
        _dead_letter: SupportsDeadLetter[RabbitMQMessage] = queue
