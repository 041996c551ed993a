from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from storage_calc import demo
from storage_calc.cli import cli


def expected_customer_figures() -> tuple[int, int, int]:
    """The customer's figures, summed straight from the sample's objects."""
    assets, artefacts, thumbnails = demo.sample()

    def owned(objects: dict[str, int]) -> int:
        return sum(
            size
            for key, size in objects.items()
            if any(key == a or key.startswith(a + "/") for a in assets)
        )

    return len(assets), owned(artefacts), owned(thumbnails)


def test_demo_prints_the_customer_space_and_asset_then_show_works_and_it_can_run_again(
    data_home: Path, aws_env: None
) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["demo"])
    assert result.exit_code == 0, result.stderr
    customer, space, asset = json.loads("[" + result.stdout.replace("}\n{", "},{") + "]")
    assert (
        customer["numberOfStoredImages"],
        customer["totalSizeOfStoredImages"],
        customer["totalSizeOfThumbnails"],
    ) == expected_customer_figures()
    assert space["@id"] == "https://api.dlcs.example/customers/2/spaces/5/storage"
    assert space["numberOfStoredImages"] == 12
    assert (asset["size"], asset["thumbnailSize"]) == (4082121, 115874)
    assert (data_home / "storage-calc" / "pgdata" / "PG_VERSION").exists()
    assert "the platform's tables have the seed layout\n" in result.stderr

    shown = runner.invoke(cli, ["show", "customer", "2"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout) == customer

    # Again, on the same embedded database: the same figures.
    second = runner.invoke(cli, ["demo"])
    assert second.exit_code == 0, second.stderr

    def figures(stdout: str) -> list[tuple[int, ...]]:
        docs = json.loads("[" + stdout.replace("}\n{", "},{") + "]")
        return [tuple(v for v in d.values() if isinstance(v, int)) for d in docs]

    assert figures(second.stdout) == figures(result.stdout)
