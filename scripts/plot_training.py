"""Training curves of the embedded model as a PNG (PIL only; no plotting library is a dependency).

    python scripts/plot_training.py runs/embedded -o docs/training-curves.png [--json docs/training-curves.json]
                                    [--vae DIR --vae-wide DIR ... --encoders DIR --full DIR ... --crowded DIR]

Reads the ``losses.json`` of the VAE runs in ``VAE_STAGES`` (tora2.training.vae), ``encoders/losses.json``
(tora2.training.pretrain_encoders), ``full/losses.json``, ``grad/losses.json``, ``ref/losses.json``,
and the ``losses.json`` of every later train() stage in ``TRAIN_STAGES`` under the run folder, or the folders given; draws each loss per step (light) and its moving average over 25 steps (dark),
log-scaled y axis, one panel per stage; ``--json`` also writes the curves' numbers.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PANEL = (560, 300)
MARGIN = (60, 30, 20, 40)  # left, top, right, bottom
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44)]


def smooth(values: np.ndarray, window: int = 25) -> np.ndarray:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.array([values[: i + 1].mean() for i in range(window - 1)])
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def draw_panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], title: str, steps: np.ndarray,
               series: dict[str, np.ndarray]) -> None:
    x0, y0 = origin[0] + MARGIN[0], origin[1] + MARGIN[1]
    x1, y1 = origin[0] + PANEL[0] - MARGIN[2], origin[1] + PANEL[1] - MARGIN[3]
    values = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in series.values()])
    low, high = math.log10(values.min()), math.log10(values.max())
    if high - low < 0.1:
        low, high = low - 0.05, high + 0.05
    sx = lambda s: x0 + (s - steps[0]) / max(1, steps[-1] - steps[0]) * (x1 - x0)  # noqa: E731
    sy = lambda v: y1 - (math.log10(max(v, 10**low)) - low) / (high - low) * (y1 - y0)  # noqa: E731
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    draw.text((x0, origin[1] + 8), title, fill=(0, 0, 0))
    for k in range(5):
        v = 10 ** (low + (high - low) * k / 4)
        draw.text((origin[0] + 4, sy(v) - 6), f"{v:.3g}", fill=(0, 0, 0))
        draw.line([x0 - 4, sy(v), x0, sy(v)], fill=(0, 0, 0))
    for k in range(5):
        s = steps[0] + (steps[-1] - steps[0]) * k / 4
        draw.text((sx(s) - 10, y1 + 6), f"{int(s)}", fill=(0, 0, 0))
    draw.text(((x0 + x1) // 2 - 12, y1 + 22), "step", fill=(0, 0, 0))
    for i, (name, v) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        light = tuple(int(c + (255 - c) * 0.7) for c in colour)
        draw.line([(sx(s), sy(val)) for s, val in zip(steps, v)], fill=light, width=1)
        draw.line([(sx(s), sy(val)) for s, val in zip(steps, smooth(v))], fill=colour, width=2)
        draw.text((x0 + 10, y1 - 16 - 14 * (len(series) - 1 - i)), f"- {name}", fill=colour)


# train() stages: run folder → panel title.
TRAIN_STAGES = (("full", "stage 3 (full): transformer + DPE"),
                ("grad", "stage 4: the same on gradient backgrounds"),
                ("ref", "stage 5 (not shipped): + reference latents, recoloured clips"),
                ("appearance", "stage 6: stage 4 + the per-entity appearance term (1 - NCC)"),
                ("placement", "stage 7: stage 6 + placement latents, recoloured clips"),
                ("continued", "stage 8 (the VAE model's transformer): stage 7 + 1500 steps of its recipe"),
                ("per-entity", "stage 8 with one placement canvas per entity (not shipped)"),
                ("crowded", "stage 9 (not shipped): stage 8 on 2-3-entity clips"),
                ("pca-ema", "stage L5 (shipped): stage 8 on linear latents, stage 2c's image encoder, x-prediction"))
# Stages that predict the clean latents (their diffusion loss is the capped x-prediction loss).
X_PREDICTION_STAGES = ("pca-ema",)
# VAE-stage runs (tora2.training.vae): run folder → panel title.
VAE_STAGES = (("vae", "stage 1: per-frame VAE reconstruction (plain means, pixels in [-1, 1])"),
              ("vae-wide", "stage 1c: stage 1's decoder widened to 32/64/64, whole clips (plain means)"),
              ("vae-wide2", "stage 1c continued on other clips (the VAE model's; plain means)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None, help="also write the curves' numbers here")
    for stage in (*(name for name, _ in VAE_STAGES), "encoders", *(name for name, _ in TRAIN_STAGES)):
        parser.add_argument(f"--{stage}", type=Path, default=None, help=f"{stage} run folder (default: RUN_DIR/{stage})")
    args = parser.parse_args()
    panels, numbers = [], {}
    folder = lambda stage: getattr(args, stage.replace("-", "_")) or args.run_dir / stage  # noqa: E731
    for stage, title in VAE_STAGES:
        losses = folder(stage) / "losses.json"
        if losses.is_file():
            d = numbers[stage] = json.loads(losses.read_text())
            panels.append((title, np.array(d["step"]), {"L1": np.array(d["l1"]), "L2": np.array(d["l2"])}))
    encoders = folder("encoders") / "losses.json"
    if encoders.is_file():
        d = numbers["encoders"] = json.loads(encoders.read_text())
        panels.append((f"stage 2: encoders, CLIP-style (held-out retrieval top-1 {d['retrieval_before']:.2f} -> "
                       f"{d['heldout_retrieval_top1'][-1]:.2f})", np.array(d["step"]), {"contrastive": np.array(d["loss"])}))
    for stage, title in TRAIN_STAGES:
        losses = folder(stage) / "losses.json"
        if losses.is_file():
            d = numbers[stage] = json.loads(losses.read_text())
            prediction = "x-prediction" if stage in X_PREDICTION_STAGES else "v-prediction"
            series = {prediction: np.array(d["diffusion"]), "contrastive": np.array(d["contrastive"])}
            if any(d.get("appearance") or []):
                series["appearance"] = np.array(d["appearance"])
            panels.append((title, np.array(d["step"]), series))
    if not panels:
        names = ", /".join([name for name, _ in VAE_STAGES] + ["encoders"] + [name for name, _ in TRAIN_STAGES])
        raise SystemExit(f"error: no losses.json under {args.run_dir}/{names}; train first")
    if args.json is not None:
        args.json.write_text(json.dumps(numbers))
    image = Image.new("RGB", (PANEL[0], PANEL[1] * len(panels)), "white")
    draw = ImageDraw.Draw(image)
    for i, (title, steps, series) in enumerate(panels):
        draw_panel(draw, (0, i * PANEL[1]), title, steps, series)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".tmp.png")
    image.save(tmp)
    tmp.replace(args.output)
    print(args.output)


if __name__ == "__main__":
    main()
