"""Dead letters on JetStream: the move (copy confirmed first, then term), reading them back,
redrive and purge. Coroutines for the adapter's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import nats.js.errors
from nats.js import JetStreamContext, api

from ._messages import (
    ATTEMPTS,
    DEAD_HEADERS,
    DIED_AT,
    ERROR,
    MSG_ID,
    ORIGIN_SEQ,
    ORIGIN_SUBJECT,
    DeadLetter,
    JetStreamMessage,
    body_of,
    error_header,
    read_error_header,
)
from ._session import Session

__all__ = ["PAGE", "move", "purge", "read", "redrive_page"]

log = logging.getLogger("queue_consumer.adapters.nats")

PAGE = 100  # dead letters read per redrive round
_TERM = b"+TERM"


async def move(
    session: Session, messages: list[JetStreamMessage], reason: str
) -> list[JetStreamMessage]:
    """Copy to the dead-letter stream (each ``PubAck`` awaited), then terminate the originals.
    Returns the messages that could not be copied (the caller rejects them as usual)."""
    js = await session.jetstream()
    s = session.settings
    now = f"{time.time():.6f}"

    def headers(m: JetStreamMessage) -> dict[str, str]:
        return {
            **resendable(m.headers),
            MSG_ID: f"{m.stream}:{m.stream_seq}",  # a retried move stores one copy
            ERROR: error_header(reason),
            ORIGIN_SUBJECT: m.subject,
            ORIGIN_SEQ: str(m.stream_seq),
            ATTEMPTS: str(m.delivery_count),
            DIED_AT: now,
        }

    results = await asyncio.gather(
        *(
            js.publish(s.dead_letter_subject, m.data, timeout=s.request_timeout, headers=headers(m))
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
        await session.confirm("dead-letter", [(m.reply, _TERM) for m in copied])
        log.warning(
            "moved %d message(s) to the dead-letter stream %s", len(copied), s.dead_letter_stream
        )
    return unsent


async def read(session: Session, limit: int, after: int = 0) -> list[api.RawStreamMsg]:
    """The first ``limit`` dead letters after sequence ``after``, oldest first."""
    js = await session.jetstream()
    s = session.settings
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


async def redrive_page(
    session: Session, wanted: list[int] | None, default_subject: str
) -> tuple[int, bool]:
    """Redrive up to one page; returns (moved, more to do). ``wanted`` is consumed."""
    js = await session.jetstream()
    s = session.settings
    if wanted is None:
        page = await read(session, PAGE)
        more = len(page) == PAGE
    else:
        ids, wanted[:] = wanted[:PAGE], wanted[PAGE:]
        more = bool(wanted)
        fetched = await asyncio.gather(*(_one(js, s.dead_letter_stream, i) for i in ids))
        page = [raw for raw in fetched if raw is not None]

    async def back(raw: api.RawStreamMsg) -> None:
        headers = dict(raw.headers or {})
        subject = headers.get(ORIGIN_SUBJECT) or default_subject
        kept = resendable(headers)
        kept[MSG_ID] = f"redrive:{s.dead_letter_stream}:{raw.seq}"  # a retried redrive: one
        await js.publish(subject, raw.data or b"", timeout=s.request_timeout, headers=kept)
        assert raw.seq is not None
        await js.delete_msg(s.dead_letter_stream, raw.seq)  # only after the PubAck

    await asyncio.gather(*(back(raw) for raw in page))
    return len(page), more


async def purge(session: Session, dead_letters: bool) -> int:
    js = await session.jetstream()
    s = session.settings
    purged = await _purged(js, s.stream, s.subject if s.subject != s.stream else None)
    if dead_letters:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            purged += await _purged(js, s.dead_letter_stream, None)
    return purged


def dead_letter(raw: api.RawStreamMsg) -> DeadLetter:
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


def resendable(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A message's headers without the dead-letter ones and the server's expectations."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k not in DEAD_HEADERS and not k.startswith("Nats-Expected")
    }


async def _one(js: JetStreamContext, stream: str, seq: int) -> api.RawStreamMsg | None:
    try:
        return await js.get_msg(stream, seq=seq)
    except nats.js.errors.NotFoundError:
        return None


async def _purged(js: JetStreamContext, stream: str, subject: str | None) -> int:
    before = (await js.stream_info(stream)).state.messages
    await js.purge_stream(stream, subject=subject)
    after = (await js.stream_info(stream)).state.messages
    return max(before - after, 0)
