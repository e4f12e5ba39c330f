"""The ``queue-consumer`` command: the only place for argv, env vars, logging, signals, exit codes.

    queue-consumer run tasks:handle --queue sqlite:///jobs.db?queue=emails --workers 4
    queue-consumer send sqlite:///jobs.db?queue=emails '{"to": "a@example.com"}'
    queue-consumer stats sqlite:///jobs.db?queue=emails --json
    queue-consumer redrive sqlite:///jobs.db?queue=emails
    queue-consumer demo

Every option can also come from the environment as ``QUEUE_CONSUMER_<OPTION>``
(``--bulk-size`` -> ``QUEUE_CONSUMER_BULK_SIZE``); a flag on the command line wins.

Exit codes: 0 clean stop (SIGTERM / SIGINT), 1 unexpected error, 2 usage or configuration
error, 3 too many stuck handlers (``StuckHandlersError``): let the orchestrator restart us.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit, urlunsplit

from ._logging import TEXT_FORMAT, JSONFormatter
from ._urls import open_queue
from .errors import ConfigurationError, StuckHandlersError

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_STUCK", "EXIT_USAGE", "load_object", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STUCK = 3

PROG = "queue-consumer"
ENV_PREFIX = "QUEUE_CONSUMER_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SEND_CHUNK = 500  # messages per put_many call: bounded memory for huge input files

log = logging.getLogger("queue_consumer.cli")


class UsageError(Exception):
    """A bad command line or environment value: one line on stderr, exit 2."""


# --- option values -------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    convert.__name__ = "integer"
    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        value = text.lower()
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return convert


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


positive_int = _int_at_least(1)
non_negative_int = _int_at_least(0)


# --- the parser ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions, so main() prints one line, exits 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


@dataclasses.dataclass(frozen=True)
class _EnvOption:
    dest: str
    convert: Callable[[str], Any]
    default: Any


def _add(
    parser: argparse._ActionsContainer,
    *flags: str,
    convert: Callable[[str], Any] = str,
    default: Any = None,
    **kwargs: Any,
) -> None:
    """Add an option that falls back to ``QUEUE_CONSUMER_<DEST>``, then to ``default``.

    argparse gets ``None`` as default so that "not given" is visible after parsing.
    """
    if kwargs.get("action") == "store_true":
        action = parser.add_argument(*flags, default=None, **kwargs)
        convert = _flag
        default = bool(default)
    else:
        action = parser.add_argument(*flags, type=convert, default=None, **kwargs)
    env_options: list[_EnvOption] = parser.get_default("_env_options") or []
    env_options.append(_EnvOption(action.dest, convert, default))
    parser.set_defaults(_env_options=env_options)
    env = ENV_PREFIX + action.dest.upper()
    if action.help is not None and action.help != argparse.SUPPRESS:
        shown = "" if default is None or default is False else f" (default: {default})"
        action.help = f"{action.help}{shown} [env {env}]"


def _apply_env(args: argparse.Namespace, environ: dict[str, str]) -> None:
    for option in getattr(args, "_env_options", ()):
        if getattr(args, option.dest, None) is not None:
            continue  # the command line wins
        name = ENV_PREFIX + option.dest.upper()
        raw = environ.get(name)
        if raw is None or (raw == "" and option.convert is not _flag):
            setattr(args, option.dest, option.default)
            continue
        try:
            setattr(args, option.dest, option.convert(raw))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"environment variable {name}: {exc}") from None


def _common(parser: argparse.ArgumentParser, log_level: str = "info") -> None:
    group = parser.add_argument_group("output")
    _add(
        group,
        "--log-level",
        convert=_choice(*LOG_LEVELS),
        default=log_level,
        metavar="LEVEL",
        help=", ".join(LOG_LEVELS),
    )
    _add(
        group,
        "--log-format",
        convert=_choice("text", "json"),
        default="text",
        metavar="FORMAT",
        help="text (for people) or json (one object a line, for log collectors)",
    )
    _add(group, "--traceback", action="store_true", help="print tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Consume a queue with many threads or processes; only what succeeded "
        "leaves the queue.",
        epilog="Exit codes: 0 clean stop, 1 unexpected error, 2 usage or configuration error, "
        "3 too many stuck handlers. Every option can come from QUEUE_CONSUMER_<OPTION>.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="consume a queue until SIGTERM / SIGINT")
    _add(run, "handler", nargs="?", metavar="MODULE:HANDLER", help="handler, e.g. tasks:handle")
    _add(run, "--queue", metavar="URL", help="queue URL, e.g. sqlite:///jobs.db?queue=emails")
    _add(run, "--workers", convert=positive_int, metavar="N", help="workers polling the queue")
    _add(run, "--handlers", convert=positive_int, metavar="N", help="handlers running at once")
    _add(run, "--bulk-size", convert=positive_int, metavar="N", help="messages per handler call")
    _add(run, "--polling-time", convert=_seconds, metavar="S", help="sleep between gets")
    _add(run, "--processes", action="store_true", help="run handlers in processes, not threads")
    _add(
        run,
        "--initializer",
        metavar="MODULE:FUNC",
        help="run once in each handler thread or process",
    )
    _add(
        run,
        "--handler-timeout",
        convert=_seconds,
        metavar="S",
        help="a handler running longer is stuck",
    )
    _add(
        run,
        "--max-stuck-handlers",
        convert=non_negative_int,
        metavar="N",
        help="more stuck handlers: exit 3",
    )
    _add(
        run,
        "--shutdown-timeout",
        convert=_seconds,
        metavar="S",
        help="longest wait for running handlers on stop",
    )
    _common(run)

    send = commands.add_parser("send", help="put messages on a queue")
    _add(send, "queue", nargs="?", metavar="URL", help="queue URL")
    send.add_argument("body", nargs="?", metavar="BODY", help="message body; '-' reads stdin lines")
    send.add_argument("--file", metavar="FILE", help="JSON lines file, one message a line")
    _common(send)

    stats = commands.add_parser("stats", help="show what the queue holds")
    _add(stats, "queue", nargs="?", metavar="URL", help="queue URL")
    _add(stats, "--json", action="store_true", help="print one JSON object")
    _common(stats)

    redrive = commands.add_parser("redrive", help="send dead letters back to the queue")
    _add(redrive, "queue", nargs="?", metavar="URL", help="queue URL")
    redrive.add_argument("--id", action="append", dest="ids", metavar="ID", help="only this one")
    _common(redrive)

    demo = commands.add_parser("demo", help="consume a local demo queue (takes seconds)")
    _add(demo, "--queue", metavar="URL", help="queue URL (default: SQLite in a temp dir)")
    _add(demo, "--messages", convert=positive_int, default=2000, metavar="N", help="messages")
    _add(demo, "--fail-rate", convert=_rate, default=0.1, metavar="R", help="share failing once")
    _add(demo, "--workers", convert=positive_int, default=2, metavar="N", help="workers")
    _add(demo, "--handlers", convert=positive_int, default=4, metavar="N", help="handlers")
    _add(demo, "--bulk-size", convert=positive_int, default=10, metavar="N", help="bulk size")
    _add(demo, "--processes", action="store_true", help="run handlers in processes")
    _add(demo, "--work-time", convert=_seconds, default=0.002, metavar="S", help="per message")
    # The demo's failures are on purpose: their warnings would drown the progress line.
    _common(demo, log_level="error")
    return parser


# --- helpers -------------------------------------------------------------------------------


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
        raise ConfigurationError(f"cannot import {what} {spec!r}: {_one_line(exc)}") from exc
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


def _one_line(exc: BaseException) -> str:
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


def _close(queue: Any) -> None:
    close = getattr(queue, "close", None)
    if callable(close):
        close()


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
    from . import Consumer  # the core only when consuming: `send` and `stats` stay light

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
    queue = open_queue(url)
    try:
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
    finally:
        _close(queue)
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
    queue = open_queue(url)
    sent = 0
    try:
        put_many = getattr(queue, "put_many", None)
        put = None if callable(put_many) else _method(queue, "put", url)
        if first is not None:
            for chunk in _chunks(_prepend(first, bodies), SEND_CHUNK):
                if put is None:
                    put_many(chunk)  # type: ignore[misc]
                else:
                    for body in chunk:
                        put(body)
                sent += len(chunk)
    finally:
        _close(queue)
        if sent:
            log.debug("sent %d message(s) to %s", sent, _redact(url))
    print(f"sent {sent} message{'s' if sent != 1 else ''}")
    return EXIT_OK


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def cmd_stats(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    queue = open_queue(url)
    try:
        stats = _as_dict(_method(queue, "stats", url)())
    finally:
        _close(queue)
    if args.json:
        print(json.dumps(stats, default=str, sort_keys=True))
    else:
        width = max((len(key) for key in stats), default=0)
        for key, value in stats.items():
            print(f"{key.replace('_', ' '):<{width}}  {value}")
    return EXIT_OK


def cmd_redrive(args: argparse.Namespace) -> int:
    url = _require_queue(args)
    queue = open_queue(url)
    try:
        redrive = _method(queue, "redrive", url)
        ids = [int(i) if i.isdigit() else i for i in args.ids] if args.ids else None
        try:
            result = redrive(ids=ids)
        except TypeError as exc:  # an id of the wrong kind for this queue
            if ids is None:
                raise
            raise UsageError(f"--id: {exc}") from exc
    finally:
        _close(queue)
    count = result if isinstance(result, int) else len(list(result or ()))
    print(f"re-drove {count} dead letter{'s' if count != 1 else ''}")
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


# --- entry point ---------------------------------------------------------------------------


def _setup_logging(level: str, fmt: str) -> Callable[[], None]:
    """Send every log record to stderr; returns the undo (main() may run in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())

    def undo() -> None:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (``python -m queue_consumer`` exits with it)."""
    parser = build_parser()
    try:  # before parsing, for errors of parsing itself; a bad value is reported below
        show_traceback = _flag(os.environ.get(ENV_PREFIX + "TRACEBACK", ""))
    except argparse.ArgumentTypeError:
        show_traceback = False
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        _apply_env(args, dict(os.environ))
    except UsageError as exc:
        return _fail(EXIT_USAGE, f"error: {exc}", exc, show_traceback)
    except argparse.ArgumentTypeError as exc:
        return _fail(EXIT_USAGE, f"error: {exc}", exc, show_traceback)

    show_traceback = args.traceback or args.log_level == "debug"
    undo_logging = _setup_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ConfigurationError) as exc:
        return _fail(EXIT_USAGE, f"error: {exc}", exc, show_traceback)
    except StuckHandlersError as exc:
        return _fail(EXIT_STUCK, f"error: {exc}", exc, show_traceback)
    except KeyboardInterrupt:
        # Outside `run` (whose supervise() owns SIGINT): send / stats / demo interrupted.
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        hint = "" if show_traceback else " (run with --traceback for details)"
        return _fail(EXIT_ERROR, f"unexpected error: {_one_line(exc)}{hint}", exc, show_traceback)
    finally:
        undo_logging()


def _fail(code: int, message: str, exc: BaseException, show_traceback: bool) -> int:
    if show_traceback:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
