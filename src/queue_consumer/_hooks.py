"""Hooks: where metrics exporters and tracing plug into the consumer.

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

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("queue_consumer.hooks")


class ConsumerHooks:
    """No-op base: every method is optional."""

    def on_received(self, messages: Sequence[Any]) -> None:
        """``queue.get()`` returned ``messages`` (not called when it returned none)."""

    def on_chunk_started(self, chunk: Sequence[Any]) -> None:
        """A handler is about to get ``chunk``."""

    def on_chunk_finished(
        self,
        succeeded: Sequence[Any],
        failed: Sequence[Any],
        error: str | None,
        duration: float,
    ) -> None:
        """A chunk was handled and settled; ``error`` is the handler's traceback as text."""

    def on_released(self, messages: Sequence[Any]) -> None:
        """Messages were handed back unhandled (shutdown, or a held-back group tail)."""

    def on_error(self, stage: str, error: BaseException) -> None:
        """``get``, ``cleanup``, ``reject``, ``release`` or a worker raised ``error``."""

    def on_handler_stuck(self, chunk: Sequence[Any], running_for: float) -> None:
        """A handler ran past ``handler_timeout``."""

    def on_worker_revived(self, name: str) -> None:
        """``supervise`` found worker ``name`` dead and started a new one."""


class HookDispatcher(ConsumerHooks):
    """Calls every hook in turn; an error in one is logged and the rest still run."""

    def __init__(self, hooks: Sequence[ConsumerHooks]) -> None:
        self.hooks = tuple(hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("on_"):
            return super().__getattribute__(name)
        hooks = super().__getattribute__("hooks")

        def dispatch(*args: Any) -> None:
            for hook in hooks:
                try:
                    getattr(hook, name)(*args)
                except Exception:
                    log.exception("hook %s.%s failed", type(hook).__name__, name)

        return dispatch
