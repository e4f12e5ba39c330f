"""A slow, failing SQS: an HTTP proxy before moto that answers 503, throttles, and drops
connections before or after forwarding (the answer lost: SQS did it, the client retries)."""

from __future__ import annotations

import http.client
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

FAULTS = ("503", "throttle", "drop_before", "drop_after", "slow")


class FaultyProxy:
    def __init__(self, upstream: str, rate: float = 0.15, seed: int = 17) -> None:
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self.requests = 0
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy.pick()
                if fault == "drop_before":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("503", "throttle"):
                    status, code = (
                        (503, "ServiceUnavailable")
                        if fault == "503"
                        else (400, "ThrottlingException")
                    )
                    self.reply(status, json.dumps({"__type": code, "message": fault}).encode())
                    return
                if fault == "slow":
                    threading.Event().wait(1.5)
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    upstream.request("POST", self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                finally:
                    upstream.close()
                if fault == "drop_after":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.reply(response.status, payload, response.getheader("Content-Type"))

            def reply(self, status: int, payload: bytes, content_type: str | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type or "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def pick(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.random.random() >= self.rate:
                return None
            fault = self.random.choice(FAULTS)
            self.injected[fault] += 1
            return fault

    def __enter__(self) -> FaultyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
