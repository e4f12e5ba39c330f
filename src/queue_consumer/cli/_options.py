"""The `queue-consumer` command line: its parser, option values, `QUEUE_CONSUMER_*` fallbacks."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Callable
from typing import Any, NoReturn

from .. import _checks as checks
from ..errors import ConfigurationError

PROG = "queue-consumer"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STUCK = 3  # too many stuck handlers: let the orchestrator restart us
ENV_PREFIX = "QUEUE_CONSUMER_"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


#: `run`'s options and the consumer setting (``queue_consumer._config.Config``) each sets;
#: a test checks that every setting has one, so a new setting cannot be forgotten here.
RUN_SETTINGS = {
    "workers": "max_workers",
    "handlers": "max_handlers",
    "bulk_size": "messages_bulk_size",
    "polling_time": "worker_polling_time",
    "initializer": "pool_initializer",
    "processes": "with_thread_executor",
    "handler_timeout": "handler_timeout",
    "max_stuck_handlers": "max_stuck_handlers",
    "shutdown_timeout": "shutdown_timeout",
    "settle_delay": "settle_delay",
    "start_method": "mp_context",
}


class UsageError(Exception):
    """A bad command line or environment value: one line on stderr, exit 2."""


# --- option values -------------------------------------------------------------------------


def _checked(check: Callable[..., Any], **bounds: Any) -> Callable[[str], Any]:
    """An option converter from one of the shared checks: the wording is theirs."""

    def convert(text: str) -> Any:
        try:
            return check("value", text, **bounds)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    return convert


def _choice(*choices: str) -> Callable[[str], str]:
    return _checked(checks.choice, choices=choices)


def flag(text: str) -> bool:
    """True or False; an empty environment variable is False."""
    return bool(text.strip()) and _checked(checks.flag)(text)


MAX_WORKERS, MAX_HANDLERS = checks.MAX_WORKERS, checks.MAX_HANDLERS
_positive_int = _checked(checks.count)
_non_negative_int = _checked(checks.count, minimum=0)
_workers = _checked(checks.count, maximum=MAX_WORKERS)
_handlers = _checked(checks.count, maximum=MAX_HANDLERS)
_seconds = _checked(checks.seconds)
# Consumer(handler_timeout=0) is refused too: the one bound, worded the same everywhere.
_positive_seconds = _checked(checks.seconds, positive=True)
_rate = _checked(checks.share)


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
        convert = flag
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


def apply_env(args: argparse.Namespace, environ: dict[str, str]) -> None:
    """Fill options missing from the command line from ``QUEUE_CONSUMER_*``, else defaults."""
    for option in getattr(args, "_env_options", ()):
        if getattr(args, option.dest, None) is not None:
            continue  # the command line wins
        name = ENV_PREFIX + option.dest.upper()
        raw = environ.get(name)
        if raw is None or (raw == "" and option.convert is not flag):
            setattr(args, option.dest, option.default)
            continue
        try:
            setattr(args, option.dest, option.convert(raw))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"environment variable {name}: {exc}") from None


def known_env(parser: argparse.ArgumentParser) -> set[str]:
    """Every ``QUEUE_CONSUMER_*`` variable some command reads (a worker's environment sets
    them all, whichever command runs)."""
    names = {ENV_PREFIX + "TRACEBACK"}
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for each in parsers:
        for option in each.get_default("_env_options") or ():
            names.add(ENV_PREFIX + option.dest.upper())
    return names


def unknown_env(parser: argparse.ArgumentParser, environ: dict[str, str]) -> list[str]:
    """A warning for each ``QUEUE_CONSUMER_*`` variable no command reads (a typo: it would
    be ignored without a word), naming the closest known one."""
    known = known_env(parser)
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        suffixes = sorted(known_name[len(ENV_PREFIX) :] for known_name in known)
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :], suffixes, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {ENV_PREFIX}{close[0]}?"
            if close
            else f" (known: {', '.join(sorted(known))})"
        )
        warnings.append(f"unknown environment variable {name} is ignored{hint}")
    return warnings


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


def _observability(run: argparse.ArgumentParser) -> None:
    """Metrics, probes, statsd and tracing of `run` (queue_consumer.observability)."""
    group = run.add_argument_group("observability")
    port = _checked(checks.count, minimum=0, maximum=65535)
    _add(
        group, "--metrics-port", convert=port, metavar="PORT", help="serve /metrics /livez /readyz"
    )
    _add(group, "--metrics-host", default="127.0.0.1", metavar="HOST", help="address to serve on")
    _add(group, "--health-file", metavar="PATH", help="touched every supervise tick while live")
    _add(group, "--stall-after", convert=_seconds, default=60.0, metavar="S", help="stall window")
    _add(group, "--stall-is-fatal", action="store_true", help="a stall makes /livez fail")
    _add(group, "--statsd", metavar="HOST:PORT", help="send statsd metrics (UDP)")
    _add(group, "--statsd-prefix", default="queue_consumer", metavar="P", help="statsd names")
    _add(
        group,
        "--statsd-tags",
        convert=_choice("dogstatsd", "influx", "none"),
        default="dogstatsd",
        metavar="FORM",
        help="dogstatsd, influx or none",
    )
    _add(group, "--otel", action="store_true", help="trace chunks with OpenTelemetry")


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
    _add(
        run,
        "--workers",
        convert=_workers,
        metavar="N",
        help=f"workers polling the queue (1 to {MAX_WORKERS})",
    )
    _add(
        run,
        "--handlers",
        convert=_handlers,
        metavar="N",
        help=f"handlers running at once (1 to {MAX_HANDLERS})",
    )
    _add(run, "--bulk-size", convert=_positive_int, metavar="N", help="messages per handler call")
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
        convert=_positive_seconds,
        metavar="S",
        help="a handler running longer is stuck",
    )
    _add(
        run,
        "--max-stuck-handlers",
        convert=_non_negative_int,
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
    _add(
        run,
        "--settle-delay",
        convert=_seconds,
        metavar="S",
        help="longest a handled message waits for its batched settle call (0: none)",
    )
    _add(
        run,
        "--start-method",
        convert=_choice("forkserver", "spawn", "fork"),
        metavar="NAME",
        help="how --processes starts handler processes (default forkserver, else spawn)",
    )
    _observability(run)
    _common(run)

    health = commands.add_parser("health", help="exit 0 if a consumer's health file is fresh")
    _add(health, "--file", dest="health_file", metavar="PATH", help="the run's --health-file")
    _add(health, "--max-age", convert=_seconds, default=60.0, metavar="S", help="older: exit 1")
    _common(health, log_level="warning")

    send = commands.add_parser("send", help="put messages on a queue")
    _add(send, "queue", nargs="?", metavar="URL", help="queue URL")
    send.add_argument("body", nargs="?", metavar="BODY", help="message body; '-' reads stdin lines")
    send.add_argument("--file", metavar="FILE", help="JSON lines file, one message a line")
    send.add_argument(
        "--group-id",
        metavar="GROUP",
        help="message group of every message (SQS FIFO queues; an error on other queues)",
    )
    _common(send)

    stats = commands.add_parser("stats", help="show what the queue holds")
    _add(stats, "queue", nargs="?", metavar="URL", help="queue URL")
    _add(stats, "--json", action="store_true", help="print one JSON object")
    _common(stats)

    redrive = commands.add_parser("redrive", help="send dead letters back to the queue")
    _add(redrive, "queue", nargs="?", metavar="URL", help="queue URL")
    redrive.add_argument("--id", action="append", dest="ids", metavar="ID", help="only this one")
    _common(redrive)

    dead = commands.add_parser(
        "dead-letters", help="list dead letters: id, attempts, last error (for redrive --id)"
    )
    _add(dead, "queue", nargs="?", metavar="URL", help="queue URL")
    dead.add_argument(
        "--limit",
        type=_checked(checks.count, maximum=100_000),
        default=100,
        metavar="N",
        help="the oldest N (default: 100)",
    )
    dead.add_argument("--json", action="store_true", help="print one JSON list")
    _common(dead)

    demo = commands.add_parser("demo", help="consume a local demo queue (takes seconds)")
    # Never from QUEUE_CONSUMER_QUEUE: in a worker's environment that is the real queue.
    demo.add_argument(
        "--queue",
        metavar="URL",
        help="an EMPTY queue to use (default: SQLite in a temp dir); never read from "
        f"{ENV_PREFIX}QUEUE; a queue that holds messages is refused",
    )
    _add(demo, "--messages", convert=_positive_int, default=2000, metavar="N", help="messages")
    _add(demo, "--fail-rate", convert=_rate, default=0.1, metavar="R", help="share failing once")
    _add(demo, "--workers", convert=_workers, default=2, metavar="N", help="workers")
    _add(demo, "--handlers", convert=_handlers, default=4, metavar="N", help="handlers")
    _add(demo, "--bulk-size", convert=_positive_int, default=10, metavar="N", help="bulk size")
    _add(demo, "--processes", action="store_true", help="run handlers in processes")
    _add(demo, "--work-time", convert=_seconds, default=0.002, metavar="S", help="per message")
    # The demo's failures are on purpose: their warnings would drown the progress line.
    _common(demo, log_level="error")
    return parser
