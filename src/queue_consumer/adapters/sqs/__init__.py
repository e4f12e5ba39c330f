"""Consume an AWS SQS queue: ``SQSQueue`` and ``from_url`` (the ``[sqs]`` extra, boto3).

::

    from queue_consumer import Consumer
    from queue_consumer.adapters.sqs import SQSQueue

    def handler(messages):
        for message in messages:          # SQSMessage: body, attributes, receive_count...
            process(message.body)

    with SQSQueue("jobs", visibility_timeout=60) as queue:
        with Consumer(queue, handler, max_workers=2, max_handlers=8) as consumer:
            consumer.supervise(blocking=True)      # until SIGTERM / Ctrl-C

Long polling in ``get()``; ``cleanup`` deletes, ``reject`` delays the next delivery with a
backoff, ``release`` makes a message visible at once, and a heartbeat thread keeps held
messages invisible while slow handlers run. Errors of SQS calls are retried by botocore
(standard mode), then by the batch helpers, then logged, counted and raised to the core.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ConfigurationError, ConsumerStateError
from ...observability.propagation import inject_trace_context
from .._lease import LeaseKeeper
from ._batch import BatchOutcome, run_batches
from ._message import (
    BODY_KIND,
    MAX_VISIBILITY_TIMEOUT,
    ExponentialBackoff,
    FixedDelay,
    RejectPolicy,
    SQSMessage,
    encode_body,
    extension_seconds,
    message_from_response,
    reject_policy_from,
    wire_body,
)
from ._support import (
    SQSBatchError,
    SQSStatistics,
    delete_entry,
    message_attributes,
    resendable,
    seconds,
    send_entry,
    validate,
    with_needed,
)
from ._url import parse_url

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import NoCredentialsError, NoRegionError, PartialCredentialsError
except ModuleNotFoundError as exc:  # pragma: no cover - the [sqs] extra is installed in dev
    raise ModuleNotFoundError(
        "the SQS adapter needs boto3: pip install queue-consumer[sqs]", name=exc.name
    ) from exc

__all__ = [
    "ExponentialBackoff",
    "FixedDelay",
    "RejectPolicy",
    "SQSBatchError",
    "SQSMessage",
    "SQSQueue",
    "SQSStatistics",
    "from_url",
]

log = logging.getLogger("queue_consumer.adapters.sqs")

_NO_CREDENTIALS = (
    "no AWS credentials for SQS: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile "
    "(AWS_PROFILE, ~/.aws), or run with an instance or pod role"
)


class SQSQueue:
    """An SQS queue (standard or FIFO) for ``Consumer``, by name or URL.

    The client comes from boto3's standard chain (region, credentials and endpoint from the
    environment or profile: ``AWS_ENDPOINT_URL_SQS`` works alone) unless ``client`` or
    ``session`` is given. ``reject_policy`` decides how long a failed message stays
    invisible: a callable ``receive_count -> seconds``, a number, ``"immediate"`` or the
    default ``ExponentialBackoff()``. Call ``close()`` (or use ``with``) to stop the heartbeat.
    """

    def __init__(
        self,
        queue_name: str | None = None,
        *,
        queue_url: str | None = None,
        client: Any = None,
        session: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        wait_time_seconds: int = 20,
        max_messages: int = 10,
        visibility_timeout: int | None = None,
        attribute_names: Sequence[str] = ("All",),
        message_attribute_names: Sequence[str] = ("All",),
        reject_policy: RejectPolicy | float | str | None = None,
        heartbeat: bool = True,
        heartbeat_fraction: float = 0.5,
        max_receive_count: int | None = None,
        dead_letter_queue: str | None = None,
        retry_mode: str = "standard",
        request_attempts: int = 5,
        settle_attempts: int = 3,
        max_pool_connections: int = 50,
        max_attempts: int | None = None,
    ) -> None:
        if max_attempts is not None:
            # On sqlite:// (and every broker adapter) max_attempts counts deliveries; here it
            # counted botocore's attempts per request. The old name keeps working for now.
            warnings.warn(
                "SQSQueue(max_attempts=...) is botocore's attempts per request: it is renamed "
                "request_attempts (max_attempts means deliveries on every other queue)",
                DeprecationWarning,
                stacklevel=2,
            )
            request_attempts = max_attempts
        validate(locals())
        self.wait_time_seconds = wait_time_seconds
        self.max_messages = max_messages
        self.reject_policy = reject_policy_from(reject_policy)
        self.max_receive_count = max_receive_count
        self.settle_attempts = settle_attempts
        self.attribute_names = with_needed(attribute_names)
        self.message_attribute_names = list(message_attribute_names)
        if not {"All", ".*", BODY_KIND} & set(self.message_attribute_names):
            self.message_attribute_names.append(BODY_KIND)  # to read bodies back as put
        if client is None:
            retries: Any = {"mode": retry_mode, "max_attempts": request_attempts}
            config = Config(
                retries=retries,
                # Longer than a long poll, or every empty poll would end in a timeout.
                read_timeout=wait_time_seconds + 10,
                connect_timeout=10,
                max_pool_connections=max_pool_connections,
            )
            session = session or boto3.session.Session()
            try:
                client = session.client(
                    "sqs", region_name=region_name, endpoint_url=endpoint_url, config=config
                )
            except NoRegionError:
                raise ConfigurationError(
                    "no AWS region for SQS: set AWS_REGION (or AWS_DEFAULT_REGION, a profile's "
                    "region), region= in the URL, or region_name="
                ) from None
            if session.get_credentials() is None:
                raise ConfigurationError(_NO_CREDENTIALS)
        self.client = client
        try:
            self.queue_url = queue_url or self._url_of(queue_name or "")
            self.queue_name = self.queue_url.rstrip("/").rsplit("/", 1)[-1]
            self.fifo = self.queue_name.endswith(".fifo")
            self.dead_letter_queue_url = (
                None if dead_letter_queue is None else self._url_of(dead_letter_queue)
            )
            self.visibility_timeout = visibility_timeout
            if visibility_timeout is None and heartbeat:
                attributes = self.client.get_queue_attributes(
                    QueueUrl=self.queue_url, AttributeNames=["VisibilityTimeout"]
                )["Attributes"]
                visibility_timeout = int(attributes["VisibilityTimeout"])
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigurationError(f"{_NO_CREDENTIALS} ({exc})") from exc
        self._counts = dict.fromkeys(SQSStatistics.__slots__, 0)
        self._counts_lock = threading.Lock()
        self._closed = False
        self._lease_seconds = visibility_timeout or 30
        self._tracker: LeaseKeeper[str] = LeaseKeeper(
            self._extend,
            self._lease_seconds * heartbeat_fraction,
            name="sqs",
            # A zero timeout hides nothing: there is nothing to keep hidden.
            enabled=heartbeat and visibility_timeout != 0,
            on_error=lambda exc: self._count(api_errors=1),
        )

    # -- the queue contract ---------------------------------------------------------

    def get(self) -> list[SQSMessage]:
        """Long-poll for up to ``max_messages`` messages (may return none)."""
        if self._closed:
            raise ConsumerStateError("Cannot receive from an SQSQueue once it has been closed.")
        params: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "AttributeNames": self.attribute_names,
            "MessageAttributeNames": self.message_attribute_names,
            "MaxNumberOfMessages": self.max_messages,
            "WaitTimeSeconds": self.wait_time_seconds,
        }
        if self.visibility_timeout is not None:
            params["VisibilityTimeout"] = self.visibility_timeout
        try:
            response = self._call(self.client.receive_message, **params)
        except Exception:
            self._count(api_errors=1)
            raise  # the core logs it, backs off and calls get() again
        messages = [message_from_response(raw) for raw in response.get("Messages", ())]
        if messages:
            self._tracker.track(message.receipt_handle for message in messages)
            self._count(received=len(messages))
        return messages

    def cleanup(self, messages: Iterable[SQSMessage]) -> None:
        """Delete messages whose handler succeeded (DeleteMessageBatch, failures retried)."""
        messages = list(messages)
        self._tracker.untrack(message.receipt_handle for message in messages)
        outcome = self._run("delete_message_batch", self.queue_url, messages, delete_entry)
        self._count(deleted=len(outcome.succeeded))
        self._verdict("delete", outcome)

    def reject(self, messages: Iterable[SQSMessage]) -> None:
        """Failed messages: dead-letter them past ``max_receive_count``, else back off."""
        messages = list(messages)
        received_at = self._tracker.untrack(message.receipt_handle for message in messages)
        retry = messages
        if self.max_receive_count is not None:
            dead = [m for m in messages if m.receive_count >= self.max_receive_count]
            retry = [m for m in messages if m.receive_count < self.max_receive_count]
            retry += self._dead_letter(dead)
        now = time.monotonic()

        def entry(message: SQSMessage) -> dict[str, Any]:
            # Never ask beyond 12 hours from the receive: SQS would refuse the whole entry.
            room = MAX_VISIBILITY_TIMEOUT - (now - received_at.get(message.receipt_handle, now))
            delay = min(float(self.reject_policy(message.receive_count)), room - 1)
            return {"ReceiptHandle": message.receipt_handle, "VisibilityTimeout": seconds(delay)}

        outcome = self._run("change_message_visibility_batch", self.queue_url, retry, entry)
        self._count(rejected=len(outcome.succeeded))
        self._verdict("reject", outcome)

    def dead_letter(self, messages: Iterable[SQSMessage], *, error: str | None = None) -> None:
        """Messages that can never succeed (``PermanentFailure``): sent to
        ``dead_letter_queue`` now, then deleted; without one (SQS's redrive policy moves
        messages by receive count only), rejected like any failure."""
        messages = list(messages)
        if self.dead_letter_queue_url is None:
            self.reject(messages)
            return
        self._tracker.untrack(message.receipt_handle for message in messages)
        unsent = self._dead_letter(messages)
        if unsent:
            self.reject(unsent)

    def release(self, messages: Iterable[SQSMessage]) -> None:
        """Messages fetched but never handled: visible again at once."""
        messages = list(messages)
        self._tracker.untrack(message.receipt_handle for message in messages)
        outcome = self._run(
            "change_message_visibility_batch",
            self.queue_url,
            messages,
            lambda m: {"ReceiptHandle": m.receipt_handle, "VisibilityTimeout": 0},
        )
        self._count(released=len(outcome.succeeded))
        self._verdict("release", outcome)

    def message_group(self, message: SQSMessage) -> Hashable | None:
        """FIFO queues: the MessageGroupId (handled in order, one chunk at a time)."""
        return message.group_id if self.fifo else None

    # -- for people and the CLI -------------------------------------------------------

    def put(self, body: Any, *, group_id: str | None = None, **attributes: Any) -> str:
        """Send one message; keyword arguments become message attributes. Returns its id.

        Bodies are those of every queue here: a ``str`` is sent as it is; ``bytes`` (as
        base64) and JSON values (as JSON text) carry a ``queue_consumer.body`` attribute
        and come back from ``get()`` as the same type. Anything else is a ``TypeError``.
        """
        return self.put_many([body], group_id=group_id, attributes=attributes)[0]

    def put_many(
        self,
        bodies: Iterable[Any],
        *,
        group_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """Send messages (SendMessageBatch, 10 per call). Returns their ids, in order.

        ``group_id`` is a FIFO queue's message group (``default`` if not given); a standard
        queue has no groups, so one given there is a ``ConfigurationError``. With
        OpenTelemetry in use, the current trace context goes along (``traceparent``).
        """
        if group_id is not None and not self.fifo:
            raise ConfigurationError(
                f"group_id is for FIFO queues (names ending in .fifo); {self.queue_name} is "
                "a standard queue, without message groups"
            )
        shared = message_attributes(inject_trace_context(attributes, limit=10) or {})
        group = (group_id or "default") if self.fifo else None
        # Encoded first: a body of the wrong type fails before anything is sent.
        items = list(enumerate(encode_body(body) for body in bodies))

        def entry(item: tuple[int, tuple[str, str | None]]) -> dict[str, Any]:
            text, kind = item[1]
            tagged = shared if kind is None else {**shared, **message_attributes({BODY_KIND: kind})}
            return send_entry(text, tagged, group, uuid.uuid4().hex if group else None)

        outcome = self._run("send_message_batch", self.queue_url, items, entry)
        self._verdict("send", outcome, strict=True)
        ids = {index: answer["MessageId"] for (index, _), answer in outcome.succeeded}
        return [ids[index] for index, _ in items]

    def stats(self) -> dict[str, int | None]:
        """SQS's approximate counts: visible, in flight (not visible) and delayed messages,
        also under the keys every queue has: ``depth``, ``in_flight``, ``dead_letters``
        (``None``: the dead-letter queue is SQS's, by redrive policy, unless
        ``dead_letter_queue=`` names it)."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=names
        )["Attributes"]
        counts: dict[str, int | None] = {name: int(attributes.get(name, 0)) for name in names}
        counts["depth"] = counts["ApproximateNumberOfMessages"]
        counts["in_flight"] = counts["ApproximateNumberOfMessagesNotVisible"]
        counts["delayed"] = counts["ApproximateNumberOfMessagesDelayed"]
        counts["dead_letters"] = None
        if self.dead_letter_queue_url is not None:
            dead = self.client.get_queue_attributes(
                QueueUrl=self.dead_letter_queue_url, AttributeNames=names[:1]
            )["Attributes"]
            counts["dead_letters"] = int(dead.get(names[0], 0))
        return counts

    def statistics(self) -> SQSStatistics:
        """A snapshot of this adapter's counters."""
        with self._counts_lock:
            counts = dict(self._counts)
        counts["extended"] = self._tracker.extensions
        counts["held"] = self._tracker.held()
        return SQSStatistics(**counts)

    def close(self) -> None:
        """Stop the heartbeat (idempotent). Held messages are left to their visibility timeout."""
        self._closed = True
        self._tracker.close()

    def __enter__(self) -> SQSQueue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQSQueue(queue_url={self.queue_url!r})"

    # -- internals --------------------------------------------------------------------

    def _url_of(self, name_or_url: str) -> str:
        if "://" in name_or_url:
            return name_or_url
        try:
            return str(self.client.get_queue_url(QueueName=name_or_url)["QueueUrl"])
        except self.client.exceptions.QueueDoesNotExist as exc:
            raise ConfigurationError(f"SQS queue {name_or_url!r} does not exist") from exc

    def _run(
        self, operation: str, queue_url: str, items: Sequence[Any], entry: Any
    ) -> BatchOutcome[Any]:
        method = getattr(self.client, operation)
        outcome = run_batches(
            lambda entries: self._call(method, QueueUrl=queue_url, Entries=entries),
            items,
            entry,
            attempts=self.settle_attempts,
        )
        self._count(api_errors=outcome.call_errors, retried_entries=outcome.retried)
        return outcome

    def _verdict(
        self, what: str, outcome: BatchOutcome[Any], *, fatal: bool = True, strict: bool = False
    ) -> None:
        """Log and count what did not succeed; raise when trying again later may help.

        ``strict``: entries SQS refused raise too (a message that was not sent must be known).
        """
        if outcome.gone:
            self._count(invalid_receipts=len(outcome.gone))
            # An expired receipt: the message was (or will be) delivered again. Not fatal.
            log.warning(
                "SQS %s: %d receipt handle(s) no longer valid (first: %s)",
                what,
                len(outcome.gone),
                outcome.gone[0][1],
            )
        bad = outcome.refused + outcome.failed
        if bad:
            self._count(failed_entries=len(bad))
            log.error("SQS %s failed for %d message(s): %s", what, len(bad), bad[0][1])
        raising = (bad if strict else outcome.failed) if fatal else []
        if raising:
            # Failed entries were retried already (settle_attempts); the consumer logs and
            # counts this, and SQS redelivers after the visibility timeout: a duplicate.
            raise SQSBatchError(what, raising)

    def _dead_letter(self, messages: list[SQSMessage]) -> list[SQSMessage]:
        """Move messages to the dead-letter queue; return those that could not be moved."""
        if not messages or self.dead_letter_queue_url is None:
            return messages
        fifo = self.dead_letter_queue_url.endswith(".fifo")
        outcome = self._run(
            "send_message_batch",
            self.dead_letter_queue_url,
            messages,
            lambda m: send_entry(
                wire_body(m),
                resendable(m.message_attributes),
                # The message id deduplicates: a retried move cannot make two dead letters.
                (m.group_id or "dead-letters") if fifo else None,
                m.message_id if fifo else None,
            ),
        )
        moved = [message for message, _ in outcome.succeeded]
        if moved:
            log.warning("moved %d message(s) to the dead-letter queue", len(moved))
            deleted = self._run("delete_message_batch", self.queue_url, moved, delete_entry)
            self._count(dead_lettered=len(moved))
            # A failed delete leaves a copy in both queues: a duplicate, never a loss.
            self._verdict("delete after dead-lettering", deleted, fatal=False)
        unsent = [message for message, _ in outcome.failed + outcome.refused + outcome.gone]
        if unsent:
            log.error("could not dead-letter %d message(s); rejecting them", len(unsent))
        return unsent

    def _extend(self, held: dict[str, float]) -> list[str]:
        """The lease keeper's extender: ChangeMessageVisibilityBatch; returns handles lost."""
        lost, entries = [], []
        for handle, held_for in held.items():
            seconds = extension_seconds(self._lease_seconds, held_for)
            if seconds <= 0:
                log.warning("SQS message held for 12 hours (the SQS limit): no longer extended")
                lost.append(handle)
            else:
                entries.append((handle, seconds))
        outcome = self._run(
            "change_message_visibility_batch",
            self.queue_url,
            entries,
            lambda e: {"ReceiptHandle": e[0], "VisibilityTimeout": e[1]},
        )
        if outcome.refused:
            log.warning("SQS heartbeat refused: %s (no longer extended)", outcome.refused[0][1])
        lost += [e[0] for e, _ in outcome.gone + outcome.refused]
        if outcome.failed:  # transient: the keeper tries again shortly
            self._count(failed_entries=len(outcome.failed))
            raise SQSBatchError("heartbeat", outcome.failed)
        return lost

    def _call(self, method: Any, **params: Any) -> Any:
        """Call SQS; count and log the retries botocore made (throttling, 5xx, connection)."""
        try:
            response = method(**params)
        except Exception as exc:
            self._note_retries(method, getattr(exc, "response", None))
            raise
        self._note_retries(method, response)
        return response

    def _note_retries(self, method: Any, response: Any) -> None:
        if not isinstance(response, Mapping):
            return
        retries = int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0) or 0)
        if retries:
            self._count(sdk_retries=retries)
            name = getattr(method, "__name__", "call")
            log.info("SQS %s: botocore retried %d time(s) (throttling or errors)", name, retries)

    def _count(self, **deltas: int) -> None:
        with self._counts_lock:
            for name, delta in deltas.items():
                self._counts[name] += delta


def from_url(url: str) -> SQSQueue:
    """``sqs://NAME?region=..&wait=..``, or a queue URL ``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``.

    Query options: see ``_url.QUERY_OPTIONS``. A bad URL raises ``ConfigurationError``.
    """
    return SQSQueue(**parse_url(url))


if TYPE_CHECKING:  # mypy proves the capabilities SQSQueue claims (the consumer uses them)
    from ..._protocols import (
        Queue,
        SupportsCleanup,
        SupportsClose,
        SupportsDeadLetter,
        SupportsGroups,
        SupportsReject,
        SupportsRelease,
        SupportsStats,
    )

    def _capabilities(queue: SQSQueue) -> None:
        _get: Queue[SQSMessage] = queue
        _cleanup: SupportsCleanup[SQSMessage] = queue
        _reject: SupportsReject[SQSMessage] = queue
        _dead: SupportsDeadLetter[SQSMessage] = queue
        _release: SupportsRelease[SQSMessage] = queue
        _groups: SupportsGroups[SQSMessage] = queue
        _close: SupportsClose = queue
        _stats: SupportsStats = queue
