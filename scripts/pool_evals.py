"""Pool several ``tora2 eval`` result files (e.g. seeds 0, 1, 2 of the same model) into one table.

    python scripts/pool_evals.py runs/eval_seed0.json runs/eval_seed1.json runs/eval_seed2.json [-o pooled.json]

The rows of every file are scored together (``tora2.evaluation.runner.summarize``), each file's case
ids kept apart, and the summary printed as ``tora2 eval`` prints its own: 10 cases per count from
each of three seeds give the 30-case rows of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tora2.errors import InputError
from tora2.evaluation.runner import format_table, summarize


def pool(paths: list[Path]) -> dict:
    """{"sources": [...], "summary": ..., "rows": [...]} over every file's rows (case ids prefixed by file)."""
    rows = []
    for index, path in enumerate(paths):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"{path} is not a readable tora2 eval result ({error}); pass results.json files") from None
        rows += [{**row, "case": f"{index}:{row['case']}"} for row in report["rows"]]
    return {"sources": [str(p) for p in paths], "summary": summarize(rows), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/pool_evals.py", description=__doc__.strip().splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="tora2 eval results.json files")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write the pooled result here (JSON)")
    args = parser.parse_args(argv)
    try:
        pooled = pool(args.results)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(pooled["summary"]))
    if args.output is not None:
        from tora2.io import write_json_atomic

        write_json_atomic(pooled, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
