"""The embedded model's autoencoder: the shipped linear code against the VAE it replaced.

Times, alternating the two in every round:

* ``encode``: one 9-frame 64×64 clip encoded (training encodes every clip once);
* ``decode``: its latents decoded (what the pipeline does once per video);
* ``generate``: each model's own whole pipeline call (defaults: 50 steps, text and reference
  guidance, 3 entities) — the shipped model (stage L5: 36-component linear autoencoder,
  ``tora2/data/embedded``) and the VAE model shipped before it (stage 8 + stage 1d: 16-channel
  per-frame VAE with a 32/64/64 decoder, ``checkpoints/embedded/vae-model-pipeline``). Both
  transformers have the same width and depth; only their latent width (36 or 16 channels) differs.

The minimum over rounds is reported (a shared CPU only slows a run down), and the ratio
linear / VAE.

    .venv/bin/python benchmarks/bench_vae.py [--rounds 3] [--steps 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAE_MODEL = ROOT / "checkpoints" / "embedded" / "vae-model-pipeline"


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    if not (VAE_MODEL / "model_index.json").is_file():
        print(f"error: the VAE model to compare with is not at {VAE_MODEL}; run from a full checkout", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    import tora2  # noqa: F401  (before diffusers: the torchvision shim)
    from tora2.evaluation import make_cases
    from tora2.pipelines.embedded import load_pipeline

    pipes = {}
    for name, model in (("linear (shipped, 36 ch)", None), ("VAE (before, 16 ch)", str(VAE_MODEL))):
        pipe, _ = load_pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        pipes[name] = pipe
    video = torch.rand(1, 3, 9, 64, 64) * 2 - 1  # (B, C, F, H, W)
    case = make_cases(1, 9, 64, 64, seed=0, entity_counts=(3,))[0]
    times: dict[str, dict[str, float]] = {name: {} for name in pipes}
    with torch.no_grad():
        latents = {name: pipe.vae.encode(video).latent_dist.mode() for name, pipe in pipes.items()}  # (1, C, 9, 16, 16)
        for _ in range(args.rounds):
            for name, pipe in pipes.items():
                row = times[name]
                row["encode"] = min(row.get("encode", np.inf), _seconds(lambda: pipe.vae.encode(video)))
                row["decode"] = min(row.get("decode", np.inf), _seconds(lambda: pipe.vae.decode(latents[name])))
                run = lambda: pipe(case.prompt, entities=case.entity_specs(), num_frames=9, height=64, width=64,
                                   num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0))
                row["generate"] = min(row.get("generate", np.inf), _seconds(run))
    names = list(pipes)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; min of {args.rounds} rounds; "
          f"generate = {args.steps} steps, 3 entities, each model's default guidance")
    print("| | " + " | ".join(names) + " | linear / VAE |")
    print("|---|" + "---:|" * (len(names) + 1))
    for key in ("encode", "decode", "generate"):
        a, b = (times[n][key] for n in names)
        print(f"| {key} (s) | {a:.4f} | {b:.4f} | {a / b:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
