"""The embedded server's lifetime."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from storage_calc import db, embedded
from storage_calc.errors import DatabaseError


def test_a_stopped_server_accepts_no_connection_and_its_directory_can_go(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    url = embedded.start(data_dir)
    db.connect(url).close()

    embedded.stop(data_dir)

    with pytest.raises(DatabaseError, match="cannot connect to the database"):
        db.connect(url)
    shutil.rmtree(data_dir)
    assert not data_dir.exists()
