"""Imported first by every documentation example the tests run (tests/docs/test_doc_examples.py).

The docs call placeholders for the reader's own code (``process(message)``, ``ship(order)``);
they are defined here as builtins that do nothing, so each example runs exactly as written.
An example that blocks in ``consumer.supervise(blocking=True)`` (until SIGTERM) gets one:
once the consumer has installed its signal handler, a watchdog thread sends SIGTERM, so the
example's graceful shutdown runs too. For SQS examples it then sends a message now and then
to the queues the test created, so a worker in a long poll returns at once.
"""

from __future__ import annotations

import builtins
import os
import signal
import threading
import time
from typing import Any


class DatabaseError(Exception):
    """What a placeholder database raises."""


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


_PLACEHOLDERS = {
    "process": _nothing,
    "ship": _nothing,
    "send_email": _nothing,
    "bulk_insert": _nothing,
    "insert_all": _nothing,
    "inserted": lambda message: True,
    "DatabaseError": DatabaseError,
}
for _name, _value in _PLACEHOLDERS.items():
    setattr(builtins, _name, _value)


def _sigterm_when_supervised(delay: float, poke: list[str]) -> None:
    while signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        time.sleep(0.02)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGTERM)
    if not poke:
        return
    import boto3

    client = boto3.client("sqs")
    while True:  # a daemon thread: it ends with the process
        for url in poke:
            client.send_message(QueueUrl=url, MessageBody='{"poke": true}')
        time.sleep(0.2)


# Popped, so that child processes (process mode), started later, do not arm one too.
_SIGTERM_AFTER = os.environ.pop("DOC_EXAMPLE_SIGTERM", "")
_POKE = os.environ.pop("DOC_EXAMPLE_POKE", "").split()
if _SIGTERM_AFTER:
    threading.Thread(
        target=_sigterm_when_supervised, args=(float(_SIGTERM_AFTER), _POKE), daemon=True
    ).start()
