"""Print the ablation table of docs/results.md from ``tora2 eval`` result files.

    python scripts/ablation_table.py shipped=runs/embedded/eval/final.json no-binding=runs/ablations/no-binding/eval.json ...

One row per NAME=results.json: TrajError (% width) and binding accuracy over all entities and at 3
entities, appearance similarity and its shuffled-reference baseline at 3 entities.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def main(argv: list[str]) -> int:
    if not argv or any("=" not in a for a in argv):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    print("| model | TrajError % (all) | TrajError % (3) | binding (all) | binding (3) | appearance (3) | shuffled (3) |")
    print("|---|---|---|---|---|---|---|")
    for arg in argv:
        name, path = arg.split("=", 1)
        if not Path(path).is_file():
            print(f"| {name} | not run | | | | | |")
            continue
        summary = json.loads(Path(path).read_text())["summary"]
        everything, three = summary["all"], summary.get("3", {})
        print(f"| {name} | {cell(everything['traj_error_pct_width'], '.1f')} | {cell(three.get('traj_error_pct_width'), '.1f')} | "
              f"{cell(everything['binding_accuracy'], '.3f')} | {cell(three.get('binding_accuracy'), '.3f')} | "
              f"{cell(three.get('appearance_similarity'), '.3f')} | {cell(three.get('appearance_similarity_shuffled'), '.3f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
