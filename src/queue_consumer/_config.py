"""The consumer's settings: one frozen, validated, keyword-only ``Config``, checked up front.

This is the one list of settings: ``Consumer`` builds it from its arguments, reads every
value from it, and the command line's options are checked against its fields by a test,
so a new setting cannot be forgotten in one place.
"""

from __future__ import annotations

import dataclasses
import inspect
import multiprocessing
import multiprocessing.context
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _checks as checks
from ._hooks import ConsumerHooks, check_hooks
from .errors import ConfigurationError

MAX_WORKERS, MAX_HANDLERS = checks.MAX_WORKERS, checks.MAX_HANDLERS


@dataclass(frozen=True, kw_only=True)
class Config:
    """Validated settings of one consumer (see ``Consumer`` for what each one means)."""

    handler: Callable[..., object]
    max_workers: int
    max_handlers: int
    messages_bulk_size: int = 1
    worker_polling_time: float = 0.0
    pool_initializer: Callable[[], object] | None = None
    with_thread_executor: bool = True
    handler_timeout: float | None = None
    max_stuck_handlers: int = 0
    shutdown_timeout: float | None = None
    settle_delay: float = 0.05
    hooks: tuple[ConsumerHooks, ...] = ()
    mp_context: multiprocessing.context.BaseContext | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # Python values here; text is the CLI's job
            value = getattr(self, field.name)
            if isinstance(value, str) and field.name != "mp_context":
                raise ConfigurationError(f"{field.name} must not be a string, not {value!r}")
        set_ = object.__setattr__
        check_handler(self.handler)
        set_(
            self, "max_workers", checks.count("max_workers", self.max_workers, maximum=MAX_WORKERS)
        )
        set_(
            self,
            "max_handlers",
            checks.count("max_handlers", self.max_handlers, maximum=MAX_HANDLERS),
        )
        set_(
            self, "messages_bulk_size", checks.count("messages_bulk_size", self.messages_bulk_size)
        )
        set_(
            self,
            "worker_polling_time",
            checks.seconds("worker_polling_time", self.worker_polling_time),
        )
        if self.pool_initializer is not None:
            checks.function("pool_initializer", self.pool_initializer)
        if not isinstance(self.with_thread_executor, bool):
            raise ConfigurationError(
                "with_thread_executor must be True (threads) or False (processes)"
            )
        set_(
            self,
            "handler_timeout",
            checks.optional(checks.seconds, "handler_timeout", self.handler_timeout, positive=True),
        )
        set_(
            self,
            "max_stuck_handlers",
            checks.count("max_stuck_handlers", self.max_stuck_handlers, minimum=0),
        )
        set_(
            self,
            "shutdown_timeout",
            checks.optional(checks.seconds, "shutdown_timeout", self.shutdown_timeout),
        )
        set_(self, "settle_delay", checks.seconds("settle_delay", self.settle_delay, maximum=5))
        set_(self, "hooks", check_hooks(self.hooks))
        if self.with_thread_executor:
            set_(self, "mp_context", None)
        else:
            set_(self, "mp_context", _context(self.mp_context))
            _check_picklable("handler", self.handler)
            _check_picklable("pool_initializer", self.pool_initializer)

    @classmethod
    def build(cls, queue: Any, **settings: Any) -> Config:
        """Resolve the handler (``queue.handler`` when none is given), then validate."""
        if not callable(getattr(queue, "get", None)):
            raise ConfigurationError(
                f"queue must have a get() method; {type(queue).__name__} has none"
            )
        if settings.get("handler") is None:
            settings["handler"] = getattr(queue, "handler", None)
            if settings["handler"] is None:
                raise ConfigurationError(
                    "no handler: pass handler=... or give the queue a handler(messages) method"
                )
        return cls(**settings)


#: The names of every setting, in order (the command line is checked against these).
SETTINGS = tuple(field.name for field in dataclasses.fields(Config))


def check_handler(handler: object) -> None:
    """A handler must be a plain callable that runs when called.

    A generator (or async) function only builds a generator (a coroutine) when called:
    it would take no message, and every message would fail without a word.
    """
    if not callable(handler):
        raise ConfigurationError(f"handler must be callable, not {type(handler).__name__}")
    target = handler if inspect.isroutine(handler) else getattr(handler, "__call__", handler)  # noqa: B004
    target = inspect.unwrap(target)
    for test, kind in (
        (inspect.isgeneratorfunction, "a generator function"),
        (inspect.iscoroutinefunction, "a coroutine (async) function"),
        (inspect.isasyncgenfunction, "an async generator function"),
    ):
        if test(target):
            raise ConfigurationError(
                f"handler {handler!r} is {kind}: calling it runs none of its code, so it "
                "would take no message. Write a plain function that loops over the messages "
                "(for an async handler, run it with asyncio.run inside a plain function)."
            )


def _context(
    mp_context: str | multiprocessing.context.BaseContext | None,
) -> multiprocessing.context.BaseContext:
    if isinstance(mp_context, multiprocessing.context.BaseContext):
        return mp_context
    methods = multiprocessing.get_all_start_methods()
    # Never fork by default: forking a process that runs threads can copy held locks.
    method = mp_context or ("forkserver" if "forkserver" in methods else "spawn")
    if method not in methods:
        raise ConfigurationError(f"mp_context must be one of {methods}, not {method!r}")
    return multiprocessing.get_context(method)


def _check_picklable(name: str, value: object) -> None:
    """In process mode the handler travels to each child: it must pickle (be importable)."""
    if value is None:
        return
    try:
        pickle.dumps(value)
    except Exception as exc:
        raise ConfigurationError(
            f"process mode (with_thread_executor=False) needs a {name} that can be sent to "
            f"child processes, but {value!r} cannot be pickled ({exc}). Use a module-level "
            "function (not a lambda, a closure, or a method of an object holding clients)."
        ) from exc
