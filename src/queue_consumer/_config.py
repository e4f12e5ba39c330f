"""Validate a consumer's arguments up front, so bad input fails at construction, clearly."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._hooks import ConsumerHooks
from .errors import ConfigurationError


@dataclass(frozen=True)
class Config:
    handler: Callable[..., object]
    max_workers: int
    max_handlers: int
    messages_bulk_size: int
    worker_polling_time: float
    pool_initializer: Callable[[], object] | None
    with_thread_executor: bool
    handler_timeout: float | None
    max_stuck_handlers: int
    shutdown_timeout: float | None
    hooks: tuple[ConsumerHooks, ...]
    mp_context: multiprocessing.context.BaseContext | None


def validate(
    queue: Any,
    handler: Callable[..., object] | None,
    max_workers: int,
    max_handlers: int,
    messages_bulk_size: int,
    worker_polling_time: float,
    pool_initializer: Callable[[], object] | None,
    with_thread_executor: bool,
    handler_timeout: float | None,
    max_stuck_handlers: int,
    shutdown_timeout: float | None,
    hooks: Iterable[ConsumerHooks],
    mp_context: str | multiprocessing.context.BaseContext | None,
) -> Config:
    if not callable(getattr(queue, "get", None)):
        raise ConfigurationError(f"queue must have a get() method; {type(queue).__name__} has none")
    if handler is None:
        handler = getattr(queue, "handler", None)
        if handler is None:
            raise ConfigurationError(
                "no handler: pass handler=... or give the queue a handler(messages) method"
            )
    if not callable(handler):
        raise ConfigurationError(f"handler must be callable, not {type(handler).__name__}")
    for name, value in [
        ("max_workers", max_workers),
        ("max_handlers", max_handlers),
        ("messages_bulk_size", messages_bulk_size),
    ]:
        _check_int(name, value, minimum=1)
    _check_int("max_stuck_handlers", max_stuck_handlers, minimum=0)
    _check_seconds("worker_polling_time", worker_polling_time)
    _check_seconds("shutdown_timeout", shutdown_timeout, optional=True)
    _check_seconds("handler_timeout", handler_timeout, optional=True, positive=True)
    if pool_initializer is not None and not callable(pool_initializer):
        raise ConfigurationError(
            f"pool_initializer must be callable, not {type(pool_initializer).__name__}"
        )
    if not isinstance(with_thread_executor, bool):
        raise ConfigurationError("with_thread_executor must be True (threads) or False (processes)")
    hooks = tuple(hooks)
    context = None
    if not with_thread_executor:
        context = _context(mp_context)
        _check_picklable("handler", handler)
        _check_picklable("pool_initializer", pool_initializer)
    return Config(
        handler,
        max_workers,
        max_handlers,
        messages_bulk_size,
        float(worker_polling_time),
        pool_initializer,
        with_thread_executor,
        handler_timeout,
        max_stuck_handlers,
        shutdown_timeout,
        hooks,
        context,
    )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, not {value!r}")


def _check_seconds(
    name: str, value: object, *, optional: bool = False, positive: bool = False
) -> None:
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or value != value or value < 0 or (positive and value == 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(f"{name} must be a number of seconds {bound}, not {value!r}")


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
