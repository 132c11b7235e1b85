"""Entities per second for prepare + encode on CPU: tiny and base-size (random) encoders, cache cold vs warm.

    python benchmarks/bench_entities.py [--entities 8] [--encoders tiny,base] [--threads 2]

Inputs: the example images in examples/entities (alpha → no segmentation cost) and synthetic RGB
photos segmented by GrabCut (box prompt), so both segmentation paths are timed. "base" is the
open_clip ViT-B-16 image tower with random weights (224 px, 197 tokens × 512), the same compute as
the real one. Encoding includes the 2×-resolution object-detail pass (4 tiles).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import tora2  # noqa: F401  (torchvision shim)
from entities import EntityCache, encode_entity, prepare_entity
from entities.segment import EntityWarning
from tora2.models.encoders import SemanticImageEncoder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "entities"


def synthetic_photo(seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 256×256 noisy background with a coloured ellipse; returns the image and a box around it."""
    rng = np.random.default_rng(seed)
    rgb = (rng.normal(120, 20, (256, 256, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:256, :256]
    cx, cy, rx, ry = rng.integers(90, 166), rng.integers(90, 166), rng.integers(30, 60), rng.integers(30, 60)
    rgb[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = rng.integers(0, 255, 3)
    box = (max(0, cx - rx - 8), max(0, cy - ry - 8), min(256, cx + rx + 8), min(256, cy + ry + 8))
    return rgb, tuple(int(v) for v in box)


def inputs(count: int) -> list[tuple[object, dict]]:
    examples = sorted(p for p in EXAMPLES.glob("*.png") if p.name != "blue_car.png")
    items: list[tuple[object, dict]] = []
    for i in range(count):
        if i % 2 == 0 and examples:
            items.append((examples[(i // 2) % len(examples)], {}))
        else:
            image, box = synthetic_photo(i)
            items.append((image, {"box": box}))
    return items


def run(items, encoder, cache) -> float:
    start = time.perf_counter()
    for i, (image, prompt) in enumerate(items):
        entity = prepare_entity(image, f"entity {i}", kind="object", **prompt)
        tokens = encode_entity(entity, encoder, cache=cache)
        assert tokens.semantic.shape == (encoder.num_tokens, encoder.out_dim)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=8)
    parser.add_argument("--encoders", default="tiny,base")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", EntityWarning)
    builders = {"tiny": lambda: SemanticImageEncoder.tiny("open_clip"), "base": lambda: SemanticImageEncoder.from_open_clip("ViT-B-16")}
    items = inputs(args.entities)

    # Prepare alone, for reference (no encoder).
    start = time.perf_counter()
    for i, (image, prompt) in enumerate(items):
        prepare_entity(image, f"entity {i}", kind="object", **prompt)
    prepare_s = time.perf_counter() - start

    rows = [("prepare only", "-", "-", args.entities / prepare_s, 1000 * prepare_s / args.entities)]
    for name in args.encoders.split(","):
        encoder = builders[name]()
        encoder.encoder_id  # hash the weights once, outside the timed loop
        with tempfile.TemporaryDirectory() as root:
            cache = EntityCache(root)
            run(items[:1], encoder, None)  # warm-up (first-call allocations)
            for label, use in (("none", None), ("cold", cache), ("warm", cache)):
                seconds = run(items, encoder, use)
                rows.append(("prepare+encode", f"{name} ({encoder.config.model_name}, {encoder.image_size}px, "
                             f"{encoder.num_tokens}x{encoder.out_dim})", label, args.entities / seconds, 1000 * seconds / args.entities))
    print(f"\n{args.entities} entities, {args.threads} CPU threads, torch {torch.__version__}\n")
    header = f"{'step':<16}{'semantic encoder':<40}{'cache':<7}{'entities/s':>12}{'ms/entity':>12}"
    print(header)
    print("-" * len(header))
    for step, enc, cache_label, rate, ms in rows:
        print(f"{step:<16}{enc:<40}{cache_label:<7}{rate:>12.2f}{ms:>12.1f}")


if __name__ == "__main__":
    main()
