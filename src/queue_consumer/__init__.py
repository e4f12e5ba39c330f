"""queue_consumer: consume any queue with many threads or processes; lose nothing.

Only messages whose handler succeeded leave the queue (``cleanup``); failed ones are
``reject``-ed, never-handled ones ``release``-d. The documentation (``docs/``, ``make docs``)
has the whole contract.
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
