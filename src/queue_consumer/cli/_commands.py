"""What each ``queue-consumer`` command does: run, send, stats, redrive, demo."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from .._urls import open_queue
from ..errors import ConfigurationError
from ._observing import observing
from ._options import ENV_PREFIX, EXIT_ERROR, EXIT_OK, PROG, RUN_SETTINGS, UsageError

SEND_CHUNK = 500  # messages per put_many call: bounded memory for huge input files

# The command's logger, by the name users see in its log lines.
log = logging.getLogger("queue_consumer.cli")


def load_object(spec: str, what: str = "handler") -> Any:
    """Import ``MODULE:NAME`` or ``MODULE:OBJ.attr`` (the current directory is importable).

    >>> load_object("json:dumps")([1])
    '[1]'
    """
    module_name, sep, path = spec.partition(":")
    if not sep or not module_name or not path:
        raise ConfigurationError(f"{what} must look like MODULE:NAME, not {spec!r}")
    # `queue-consumer run tasks:handle` must find the user's tasks.py, as `python -m` would.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # SyntaxError and friends in user code are config errors too
        raise ConfigurationError(f"cannot import {what} {spec!r}: {one_line(exc)}") from exc
    for name in path.split("."):
        try:
            target = getattr(target, name)
        except AttributeError:
            raise ConfigurationError(
                f"cannot import {what} {spec!r}: {module_name!r} has no {path!r}"
            ) from None
    if not callable(target):
        raise ConfigurationError(f"{what} {spec!r} is not callable")
    return target


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _require_queue(args: argparse.Namespace, flag: str = "URL") -> str:
    if not args.queue:
        raise UsageError(f"a queue {flag} is required (or {ENV_PREFIX}QUEUE)")
    return str(args.queue)


def _method(queue: Any, name: str, url: str) -> Callable[..., Any]:
    method = getattr(queue, name, None)
    if not callable(method):
        raise ConfigurationError(f"the queue at {_redact(url)} has no {name}()")
    return method  # type: ignore[no-any-return]


def _existing(url: str) -> str:
    """The URL, made to open an existing queue only, where the scheme can say so.

    ``stats``, ``redrive`` and ``dead-letters`` only read or move: on a mistyped SQLite path
    they must fail, not create an empty database and report zeros.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        return url
    options = [pair.partition("=")[0] for pair in parts.query.split("&") if pair]
    if "create" in options:
        return url
    return url + ("&" if "?" in url else "?") + "create=0"  # urlunsplit drops sqlite:///'s //


@contextmanager
def _opened(url: str, *, existing: bool = False) -> Iterator[Any]:
    """The queue at ``url``, closed on the way out if it has a ``close()``.

    ``existing``: a queue that must exist already (see ``_existing``).
    """
    queue = open_queue(_existing(url) if existing else url)
    try:
        yield queue
    finally:
        close = getattr(queue, "close", None)
        if callable(close):
            close()


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _as_dict(stats: Any) -> dict[str, Any]:
    if isinstance(stats, dict):
        return dict(stats)
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return dataclasses.asdict(stats)
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    return dict(vars(stats))


# --- commands ------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .. import Consumer  # the core only when consuming: `send` and `stats` stay light

    if not args.handler:
        raise UsageError(f"a MODULE:HANDLER is required (or {ENV_PREFIX}HANDLER)")
    url = _require_queue(args, "--queue URL")
    handler = load_object(args.handler)
    given = {dest: getattr(args, dest) for dest in RUN_SETTINGS}
    options: dict[str, Any] = {
        RUN_SETTINGS[dest]: value
        for dest, value in given.items()
        if value is not None and value is not False  # not given (0 is a value)
    }
    if args.initializer:
        options["pool_initializer"] = load_object(args.initializer, "initializer")
    if args.processes:
        options["with_thread_executor"] = False
    with _opened(url) as queue, observing(args, queue) as observability:
        consumer = Consumer(queue, handler, hooks=observability.hooks, **options)
        observability.start(consumer)
        log.info(
            "consuming %s with %s (%s); SIGTERM or Ctrl-C stops gracefully",
            _redact(url),
            args.handler,
            ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if k != "pool_initializer")
            or "defaults",
        )
        consumer.start()
        # Installs SIGTERM/SIGINT handlers: the first drains, a second stops at once.
        # StuckHandlersError goes up to main() -> exit 3; handler threads are daemons, so
        # the stuck ones cannot hold the exit.
        consumer.supervise(blocking=True)
        consumer.shutdown(timeout=args.shutdown_timeout)  # no-op unless the loop ended early
        stats = consumer.statistics()
        # Released apart from failed: those were never tried (fetched but not started at
        # shutdown, or after a failure in their chunk) and went back without an attempt.
        log.info(
            "stopped: %d succeeded, %d failed, %d released (never tried, given back)",
            stats.succeeded,
            stats.failed,
            stats.released,
        )
    return EXIT_OK


def _read_bodies(args: argparse.Namespace, stdin: TextIO) -> Iterator[tuple[int, str]]:
    """``(line number, body)`` for each message to send (line 1 for a BODY argument)."""
    sources = [s for s in (args.body, args.file) if s is not None]
    if len(sources) != 1:
        raise UsageError("give exactly one of BODY, '-' (stdin lines) or --file FILE")
    if args.body is not None and args.body != "-":
        yield 1, args.body
        return
    if args.body == "-":
        for number, line in _lines(stdin, "stdin"):
            if line.strip():
                yield number, line.rstrip("\r\n")
        return
    # A file is checked whole before anything is sent: a bad line sends nothing.
    yield from _read_json_lines(args.file, stdin)


def _lines(handle: Any, name: str) -> Iterator[tuple[int, str]]:
    """Numbered text lines; a line that is not UTF-8 is a usage error naming it."""
    raw = getattr(handle, "buffer", handle)  # bytes, decoded line by line: exact line numbers
    for number, line in enumerate(raw, 1):
        if isinstance(line, str):
            yield number, line
            continue
        try:
            yield number, line.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"{name} line {number} is not UTF-8 text ({exc.reason})"
            raise _BadLine(number, message) from None


class _BadLine(UsageError):
    """A line of the input that cannot be sent: exit 2, naming the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _read_json_lines(name: str, stdin: TextIO) -> list[tuple[int, str]]:
    try:
        handle = stdin if name == "-" else open(name, "rb")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read --file {name}: {exc.strerror}") from None
    bodies = []
    with handle:
        for number, line in _lines(handle, name):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{name}:{number}: not a JSON line ({exc})") from None
            bodies.append((number, line.strip()))
    return bodies


def _chunks(items: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    """Chunks of ``size``; a chunk ends early before an error, so what precedes it is sent."""
    chunk: list[tuple[int, str]] = []
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except Exception as exc:
            if chunk:
                yield chunk
            raise _ReadError(exc) from exc
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _ReadError(Exception):
    """Reading the input failed (after the chunks before it were yielded)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _check_sendable(url: str) -> None:
    if url.partition("://")[0].lower() == "memory":
        raise ConfigurationError(
            f"{_redact(url)} is a memory queue: it lives inside one process and vanishes when "
            "`send` exits, so nothing would be sent; use a durable queue, e.g. "
            "sqlite:///jobs.db?queue=NAME (a memory queue is for code in one process)"
        )


def cmd_send(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    _check_sendable(url)
    bodies = _read_bodies(args, sys.stdin)
    first = next(bodies, None)  # bad input fails before the queue is opened
    sent = 0
    line = first[0] if first else 0
    sending = False
    try:
        with _opened(url) as queue:
            send = _sender(queue, url, args.group_id)
            if first is not None:
                sending = True
                for chunk in _chunks(itertools.chain([first], bodies), SEND_CHUNK):
                    line = chunk[0][0]
                    send([body for _, body in chunk])
                    sent += len(chunk)
    except _ReadError as exc:
        _report_partial(sent, getattr(exc.error, "line", line), exc.error)
        raise exc.error from None
    except Exception as exc:
        if sending:
            _report_partial(sent, line, exc)
        raise
    finally:
        if sent:
            log.debug("sent %d message(s) to %s", sent, _redact(url))
    print(f"sent {_counted(sent, 'message')}")
    return EXIT_OK


def _report_partial(sent: int, line: int, error: BaseException) -> None:
    """Say what a failed ``send`` did send, so that a retry can resume without duplicates."""
    detail = str(error) if isinstance(error, UsageError) else one_line(error)
    print(
        f"{PROG}: sent {sent} before the error at line {line}: {detail}",
        file=sys.stderr,
        flush=True,
    )


def _sender(queue: Any, url: str, group_id: str | None) -> Callable[[list[str]], object]:
    """``send(bodies)`` through the queue's put_many (else put), with the group id if any."""
    put_many = getattr(queue, "put_many", None)
    method = put_many if callable(put_many) else _method(queue, "put", url)
    if group_id is not None and not _has_groups(queue, method):
        raise ConfigurationError(
            f"--group-id: the queue at {_redact(url)} has no message groups "
            "(an SQS FIFO queue, whose name ends in .fifo, has)"
        )
    extra = {} if group_id is None else {"group_id": group_id}
    if callable(put_many):
        return lambda bodies: put_many(bodies, **extra)
    return lambda bodies: [method(body, **extra) for body in bodies]


def _has_groups(queue: Any, method: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    if "group_id" not in parameters:
        return False
    fifo = getattr(queue, "fifo", None)  # SQSQueue: only FIFO queues have groups
    return fifo is None or bool(fifo)


def cmd_stats(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    with _opened(url, existing=True) as queue:
        stats = _as_dict(_method(queue, "stats", url)())
    if args.json:
        print(json.dumps(stats, default=str, sort_keys=True))
    else:
        width = max((len(key) for key in stats), default=0)
        for key, value in stats.items():
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return EXIT_OK


def cmd_redrive(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    with _opened(url, existing=True) as queue:
        redrive = _method(queue, "redrive", url)
        ids = [int(i) if i.isdigit() else i for i in args.ids] if args.ids else None
        try:
            result = redrive(ids=ids)
        except TypeError as exc:  # an id of the wrong kind for this queue
            if ids is None:
                raise
            raise UsageError(f"--id: {exc}") from exc
    count = result if isinstance(result, int) else len(list(result or ()))
    print(f"re-drove {_counted(count, 'dead letter')}")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from ..observability.health import check_file

    if not args.health_file:
        raise UsageError(f"--file PATH is required (or {ENV_PREFIX}HEALTH_FILE)")
    ok, reason = check_file(args.health_file, args.max_age)
    print(reason, file=sys.stdout if ok else sys.stderr)
    return EXIT_OK if ok else EXIT_ERROR


def _first_line(text: object) -> str:
    """The first line of an error; of a traceback, its exception's (``ValueError: ...``)."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:  # the last traceback (chained ones come first): its first unindented line
        for line in lines[starts[-1] + 1 :]:
            if not line[0].isspace():
                return line.strip()
    return lines[0].strip() if lines else ""


def cmd_dead_letters(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    with _opened(url, existing=True) as queue:
        letters = list(_method(queue, "dead_letters", url)(limit=args.limit))
    rows = [
        {
            "id": getattr(letter, "id", None),
            "attempts": getattr(letter, "attempts", None),
            "last_error": getattr(letter, "last_error", None),
        }
        for letter in letters
    ]
    if args.json:
        print(json.dumps(rows, default=str))
        return EXIT_OK
    if not rows:
        print("no dead letters")
        return EXIT_OK
    width = max(len("id"), *(len(str(row["id"])) for row in rows))
    print(f"{'id':<{width}}  attempts  last error")
    for row in rows:
        error = _first_line(row["last_error"]) or "-"
        print(f"{row['id']!s:<{width}}  {row['attempts']!s:>8}  {error}")
    more = " (more: raise --limit)" if len(rows) == args.limit else ""
    print(f"{_counted(len(rows), 'dead letter')}{more}; redrive with --id ID", file=sys.stderr)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import DemoOptions, run_demo

    options = DemoOptions(
        queue_url=args.queue,
        messages=args.messages,
        fail_rate=args.fail_rate,
        workers=args.workers,
        handlers=args.handlers,
        bulk_size=args.bulk_size,
        processes=args.processes,
        work_time=args.work_time,
    )
    return run_demo(options, sys.stderr)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "send": cmd_send,
    "stats": cmd_stats,
    "redrive": cmd_redrive,
    "dead-letters": cmd_dead_letters,
    "demo": cmd_demo,
    "health": cmd_health,
}
