"""The code passes the checks a reviewer would run: ruff's linter and formatter."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.seaweedfs import installed

ROOT = Path(__file__).parent.parent


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    command = installed("ruff")
    assert command, "ruff comes with the test extra"
    return subprocess.run([command, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing_to_report() -> None:
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted_as_ruff_formats_it() -> None:
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
