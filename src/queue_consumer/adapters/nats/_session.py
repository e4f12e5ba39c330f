"""What lives on the adapter's event loop: the connection, the streams and the consumer it
binds, the pull inboxes, and confirmed acks. Every method runs on the loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api

from ._settings import Settings, redact_server

__all__ = ["NAK", "JetStreamError", "Raw", "Session"]

log = logging.getLogger("queue_consumer.adapters.nats")

#: (subject, reply, data, headers) of a delivery: turned into a JetStreamMessage off the loop.
Raw = tuple[str, str, bytes, "dict[str, str] | None"]

NAK = b"-NAK"
_STATUS = "Status"
_INTERRUPTED = "499"  # not a server status: interrupt() ends a waiting pull with it
_SETTLE_ATTEMPTS = 3  # an unconfirmed ack is sent again this often (acks are idempotent)


class JetStreamError(RuntimeError):
    """A JetStream request failed or was refused (the consumer retries, then redelivers)."""


class Session:
    """The queue's connection and everything bound to it, created on first use."""

    def __init__(
        self,
        settings: Settings,
        tls: Any,
        count: Callable[..., None],
        on_ack_wait: Callable[[float], None],
    ) -> None:
        self.settings = settings
        self._tls = tls
        self._count = count
        self._on_ack_wait = on_ack_wait
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.closing = False
        self._ready = False
        self._lock: asyncio.Lock | None = None
        # A polling thread -> its inbox (pulls of one thread never see another's answers).
        self._inboxes: dict[threading.Thread, Subscription] = {}
        self._interrupts = 0  # interrupt() calls so far: a pull waiting then stops waiting
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{settings.stream}.{settings.consumer}"
        self._no_wait = json.dumps({"batch": settings.max_messages, "no_wait": True}).encode()
        expires = max(int(settings.wait_time * 1e9), 1_000_000)
        self._linger = json.dumps({"batch": 1, "expires": expires}).encode()

    # -- connecting and binding --------------------------------------------------------

    async def connection(self) -> Client:
        await self.setup()
        assert self.nc is not None
        return self.nc

    async def jetstream(self) -> JetStreamContext:
        await self.setup()
        assert self.js is not None
        return self.js

    def _usable(self) -> bool:
        return self._ready and self.nc is not None and not self.nc.is_closed

    async def setup(self) -> None:
        """Connect, and create or bind the streams and the consumer (once)."""
        if self._usable():
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._usable():
                return
            if self.nc is None or self.nc.is_closed:
                # Never connected, or closed for good (max_reconnect_attempts ran out).
                self._inboxes.clear()
                self.nc = await self._connect()
                self.js = self.nc.jetstream(timeout=self.settings.request_timeout)
            assert self.js is not None
            await self._ensure(self.js)
            self._ready = True

    async def _connect(self) -> Client:
        s = self.settings
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
        # nats-py can hang on a failed TLS handshake: the first connection has a deadline.
        deadline = (s.connect_timeout + s.reconnect_wait) * 2 * len(s.servers) + 1
        try:
            nc = await asyncio.wait_for(nats.connect(**options), deadline)
        except Exception as exc:
            # nats-py may name the server URL it tried: never show its user info.
            raise JetStreamError(
                f"cannot connect to {s.describe()}: {type(exc).__name__}: {scrub(str(exc), s)}"
            ) from None
        nc.options["max_reconnect_attempts"] = s.max_reconnect_attempts
        return nc

    async def _ensure(self, js: JetStreamContext) -> None:
        s = self.settings
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
        if info.config.ack_wait:
            self._on_ack_wait(info.config.ack_wait)

    async def _ensure_stream(
        self, js: JetStreamContext, name: str, subject: str, retention: api.RetentionPolicy
    ) -> None:
        try:
            await js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            if not self.settings.declare:
                raise JetStreamError(
                    f"stream {name!r} does not exist (declare=false: create it first)"
                ) from None
        config = api.StreamConfig(
            name=name,
            subjects=[subject],
            retention=retention,
            storage=api.StorageType(self.settings.storage),
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.stream_info(name)  # created by another process meanwhile: fine

    # -- pulling -------------------------------------------------------------------------

    async def pull(self, thread: threading.Thread) -> list[Raw]:
        """One get(): what already arrived, else a no-wait pull, else one lingering pull."""
        nc = await self.connection()
        s = self.settings
        n = s.max_messages
        sub = self._inboxes.get(thread)
        if sub is None:
            # A new polling thread (a revived worker, say) takes over the inbox of one that
            # ended: what its open pull still delivers is handed out, not left to ack_wait.
            gone = next((t for t in self._inboxes if not t.is_alive()), None)
            if gone is not None:
                sub = self._inboxes.pop(gone)
            else:
                sub = await nc.subscribe(nc.new_inbox())
            self._inboxes[thread] = sub
        interrupts = self._interrupts
        dropped: list[str] = []
        msgs = drain(sub, n, dropped=dropped)
        # An interrupt() that came between this thread's pulls left its status in the inbox:
        # it still counts (else this pull would linger its whole wait_time after shutdown began).
        interrupted = _INTERRUPTED in dropped
        try:
            if not msgs:
                await nc.publish(self._next, self._no_wait, reply=sub.subject)
                await self._collect(sub, n, s.request_timeout, msgs)
            if (
                not msgs
                and s.wait_time > 0
                and not self.closing
                and not interrupted
                and interrupts == self._interrupts
            ):
                await nc.publish(self._next, self._linger, reply=sub.subject)
                await self._collect(sub, n, s.wait_time + 1.0, msgs)
        except asyncio.CancelledError:  # get() gave up waiting: hand back what came
            with contextlib.suppress(Exception):
                await asyncio.shield(self.hand_back(msgs))
            raise
        if self.closing and msgs:  # delivered while the queue was closing: hand back
            await self.hand_back(msgs)
            return []
        return [(m.subject, m.reply, m.data, m.headers) for m in msgs]

    async def _collect(self, sub: Subscription, n: int, timeout: float, msgs: list[Msg]) -> None:
        """Append the messages of one pull request to ``msgs``, until ``n``, the server's
        end-of-request status, or ``timeout`` (a request lost with a server that went away)."""
        deadline = time.monotonic() + timeout
        while len(msgs) < n:
            got = drain(sub, n - len(msgs), statuses=True)
            if not got:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    got = [await sub.next_msg(timeout=remaining)]
                except nats.errors.TimeoutError:
                    return
            for msg in got:
                status = msg.headers.get(_STATUS) if msg.headers else None
                if status is None:
                    msgs.append(msg)
                elif status != "100":  # not an idle heartbeat: this pull is over
                    if status == "409":  # 404 no messages and 408 expired are the usual ends
                        self._on_conflict(msg)
                    return

    def interrupt(self) -> None:
        """End the waits of pulls in progress (the consumer is stopping): each inbox gets a
        status message, which ends a pull as the server's own end-of-request status does."""
        self._interrupts += 1
        for sub in self._inboxes.values():
            sub._pending_queue.put_nowait(Msg(sub._conn, headers={_STATUS: _INTERRUPTED}))

    def _on_conflict(self, msg: Msg) -> None:
        description = str((msg.headers or {}).get("Description", ""))
        if "deleted" in description.lower():
            log.warning("%s: the consumer was deleted; binding again", self.settings.describe())
            self._ready = False
        else:
            log.debug("%s: pull ended: %s", self.settings.describe(), description)

    async def hand_back(self, msgs: list[Msg]) -> None:
        """Nak deliveries nobody will handle, so they are delivered again at once."""
        nc = self.nc
        if nc is None or not msgs:
            return
        for msg in msgs:
            if msg.reply:
                await nc.publish(msg.reply, NAK)
        await nc.flush(timeout=int(self.settings.request_timeout) or 1)
        self._count(handed_back=len(msgs))

    # -- settling ------------------------------------------------------------------------

    async def confirm(self, what: str, entries: list[tuple[str, bytes]]) -> None:
        """Send acks (``(reply, payload)``) as requests, all at once; wait for every answer."""
        nc = await self.connection()
        timeout = self.settings.request_timeout
        pending, total = entries, len(entries)
        for attempt in range(1, _SETTLE_ATTEMPTS + 1):
            results = await asyncio.gather(
                *(nc.request(reply, payload, timeout=timeout) for reply, payload in pending),
                return_exceptions=True,
            )
            failed = [
                (e, r)
                for e, r in zip(pending, results, strict=True)
                if isinstance(r, BaseException)
            ]
            if not failed:
                return
            self._count(settle_errors=len(failed))
            pending = [entry for entry, _ in failed]
            if attempt < _SETTLE_ATTEMPTS:
                log.warning(
                    "%s: %s: %d of %d not confirmed (%r); sending them again",
                    self.settings.describe(),
                    what,
                    len(failed),
                    total,
                    failed[0][1],
                )
                await asyncio.sleep(0.1 * 2**attempt)
        raise JetStreamError(
            f"{what}: {len(pending)} of {total} not confirmed by the server after "
            f"{_SETTLE_ATTEMPTS} attempts ({failed[0][1]!r}); they come back after ack_wait"
        )

    # -- closing and callbacks -----------------------------------------------------------

    async def shutdown(self) -> None:
        """Hand back what arrived since the last pull (and until unsubscribed), then close."""
        self.closing = True
        nc = self.nc
        if nc is None:
            return
        try:
            if not nc.is_closed:
                late = [m for sub in self._inboxes.values() for m in drain(sub, 1 << 30)]
                for sub in self._inboxes.values():
                    await sub.unsubscribe()
                late += [m for sub in self._inboxes.values() for m in drain(sub, 1 << 30)]
                if late:
                    log.info(
                        "%s: handing back %d late deliveries", self.settings.describe(), len(late)
                    )
                    await self.hand_back(late)
        finally:
            self._inboxes.clear()
            await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("%s: %s", self.settings.describe(), scrub(repr(exc), self.settings))

    async def _on_disconnected(self) -> None:
        if self.closing:
            return
        self._count(disconnects=1)
        log.warning("%s: disconnected; reconnecting", self.settings.describe())

    async def _on_reconnected(self) -> None:
        self._count(reconnects=1)
        log.warning("%s: reconnected", self.settings.describe())


def drain(
    sub: Subscription, limit: int, *, statuses: bool = False, dropped: list[str] | None = None
) -> list[Msg]:
    """What already arrived in ``sub``'s queue: no waiting, and no task per message (nats-py's
    ``next_msg`` starts one). Without ``statuses``, status messages are skipped (their codes
    appended to ``dropped`` if given)."""
    queue = sub._pending_queue
    msgs: list[Msg] = []
    while len(msgs) < limit and not queue.empty():
        msg = queue.get_nowait()
        sub._pending_size -= len(msg.data)
        queue.task_done()
        if statuses or not (msg.headers and _STATUS in msg.headers):
            msgs.append(msg)
        elif dropped is not None:
            dropped.append(str(msg.headers[_STATUS]))
    return msgs


def scrub(text: str, settings: Settings) -> str:
    """``text`` with any secret of ``settings`` masked (nats-py errors may quote a URL)."""
    for server in settings.servers:
        text = text.replace(server, redact_server(server))
    if settings.token:
        text = text.replace(settings.token, "***")
    return text
