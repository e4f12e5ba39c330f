"""Message bodies on every broker: ``str``, ``bytes`` or a JSON value, back as the same type.

A broker stores bytes (or text); a one-letter kind tag, kept beside the body (a column, a
header, a stream field), says how to read it back, so ``put({"n": 1})`` is handled as a
dict and ``put(b"\\x00")`` as bytes, on SQLite and on every broker adapter alike.

>>> kind, data = encode({"n": 1})
>>> kind, data, decode(kind, data)
('j', '{"n": 1}', {'n': 1})
>>> decode(*encode(b"raw"))
b'raw'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["BYTES", "JSON", "STR", "decode", "encode", "to_bytes"]

STR, BYTES, JSON = "s", "b", "j"


def encode(body: Any) -> tuple[str, str | bytes]:
    """``(kind, data)`` for a body; ``TypeError`` for a body that is none of the three."""
    if isinstance(body, str):
        return STR, str(body)
    if isinstance(body, bytes):
        return BYTES, bytes(body)
    try:
        return JSON, json.dumps(body, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"cannot put a body of type {type(body).__name__}: "
            f"use str, bytes or a JSON-serialisable value ({exc})"
        ) from exc


def decode(kind: str, data: str | bytes) -> Any:
    """The body ``encode`` was given. Text kinds accept UTF-8 bytes (brokers store bytes)."""
    if kind == BYTES:
        return bytes(data) if not isinstance(data, str) else data.encode()
    text = data.decode() if isinstance(data, (bytes, bytearray, memoryview)) else data
    return json.loads(text) if kind == JSON else text


def to_bytes(data: str | bytes) -> bytes:
    """What ``encode`` returned, as bytes for a broker that stores only bytes."""
    return data.encode() if isinstance(data, str) else data
