"""One vocabulary for checking settings: seconds, counts, flags, choices, with one wording.

The consumer, every adapter and the command line check their settings with these, so a
value means the same everywhere (``heartbeat=on`` is a flag on every URL) and a bad one
fails the same way: ``ConfigurationError("NAME must be WHAT, not VALUE")``. Each check
takes the Python value, or its text as a URL, the command line or the environment gives
it, and returns the value converted::

    >>> seconds("wait_time", "1.5", maximum=20)
    1.5
    >>> flag("heartbeat", "on")
    True
    >>> count("max_messages", 0)
    Traceback (most recent call last):
      ...
    queue_consumer.errors.ConfigurationError: max_messages must be an integer >= 1, not 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import TypeVar

from .errors import ConfigurationError

__all__ = ["choice", "count", "flag", "fraction", "function", "optional", "seconds", "share"]

T = TypeVar("T")

#: Upper bounds that catch a typo (``--workers 99999`` would start 99,999 threads).
MAX_WORKERS = 1024
MAX_HANDLERS = 4096

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def seconds(
    name: str, value: object, *, positive: bool = False, maximum: float | None = None
) -> float:
    """A finite number of seconds, >= 0 (> 0 with ``positive``), at most ``maximum``."""
    bound = ("> 0" if positive else ">= 0") + ("" if maximum is None else f" and <= {maximum:g}")
    number = _number(value)
    if (
        number is None
        or not math.isfinite(number)
        or number < 0
        or (positive and number == 0)
        or (maximum is not None and number > maximum)
    ):
        raise _bad(name, f"a number of seconds {bound}", value)
    return number


def count(name: str, value: object, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer, at least ``minimum`` and at most ``maximum``."""
    number: int | None = None
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if number is None or number < minimum or (maximum is not None and number > maximum):
        bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise _bad(name, f"an integer {bound}", value)
    return number


def fraction(name: str, value: object) -> float:
    """A number strictly between 0 and 1."""
    number = _number(value)
    if number is None or not 0 < number < 1:
        raise _bad(name, "a number between 0 and 1 (exclusive)", value)
    return number


def share(name: str, value: object) -> float:
    """A number from 0 to 1 (a rate, a share)."""
    number = _number(value)
    if number is None or not 0 <= number <= 1:
        raise _bad(name, "a number from 0 to 1", value)
    return number


def flag(name: str, value: object) -> bool:
    """True or False; as text ``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _bad(name, "true or false (1/0, yes/no, on/off)", value)


def choice(name: str, value: object, choices: Collection[str]) -> str:
    """One of ``choices`` (compared without regard to case; returned as listed)."""
    if isinstance(value, str):
        for option in choices:
            if option.lower() == value.strip().lower():
                return option
    raise _bad(name, f"one of {', '.join(choices)}", value)


def function(name: str, value: object) -> Callable[..., object]:
    """A callable."""
    if not callable(value):
        raise _bad(name, "callable", value)
    return value


def optional(check: Callable[..., T], name: str, value: object, **bounds: object) -> T | None:
    """``check`` unless ``value`` is None (or, as text, empty or ``none``)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    return check(name, value, **bounds)


def _number(value: object) -> float | None:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _bad(name: str, what: str, value: object) -> ConfigurationError:
    return ConfigurationError(f"{name} must be {what}, not {value!r}")
