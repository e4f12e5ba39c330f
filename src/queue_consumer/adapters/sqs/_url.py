"""Parse an SQS queue URL into ``SQSQueue`` keyword arguments (no boto3, no network).

Accepted forms::

    sqs://jobs?region=eu-west-1&wait=20&visibility_timeout=60
    https://sqs.eu-west-1.amazonaws.com/123456789012/jobs
    http://127.0.0.1:5000/123456789012/jobs?region=us-east-1     (moto, localstack, ...)
"""

from __future__ import annotations

import functools
import re
import warnings
from typing import Any
from urllib.parse import unquote, urlsplit

from ... import _checks as checks
from ...errors import ConfigurationError
from .._options import Check, OptionTable, parse_query

__all__ = ["QUERY_OPTIONS", "parse_url"]

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,75}(\.fifo)?$|^[A-Za-z0-9_-]{1,80}$")
_AWS_HOST = re.compile(r"^sqs[.-](?P<region>[a-z]{2}(-[a-z]+)+-\d+)\.amazonaws\.com(\.cn)?$")
_RETRY_MODES = ("standard", "adaptive", "legacy")
_LEGACY_HOST = re.compile(r"^(?P<region>[a-z]{2}(-[a-z]+)+-\d+)\.queue\.amazonaws\.com(\.cn)?$")


def _integer(low: int, high: int) -> Check:
    return functools.partial(checks.count, minimum=low, maximum=high)


def _reject(name: str, text: str) -> Any:
    if text in ("immediate", "exponential"):
        return text
    return checks.seconds(name, text)


def _text(name: str, text: str) -> str:
    return text


def _deprecated_max_attempts(name: str, text: str) -> int:
    warnings.warn(
        "sqs:// max_attempts is botocore's attempts per request: use request_attempts "
        "(max_attempts means deliveries on sqlite:// and every broker adapter)",
        DeprecationWarning,
        stacklevel=2,
    )
    return checks.count(name, text, maximum=20)


#: query option -> (SQSQueue keyword, converter)
QUERY_OPTIONS: OptionTable = {
    "region": ("region_name", _text),
    "endpoint_url": ("endpoint_url", _text),
    "wait": ("wait_time_seconds", _integer(0, 20)),
    "max_messages": ("max_messages", _integer(1, 10)),
    "visibility_timeout": ("visibility_timeout", _integer(0, 43_200)),
    "heartbeat": ("heartbeat", checks.flag),
    "heartbeat_fraction": ("heartbeat_fraction", checks.fraction),
    "reject": ("reject_policy", _reject),
    "max_receive_count": ("max_receive_count", _integer(1, 1000)),
    "dead_letter_queue": ("dead_letter_queue", _text),
    "retry_mode": ("retry_mode", functools.partial(checks.choice, choices=_RETRY_MODES)),
    "request_attempts": ("request_attempts", _integer(1, 20)),
    "max_attempts": ("request_attempts", _deprecated_max_attempts),  # deprecated name
}


def parse_url(url: str) -> dict[str, Any]:
    """Turn a queue URL into ``SQSQueue`` keyword arguments; ``ConfigurationError`` if bad.

    >>> parse_url("sqs://jobs?region=eu-west-1&wait=5")
    {'queue_name': 'jobs', 'region_name': 'eu-west-1', 'wait_time_seconds': 5}
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number
    except ValueError as exc:
        raise _bad(url, str(exc)) from exc
    scheme = parts.scheme.lower()
    if scheme == "sqs":
        kwargs = _sqs_scheme(url, parts.netloc, parts.path)
    elif scheme in ("http", "https"):
        kwargs = _http_scheme(url, scheme, parts.hostname or "", port, parts.path)
    else:
        raise _bad(url, f"scheme {parts.scheme!r} is not sqs, https or http")
    if parts.fragment:
        raise _bad(url, "a fragment (#...) means nothing here")
    options = parse_query(url, QUERY_OPTIONS)
    if scheme in ("http", "https") and "endpoint_url" in options:
        # The queue URL already says where the queue is; two endpoints would be ambiguous.
        raise _bad(url, "endpoint_url is for sqs:// URLs; an http(s) queue URL is its endpoint")
    return {**kwargs, **options}


def _sqs_scheme(url: str, netloc: str, path: str) -> dict[str, Any]:
    name = unquote(netloc or path.lstrip("/"))
    if netloc and path not in ("", "/"):
        raise _bad(url, "expected sqs://QUEUE_NAME (no path)")
    if not name:
        raise _bad(url, "no queue name: expected sqs://QUEUE_NAME")
    if not _QUEUE_NAME.match(name):
        raise _bad(
            url,
            f"{name!r} is not a valid SQS queue name (up to 80 letters, digits, '-' or '_', "
            "optionally ending with '.fifo')",
        )
    return {"queue_name": name}


def _http_scheme(url: str, scheme: str, host: str, port: int | None, path: str) -> dict[str, Any]:
    segments = [segment for segment in path.split("/") if segment]
    if not host:
        raise _bad(url, "no host")
    if len(segments) != 2 or not segments[0].isdigit() or not _QUEUE_NAME.match(segments[1]):
        raise _bad(url, "expected an SQS queue URL: SCHEME://HOST/ACCOUNT_ID/QUEUE_NAME")
    netloc = f"{host}:{port}" if port is not None else host
    kwargs: dict[str, Any] = {"queue_url": f"{scheme}://{netloc}/{segments[0]}/{segments[1]}"}
    match = _AWS_HOST.match(host) or _LEGACY_HOST.match(host)
    if match:
        kwargs["region_name"] = match.group("region")
    else:
        # Not AWS (moto, localstack, ElasticMQ): the host that serves the queue is the endpoint.
        kwargs["endpoint_url"] = f"{scheme}://{netloc}"
    return kwargs


def _bad(url: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"bad SQS queue URL {url!r}: {why}")
