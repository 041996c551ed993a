from __future__ import annotations

from storage_calc.cli import main

main()
