"""Shards that balance: a plan by registered assets per space, every space in one shard."""

from __future__ import annotations

import random

import pytest

from storage_calc.model import Shard, Spaces
from storage_calc.shards import Unit, assign, home, shard_spaces


def loads(weights: dict[Unit, int], count: int) -> list[int]:
    totals = [0] * count
    for unit, index in assign(weights, count).items():
        totals[index] += weights[unit]
    return totals


def skewed(dominant_spaces: int, seed: int = 1) -> dict[Unit, int]:
    """One customer with 80 % of the assets over `dominant_spaces` spaces, 40 small ones."""
    rng = random.Random(seed)
    weights = {(c, s): rng.randint(1_000, 50_000) for c in range(2, 42) for s in range(1, 4)}
    rest = sum(weights.values())
    for space in range(1, dominant_spaces + 1):
        weights[(1, space)] = 4 * rest // dominant_spaces
    return weights


@pytest.mark.parametrize("count", [2, 4, 8, 16])
def test_no_shard_does_much_more_than_the_average_with_one_customer_holding_80_percent(
    count: int,
) -> None:
    weights = skewed(dominant_spaces=40)
    shares = loads(weights, count)
    assert max(shares) <= 1.3 * sum(shares) / count, shares


def test_a_space_larger_than_a_fair_share_has_a_shard_of_its_own_the_others_share_the_rest() -> (
    None
):
    weights = skewed(dominant_spaces=1)
    plan = assign(weights, 4)
    alone = plan[(1, 1)]
    assert [unit for unit, index in plan.items() if index == alone] == [(1, 1)]
    others = [load for index, load in enumerate(loads(weights, 4)) if index != alone]
    assert max(others) <= 1.3 * sum(others) / 3, others


def test_every_space_is_computed_by_exactly_one_shard() -> None:
    weights = skewed(dominant_spaces=3)
    customers = [*range(1, 42), 99]  # 99: found on S3 only
    count = 4
    plans = [shard_spaces(weights, customers, Shard(i, count)) for i in range(count)]
    for customer in customers:
        for space in [*range(0, 6), 1000]:
            computing = [
                i
                for i, plan in enumerate(plans)
                if customer in plan and plan[customer].includes(space)
            ]
            assert len(computing) == 1, (customer, space, computing)


def test_spaces_no_plan_covers_belong_to_the_customer_home_shard() -> None:
    plan = shard_spaces({(5, 1): 10}, [5, 6], Shard(home(6, 3), 3))
    assert plan[6] == Spaces()


def test_the_plan_depends_on_the_weights_only() -> None:
    weights = skewed(dominant_spaces=5)
    items = list(weights.items())
    random.Random(3).shuffle(items)
    shuffled = dict(items)
    assert list(shuffled) != list(weights)  # the same weights, met in another order
    assert assign(weights, 8) == assign(shuffled, 8)
