"""The README and --help say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from storage_calc.cli import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found += commands(command, path + " ")
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    for path, command in commands(cli):
        assert command.help, path
        assert f"storage-calc {path}" in README, path
        result = CliRunner().invoke(cli, [*path.split(), "--help"])
        assert result.exit_code == 0 and "Usage:" in result.stdout, path


def test_only_the_scope_and_dry_run_options_have_no_variable_and_help_says_so() -> None:
    command_line_only = set()
    for path, command in commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option) or not param.expose_value:
                continue  # --help and --version
            if param.envvar is None:
                assert (param.help or "").endswith("[command line only]"), (path, param.name)
                command_line_only.add(param.opts[0])
            else:
                assert param.show_envvar, (path, param.name)
    assert command_line_only == {
        "--customer", "--space", "--asset", "--shard", "--shards", "--dry-run",
        "--no-auth", "--admin", "--month", "--from", "--to",
    }  # fmt: skip


def blocks(text: str) -> list[str]:
    """The README's table rows, list items and paragraphs, each a place that can say which
    options a command takes."""
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.startswith("|"):
            found += paragraph.splitlines()
        else:
            found += re.split(r"\n(?=- )", paragraph)
    return found


def mentions(text: str, word: str) -> bool:
    """`word` in `text`, and not as the start of a longer word (`--shard` in `--shards`)."""
    return re.search(rf"{re.escape(word)}(?![\w-])", text) is not None


def test_every_option_is_in_the_configuration_table_or_beside_its_command() -> None:
    # The configuration table documents once the options that many commands share.
    configuration = set(re.findall(r"^\| `(--[\w-]+)` \|", README, re.MULTILINE))
    missing = []
    for path, command in [("", cli), *commands(cli)]:
        name = f"storage-calc {path}".strip()
        beside = [b for b in blocks(README) if mentions(b, name)]
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            for option in [*param.opts, *param.secondary_opts]:
                if not option.startswith("--") or option == "--help" or option in configuration:
                    continue
                if not any(mentions(b, option) for b in beside):
                    missing.append(f"{name} {option}")
    assert not missing, "options not in the README: " + ", ".join(missing)


def test_the_ci_script_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"\n{ci}\n" in README


def test_the_readme_opens_with_the_demo() -> None:
    assert "storage-calc demo" in README[:1200]


def test_every_test_named_in_the_reliability_table_exists() -> None:
    table = (ROOT / "docs" / "reliability.md").read_text()
    names = re.findall(r"`(\S+\.py)?::(test_\w+)`", table)
    assert len(names) > 40
    current = None
    for path, name in names:
        current = path or current
        assert current is not None
        source = (ROOT / "tests" / current).read_text()
        assert f"def {name}(" in source, f"{current}::{name}"
