"""The wheel works where users install it: away from the repository, with its dependencies
from the package index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

# Builds the wheel and installs it, with its dependencies, from the package index.
pytestmark = pytest.mark.slow


def run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_in_a_clean_venv_runs_the_demo(
    tmp_path: Path, data_home: Path, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy without build/: setuptools packs what a stale build/lib holds, which would hide
    # files that package-data no longer takes.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", ".*_cache", ".hypothesis", "__pycache__"
        ),
    )
    run(sys.executable, "-m", "pip", "wheel", "-q", source, "--no-deps", "-w", tmp_path)
    (wheel,) = tmp_path.glob("storage_calc-*.whl")
    venv = tmp_path / "venv"
    # A venv without pip of its own, filled by this Python's pip (ensurepip would only copy pip
    # in first), compiling nothing ahead: the demo compiles what it imports.
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
        f"{wheel}[demo]")  # fmt: skip

    # Nothing of the repository is reachable: no PYTHONPATH, no settings, another directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_CALC_", "PYTHON"))}
    monkeypatch.chdir(tmp_path)
    assert "Usage: storage-calc" in run(venv / "bin" / "storage-calc", "--help", env=env)
    stdout = run(venv / "bin" / "storage-calc", "demo", env=env)
    customer, space, asset = json.loads("[" + stdout.replace("}\n{", "},{") + "]")
    assert customer["numberOfStoredImages"] == 20
    assert space["@id"] == "https://api.dlcs.example/customers/2/spaces/5/storage"
    assert (asset["size"], asset["thumbnailSize"]) == (4082121, 115874)
    assert (data_home / "storage-calc" / "pgdata" / "PG_VERSION").exists()
