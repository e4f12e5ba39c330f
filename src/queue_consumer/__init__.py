"""queue_consumer: consume any queue with many threads or processes; lose nothing.

Only messages whose handler succeeded leave the queue (``cleanup``); failed ones are
``reject``-ed, never-tried ones ``release``-d. The data path, one pass down the page::

    worker thread   pool.acquire() -> queue.get() -> plan_jobs()         _worker.py, _pool.py
    handler slot    handler(iter(chunk)) -> Outcome                      _runners.py, _tracking.py
                    -> cleanup / reject / dead_letter / release, batched _settle.py
    supervise       revive workers, stuck handlers, signals, shutdown    _consumer.py

The folders are the edges: ``cli/`` (the ``queue-consumer`` command), ``adapters/`` (one
package per broker, plus the shared lease keeper, option checks and body encoding),
``observability/`` (metrics, probes, tracing). The root holds only the engine, the queue
contract (``_protocols.py``), its settings (``_config.py``, ``_checks.py``), hooks,
statistics, errors and ``testing`` (the conformance kit for adapters).
"""

from ._consumer import Consumer, State
from ._hooks import ConsumerHooks
from ._protocols import Handler, Queue
from ._statistics import Statistics
from ._urls import open_queue, register_scheme
from .adapters.memory import MemoryMessage, MemoryQueue
from .errors import (
    ConfigurationError,
    ConsumerStateError,
    HandlerProcessError,
    PartialFailure,
    PermanentFailure,
    QueueConsumerError,
    StuckHandlersError,
)

__all__ = [
    "ConfigurationError",
    "Consumer",
    "ConsumerHooks",
    "ConsumerStateError",
    "Handler",
    "HandlerProcessError",
    "MemoryMessage",
    "MemoryQueue",
    "PartialFailure",
    "PermanentFailure",
    "Queue",
    "QueueConsumerError",
    "State",
    "Statistics",
    "StuckHandlersError",
    "open_queue",
    "register_scheme",
]

__version__ = "0.1.0"
