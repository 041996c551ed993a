"""Shards that balance: which spaces of which customers each shard of a run computes. Pure.

The unit of work is a space of a customer, weighed by its registered assets; a space is never
split between shards (a shard commits whole spaces). A space heavier than the average of what
is left gets a shard of its own, heaviest first, while more than one shard is left; the other
spaces, in (customer, space) order, fill the remaining shards in contiguous runs of about equal
weight, each space going to the shard where the middle of its weight falls. Every shard that
computes the same registry weights draws the same plan.

Whatever no space of the plan covers (spaces found only on S3 or only in "CustomerStorage",
customers without registered assets, keys directly under a customer) belongs to the customer's
home shard, `customer % count`, which also lists the customer's prefix to find them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from storage_calc.model import Shard, Spaces

Unit = tuple[int, int]  # (customer, space)


def assign(weights: Mapping[Unit, int], count: int) -> dict[Unit, int]:
    """The shard of every weighed space, for `count` shards."""
    left = dict(weights)
    shards = list(range(count))
    plan: dict[Unit, int] = {}
    while len(shards) > 1 and left:
        heaviest = min(left, key=lambda unit: (-left[unit], unit))
        if left[heaviest] * len(shards) <= sum(left.values()):
            break
        plan[heaviest] = shards.pop()
        del left[heaviest]
    total = sum(left.values())
    passed = 0
    for unit in sorted(left):
        # The middle of the unit's weight, in halves so that the arithmetic stays exact.
        middle = 2 * passed + left[unit]
        plan[unit] = shards[min(middle * len(shards) // (2 * total), len(shards) - 1)]
        passed += left[unit]
    return plan


def home(customer: int, count: int) -> int:
    return customer % count


def shard_spaces(
    weights: Mapping[Unit, int], customers: Iterable[int], shard: Shard
) -> dict[int, Spaces]:
    """The customers `shard` computes, each with the spaces it computes of them."""
    plan = assign(weights, shard.count)
    planned: dict[int, dict[int, int]] = {}
    for (customer, space), index in plan.items():
        planned.setdefault(customer, {})[space] = index
    mine: dict[int, Spaces] = {}
    for customer in sorted(set(customers) | set(planned)):
        spaces = planned.get(customer, {})
        if home(customer, shard.count) == shard.index:
            others = frozenset(s for s, index in spaces.items() if index != shard.index)
            mine[customer] = Spaces(excluded=others)
        else:
            own = frozenset(s for s, index in spaces.items() if index == shard.index)
            if own:
                mine[customer] = Spaces(only=own)
    return mine
