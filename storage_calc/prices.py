"""`report billing --prices FILE`: what a GB-month costs, per storage class, read from a small
TOML file. No price is built in and nothing is fetched. Pure (the CLI reads the file).

    currency = "USD"
    places = 2                       # optional: the cost is rounded to this many places

    [classes.STANDARD]
    per_gb_month = "0.023"           # a string or a number, in `currency`
    figure = "current"               # the figure this class is charged on

`figure` is one of the billing figures: `current` charges the class's own current bytes (from
`--billable` runs, by storage class); `stored`, `artefacts`, `thumbnails`, `adjuncts`,
`noncurrent`, `incomplete_uploads` and `billed` charge that whole figure at the class's price,
as for a platform that runs without `--billable` (`stored`: the platform's own figures).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from storage_calc.billing import BYTE_FIGURES, Usage
from storage_calc.errors import ConfigError

KEYS = {"currency", "places", "classes"}
CLASS_KEYS = {"per_gb_month", "figure"}


@dataclass(frozen=True)
class ClassPrice:
    storage_class: str
    per_gb_month: Decimal
    figure: str


@dataclass(frozen=True)
class Prices:
    currency: str
    places: int
    classes: tuple[ClassPrice, ...]

    @property
    def by_class(self) -> bool:
        """Whether a class is charged on its own current bytes, which needs them by class."""
        return any(price.figure == "current" for price in self.classes)

    def cost(self, usage: Usage) -> Decimal:
        """What `usage` costs, from its exact GB-months, rounded to `places` (half up)."""
        total = Fraction(0)
        figures, classes = usage.exact_gb_months(), usage.exact_class_gb_months()
        for price in self.classes:
            if price.figure == "current":
                gb_months = classes.get(price.storage_class, Fraction(0))
            else:
                gb_months = figures.get(price.figure, Fraction(0))
            total += gb_months * Fraction(price.per_gb_month)
        return self.rounded(total)

    def rounded(self, value: Fraction | Decimal) -> Decimal:
        exact = Fraction(value)
        quantum = Decimal(1).scaleb(-self.places)
        return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
            quantum, rounding=ROUND_HALF_UP
        )


def parse_prices(text: str, name: str = "the prices file") -> Prices:
    """The prices of `text`; a ConfigError naming `name` and what is wrong otherwise."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name} is not TOML: {exc}") from None
    _no_unknown(data, KEYS, name)
    currency = data.get("currency")
    if not isinstance(currency, str) or not currency.strip():
        raise ConfigError(f'{name} needs a currency = "..." (such as "USD")')
    places = data.get("places", 2)
    if not isinstance(places, int) or isinstance(places, bool) or not 0 <= places <= 10:
        raise ConfigError(f"{name}: places must be a whole number from 0 to 10")
    classes = data.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ConfigError(
            f"{name} needs at least one [classes.NAME] table (such as [classes.STANDARD])"
        )
    return Prices(
        currency.strip(),
        places,
        tuple(_class_price(key, value, name) for key, value in classes.items()),
    )


def _class_price(storage_class: str, table: Any, name: str) -> ClassPrice:
    where = f"{name}: [classes.{storage_class}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with per_gb_month and figure")
    _no_unknown(table, CLASS_KEYS, where)
    figure = table.get("figure")
    if figure not in BYTE_FIGURES:
        raise ConfigError(f"{where}: figure must be one of {', '.join(BYTE_FIGURES)}")
    raw = table.get("per_gb_month")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ConfigError(f'{where} needs per_gb_month, a price such as "0.023"')
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise ConfigError(f"{where}: per_gb_month {raw!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise ConfigError(f"{where}: per_gb_month must be a price of 0 or more")
    return ClassPrice(storage_class, price, figure)


def _no_unknown(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )
