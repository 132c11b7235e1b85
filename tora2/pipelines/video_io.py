"""Writing generated videos: mp4 (imageio-ffmpeg), gif (PIL) or a folder of PNG frames, atomically.

Every writer renders into a temporary file (or folder) beside the target and renames it into place,
so an interrupted run never leaves a half-written video. Frames are (F, H, W, 3): uint8, or float
in [0, 1].
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tora2.errors import InputError
from tora2.io import atomic_output, write_json_atomic  # noqa: F401  (write_json_atomic: re-exported for the CLI)

DEFAULT_FPS = 8.0
VIDEO_SUFFIXES = (".mp4", ".gif")


def output_kind(path: str | os.PathLike) -> str:
    """"mp4", "gif" or "dir" (a path ending in a separator, an existing folder, or no suffix)."""
    text = str(path)
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.is_dir():
        return "dir"
    suffix = p.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return suffix[1:]
    if suffix == "":
        return "dir"
    raise InputError(f"output {text}: format {suffix!r} is not supported; use .mp4, .gif or a folder path ending in /")


def check_writable(path: str | os.PathLike) -> None:
    """Fail early (before any generation) when the output cannot be written."""
    p = Path(path)
    kind = output_kind(p)
    if kind == "dir" and p.exists() and not p.is_dir():
        raise InputError(f"output {p} exists and is a file; pass a folder path ending in /")
    if kind != "dir" and p.is_dir():
        raise InputError(f"output {p} is a folder; pass a file name ending in .mp4 or .gif")
    parent = p if kind == "dir" and p.exists() else p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    # Probe with a real file: os.access says yes to root everywhere (even /proc).
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        raise InputError(f"output {p} cannot be written: {parent} is not a writable folder; choose another -o") from None


def to_uint8(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3); got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def write_video(frames, path: str | os.PathLike, fps: float = DEFAULT_FPS) -> list[Path]:
    """Write (F, H, W, 3) frames to ``path`` (.mp4, .gif or folder/). Returns the files written."""
    frames = to_uint8(frames)
    path = Path(path)
    kind = output_kind(path)
    if kind == "dir":
        return _write_frames_dir(frames, path)
    with atomic_output(path, suffix=f".tmp.{kind}") as tmp:
        if kind == "gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=int(round(1000 / fps)), loop=0)
        else:
            import imageio.v3 as iio

            # libx264 with yuv420p needs even sizes; the sizes this project produces are multiples of 16.
            iio.imwrite(tmp, frames, extension=".mp4", fps=fps, codec="libx264", plugin="pyav")
    return [path]


def _write_frames_dir(frames: np.ndarray, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".frames.", suffix=".tmp"))
    try:
        names = [f"frame_{i:05d}.png" for i in range(len(frames))]
        for name, frame in zip(names, frames):
            Image.fromarray(frame).save(tmp / name)
        for name in names:  # each rename is atomic; all frames exist complete before the first
            os.replace(tmp / name, directory / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [directory / n for n in names]


def sidecar_path(path: str | os.PathLike) -> Path:
    """``out.mp4`` → ``out.mp4.json``; ``frames/`` → ``frames/generation.json``."""
    path = Path(path)
    return path / "generation.json" if output_kind(path) == "dir" else path.with_name(path.name + ".json")


def overlay_path(path: str | os.PathLike) -> Path:
    """``out.mp4`` → ``out.overlay.mp4``; ``frames/`` → ``frames/overlay/``."""
    path = Path(path)
    if output_kind(path) == "dir":
        return path / "overlay"
    return path.with_name(f"{path.stem}.overlay{path.suffix}")


def draw_paths(frames, paths: Sequence[np.ndarray], visible: Sequence[np.ndarray | None], colors) -> np.ndarray:
    """Each entity's path (F, 2) px drawn on every frame, with its current position as a dot."""
    frames = to_uint8(frames)
    out = np.empty_like(frames)
    height, width = frames.shape[1:3]
    radius = max(2, min(height, width) // 40)
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        draw = ImageDraw.Draw(image)
        for points, vis, color in zip(paths, visible, colors):
            vis = np.ones(len(points), bool) if vis is None else np.asarray(vis, bool)
            xy = [tuple(map(float, p)) for p, v in zip(points, vis) if v]
            if len(xy) > 1:
                draw.line(xy, fill=tuple(color), width=max(1, radius // 2))
            if vis[t]:
                x, y = map(float, points[t])
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=tuple(color), outline=(0, 0, 0))
        out[t] = np.asarray(image)
    return out
