"""The ``queue-consumer`` command's entry point: logging set-up, error reports, exit codes.

    queue-consumer run tasks:handle --queue sqlite:///jobs.db?queue=emails --workers 4
    queue-consumer send sqlite:///jobs.db?queue=emails '{"to": "a@example.com"}'
    queue-consumer stats sqlite:///jobs.db?queue=emails --json
    queue-consumer redrive sqlite:///jobs.db?queue=emails
    queue-consumer demo

Every option can also come from the environment as ``QUEUE_CONSUMER_<OPTION>``
(``--bulk-size`` -> ``QUEUE_CONSUMER_BULK_SIZE``); a flag on the command line wins.

Exit codes: 0 clean stop (SIGTERM / SIGINT), 1 unexpected error, 2 usage or configuration
error, 3 too many stuck handlers (``StuckHandlersError``): let the orchestrator restart us.

The parser and env vars are in ``_options``, the commands in ``_commands``; with
this module they are the only place for argv, env vars, logging, signals and exit codes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import ConfigurationError, StuckHandlersError
from ._commands import COMMANDS, load_object, one_line
from ._logging import TEXT_FORMAT, JSONFormatter
from ._options import (
    ENV_PREFIX,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_STUCK,
    EXIT_USAGE,
    PROG,
    UsageError,
    apply_env,
    build_parser,
    flag,
    unknown_env,
)

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_STUCK",
    "EXIT_USAGE",
    "build_parser",
    "load_object",
    "main",
]


_CHATTY_LIBRARIES = ("botocore", "boto3", "urllib3")
_cli_log = logging.getLogger("queue_consumer.cli")


def _setup_logging(level: str, fmt: str) -> Callable[[], None]:
    """Send every log record to stderr; returns the undo (main() may run in-process)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Client libraries say at INFO where they found credentials, on every command: only
    # their warnings show, unless --log-level debug asks for everything.
    chatty = {logger: logger.level for logger in map(logging.getLogger, _CHATTY_LIBRARIES)}
    if root.level > logging.DEBUG:
        for logger in chatty:
            logger.setLevel(max(root.level, logging.WARNING))

    def undo() -> None:
        handler.flush()
        root.removeHandler(handler)
        root.setLevel(previous)
        for logger, chatty_level in chatty.items():
            logger.setLevel(chatty_level)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (``python -m queue_consumer`` exits with it)."""
    parser = build_parser()
    try:  # before parsing, for errors of parsing itself; a bad value is reported below
        show_traceback = flag(os.environ.get(ENV_PREFIX + "TRACEBACK", ""))
    except argparse.ArgumentTypeError:
        show_traceback = False
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        apply_env(args, dict(os.environ))
    except (UsageError, argparse.ArgumentTypeError) as exc:
        return _fail(EXIT_USAGE, f"error: {exc}", exc, show_traceback)

    show_traceback = args.traceback or args.log_level == "debug"
    undo_logging = _setup_logging(args.log_level, args.log_format)
    for warning in unknown_env(parser, dict(os.environ)):
        if _cli_log.isEnabledFor(logging.WARNING):
            _cli_log.warning("%s", warning)
        else:  # the demo logs errors only: a typo must still show
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
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
        return _fail(EXIT_ERROR, f"unexpected error: {one_line(exc)}{hint}", exc, show_traceback)
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
