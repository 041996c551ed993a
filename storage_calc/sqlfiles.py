"""The package's SQL files, and the named statements they hold.

A file of statements separates them with `-- name: <name>` lines; PostgreSQL's files
(sql/queries.sql, sql/access.sql) and DuckDB's (sql/inventory.sql) are read the same way.
"""

from __future__ import annotations

import re
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
