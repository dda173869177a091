"""A webhook receiver on 127.0.0.1 that checks signatures, and can fail its first requests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from smtpgate.audit.alerts import SIGNATURE_HEADER, verify


class Receiver:
    def __init__(self, secret: bytes, *, fail_first: int = 0, failure_status: int = 500) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.failure_status = failure_status
        self.attempts: list[dict[str, Any]] = []   # every request, answered or not
        self.delivered: list[dict[str, Any]] = []  # the bodies of requests answered 200
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                valid = verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, ""))
                receiver.attempts.append({"valid": valid, "headers": dict(self.headers), "body": body})
                if len(receiver.attempts) <= receiver.fail_first:
                    self.send_response(receiver.failure_status)
                    self.end_headers()
                    return
                self.send_response(200 if valid else 401)
                self.end_headers()
                if valid:
                    receiver.delivered.append(json.loads(body))
                    receiver.arrived.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/smtpgate"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
