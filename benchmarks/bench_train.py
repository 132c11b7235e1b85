"""Training speed: steps/s and peak memory of the tiny config on CPU; GPU rows with the command to run.

    .venv/bin/python benchmarks/bench_train.py [--steps 20]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tora2  # noqa: E402,F401
import torch  # noqa: E402

from tests.training.synthetic import make_clips  # noqa: E402
from tora2.training.config import load_train_config  # noqa: E402
from tora2.training.loop import build_components, train  # noqa: E402

GPU_ROWS = [
    ("cogvideox-5b, stage tora2, bf16 + gradient checkpointing, 49×480×720",
     "accelerate launch --config_file configs/accelerate/ddp.yaml $(which tora2) train configs/train/cogvideox-5b-tora2.yaml --set max_steps=20"),
    ("cogvideox-5b, stage finetune (LoRA r=16), bf16 + gradient checkpointing",
     "tora2 finetune --subject SUBJECT_DIR --text 'a sks dog' --model weights/tora2-5b --steps 20 -o lora.safetensors "
     "--set mixed_precision=bf16 --set gradient_checkpointing=true --set 'data.buckets=[[480,720]]' --set data.num_frames=49"),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_clips(Path(tmp) / "data", count=4, num_frames=9, size=64)
        for stage in ("tora2", "finetune"):
            cfg = load_train_config(None, {
                "output_dir": f"{tmp}/{stage}", "stage": stage, "max_steps": args.steps, "batch_size": args.batch_size,
                "data.manifest": str(manifest), "data.buckets": [[64, 64]], "tensorboard": False,
                "save_pipeline": False, "checkpoint_every": 0, "log_every": 10**9,
            })
            components = build_components(cfg)
            start = time.perf_counter()
            train(cfg, components=components)
            elapsed = time.perf_counter() - start
            rows.append((f"tiny, stage {stage}, batch {args.batch_size}, 9×64×64, CPU 1 thread",
                         f"{args.steps / elapsed:.2f} steps/s (incl. first-time encoding of 4 clips)"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| configuration | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print(f"| peak resident memory (process) | {peak:.0f} MiB |")
    for name, command in GPU_ROWS:
        print(f"| {name} | not measured (no GPU here): `{command}` |")


if __name__ == "__main__":
    main()
