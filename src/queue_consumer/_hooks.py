"""Hooks: where metrics exporters, health checks and tracing plug into the consumer.

Subclass ``ConsumerHooks`` and override what you need; pass instances as
``Consumer(..., hooks=[...])``. Hooks run on the consumer's own threads, so keep them
quick. An error in a hook is logged and never breaks processing.

>>> class Counting(ConsumerHooks):
...     def __init__(self):
...         self.done = 0
...     def on_chunk_finished(self, succeeded, failed, error, duration):
...         self.done += len(succeeded)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._statistics import Statistics

log = logging.getLogger("queue_consumer.hooks")

#: A picklable zero-argument callable returning a context manager: entered in the handler
#: process around the handler (how a trace context crosses into a child).
ChildContext = Callable[[], AbstractContextManager[object]]


class ConsumerHooks:
    """No-op base: every method is optional."""

    def on_get(self, count: int, duration: float, error: BaseException | None) -> None:
        """A ``queue.get()`` returned ``count`` messages (also 0) or raised ``error``."""

    def on_received(self, messages: Sequence[Any]) -> None:
        """``queue.get()`` returned ``messages`` (not called when it returned none)."""

    def on_chunk_started(self, chunk: Sequence[Any]) -> None:
        """A handler is about to get ``chunk``."""

    def handler_context(self, chunk: Sequence[Any]) -> AbstractContextManager[ChildContext | None]:
        """Entered in the handler slot's thread around the handler of ``chunk``.

        What it yields may be a ``ChildContext``: process mode enters it in the child too.
        """
        return contextlib.nullcontext()

    def on_chunk_finished(
        self,
        succeeded: Sequence[Any],
        failed: Sequence[Any],
        error: str | None,
        duration: float,
    ) -> None:
        """A handler returned or raised; ``error`` is its traceback as text.

        Called before the chunk is settled (settles may be batched): see ``on_settled``.
        """

    def on_settled(
        self, stage: str, messages: Sequence[Any], duration: float, error: BaseException | None
    ) -> None:
        """A ``cleanup`` / ``reject`` / ``release`` / ``dead_letter`` call returned or raised."""

    def on_released(self, messages: Sequence[Any]) -> None:
        """Messages were handed back untried (shutdown, a failure before them, a group tail)."""

    def on_error(self, stage: str, error: BaseException) -> None:
        """``get``, a settle call, ``message_group`` or a worker raised ``error``."""

    def on_handler_stuck(self, chunk: Sequence[Any], running_for: float) -> None:
        """A handler ran past ``handler_timeout``."""

    def on_worker_revived(self, name: str) -> None:
        """``supervise`` found worker ``name`` dead and started a new one."""

    def on_supervise(self, statistics: Statistics) -> None:
        """A supervise round ran (every ``polling_time``): for probes and gauges."""


def check_hooks(hooks: object) -> tuple[ConsumerHooks, ...]:
    """The hooks as a tuple; anything that is not a ``ConsumerHooks`` fails at construction."""
    result: tuple[object, ...]
    try:
        result = tuple(hooks)  # type: ignore[arg-type]
    except TypeError:
        result = (hooks,)
    for hook in result:
        if not isinstance(hook, ConsumerHooks):
            from .errors import ConfigurationError

            raise ConfigurationError(
                f"hooks must be ConsumerHooks instances (subclass queue_consumer.ConsumerHooks), "
                f"not {hook!r}"
            )
    return result  # type: ignore[return-value]


class Hooks:
    """A consumer's hooks sorted by event, once: an event no hook overrides costs nothing.

    ``emit`` calls each hook that overrides the event; an error in one is logged and the
    rest still run. ``wants(event)`` lets a hot path skip even building the arguments.
    """

    def __init__(self, hooks: tuple[ConsumerHooks, ...]) -> None:
        self.all = hooks
        self._by_event: dict[str, tuple[Callable[..., Any], ...]] = {
            name: tuple(
                getattr(hook, name)
                for hook in hooks
                if getattr(type(hook), name) is not getattr(ConsumerHooks, name)
            )
            for name in _EVENTS
        }

    def __bool__(self) -> bool:
        return bool(self.all)

    def wants(self, event: str) -> bool:
        return bool(self._by_event[event])

    def emit(self, event: str, *args: Any) -> None:
        for method in self._by_event[event]:
            try:
                method(*args)
            except Exception:
                log.exception("hook %s failed", getattr(method, "__qualname__", event))

    @contextlib.contextmanager
    def handler_contexts(self, chunk: Sequence[Any]) -> Iterator[list[ChildContext]]:
        """Enter every overriding hook's ``handler_context``; yield the child contexts."""
        with contextlib.ExitStack() as stack:
            children = []
            for method in self._by_event["handler_context"]:
                try:
                    child = stack.enter_context(method(chunk))
                except Exception:
                    log.exception("hook %s failed", getattr(method, "__qualname__", "context"))
                    continue
                if child is not None:
                    children.append(child)
            yield children


_EVENTS = tuple(
    name for name in vars(ConsumerHooks) if name.startswith("on_") or name == "handler_context"
)
