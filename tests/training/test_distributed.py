"""Two CPU processes (gloo) train the tiny model a few steps and end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.synthetic import make_clips

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = "import sys, tora2; from accelerate.commands.accelerate_cli import main; sys.argv[0] = 'accelerate'; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(kind: str, manifest: Path, out: Path, steps: int) -> None:
    worker = [str(ROOT / "tests" / "training" / "ddp_worker.py"), str(manifest), str(out), str(steps)]
    port = str(free_port())
    if kind == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, *worker]
    else:  # the accelerate CLI, after the torchvision shim (its own imports pull in torchvision)
        command = [sys.executable, "-c", ACCELERATE, "launch", "--config_file",
                   str(ROOT / "configs" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", port, *worker]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torchrun", "accelerate"])
def test_two_processes_end_with_identical_weights(tmp_path, kind):
    manifest = make_clips(tmp_path / "data", count=4)  # 4 clips, batch 1: 2 different batches per rank per epoch
    launch(kind, manifest, tmp_path / "out", steps=3)
    ranks = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in ranks] == [2, 2]
    assert [r["backend"] for r in ranks] == ["gloo", "gloo"]
    assert ranks[0]["before"] == ranks[1]["before"]
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]
    assert ranks[0]["losses"] == ranks[1]["losses"] and len(ranks[0]["losses"]) == 3
