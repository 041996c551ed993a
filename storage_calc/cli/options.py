"""What the commands share: the options (settings of the installation also read from
STORAGE_CALC_<NAME>, the choice of what a command covers only from its command line), the
parameter types, the settings they make, and the mapping of library errors to one line and an
exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import click

from storage_calc import db, embedded
from storage_calc.config import (
    DEFAULT_API_BASE_URL,
    DEFAULT_MAX_INVENTORY_AGE,
    DEFAULT_QUOTA_MARGIN,
    DEFAULT_STORAGE_BUCKET,
    DEFAULT_THUMBS_BUCKET,
    DEFAULT_WORKERS,
    SOURCES,
    Settings,
    parse_age,
    parse_base_url,
    parse_destination,
    parse_location,
    parse_margin,
    parse_shard,
)
from storage_calc.errors import ConfigError, StorageCalcError
from storage_calc.keys import INT4_MAX, parse_asset_id
from storage_calc.model import AssetKey, LocationKind

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75

CUSTOMER = click.IntRange(0, INT4_MAX)
# Space 0 is accepted here; it is a space only where the database's layout has a stub space.
SPACE = click.IntRange(0, INT4_MAX)


class Failure(click.ClickException):
    """One `Error: ...` line on stderr and the contract's exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # shadows click's ClassVar


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Library errors become one line on stderr: configuration errors exit 2, the rest 1."""
    try:
        yield
    except ConfigError as exc:
        raise Failure(str(exc), EXIT_USAGE) from exc
    except StorageCalcError as exc:
        raise Failure(str(exc)) from exc


class ParsedParam(click.ParamType[Any]):
    """A ParamType over one of the library's parsers, failing with exit 2 on a ConfigError."""

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def _parse_asset(text: str) -> AssetKey:
    key = parse_asset_id(text)
    if key is None:
        raise ConfigError(
            f"{text!r} is not an asset id: expected CUSTOMER/SPACE/ID, such as 2/5/my-asset"
        )
    return key


ASSET = ParsedParam("C/S/ID", _parse_asset)
SHARD = ParsedParam("I/N", parse_shard)


def option(*decls: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option that can also come from STORAGE_CALC_<NAME>, shown in --help."""
    name = max(decls, key=len).lstrip("-").split("/")[0].upper().replace("-", "_")
    return click.option(*decls, envvar=f"STORAGE_CALC_{name}", show_envvar=True, **kwargs)


def command_line_option(
    *decls: str, help: str, **kwargs: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A click option read from the command line only, and saying so in --help.

    For the options that choose what a command covers or make a run write nothing: a
    STORAGE_CALC_CUSTOMER or STORAGE_CALC_DRY_RUN left in cron's environment file would
    otherwise narrow or disable every run without a word on the command line.
    """
    return click.option(*decls, help=f"{help}  [command line only]", **kwargs)


def together(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The decorators applied in the order they are listed, as if stacked above a function."""

    def apply(f: Any) -> Any:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


database_option = option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL connection URL. Unset: an embedded PostgreSQL in a per-user data "
    "directory, started on demand.",
)
api_option = option(
    "--api-base-url",
    default=DEFAULT_API_BASE_URL,
    show_default=True,
    metavar="URL",
    type=ParsedParam("URL", parse_base_url),
    help="Base of the resources' @id and @context.",
)


def location_option(name: str, default: str, kind: LocationKind, what: str) -> Any:
    return option(
        name,
        default=default,
        show_default=True,
        metavar="BUCKET[/PREFIX/]",
        type=ParsedParam("BUCKET[/PREFIX/]", lambda text: parse_location(text, kind)),
        help=f"Where the {what} are.",
    )


s3_options = together(
    location_option("--storage-bucket", DEFAULT_STORAGE_BUCKET, LocationKind.ARTEFACT, "artefacts"),
    location_option("--thumbs-bucket", DEFAULT_THUMBS_BUCKET, LocationKind.THUMBNAIL, "thumbnails"),
    option(
        "--workers",
        default=DEFAULT_WORKERS,
        show_default=True,
        type=click.IntRange(1, 256),
        help="Listing requests in flight at once (key ranges of spaces, in every bucket).",
    ),
)
source_options = together(
    option(
        "--source",
        type=click.Choice(SOURCES),
        default="listing",
        show_default=True,
        help="Read the buckets' objects by listing them, or from their newest S3 Inventory "
        "reports (needs the inventory extra: pip install 'storage-calc[inventory]').",
    ),
    option(
        "--storage-inventory",
        metavar="S3_URL",
        type=ParsedParam("S3_URL", parse_destination),
        help="With --source inventory: the inventory destination of --storage-bucket, "
        "s3://BUCKET/PREFIX/SOURCE-BUCKET/CONFIG-ID/.",
    ),
    option(
        "--thumbs-inventory",
        metavar="S3_URL",
        type=ParsedParam("S3_URL", parse_destination),
        help="With --source inventory: the inventory destination of --thumbs-bucket.",
    ),
    option(
        "--billable",
        is_flag=True,
        help="Also compute what S3 bills beyond current versions (noncurrent versions, delete "
        "markers, unfinished uploads, minimum sizes): `storage-calc report billable`. With "
        "--source listing, versions are listed with ListObjectVersions; with an inventory, "
        "they are read from it (a report of all versions).",
    ),
    option(
        "--max-inventory-age",
        default="48h",
        show_default=True,
        metavar="AGE",
        type=ParsedParam("AGE", parse_age),
        help="With --source inventory: refuse a report created longer ago than this "
        "(such as 48h or 7d); LastChecked is the report's creation time.",
    ),
)
shard_options = together(
    command_line_option(
        "--shard",
        type=SHARD,
        metavar="I/N",
        help="Only shard I of N: whole spaces, balanced by their registered assets.",
    ),
    command_line_option(
        "--shards",
        type=click.IntRange(1),
        metavar="N",
        help="Only shard JOB_COMPLETION_INDEX of N (Kubernetes Indexed Jobs).",
    ),
)


quota_option = option(
    "--quota-margin",
    default=str(DEFAULT_QUOTA_MARGIN),
    show_default=True,
    metavar="PERCENT",
    type=ParsedParam("PERCENT", parse_margin),
    help="Customers using at least this percentage of a limit of their storage policy are "
    "reported.",
)
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    envvar="STORAGE_CALC_JSON",
    show_envvar=True,
    help="Print JSON for scripts, with exact bytes.",
)
customer_filter = command_line_option("--customer", type=CUSTOMER, help="Only this customer.")


def settings_from(params: dict[str, Any]) -> Settings:
    """The command's settings: the one place that reads the options they come from, and that
    starts the embedded PostgreSQL when no database URL is configured."""
    locations = tuple(params[k] for k in ("storage_bucket", "thumbs_bucket") if k in params)
    with reported():
        url = params.get("database_url") or embedded.start()
    settings = Settings(
        database_url=url,
        api_base_url=params.get("api_base_url", DEFAULT_API_BASE_URL),
        workers=params.get("workers", DEFAULT_WORKERS),
        quota_margin=params.get("quota_margin", DEFAULT_QUOTA_MARGIN),
        source=params.get("source", "listing"),
        storage_inventory=params.get("storage_inventory"),
        thumbs_inventory=params.get("thumbs_inventory"),
        max_inventory_age=params.get("max_inventory_age", DEFAULT_MAX_INVENTORY_AGE),
        billable=params.get("billable", False),
    )
    return replace(settings, locations=locations) if locations else settings


@contextlib.contextmanager
def connected(params: dict[str, Any]) -> Iterator[db.Connection]:
    """A connection to the configured database; library errors in the block become one line."""
    with reported(), db.connect(settings_from(params).database_url) as conn:
        yield conn
