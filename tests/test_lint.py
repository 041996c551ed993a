"""The code passes the checks a reviewer would run: ruff's linter and formatter, and mypy."""

from __future__ import annotations

import subprocess
import sys
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


def test_mypy_finds_no_type_errors_in_the_package() -> None:
    # The packages to check and how strictly are in pyproject.toml's [tool.mypy].
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
