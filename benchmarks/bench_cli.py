"""How fast the ``tora2`` command answers when it has no model to run: help, track validation and
bad input (issue: "every input error answers in under 1 s").

Each command runs as a fresh process (``python -m cli.main``, what the console script calls),
``--runs`` times; the table gives the median and the spread of the wall time, the exit code, and
whether torch was imported (``-X importtime``, one extra run). The bad-input rows must exit 2.

    .venv/bin/python benchmarks/bench_cli.py [--runs 7] [--json results.json]
    .venv/bin/python benchmarks/bench_cli.py --root /tmp/old --only help validate abc "steps 0"   # another checkout

``--root`` runs the commands from another checkout (e.g. ``git worktree add /tmp/old <rev>``), for a
before/after ratio in one session; ``--only`` keeps the rows whose name contains one of the words.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACK = ROOT / "examples" / "tracks" / "two_entities.json"
IMAGE = ROOT / "examples" / "entities" / "yellow_star.png"
CIRCLE = ROOT / "examples" / "tracks" / "tora_circle.txt"


def commands(scratch: Path) -> list[tuple[str, list[str]]]:
    manifest = scratch / "jobs.yaml"
    manifest.write_text("jobs:\n  - {prompt: a star, num_inference_steps: 0}\n")
    return [
        ("tora2 --help", ["--help"]),
        ("tora2 generate --help", ["generate", "--help"]),
        ("tora2 track validate two_entities.json", ["track", "validate", str(TRACK)]),
        ("bad: generate --frames abc", ["generate", "-p", "a star", "--frames", "abc"]),
        ("bad: generate --unknown", ["generate", "-p", "a star", "--unknown"]),
        ("bad: generate --steps 0", ["generate", "-p", "a star", "--steps", "0"]),
        ("bad: generate --guidance nan", ["generate", "-p", "a star", "--guidance", "nan"]),
        ("bad: generate --height 8192 --width 8192 (memory)",
         ["generate", "-p", "a star", "--height", "8192", "--width", "8192", "--dry-run"]),
        ("bad: generate --entity missing.png", ["generate", "-p", "a star", "--entity", "missing.png", "--path", str(CIRCLE)]),
        ("bad: generate --entity <folder>", ["generate", "-p", "a star", "--entity", str(scratch), "--path", str(CIRCLE)]),
        ("bad: generate -o out.avi", ["generate", "-p", "a star", "-o", str(scratch / "out.avi")]),
        ("bad: batch missing.yaml", ["batch", str(scratch / "missing.yaml"), "--out", str(scratch / "out")]),
        ("dry run: generate one entity", ["generate", "-p", "a star", "--entity", str(IMAGE), "--path", str(CIRCLE),
                                          "--dry-run"]),
    ]


def run(args: list[str], env: dict) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=env["PYTHONPATH"], env=env, capture_output=True,
                          text=True)
    return time.perf_counter() - start, done.returncode


def imports_torch(args: list[str], env: dict) -> bool:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cli.main", *args], cwd=env["PYTHONPATH"], env=env,
                          capture_output=True, text=True)
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines() if line.startswith("import time:"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose cli/ runs (default: this one)")
    parser.add_argument("--only", nargs="*", default=None, help="rows whose name contains one of these")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(args.root.resolve()), "NO_COLOR": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="tora2-bench-cli-") as scratch:
        for name, command in commands(Path(scratch)):
            if args.only and not any(word in name for word in args.only):
                continue
            run(command, env)  # warm the file cache
            times, codes = [], set()
            for _ in range(args.runs):
                seconds, code = run(command, env)
                times.append(seconds)
                codes.add(code)
            median = statistics.median(times)
            rows.append({"command": name, "median_s": round(median, 3),
                         "spread": round((max(times) - min(times)) / median, 2),
                         "exit": ",".join(map(str, sorted(codes))), "torch": imports_torch(command, env)})
    print(f"| command | median s ({args.runs} runs) | spread | exit | imports torch |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['command']}` | {r['median_s']:.2f} | {r['spread']:.2f} | {r['exit']} | {'yes' if r['torch'] else 'no'} |")
    slow = [r["command"] for r in rows if r["median_s"] >= 1.0]
    print(f"\n{len(rows) - len(slow)}/{len(rows)} commands answer in under 1 s" + (f"; slower: {', '.join(slow)}" if slow else ""))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
