"""Synthetic clips for training tests: coloured squares moving along paths, written with imageio."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from tora2.trajectory.paths import circle, line, zigzag

COLORS = {"red": (230, 40, 40), "blue": (40, 70, 230), "green": (40, 190, 60), "yellow": (240, 220, 40)}


def square_clip(num_frames: int, size: int, paths: list[np.ndarray], colors: list[tuple], half: int = 10) -> np.ndarray:
    frames = np.full((num_frames, size, size, 3), 245, dtype=np.uint8)  # (F, H, W, 3)
    for path, color in zip(paths, colors):
        for t, (x, y) in enumerate(path):
            x0, y0 = int(round(x)) - half, int(round(y)) - half
            frames[t, max(0, y0) : y0 + 2 * half, max(0, x0) : x0 + 2 * half] = color
    return frames


def reference_crop(color: tuple, half: int = 10) -> np.ndarray:
    """An RGBA crop of the square (alpha = mask), as data prepare would take from another frame."""
    crop = np.zeros((2 * half + 4, 2 * half + 4, 4), dtype=np.uint8)
    crop[2:-2, 2:-2, :3] = color
    crop[2:-2, 2:-2, 3] = 255
    return crop


def make_clips(root: Path, count: int = 3, num_frames: int = 9, size: int = 64, references: bool = True) -> Path:
    """``count`` clips under ``root`` and a manifest.jsonl describing them; returns the manifest path."""
    root.mkdir(parents=True, exist_ok=True)
    generators = [
        lambda n, s, seed: line(n, s, s, seed=seed),
        lambda n, s, seed: circle(n, s, s, phase=seed),
        lambda n, s, seed: zigzag(n, s, s, teeth=2),
    ]
    names = list(COLORS)
    lines = []
    for c in range(count):
        entities = [(names[c % 4], generators[c % 3](num_frames, size, c)),
                    (names[(c + 1) % 4], generators[(c + 1) % 3](num_frames, size, c + 7))]
        frames = square_clip(num_frames, size, [p for _, p in entities], [COLORS[n] for n, _ in entities])
        video = root / f"clip{c}.gif"
        iio.imwrite(video, frames, duration=125, loop=0)
        record = {"id": f"clip{c}", "video": video.name,
                  "caption": f"a {entities[0][0]} square and a {entities[1][0]} square move", "entities": []}
        for e, (name, path) in enumerate(entities):
            entity = {"id": name, "text": f"{name} square", "kind": "object",
                      "track": {"points": path.round(2).tolist(), "visible": [True] * num_frames}}
            if references:
                ref = root / f"clip{c}_{name}.png"
                Image.fromarray(reference_crop(COLORS[name])).save(ref)
                entity["references"] = [ref.name]
            record["entities"].append(entity)
        lines.append(json.dumps(record))
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
