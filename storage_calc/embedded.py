"""The embedded PostgreSQL used when no database URL is configured: a real server, run from
the binaries of the `pgserver` package in a per-user data directory."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType

from storage_calc.errors import DatabaseError


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/storage-calc/pgdata`, by default under `~/.local/share`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "storage-calc" / "pgdata"


def start(data_dir: Path | None = None) -> str:
    """Starts (or joins) the embedded server and returns its connection URL.

    The server listens on a Unix socket only and stops when the last process using it exits.
    """
    path = data_dir or default_data_dir()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(_pgserver().get_server(path, cleanup_mode="stop").get_uri())
    except Exception as exc:  # pgserver raises whatever its subprocesses and checks raise
        raise DatabaseError(f"cannot start the embedded PostgreSQL in {path}: {exc}") from exc


def stop(data_dir: Path) -> None:
    """Stops the server that `start(data_dir)` started, now rather than when this process exits,
    unless another process still uses it: a caller that removes the directory must stop the
    server first, or the server's own writes race the removal."""
    _pgserver().get_server(data_dir, cleanup_mode="stop").cleanup()


def _pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver only
        # needs a directory for its lock file and falls back to /tmp by itself.
        warnings.simplefilter("ignore")
        import pgserver  # here, not at the top: only runs without a database URL need it
    return pgserver
