"""An HTTP proxy that holds every request for a fixed time before forwarding it to an S3
endpoint: loopback with the round trip of a distant region.

Requests are forwarded as they came (method, path, query, headers with the client's Host, body),
so that a signature made for the client's endpoint still verifies. Each client connection is
served by a thread of its own with a keep-alive connection to the server, so hundreds of
requests can wait at once, as they would on the wire.
"""

from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Headers about one connection, not the message: each side of the proxy has its own.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int
    delay: float


class DelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the client
    # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK, 40 ms a response.
    disable_nagle_algorithm = True
    server: DelayServer

    def setup(self) -> None:
        super().setup()
        self.upstream: http.client.HTTPConnection | None = None

    def finish(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        super().finish()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def handle_any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.server.upstream.delay)
        try:
            response, data = self.forward(body)
        except (OSError, http.client.HTTPException):
            # a keep-alive connection the server closed meanwhile: once more on a new one
            self.drop_upstream()
            response, data = self.forward(body)
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        # a HEAD answer has no body but announces the size of the object
        length = response.getheader("Content-Length") if self.command == "HEAD" else len(data)
        self.send_header("Content-Length", str(length or 0))
        self.end_headers()
        self.wfile.write(data)
        if response.will_close:
            self.drop_upstream()

    def forward(self, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
        if self.upstream is None:
            target = self.server.upstream
            self.upstream = http.client.HTTPConnection(target.host, target.port, timeout=300)
        self.upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in HOP_BY_HOP:
                self.upstream.putheader(name, value)
        self.upstream.endheaders(body)
        response = self.upstream.getresponse()
        return response, response.read()

    def drop_upstream(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
            self.upstream = None

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any


class DelayServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 would make a burst of new connections wait for SYN retries.
    request_queue_size = 1024

    def __init__(self, upstream: Upstream) -> None:
        super().__init__(("127.0.0.1", 0), DelayHandler)
        self.upstream = upstream


@contextlib.contextmanager
def delay_proxy(endpoint: str, delay: float) -> Iterator[str]:
    """The URL of a proxy to `endpoint` that adds `delay` seconds before each request, for the
    duration of the block."""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None
    server = DelayServer(Upstream(parts.hostname, parts.port, delay))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
