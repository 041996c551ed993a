"""An HTTP proxy in front of a real S3 endpoint that holds, fails or drops chosen requests.

Faults are injected on the wire, between the real client and the real server, so the code under
test runs exactly as in production: botocore signs, retries and parses as it always does.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Rule:
    """What to do with requests whose path and query contain `marker`."""

    marker: str
    status: int = 0
    code: str = ""
    body: bytes | None = None
    drop: bool = False
    times: int | None = None
    hold: threading.Event | None = None
    reached: threading.Event = field(default_factory=threading.Event)
    matched: int = 0

    def applies(self, path: str) -> bool:
        return self.marker in path and (self.times is None or self.matched < self.times)


class S3Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.rules: list[Rule] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rule = proxy.match(self.path)
                if rule is not None:
                    rule.reached.set()
                    if rule.hold is not None:
                        rule.hold.wait(timeout=120)
                    elif rule.drop:
                        self.close_connection = True
                        self.connection.close()
                        return
                    else:
                        return self.answer_error(rule)
                self.forward(body)

            def answer_error(self, rule: Rule) -> None:
                payload = f"<Error><Code>{rule.code}</Code><Message>{rule.code}</Message></Error>"
                data = payload.encode() if rule.body is None else rule.body
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def forward(self, body: bytes) -> None:
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    upstream.request(self.command, self.path, body, dict(self.headers))
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def match(self, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.applies(path):
                    rule.matched += 1
                    return rule
        return None

    def hold(self, marker: str) -> Rule:
        """Requests matching `marker` wait until `rule.hold.set()`; `rule.reached` tells when one
        arrived."""
        rule = Rule(marker, hold=threading.Event())
        self.rules.append(rule)
        return rule

    def fail(self, marker: str, status: int, code: str, times: int | None = None) -> Rule:
        rule = Rule(marker, status=status, code=code, times=times)
        self.rules.append(rule)
        return rule

    def answer(self, marker: str, body: bytes, times: int | None = None) -> Rule:
        """Answers matching requests with status 200 and `body` instead of the server's answer."""
        rule = Rule(marker, status=200, body=body, times=times)
        self.rules.append(rule)
        return rule

    def drop(self, marker: str, times: int | None = None) -> Rule:
        """Closes the connection of matching requests without answering (a reset)."""
        rule = Rule(marker, drop=True, times=times)
        self.rules.append(rule)
        return rule

    def release_all(self) -> None:
        for rule in self.rules:
            if rule.hold is not None:
                rule.hold.set()

    def close(self) -> None:
        self.release_all()
        self.server.shutdown()
        self.server.server_close()
