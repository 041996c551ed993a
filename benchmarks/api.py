"""Latency of `storage-calc serve` on the embedded PostgreSQL.

    python -m benchmarks.api [--requests 1000]

Starts an embedded PostgreSQL in a temporary directory, writes the figures of a customer with
a thousand assets in ten spaces, starts `storage-calc serve` as a process of its own, and times
sequential GETs of the customer, a space and an asset resource over one keep-alive connection.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from storage_calc import db, embedded
from storage_calc.model import Spaces
from tests.databases import write_customer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storage-calc-api-bench-") as tmp:
        url = embedded.start(Path(tmp) / "pg")
        ids = [f"2/{n % 10 + 1}/asset-{n}" for n in range(1000)]
        with db.connect(url) as conn:
            db.migrate(conn)
            db.register_assets(conn, ids)
            rows = [(i, int(i.split("/")[1]), 1000, 10, 0) for i in ids]
            layout = db.detect_layout(conn)
            write_customer(conn, layout, 2, Spaces(), None, rows, datetime.now(UTC), dry_run=False)
        port = free_port()
        env = {**os.environ, "STORAGE_CALC_DATABASE_URL": url}
        server = subprocess.Popen(
            [sys.executable, "-m", "storage_calc", "serve", "--port", str(port)], env=env
        )
        try:
            connection = wait_for(port)
            for path in ("/customers/2/storage", "/customers/2/spaces/5/storage",
                         "/customers/2/spaces/5/images/asset-4/storage"):  # fmt: skip
                times = []
                for _ in range(args.requests):
                    began = time.perf_counter()
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    times.append((time.perf_counter() - began) * 1000)
                    assert response.status == 200, response.status
                times.sort()
                print(
                    f"{path:<48} median {statistics.median(times):5.2f} ms   "
                    f"p95 {times[int(len(times) * 0.95)]:5.2f} ms   ({args.requests} requests)"
                )
        finally:
            server.terminate()
            server.wait(10)
            embedded.stop(Path(tmp) / "pg")


def wait_for(port: int) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return connection
        except OSError:
            time.sleep(0.1)
    raise SystemExit("storage-calc serve never answered")


if __name__ == "__main__":
    main()
