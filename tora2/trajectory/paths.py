"""Path generators for demos and synthetic training data.

Each returns (num_frames, 2) float64 pixel points (x, y) inside a ``width`` × ``height`` video,
keeping ``margin`` (a fraction of the smaller side) away from the borders. Anything random takes
a ``seed`` (an int or a ``numpy.random.Generator``) and is reproducible.
"""

from __future__ import annotations

import numpy as np

from tora2.errors import InputError
from tora2.trajectory.interpolate import interpolate_keyframes

DEFAULT_MARGIN = 0.1


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _box(height: int, width: int, margin: float) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) of the area paths may use."""
    if height < 2 or width < 2:
        raise InputError(f"video size {height}x{width} (HxW) is too small; use at least 2x2")
    if not 0 <= margin < 0.5:
        raise InputError(f"margin {margin:g} must be in [0, 0.5): it is a fraction of the smaller side")
    pad = margin * min(height, width)
    return pad, pad, width - 1 - pad, height - 1 - pad


def _check_frames(num_frames: int) -> None:
    if num_frames < 2:
        raise InputError(f"num_frames is {num_frames}; a path needs at least 2 frames")


def line(num_frames: int, height: int, width: int, start=None, end=None, seed=None, margin=DEFAULT_MARGIN) -> np.ndarray:
    """A straight line at constant speed. ``start``/``end`` (x, y) default to random points (seeded)."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    rng = _rng(seed)
    start = np.array(start if start is not None else rng.uniform((x0, y0), (x1, y1)), dtype=np.float64)
    end = np.array(end if end is not None else rng.uniform((x0, y0), (x1, y1)), dtype=np.float64)
    u = np.linspace(0.0, 1.0, num_frames)[:, None]  # (F, 1)
    return start + u * (end - start)


def circle(num_frames: int, height: int, width: int, turns: float = 1.0, phase: float = 0.0,
           clockwise: bool = True, margin=DEFAULT_MARGIN) -> np.ndarray:
    """A circle (an ellipse on non-square videos) around the centre, ``turns`` times round."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
    angle = phase + (1 if clockwise else -1) * 2 * np.pi * turns * np.linspace(0.0, 1.0, num_frames)
    return np.stack([cx + r * np.cos(angle), cy + r * np.sin(angle)], axis=1)


def spiral(num_frames: int, height: int, width: int, turns: float = 2.0, inward: bool = False,
           margin=DEFAULT_MARGIN) -> np.ndarray:
    """An Archimedean spiral from the centre outwards (or inwards)."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0) / 2
    u = np.linspace(0.0, 1.0, num_frames)
    if inward:
        u = u[::-1]
    angle = 2 * np.pi * turns * u
    return np.stack([cx + r * u * np.cos(angle), cy + r * u * np.sin(angle)], axis=1)


def zigzag(num_frames: int, height: int, width: int, teeth: int = 3, margin=DEFAULT_MARGIN) -> np.ndarray:
    """Left to right, bouncing between the top and bottom ``teeth`` times."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    corners_x = np.linspace(x0, x1, 2 * teeth + 1)
    corners_y = np.where(np.arange(2 * teeth + 1) % 2 == 0, y0, y1)
    times = np.linspace(0.0, num_frames - 1, 2 * teeth + 1)
    return interpolate_keyframes(times, np.stack([corners_x, corners_y], axis=1), num_frames)


def bounce(num_frames: int, height: int, width: int, bounces: int = 3, margin=DEFAULT_MARGIN) -> np.ndarray:
    """A ball thrown left to right, bouncing on the floor ``bounces`` times (parabolic arcs)."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    u = np.linspace(0.0, 1.0, num_frames)
    phase = (u * bounces) % 1.0
    decay = 0.7 ** np.floor(u * bounces)  # each bounce lower than the last
    height_above_floor = 4 * phase * (1 - phase) * decay  # 0 at the floor, ≤ 1 at the top
    return np.stack([x0 + u * (x1 - x0), y1 - height_above_floor * (y1 - y0)], axis=1)


def figure_eight(num_frames: int, height: int, width: int, loops: float = 1.0, margin=DEFAULT_MARGIN) -> np.ndarray:
    """A lemniscate (∞) around the centre."""
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    angle = 2 * np.pi * loops * np.linspace(0.0, 1.0, num_frames)
    return np.stack([cx + (x1 - x0) / 2 * np.sin(angle), cy + (y1 - y0) / 2 * np.sin(angle) * np.cos(angle)], axis=1)


def random_smooth(num_frames: int, height: int, width: int, seed=None, num_keyframes: int | None = None,
                  pause_probability: float = 0.25, margin=DEFAULT_MARGIN) -> np.ndarray:
    """A random smooth path with speed changes and pauses.

    The shape is a Catmull-Rom curve through random keyframes; the motion along it follows a
    random speed profile: pieces of a few frames each at a random speed, some of them at speed 0
    (a pause: the position is held exactly). Start and end are the first and last keyframes.
    """
    _check_frames(num_frames)
    x0, y0, x1, y1 = _box(height, width, margin)
    rng = _rng(seed)
    count = num_keyframes if num_keyframes is not None else int(rng.integers(3, 7))
    if count < 2:
        raise InputError(f"num_keyframes is {count}; a path needs at least 2")
    xy = rng.uniform((x0, y0), (x1, y1), size=(count, 2))  # (K, 2)
    samples = 64 * count  # the curve, finely sampled by curve parameter
    curve = interpolate_keyframes(np.linspace(0, samples - 1, count), xy, samples, "smooth")  # (S, 2)
    curve = np.clip(curve, (x0, y0), (x1, y1))  # the spline may overshoot a little between keyframes

    speed = np.empty(num_frames - 1)  # progress per frame step
    start = 0
    while start < num_frames - 1:
        stop = min(num_frames - 1, start + int(rng.integers(3, 10)))
        pause = start > 0 and rng.random() < pause_probability
        speed[start:stop] = 0.0 if pause else rng.uniform(0.3, 1.7)
        start = stop
    progress = np.concatenate([[0.0], np.cumsum(speed)])  # (F,) non-decreasing
    progress = progress / progress[-1] * (samples - 1)
    grid = np.arange(samples)
    return np.stack([np.interp(progress, grid, curve[:, 0]), np.interp(progress, grid, curve[:, 1])], axis=1)
