"""Peak memory of real ``tora2 generate`` runs against the estimate that refuses oversized requests.

Each size runs in a fresh process (the embedded model unless ``--model``, 1 denoising step, text
guidance on) and reports its peak resident set (``ru_maxrss``); the table puts it beside
``tora2.pipelines.model_info.estimate_peak_bytes`` for the same request. The estimate should be
above every measurement (it refuses, it must not refuse what runs by much).

    .venv/bin/python scripts/measure_memory.py [--sizes 64 128 256] [--frames 9] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--model", default=None)
    args = parser.parse_args(argv)

    from tora2.pipelines.embedded import resolve_model
    from tora2.pipelines.model_info import GIB, estimate_peak_bytes, read_model_info

    info = read_model_info(resolve_model(args.model)[0])
    track = ROOT / "examples" / "tracks" / "tora_circle.txt"
    star = ROOT / "examples" / "entities" / "yellow_star.png"
    print("| frames × W × H | measured peak RSS | estimate | estimate / measured |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="tora2-memory-") as scratch:
        for size in args.sizes:
            command = ["generate", "-p", "a yellow star", "--entity", str(star), "--path", str(track),
                       "--frames", str(args.frames), "--height", str(size), "--width", str(size), "--steps", "1",
                       "--seed", "0", "--no-progress", "-o", str(Path(scratch) / f"{size}.mp4")]
            if args.model:
                command += ["--model", args.model]
            done = subprocess.run([sys.executable, "-c", CHILD, *command], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT)})
            record = json.loads(done.stdout.strip().splitlines()[-1])
            if record["code"] not in (0, None):
                print(f"| {args.frames}×{size}×{size} | failed ({done.stderr.strip().splitlines()[-1]}) | | |")
                continue
            estimate = estimate_peak_bytes(info, args.frames, size, size)
            print(f"| {args.frames}×{size}×{size} | {record['maxrss'] / GIB:.2f} GiB | {estimate / GIB:.2f} GiB | "
                  f"{estimate / record['maxrss']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
