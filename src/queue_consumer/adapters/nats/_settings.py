"""JetStreamQueue's settings: checked once, from Python or from a ``nats://`` URL.

Secrets (a token, a password in a server URL) live here and nowhere else; ``describe()``
and ``redact_server()`` are what logs, errors and ``repr`` show.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import unquote

from queue_consumer import _checks as checks
from queue_consumer.errors import ConfigurationError

from .._options import OptionTable, parse_query

__all__ = ["Settings", "parse_url", "redact_server"]

SCHEMES = ("nats", "nats+tls")
DEFAULT_SERVER = "nats://127.0.0.1:4222"
TOKEN_ENV = "NATS_TOKEN"
CREDS_ENV = "NATS_CREDS"
NKEY_ENV = "NATS_NKEY_SEED"

# Stream and consumer names: no spaces, dots, wildcards or path separators (nats-server).
_NAME = re.compile(r"[^\s.*>/\\]{1,255}")
_SUBJECT = re.compile(r"[^\s]+")


def _name(option: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ConfigurationError(
            f"{option} must be a name without spaces, '.', '*', '>', '/' or '\\', not {value!r}"
        )
    return value


def _subject(option: str, value: object) -> str:
    if (
        not isinstance(value, str)
        or not _SUBJECT.fullmatch(value)
        or "" in value.split(".")
        or any(">" in token and token != ">" for token in value.split("."))
    ):
        raise ConfigurationError(
            f"{option} must be a NATS subject such as orders.new, not {value!r}"
        )
    return value


def _path(option: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{option} must be a file path, not {value!r}")
    return os.path.abspath(os.path.expanduser(value))


def _text(option: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{option} must be a non-empty string, not {value!r}")
    return value


def _storage(option: str, value: object) -> str:
    return checks.choice(option, value, ("file", "memory"))


def _reconnects(option: str, value: object) -> int:
    return checks.count(option, value, minimum=-1)


def _wait(option: str, value: object) -> float:
    return checks.seconds(option, value, maximum=60)


@dataclass(frozen=True)
class Settings:
    """Every argument of ``JetStreamQueue``, checked. See its docstring for the meaning."""

    stream: str
    subject: str
    servers: tuple[str, ...]
    consumer: str
    ack_wait: float
    max_messages: int
    wait_time: float
    max_attempts: int
    retry_delay: float
    max_retry_delay: float
    handler_slots: int
    max_ack_pending: int
    dead_letter_stream: str
    dead_letter_subject: str
    declare: bool
    heartbeat: bool
    storage: str
    tls: bool
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    tls_hostname: str | None
    creds: str | None
    nkey_seed: str | None
    token: str | None
    token_file: str | None
    name: str | None
    connect_timeout: float
    request_timeout: float
    reconnect_wait: float
    max_reconnect_attempts: int

    @classmethod
    def build(
        cls,
        stream: object,
        subject: object = None,
        *,
        servers: object = DEFAULT_SERVER,
        consumer: object = None,
        ack_wait: object = 30.0,
        max_messages: object = 10,
        wait_time: object = 2.0,
        max_attempts: object = 5,
        retry_delay: object = 1.0,
        max_retry_delay: object = 300.0,
        handler_slots: object = 32,
        max_ack_pending: object = None,
        dead_letter_stream: object = None,
        dead_letter_subject: object = None,
        declare: object = True,
        heartbeat: object = True,
        storage: object = "file",
        tls: object = False,
        tls_ca: object = None,
        tls_cert: object = None,
        tls_key: object = None,
        tls_hostname: object = None,
        creds: object = None,
        nkey_seed: object = None,
        token: object = None,
        token_file: object = None,
        name: object = None,
        connect_timeout: object = 5.0,
        request_timeout: object = 5.0,
        reconnect_wait: object = 1.0,
        max_reconnect_attempts: object = -1,
    ) -> Settings:
        stream_name = _name("stream", stream)
        dead_stream = (
            f"{stream_name}_DEAD"
            if dead_letter_stream is None
            else _name("dead_letter_stream", dead_letter_stream)
        )
        max_messages = checks.count("max_messages", max_messages, maximum=10_000)
        slots = checks.count("handler_slots", handler_slots)
        retry = checks.seconds("retry_delay", retry_delay)
        max_retry = checks.seconds("max_retry_delay", max_retry_delay)
        if max_retry < retry:
            raise ConfigurationError(
                f"max_retry_delay ({max_retry_delay!r}) must be >= retry_delay ({retry_delay!r})"
            )
        settings = cls(
            stream=stream_name,
            subject=stream_name if subject is None else _subject("subject", subject),
            servers=_servers(servers),
            consumer=f"{stream_name}_workers" if consumer is None else _name("consumer", consumer),
            ack_wait=checks.seconds("ack_wait", ack_wait, positive=True, maximum=12 * 3600),
            max_messages=max_messages,
            wait_time=checks.seconds("wait_time", wait_time, maximum=60),
            max_attempts=checks.count("max_attempts", max_attempts),
            retry_delay=retry,
            max_retry_delay=max_retry,
            handler_slots=slots,
            max_ack_pending=(
                slots * max_messages
                if max_ack_pending is None
                else checks.count("max_ack_pending", max_ack_pending)
            ),
            dead_letter_stream=dead_stream,
            dead_letter_subject=(
                dead_stream
                if dead_letter_subject is None
                else _subject("dead_letter_subject", dead_letter_subject)
            ),
            declare=checks.flag("declare", declare),
            heartbeat=checks.flag("heartbeat", heartbeat),
            storage=_storage("storage", storage),
            tls=checks.flag("tls", tls),
            tls_ca=checks.optional(_path, "tls_ca", tls_ca),
            tls_cert=checks.optional(_path, "tls_cert", tls_cert),
            tls_key=checks.optional(_path, "tls_key", tls_key),
            tls_hostname=checks.optional(_text, "tls_hostname", tls_hostname),
            creds=checks.optional(_path, "creds", creds),
            nkey_seed=checks.optional(_path, "nkey_seed", nkey_seed),
            token=checks.optional(_text, "token", token),
            token_file=checks.optional(_path, "token_file", token_file),
            name=checks.optional(_text, "name", name),
            connect_timeout=checks.seconds("connect_timeout", connect_timeout, positive=True),
            request_timeout=checks.seconds("request_timeout", request_timeout, positive=True),
            reconnect_wait=checks.seconds("reconnect_wait", reconnect_wait),
            max_reconnect_attempts=_reconnects("max_reconnect_attempts", max_reconnect_attempts),
        )
        if settings.dead_letter_stream == settings.stream:
            raise ConfigurationError("dead_letter_stream must differ from stream")
        if settings.dead_letter_subject == settings.subject:
            raise ConfigurationError("dead_letter_subject must differ from subject")
        if settings.tls_key is not None and settings.tls_cert is None:
            raise ConfigurationError("tls_key needs tls_cert (a client certificate)")
        secrets = [settings.creds, settings.nkey_seed, settings.token or settings.token_file]
        if sum(secret is not None for secret in secrets) > 1:
            raise ConfigurationError("give one of creds, nkey_seed, token / token_file")
        if settings.token is not None and settings.token_file is not None:
            raise ConfigurationError("give token or token_file, not both")
        if any(s.startswith("tls://") for s in settings.servers):
            settings = replace(settings, tls=True)
        return settings

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments that build these settings again (pickling)."""
        values = asdict(self)
        values["servers"] = list(self.servers)
        return values

    def describe(self) -> str:
        """For ``repr`` and logs: servers without secrets, the stream and the consumer."""
        servers = ",".join(redact_server(s) for s in self.servers)
        return f"{servers} stream={self.stream} consumer={self.consumer}"

    def backoff(self, attempts: int) -> float:
        exponent = min(max(attempts - 1, 0), 64)
        return float(min(self.retry_delay * 2**exponent, self.max_retry_delay))

    def credentials(self) -> dict[str, Any]:
        """nats.connect() keywords for authentication, read now (files and environment)."""
        options: dict[str, Any] = {}
        creds = self.creds or _env_path(CREDS_ENV)
        nkey = self.nkey_seed or _env_path(NKEY_ENV)
        token = self.token
        if token is None and self.token_file is not None:
            token = _read_token(self.token_file)
        in_url = any("@" in server.split("://", 1)[-1] for server in self.servers)
        if creds is None and nkey is None and token is None and not in_url:
            token = os.environ.get(TOKEN_ENV) or None
        if creds is not None:
            options["user_credentials"] = creds
        elif nkey is not None:
            options["nkeys_seed"] = nkey
        elif token is not None:
            options["token"] = token
        return options

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert is not None:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the TLS files: {exc}") from None
        return context


def _servers(value: object) -> tuple[str, ...]:
    items: Sequence[object]
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)) and value:
        items = value
    else:
        raise ConfigurationError(f"servers must be a URL or a list of URLs, not {value!r}")
    servers = []
    for item in items:
        if not isinstance(item, str) or "://" not in item:
            shown = redact_server(item) if isinstance(item, str) else repr(item)
            raise ConfigurationError(f"servers must be nats://HOST:PORT URLs, not {shown}")
        scheme = item.split("://", 1)[0].lower()
        if scheme not in ("nats", "tls", "ws", "wss"):
            raise ConfigurationError(
                f"servers must be nats://HOST:PORT URLs, not {redact_server(item)!r}"
            )
        servers.append(item)
    return tuple(servers)


def redact_server(url: str) -> str:
    """A server URL with its user info masked: ``nats://ann:***@h``, ``nats://***@h`` (a token)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}://{masked}@{host}"


def _env_path(variable: str) -> str | None:
    value = os.environ.get(variable)
    return _path(variable, value) if value else None


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read token_file {path!r}: {exc.strerror}") from None
    if not token:
        raise ConfigurationError(f"token_file {path!r} is empty")
    return token


_OPTIONS: OptionTable = {
    "stream": ("stream", _name),
    "subject": ("subject", _subject),
    "consumer": ("consumer", _name),
    "ack_wait": ("ack_wait", checks.seconds),
    "visibility_timeout": ("ack_wait", checks.seconds),
    "max_messages": ("max_messages", checks.count),
    "wait": ("wait_time", _wait),
    "wait_time": ("wait_time", _wait),
    "max_attempts": ("max_attempts", checks.count),
    "retry_delay": ("retry_delay", checks.seconds),
    "max_retry_delay": ("max_retry_delay", checks.seconds),
    "handler_slots": ("handler_slots", checks.count),
    "max_ack_pending": ("max_ack_pending", checks.count),
    "dead_letter_stream": ("dead_letter_stream", _name),
    "dead_letter_subject": ("dead_letter_subject", _subject),
    "declare": ("declare", checks.flag),
    "heartbeat": ("heartbeat", checks.flag),
    "storage": ("storage", _storage),
    "tls": ("tls", checks.flag),
    "tls_ca": ("tls_ca", _path),
    "tls_cert": ("tls_cert", _path),
    "tls_key": ("tls_key", _path),
    "tls_hostname": ("tls_hostname", _text),
    "creds": ("creds", _path),
    "nkey_seed": ("nkey_seed", _path),
    "token_file": ("token_file", _path),
    "name": ("name", _text),
    "connect_timeout": ("connect_timeout", checks.seconds),
    "request_timeout": ("request_timeout", checks.seconds),
    "reconnect_wait": ("reconnect_wait", checks.seconds),
    "max_reconnect_attempts": ("max_reconnect_attempts", _reconnects),
}


def parse_url(url: str) -> Settings:
    """Settings from ``nats://[user:password@|token@]HOST:PORT[,HOST:PORT]?stream=NAME&...``.

    ``nats+tls://`` turns TLS on. A token may also come from ``token_file=`` or the
    ``NATS_TOKEN`` environment variable; never put one in the query.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"not a nats:// URL: {url!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"a JetStream queue URL starts with nats:// or nats+tls://, not {scheme}://"
        )
    netloc = rest.split("?", 1)[0].split("/", 1)[0]
    path = rest.split("?", 1)[0][len(netloc) :]
    if path not in ("", "/"):
        raise ConfigurationError(
            f"a nats:// URL has no path (give the stream as ?stream=NAME): {_safe(url)!r}"
        )
    userinfo, at, hosts = netloc.rpartition("@")
    prefix = f"{unquote(userinfo)}@" if at else ""
    host_list = [h for h in hosts.split(",") if h] or ["127.0.0.1:4222"]
    servers = [f"nats://{prefix}{host if ':' in host else host + ':4222'}" for host in host_list]
    kwargs = parse_query(
        f"nats://{hosts}?" + (url.split("?", 1)[1] if "?" in url else ""), _OPTIONS
    )
    if "stream" not in kwargs:
        raise ConfigurationError(f"a nats:// URL needs ?stream=NAME: {_safe(url)!r}")
    if scheme == "nats+tls":
        if kwargs.get("tls") is False:
            raise ConfigurationError("nats+tls:// and tls=false contradict each other")
        kwargs["tls"] = True
    stream = kwargs.pop("stream")
    return Settings.build(stream, servers=servers, **kwargs)


def _safe(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return redact_server(f"{scheme}://{rest}")
