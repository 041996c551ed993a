"""The platform's layout, read from what the database's catalog shows. Pure: no I/O.

LAYOUTS.md lists the three layouts met in the field; they are told apart feature by feature,
never by a version number, and a combination the job cannot write is refused with one line
naming what was found.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from storage_calc.errors import ConfigError
from storage_calc.model import Layout

ADJUNCT_TOTALS = ("NumberOfStoredAdjuncts", "TotalSizeOfStoredAdjuncts")
IS_NULL = '("Space" IS NULL)'
IS_NOT_NULL = '("Space" IS NOT NULL)'


@dataclass(frozen=True)
class UniqueKey:
    """A unique index (or primary key) of a platform table: its columns, sorted, and the
    predicate of a partial index as PostgreSQL prints it."""

    table: str
    name: str
    columns: tuple[str, ...]
    predicate: str | None = None

    def __str__(self) -> str:
        columns = ", ".join(f'"{c}"' for c in self.columns)
        where = f" WHERE {self.predicate}" if self.predicate else ""
        return f"{self.name} ({columns}){where}"


def read_layout(columns: Mapping[tuple[str, str], bool], keys: Iterable[UniqueKey]) -> Layout:
    """The layout of the platform's tables, from their columns ((table, column) -> nullable)
    and unique keys; a ConfigError naming what was found if the job cannot write it."""
    keys = tuple(keys)
    if not _has_key(keys, "ImageStorage", ("Customer", "Id", "Space"), (None,)):
        raise ConfigError(
            f'"ImageStorage" has no unique key on ("Id", "Customer", "Space"); '
            f"found {_found(keys, 'ImageStorage')}"
        )
    at_null = columns.get(("CustomerStorage", "Space"), False)
    if at_null:
        ok = _has_key(keys, "CustomerStorage", ("Customer",), (IS_NULL,)) and _has_key(
            keys, "CustomerStorage", ("Customer", "Space"), (None, IS_NOT_NULL)
        )
        wanted = (
            f'unique keys on ("Customer") WHERE {IS_NULL} and on ("Customer", "Space") '
            f"WHERE {IS_NOT_NULL}"
        )
    else:
        ok = _has_key(keys, "CustomerStorage", ("Customer", "Space"), (None,))
        wanted = 'a unique key on ("Customer", "Space")'
    if not ok:
        nullable = "nullable" if at_null else "NOT NULL"
        raise ConfigError(
            f'"CustomerStorage"."Space" is {nullable}, which needs {wanted}; '
            f"found {_found(keys, 'CustomerStorage')}"
        )
    asset_adjuncts = ("ImageStorage", "AdjunctSize") in columns
    totals = [name for name in ADJUNCT_TOTALS if ("CustomerStorage", name) in columns]
    if len(totals) == 1:
        raise ConfigError(f'"CustomerStorage" has "{totals[0]}" without its companion column')
    space_adjuncts = len(totals) == 2
    if space_adjuncts and not asset_adjuncts:
        raise ConfigError(
            '"CustomerStorage" has adjunct totals but "ImageStorage" has no "AdjunctSize" '
            "to sum them from"
        )
    if space_adjuncts and not {("Adjuncts", "AssetId"), ("Adjuncts", "Origin")} <= set(columns):
        raise ConfigError(
            '"CustomerStorage" has adjunct totals but there is no "Adjuncts" table with '
            '"AssetId" and "Origin" to count the hosted adjuncts from'
        )
    return Layout(at_null, asset_adjuncts, space_adjuncts)


def _has_key(
    keys: tuple[UniqueKey, ...],
    table: str,
    columns: tuple[str, ...],
    predicates: tuple[str | None, ...],
) -> bool:
    return any(
        k.table == table and k.columns == columns and k.predicate in predicates for k in keys
    )


def _found(keys: tuple[UniqueKey, ...], table: str) -> str:
    return ", ".join(str(k) for k in keys if k.table == table) or "no unique key"
