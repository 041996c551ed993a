"""The package's SQL files, the named statements they hold, and the one way a statement is
adapted before it runs.

A file of statements separates them with `-- name: <name>` lines; PostgreSQL's files
(sql/queries.sql, sql/access.sql) and DuckDB's (sql/inventory.sql) are read the same way. A
statement is adapted in two ways only, both here: a line ending in `-- with: feature` is kept
only where the feature is on, one ending in `-- without: feature` only where it is off
(`for_features`, the platform's layouts); and a `{name}` is replaced by a fragment of SQL
that the code composes, never by a value (`filled`, DuckDB's relations over report files).
Values are always bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources

_NAME_LINE = re.compile(r"^-- name: (\w+)\n", flags=re.MULTILINE)


def read(path: str) -> str:
    """The text of `sql/{path}` in the package."""
    return resources.files("storage_calc").joinpath(f"sql/{path}").read_text("utf-8")


def named_statements(*paths: str) -> dict[str, str]:
    """The statements of the files at `paths`, by name; a name given twice is an error."""
    statements: dict[str, str] = {}
    for path in paths:
        blocks = _NAME_LINE.split(read(path))[1:]
        for name, body in zip(blocks[::2], blocks[1::2], strict=True):
            if name in statements:
                raise ValueError(f"statement {name} is named twice (second time in {path})")
            statements[name] = body.strip()
    return statements


_FEATURE_LINE = re.compile(r"\s*-- (with|without): (\w+)$")
_FRAGMENT = re.compile(r"\{(\w+)\}")


def for_features(statement: str, has: Callable[[str], bool] | None) -> str:
    """`statement` with its `-- with:` and `-- without:` lines kept where `has(feature)` says
    so; `has` None: a statement that must have no such line (ValueError otherwise)."""
    lines = []
    for line in statement.splitlines():
        match = _FEATURE_LINE.search(line)
        if match is None:
            lines.append(line)
        elif has is None:
            raise ValueError(f"the statement depends on {match[2]}: say whether it is on")
        elif has(match[2]) == (match[1] == "with"):
            lines.append(line[: match.start()])
    return "\n".join(lines)


def filled(statement: str, **fragments: str | int) -> str:
    """`statement` with each `{name}` replaced by `fragments[name]`; a `{name}` without its
    fragment is a KeyError. Other braces (`{0,9}` in a regular expression, a struct literal)
    are left as they are."""
    return _FRAGMENT.sub(lambda match: str(fragments[match[1]]), statement)
