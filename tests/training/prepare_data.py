"""Synthetic video folders for ``tora2 data prepare``: coloured squares on paths, written as mp4."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from tests.training.synthetic import COLORS, square_clip
from tora2.trajectory.paths import circle, line

SIZE = (96, 128)  # (height, width)
HALF = 10  # squares are 2·HALF pixels wide; the centre of the square drawn at (x, y) is round(x) - 0.5


def square_mask(point, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    x0, y0 = int(round(point[0])) - HALF, int(round(point[1])) - HALF
    mask[max(0, y0) : y0 + 2 * HALF, max(0, x0) : x0 + 2 * HALF] = True
    return mask


def truth(path: np.ndarray) -> np.ndarray:
    return np.round(path) - 0.5


def clip_frames(paths, colors, height=SIZE[0], width=SIZE[1]) -> np.ndarray:
    count = len(paths[0])
    square = square_clip(count, max(height, width), paths, colors, half=HALF)  # (F, S, S, 3)
    return np.ascontiguousarray(square[:, :height, :width])


def write_mp4(path: Path, frames: np.ndarray) -> None:
    iio.imwrite(path, frames, fps=8, codec="libx264", plugin="pyav")


def two_square_paths(num_frames: int) -> dict[str, np.ndarray]:
    """A red square on a line in the top half and a blue one on a circle in the bottom half (they never meet)."""
    height, width = SIZE
    red = line(num_frames, height, width, start=(20, 22), end=(105, 30))
    blue = circle(num_frames, height, width, phase=0.5)
    blue = np.stack([width / 2 + (blue[:, 0] - width / 2) * 0.8, 66 + (blue[:, 1] - height / 2) * 0.3], axis=1)
    return {"red": red, "blue": blue}


def write_folder(root: Path, num_frames: int = 33) -> dict[str, dict[str, np.ndarray]]:
    """Videos for every branch of prepare; returns the true paths of the clips that should be kept."""
    root.mkdir(parents=True, exist_ok=True)
    height, width = SIZE
    paths = two_square_paths(num_frames)
    kept = {}

    # 1. user masks + entity list (frame 0)
    write_mp4(root / "masked.mp4", clip_frames(list(paths.values()), [COLORS[c] for c in paths]))
    (root / "masked.txt").write_text("a red square and a blue square move\n")
    (root / "masked.entities.json").write_text(json.dumps({"frame": 0, "entities": [
        {"id": "red", "text": "a red square", "kind": "object"},
        {"id": "blue", "text": "a blue square", "kind": "object"}]}))
    (root / "masked.masks").mkdir()
    for name, path in paths.items():
        Image.fromarray(square_mask(path[0], height, width).astype(np.uint8) * 255).save(root / "masked.masks" / f"{name}.png")
    kept["masked"] = paths

    # 2. boxes only → GrabCut on the last frame (the window is then the first frames)
    green = line(num_frames, height, width, start=(100, 70), end=(30, 60))
    write_mp4(root / "boxed.mp4", clip_frames([green], [COLORS["green"]]))
    (root / "boxed.txt").write_text("a green square slides left")
    last = green[-1]
    box = [int(last[0]) - HALF - 6, int(last[1]) - HALF - 6, int(last[0]) + HALF + 6, int(last[1]) + HALF + 6]
    (root / "boxed.entities.json").write_text(json.dumps({"frame": num_frames - 1, "entities": [
        {"id": "green", "text": "a green square", "box": box}]}))
    kept["boxed"] = {"green": green}

    # 3. leaves the frame to the right near the end (inside the training window)
    exit_path = np.stack([np.linspace(40, 40 + 3.2 * (num_frames - 1), num_frames), np.full(num_frames, 48.0)], axis=1)
    write_mp4(root / "leaving.mp4", clip_frames([exit_path], [COLORS["yellow"]]))
    (root / "leaving.txt").write_text("a yellow square leaves")
    (root / "leaving.masks").mkdir()
    Image.fromarray(square_mask(exit_path[0], height, width).astype(np.uint8) * 255).save(root / "leaving.masks" / "yellow_square.png")
    kept["leaving"] = {"yellow_square": exit_path}

    # dropped: too short, no caption, unreadable, empty user mask
    write_mp4(root / "short.mp4", clip_frames([p[:5] for p in paths.values()], [COLORS[c] for c in paths]))
    (root / "short.txt").write_text("too short")
    write_mp4(root / "nocaption.mp4", clip_frames([green], [COLORS["green"]]))
    (root / "broken.mp4").write_bytes(b"this is not a video")
    (root / "broken.txt").write_text("broken")
    write_mp4(root / "empty.mp4", clip_frames([green], [COLORS["green"]]))
    (root / "empty.txt").write_text("nothing here")
    (root / "empty.masks").mkdir()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(root / "empty.masks" / "ghost.png")
    return kept
