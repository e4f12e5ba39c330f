"""What each ``queue-consumer`` command does: run, send, stats, redrive, demo."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
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
from ._options import ENV_PREFIX, EXIT_OK, UsageError

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


@contextmanager
def _opened(url: str) -> Iterator[Any]:
    """The queue at ``url``, closed on the way out if it has a ``close()``."""
    queue = open_queue(url)
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
    options: dict[str, Any] = {
        "max_workers": args.workers,
        "max_handlers": args.handlers,
        "messages_bulk_size": args.bulk_size,
        "worker_polling_time": args.polling_time,
        "handler_timeout": args.handler_timeout,
        "max_stuck_handlers": args.max_stuck_handlers,
        "shutdown_timeout": args.shutdown_timeout,
    }
    options = {name: value for name, value in options.items() if value is not None}
    if args.initializer:
        options["pool_initializer"] = load_object(args.initializer, "initializer")
    if args.processes:
        options["with_thread_executor"] = False
    with _opened(url) as queue:
        consumer = Consumer(queue, handler, **options)
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
        log.info(
            "stopped: %d succeeded, %d failed, %d released",
            stats.succeeded,
            stats.failed,
            stats.released,
        )
    return EXIT_OK


def _read_bodies(args: argparse.Namespace, stdin: TextIO) -> Iterator[str]:
    sources = [s for s in (args.body, args.file) if s is not None]
    if len(sources) != 1:
        raise UsageError("give exactly one of BODY, '-' (stdin lines) or --file FILE")
    if args.body is not None and args.body != "-":
        yield args.body
        return
    if args.body == "-":
        yield from (line.rstrip("\r\n") for line in stdin if line.strip())
        return
    # A file is checked whole before anything is sent: a bad line sends nothing.
    yield from _read_json_lines(args.file, stdin)


def _read_json_lines(name: str, stdin: TextIO) -> list[str]:
    try:
        handle = stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"cannot read --file {name}: {exc.strerror}") from None
    bodies = []
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{name}:{number}: not a JSON line ({exc})") from None
            bodies.append(line.strip())
    return bodies


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def cmd_send(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    bodies = _read_bodies(args, sys.stdin)
    first = next(bodies, None)  # bad input fails before the queue is opened
    sent = 0
    try:
        with _opened(url) as queue:
            put_many = getattr(queue, "put_many", None)
            put = None if callable(put_many) else _method(queue, "put", url)
            if first is not None:
                for chunk in _chunks(itertools.chain([first], bodies), SEND_CHUNK):
                    if put is None:
                        put_many(chunk)  # type: ignore[misc]
                    else:
                        for body in chunk:
                            put(body)
                    sent += len(chunk)
    finally:
        if sent:
            log.debug("sent %d message(s) to %s", sent, _redact(url))
    print(f"sent {_counted(sent, 'message')}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    with _opened(url) as queue:
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
    with _opened(url) as queue:
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
    "demo": cmd_demo,
}
