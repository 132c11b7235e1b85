"""Pairs for training a decoder on what a denoiser really leaves: (generated latents, clean target clip).

For training-split cases (``tora2.evaluation.make_cases`` on the "train" sprites, never the held-out
ones) the pipeline at MODEL samples latents exactly as ``tora2 generate`` would (default guidance,
50 steps). The target is the clip the denoiser was asked for, on the background it drew: the
generated frames (decoded by MODEL's own VAE) away from the entities are fitted per frame and
colour by a quadratic surface (the tiny denoisers draw smooth gradients, not the case's
photographs or patterns), and the case's sprites are pasted on that at their exact points, sizes
and angles. Each pair also keeps the case's sprite boxes and the worst TrajError (px) of its
entities in the generated frames, so training can keep only pairs whose sprites landed on their
paths, and the worst of its entities' placement agreement (``placement_agreement``: the shape
drawn where each entity was asked to be against its target's, which a faint sprite on its path
passes and the tracker's template match may not). A decoder trained on them (``decoder_pairs`` in configs/train/embedded-pca-decoder.yaml)
learns to draw the clean clip the denoiser meant instead of its leftover noise.

Resumable: the file is rewritten every ``--save-every`` cases and a rerun skips the cases it holds;
targets are (re)made for every pair at the end.

    python scripts/decoder_pairs.py runs/embedded/pca/pipeline runs/embedded/pca-pairs.pt --cases 100
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tora2.evaluation import make_cases, score_video  # noqa: E402
from tora2.evaluation.placement import backdrop_clip, placement_agreement, sprites_on  # noqa: E402
from tora2.pipelines.embedded import load_pipeline  # noqa: E402
from tora2.training.vae import sprite_mask  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="pipeline folder whose denoiser makes the latents")
    parser.add_argument("output", help=".pt file: {'latents': (N, F, C, h, w), 'frames' and 'targets': (N, F, H, W, 3) uint8, "
                                       "'masks': (N, F, H, W), 'errors': (N,) px, 'agreement': (N,), 'ids'}")
    parser.add_argument("--cases", type=int, default=100, help="cases per entity count (1, 2, 3)")
    parser.add_argument("--seed", type=int, default=7, help="case seed (train split)")
    parser.add_argument("--save-every", type=int, default=15)
    args = parser.parse_args(argv)

    pipe, _ = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    num_frames, height, width = pipe.default_size
    cases = make_cases(args.cases, num_frames, height, width, split="train", seed=args.seed)
    output = Path(args.output)
    store = torch.load(output) if output.is_file() else {"latents": [], "frames": [], "masks": [], "ids": []}
    store = {k: list(store[k]) for k in ("latents", "frames", "masks", "ids")}
    done = set(store["ids"])
    start = time.monotonic()
    todo = [case for case in cases if case.id not in done]
    for n, case in enumerate(todo, 1):
        out = pipe(case.prompt, entities=case.entity_specs(), num_frames=num_frames, height=height, width=width,
                   generator=torch.Generator().manual_seed(len(store["ids"])), output_type="latent")  # the model's own guidance
        store["latents"].append(out.frames[0].float())  # (F, C, h, w) scaled latents
        store["frames"].append(torch.from_numpy(case.frames))  # (F, H, W, 3) uint8
        store["masks"].append(sprite_mask(case.entities, num_frames, height, width).to(torch.uint8))  # (F, H, W)
        store["ids"].append(case.id)
        if n % args.save_every == 0:
            save(store, output)
            print(f"{len(store['ids'])}/{len(cases)} cases, {time.monotonic() - start:.0f}s", flush=True)
    by_id = {case.id: case for case in cases}
    store["targets"], store["errors"], store["agreement"] = [], [], []
    for latents, case_id in zip(store["latents"], store["ids"]):
        with torch.no_grad():
            decoded = pipe.decode_latents(latents[None])[0]  # (3, F, H, W) in about [−1, 1]
        generated = ((rearrange(decoded, "c f h w -> f h w c").clamp(-1, 1) + 1) * 127.5).numpy()  # (F, H, W, 3)
        case = by_id[case_id]
        backdrop = backdrop_clip(generated, case.entities)  # (F, H, W, 3)
        store["targets"].append(torch.from_numpy(sprites_on(backdrop, case.entities)))  # target_clip's, fitted once
        rows = score_video(np.rint(generated).astype(np.uint8), case)
        store["errors"].append(float(np.nanmax([row["traj_error_px"] for row in rows])))
        store["agreement"].append(float(placement_agreement(generated, case.entities, backdrop).min()))
    store["errors"] = torch.tensor(store["errors"])
    store["agreement"] = torch.tensor(store["agreement"])
    save(store, output)
    errors, agreement = store["errors"], store["agreement"]
    print(f"{len(errors)} pairs; worst entity TrajError median {errors.median():.2f} px, "
          f"≤ 2 px in {int((errors <= 2).sum())}; worst entity placement agreement median {agreement.median():.2f}, "
          f"≥ 0.6 in {int((agreement >= 0.6).sum())}", flush=True)
    return 0


def save(store: dict, output: Path) -> None:
    tmp = output.with_suffix(".tmp")
    torch.save({k: (v if k == "ids" or torch.is_tensor(v) else torch.stack(v)) for k, v in store.items()}, tmp)
    tmp.replace(output)


def target_clip(generated: np.ndarray, entities, margin: float = 1.5, keep: float = 0.21) -> np.ndarray:
    """Generated frames (F, H, W, 3) float in [0, 255] → the target (F, H, W, 3) uint8: per frame and
    colour a quadratic surface fitted to the pixels farther than ``margin`` × max(sprite size,
    ``keep`` × the frame side) from every entity's point, with the entities' sprites pasted on it."""
    return sprites_on(backdrop_clip(generated, entities, margin, keep), entities)



if __name__ == "__main__":
    sys.exit(main())
