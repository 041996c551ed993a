"""Histories of figures over time with controlled times, for the billing tests: steps and
commits written straight into storage_calc's tables, or the commits of real runs moved to
chosen times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]


def at(text: str) -> datetime:
    """`2026-11-03 02:13` in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def commit(
    conn: Conn,
    customer: int,
    when: datetime,
    steps: dict[int | None, dict[str, Any]] | None = None,
    only: Sequence[int] | None = None,
) -> int:
    """A commit of `customer` at `when` (of `only` these spaces, or all) with a step for each
    space of `steps`: {space: {"artefacts": 100, "thumbnails": 5, ...}}, figures not given 0
    (billable ones None)."""
    (commit_id,) = conn.execute(
        "INSERT INTO storage_calc.figure_commits (customer, committed_at, only_spaces)"
        " VALUES (%s, %s, %s) RETURNING id",
        (customer, when, None if only is None else list(only)),
    ).fetchone()  # type: ignore[misc]
    for space, figures in (steps or {}).items():
        space_id = space_number(conn, customer, space)
        by_class = figures.get("by_storage_class")
        conn.execute(
            "INSERT INTO storage_calc.space_figures (space_id, valid_from, commit_id, images,"
            " artefact_bytes, thumbnail_bytes, adjunct_bytes, current_bytes, by_storage_class,"
            " noncurrent_bytes, incomplete_upload_bytes, billed_bytes)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                space_id, when, commit_id, figures.get("images", 0),
                figures.get("artefacts", 0), figures.get("thumbnails", 0),
                figures.get("adjuncts"), figures.get("current"),
                None if by_class is None else Jsonb(by_class), figures.get("noncurrent"),
                figures.get("incomplete_uploads"), figures.get("billed"),
            ),
        )  # fmt: skip
    return commit_id  # type: ignore[no-any-return]


def space_number(conn: Conn, customer: int, space: int | None) -> int:
    row = conn.execute(
        "SELECT id FROM storage_calc.figure_spaces"
        " WHERE customer = %s AND coalesce(space, -1) = coalesce(%s::int, -1)",
        (customer, space),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO storage_calc.figure_spaces (customer, space) VALUES (%s, %s) RETURNING id",
            (customer, space),
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def retime(conn: Conn, times: Sequence[datetime]) -> None:
    """Moves the commits made so far, in the order they were made, to `times`, their steps
    with them: real runs at chosen times."""
    ids = [row[0] for row in conn.execute("SELECT id FROM storage_calc.figure_commits ORDER BY id")]
    assert len(ids) == len(times), f"{len(ids)} commits, {len(times)} times"
    for commit_id, when in zip(ids, times, strict=True):
        conn.execute(
            "UPDATE storage_calc.figure_commits SET committed_at = %s WHERE id = %s",
            (when, commit_id),
        )
        conn.execute(
            "UPDATE storage_calc.space_figures SET valid_from = %s WHERE commit_id = %s",
            (when, commit_id),
        )


def steps(conn: Conn) -> list[tuple[Any, ...]]:
    """Every step: (commit number from 1, customer, space, images, artefacts, thumbnails)."""
    return conn.execute(
        "SELECT (SELECT count(*) FROM storage_calc.figure_commits c WHERE c.id <= f.commit_id),"
        " s.customer, s.space, f.images,"
        " f.artefact_bytes, f.thumbnail_bytes FROM storage_calc.space_figures f"
        " JOIN storage_calc.figure_spaces s ON s.id = f.space_id"
        " ORDER BY f.commit_id, s.customer, s.space NULLS FIRST"
    ).fetchall()
