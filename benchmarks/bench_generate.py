"""Seconds per denoising step and peak RSS on CPU; Tora2's per-step overhead against CogVideoX.

For each size (``tiny`` = configs/model/tiny.yaml; ``small`` = tiny with 4 blocks of width 128;
``medium`` = 4 blocks of width 512)
one fresh subprocess builds the components and times, in the same run:

* ``cogvideox``: diffusers' CogVideoXPipeline with a CogVideoXTransformer3DModel of the same size
  (the Tora2 transformer's CogVideoX weights), no trajectory;
* ``tora2``: Tora2Pipeline with 3 entities (reference tokens, paths, phrases), without and with
  ``enable_motion_modulation_cache()`` (the fusers' γ/β computed once per call).

Both use text guidance (two branches in one batched forward). The step time is the minimum over
steps after the first (warm-up) and over three alternating rounds: on a shared CPU the minimum is
the stable estimate of the work per step (medians moved by ±50% between runs here). Overhead = tora2 / cogvideox − 1 (target ≤ 15%).

    .venv/bin/python benchmarks/bench_generate.py [--steps 6] [--sizes tiny small]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "tiny": {},
    "small": {"num_layers": 4, "num_attention_heads": 4, "attention_head_dim": 32, "motion_channels": 32},
    # Width 512 (the entity attention stays 2×16 wide, as in tiny): the overhead's trend with size.
    "medium": {"num_layers": 4, "num_attention_heads": 8, "attention_head_dim": 64, "motion_channels": 32},
}
COGVIDEOX_KEYS = (
    "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "time_embed_dim", "text_embed_dim",
    "num_layers", "sample_width", "sample_height", "sample_frames", "patch_size", "temporal_compression_ratio",
    "max_text_seq_length", "use_rotary_positional_embeddings",
)


def run_one(size: str, steps: int, threads: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    import tora2  # noqa: F401
    from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel

    from tora2.models.configs import load_model_config
    from tora2.pipelines.components import build_tiny_components
    from tora2.pipelines.pipeline_tora2 import Tora2Pipeline
    from tora2.specs import EntitySpec, EntityTokens

    torch.set_num_threads(threads)
    config = load_model_config("tiny")
    config["transformer"].update(SIZES[size])
    components = build_tiny_components(config, seed=0)
    pipe = Tora2Pipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    frames, height, width = pipe.default_size
    cfg = pipe.transformer.config
    base = CogVideoXTransformer3DModel(**{k: cfg[k] for k in COGVIDEOX_KEYS}).eval()
    own = pipe.transformer.state_dict()
    base.load_state_dict({k: own[k] for k in base.state_dict()})
    plain = CogVideoXPipeline(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae,
                              transformer=base, scheduler=pipe.scheduler)
    plain.set_progress_bar_config(disable=True)

    rng = np.random.default_rng(0)
    entities = []
    for i, name in enumerate(("cat", "dog", "rocket")):
        start, end = rng.uniform(8, width - 8, 2), rng.uniform(8, height - 8, 2)
        path = np.stack([np.linspace(start[0], end[0], frames), np.linspace(start[1], end[1], frames)], 1)
        tokens = EntityTokens(torch.randn(17, 32), torch.randn(16, 32), "object")
        entities.append(EntitySpec(name, trajectory=path, tokens=tokens))
    prompt = "a cat, a dog and a rocket move across a park"
    common = dict(num_frames=frames, height=height, width=width, num_inference_steps=steps, guidance_scale=6.0,
                  output_type="latent")

    stamps: list[float] = []

    def stamp(_pipe, _i, _t, kwargs):
        stamps.append(time.perf_counter())
        return kwargs

    results = {}
    for _ in range(3):  # alternate so neither side gets a cold cache advantage
        stamps.clear()
        begin = time.perf_counter()
        plain(prompt, max_sequence_length=cfg.max_text_seq_length, generator=torch.Generator().manual_seed(0),
              callback_on_step_end=stamp, **common)
        steps_plain = np.diff([begin] + stamps)[1:]
        pipe.disable_motion_modulation_cache()
        out = pipe(prompt, entities=entities, generator=torch.Generator().manual_seed(0), **common)
        pipe.enable_motion_modulation_cache()
        cached = pipe(prompt, entities=entities, generator=torch.Generator().manual_seed(0), **common)
        results.setdefault("cogvideox", []).extend(steps_plain)
        results.setdefault("tora2", []).extend(out.step_seconds[1:])
        results.setdefault("tora2_cached", []).extend(cached.step_seconds[1:])
    plain_s = min(results["cogvideox"])
    tora2_s = min(results["tora2"])
    cached_s = min(results["tora2_cached"])
    return {
        "size": size,
        "video": f"{frames}x{width}x{height}",
        "params_M": round(sum(p.numel() for p in pipe.transformer.parameters()) / 1e6, 3),
        "cogvideox_s_per_step": plain_s,
        "tora2_s_per_step": tora2_s,
        "overhead": tora2_s / plain_s - 1,
        "tora2_cached_s_per_step": cached_s,
        "overhead_cached": cached_s / plain_s - 1,
        "peak_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared CPU)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.threads)))
        return
    rows = []
    for size in args.sizes:  # one process per size: peak RSS belongs to that size alone
        cmd = [sys.executable, __file__, "--one", size, "--steps", str(args.steps), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"{'size':6} {'video FxWxH':12} {'params M':>8} {'CogVideoX s/step':>17} {'Tora2 (3 ent) s/step':>21} "
          f"{'overhead':>9} {'+γβ cache s/step':>17} {'overhead':>9} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['size']:6} {r['video']:12} {r['params_M']:8.3f} {r['cogvideox_s_per_step']:17.4f} "
              f"{r['tora2_s_per_step']:21.4f} {r['overhead'] * 100:8.1f}% {r['tora2_cached_s_per_step']:17.4f} "
              f"{r['overhead_cached'] * 100:8.1f}% {r['peak_rss_MiB']:13.0f}")


if __name__ == "__main__":
    main()
