"""Jobs per minute: a shell loop of ``tora2 generate`` against ``tora2 batch`` (batch size 1 and 4,
one process and two).

20 tiny jobs (embedded tiny model, 9 frames at 32×32, 2 steps, text guidance on) share one entity
(the example star on one path) and differ in prompt and seed, so ``tora2 batch`` can put four in one
forward. Every mode starts from an empty output folder and a cold entity cache and is timed wall
clock, start-up included, because start-up (imports, model load, entity encoding) is what a
batch saves. Two processes run with ``RANK``/``WORLD_SIZE`` and one thread each, then ``--merge``.

    .venv/bin/python benchmarks/bench_batch.py [--jobs 20] [--loop-jobs 20] [--json results.json]

``--loop-jobs N`` times the shell loop on the first N jobs only (its rate is per job either way).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAR = ROOT / "examples" / "entities" / "yellow_star.png"
SETTINGS = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 6.0}
SUBJECTS = ("a field", "the sea", "a city street", "a snowy hill", "a desert")


def write_inputs(folder: Path, count: int) -> tuple[Path, Path, list[dict]]:
    track = folder / "star.json"
    track.write_text(json.dumps({"version": 1, "canvas": {"width": 32, "height": 32},
                                 "entities": [{"id": "star", "path": {"points": [[4, 16], [28, 16]]}}]}))
    jobs = [{"name": f"job{i:02d}", "prompt": f"a yellow star crosses {SUBJECTS[i % len(SUBJECTS)]}", "seed": i,
             "entities": [{"text": "a yellow star", "image": str(STAR), "path": str(track)}]} for i in range(count)]
    manifest = folder / "jobs.yaml"
    manifest.write_text(yaml.safe_dump({"defaults": SETTINGS, "jobs": jobs}))
    return manifest, track, jobs


def batch_command() -> list[str]:
    """``tora2 batch`` as a process (the console script's module, so no install is needed)."""
    return [sys.executable, "-m", "cli.main", "batch"]


def generate_command() -> str:
    """``tora2 generate`` as a shell command."""
    return f"{sys.executable} -m cli.main generate"


def timed(commands: list[list[str]], env: dict, parallel: bool = False) -> float:
    start = time.perf_counter()
    if parallel:
        procs = [subprocess.Popen(c, cwd=ROOT, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c, e in zip(commands, env)]
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"command failed ({proc.returncode}): {' '.join(proc.args)}\n{err[-2000:]}")
    else:
        for command in commands:
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"command failed ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--loop-jobs", type=int, default=None, help="time the generate loop on this many jobs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    loop_jobs = min(args.loop_jobs or args.jobs, args.jobs)

    work = Path(tempfile.mkdtemp(prefix="bench_batch."))
    base_env = {**os.environ, "PYTHONPATH": str(ROOT), "TORA2_CACHE": str(work / "cache")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        base_env.pop(name, None)
    manifest, track, jobs = write_inputs(work, args.jobs)
    # Build the embedded default once, outside every timing.
    subprocess.run([sys.executable, "-c", "import tora2; from tora2.pipelines.embedded import resolve_model; resolve_model()"],
                   cwd=ROOT, env=base_env, check=True, capture_output=True)

    def fresh(name: str) -> Path:
        shutil.rmtree(work / "cache", ignore_errors=True)  # every mode starts with a cold entity cache
        return work / name

    rows = []
    # 1. A shell loop of `tora2 generate`, one process per job.
    out = fresh("loop")
    out.mkdir()
    script = work / "loop.sh"
    generate = generate_command()
    script.write_text("set -e\n" + "".join(
        f"{generate} --prompt {json.dumps(j['prompt'])} --entity {STAR} --path {track} "
        f"--text 'a yellow star' --frames 9 --height 32 --width 32 --steps 2 --guidance 6 --seed {j['seed']} "
        f"-o {out / (j['name'] + '.mp4')}\n" for j in jobs[:loop_jobs]))
    seconds = timed([["bash", str(script)]], base_env)
    rows.append(("shell loop of tora2 generate", loop_jobs, seconds))

    # 2-3. One process, batch size 1 and 4.
    for size in (1, 4):
        out = fresh(f"batch{size}")
        seconds = timed([batch_command() + [str(manifest), "--out", str(out), "--batch-size", str(size), "--no-progress"]], base_env)
        rows.append((f"tora2 batch --batch-size {size}", args.jobs, seconds))

    # 4. Two processes (RANK/WORLD_SIZE, one thread each), batch size 4, then --merge.
    out = fresh("ranks")
    command = batch_command() + [str(manifest), "--out", str(out), "--batch-size", "4", "--no-progress"]
    envs = [{**base_env, "RANK": str(r), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"} for r in range(2)]
    seconds = timed([command, command], envs, parallel=True)
    seconds += timed([batch_command() + [str(manifest), "--out", str(out), "--merge"]], base_env)
    rows.append(("tora2 batch --batch-size 4, 2 processes", args.jobs, seconds))

    print(f"{args.jobs} jobs: {SETTINGS['num_frames']} frames at {SETTINGS['height']}x{SETTINGS['width']}, "
          f"{SETTINGS['num_inference_steps']} steps, embedded tiny model, {os.cpu_count()} CPU cores")
    print(f"{'mode':<42}{'jobs':>6}{'seconds':>10}{'jobs/min':>10}{'speed-up':>10}")
    loop_rate = rows[0][1] / rows[0][2] * 60
    results = []
    for mode, count, seconds in rows:
        rate = count / seconds * 60
        print(f"{mode:<42}{count:>6}{seconds:>10.1f}{rate:>10.1f}{rate / loop_rate:>9.1f}x")
        results.append({"mode": mode, "jobs": count, "seconds": round(seconds, 2), "jobs_per_minute": round(rate, 2)})
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": SETTINGS, "results": results}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
