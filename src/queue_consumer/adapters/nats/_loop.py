"""A private asyncio event loop in a daemon thread: how synchronous code drives nats-py.

Every call is ``run_coroutine_threadsafe(coro, loop).result(timeout)``; a call that runs
out of time is cancelled on the loop and raises ``TimeoutError``. The loop starts on first
use and again in a forked child (the parent's thread does not exist there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's loop thread is not here
                self._loop, self._thread, self._pid = None, None, os.getpid()
            if self._closed:
                raise RuntimeError(f"{self._name}: the event loop is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, started), name=self._name, daemon=True
                )
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def started(self) -> bool:
        with self._lock:
            return self._loop is not None and self._pid == os.getpid()

    def in_loop(self) -> bool:
        return self._thread is threading.current_thread()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait at most ``timeout`` seconds for its result."""
        if self.in_loop():
            coro.close()
            raise RuntimeError(f"{self._name}: a blocking call from inside its own event loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self._name}: no answer within {timeout:g}s") from None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and join its thread (idempotent)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._closed = True
            self._loop = self._thread = None
            mine = self._pid == os.getpid()
        if loop is None or thread is None or not mine:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()
