"""One small HTTP server for a consumer: ``/metrics``, ``/livez`` and ``/readyz`` on one port.

A stdlib ``ThreadingHTTPServer`` in a daemon thread, bound to 127.0.0.1 unless told
otherwise (an exporter that listens on every interface unasked is a leak). ``/livez`` and
``/readyz`` answer 200, or 503 with a one-line JSON reason; ``/metrics`` is the Prometheus
text format (with prometheus-client installed).

>>> from queue_consumer import Consumer, MemoryQueue
>>> consumer = Consumer(MemoryQueue(), lambda messages: None, max_workers=1, max_handlers=1)
>>> with serve(consumer, port=0) as server:
...     server.port > 0
True
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .._checks import count
from ..errors import ConfigurationError
from .health import HealthHooks

__all__ = ["ObservabilityServer", "serve"]

log = logging.getLogger("queue_consumer.observability.server")

_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


class ObservabilityServer:
    """The running server; ``close()`` (or leaving ``with``) stops it."""

    def __init__(self, httpd: ThreadingHTTPServer, health: HealthHooks, metrics: Any) -> None:
        self._httpd = httpd
        self.health = health
        self.metrics = metrics
        host, port = httpd.server_address[:2]
        self.host, self.port = str(host), int(port)
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="queue_consumer-observability",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ObservabilityServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(
    consumer: Any,
    port: int = 9191,
    host: str = "127.0.0.1",
    *,
    metrics: Any = None,
    health: HealthHooks | None = None,
) -> ObservabilityServer:
    """Serve ``consumer``'s metrics and probes on ``host:port`` (0: any free port).

    ``metrics``: the ``PrometheusHooks`` passed to the consumer (for the histograms and
    errors by type); None makes one that exports what ``statistics()`` tells, if
    prometheus-client is installed; False serves no ``/metrics``. ``health``: the
    ``HealthHooks`` passed to the consumer (for the health file), else a default one.
    """
    port = count("port", port, minimum=0, maximum=65535)
    if health is None:
        from .health import _MONITORS, _MONITORS_LOCK

        with _MONITORS_LOCK:
            health = _MONITORS.get(consumer)
    health = (health or HealthHooks()).bind(consumer)
    if metrics is None:
        try:
            from .prometheus import PrometheusHooks
        except ModuleNotFoundError:
            log.info("prometheus-client is not installed: no /metrics")
            metrics = False
        else:
            metrics = PrometheusHooks()
    if metrics is not False:
        metrics.bind(consumer, health)
    try:
        httpd = _Server((host, port), _Handler)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    httpd.health = health
    httpd.metrics = metrics or None
    server = ObservabilityServer(httpd, health, metrics or None)
    log.info("serving /metrics, /livez and /readyz on %s", server.url)
    return server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthHooks
    metrics: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if path == "/metrics" and self.server.metrics is not None:
                from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

                self._answer(
                    200, CONTENT_TYPE_LATEST, generate_latest(self.server.metrics.registry)
                )
            elif path in ("/livez", "/readyz"):
                health = self.server.health.check()
                ok = health.live if path == "/livez" else health.ready
                self._answer(200 if ok else 503, _JSON, health.to_json().encode() + b"\n")
            else:
                self._answer(404, _TEXT, b"not found: try /metrics, /livez or /readyz\n")
        except Exception:  # a probe must answer; the error goes to the log
            log.exception("observability endpoint %s failed", path)
            self._answer(500, _TEXT, b"internal error\n")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # every scrape would log a line
        pass
