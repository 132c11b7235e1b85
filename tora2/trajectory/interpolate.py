"""Keyframes → one position per output frame: ``linear``, ``smooth`` (Catmull-Rom) or ``hold``.

Times are in (possibly fractional) frame indices; output frames are the integers ``0..F-1``.
Before the first keyframe the path holds its first position, after the last its last position.
Easing reshapes time inside each segment between two keyframes, so keyframe positions are always
hit exactly at their own times.
"""

from __future__ import annotations

import numpy as np

INTERPOLATIONS = ("linear", "smooth", "hold")
EASINGS = ("none", "in", "out", "in_out")


def ease(u: np.ndarray, easing: str = "none") -> np.ndarray:
    """Map segment-local time ``u`` in [0, 1] through an easing curve (cubic; 0→0 and 1→1)."""
    if easing == "none":
        return u
    if easing == "in":
        return u**3
    if easing == "out":
        return 1.0 - (1.0 - u) ** 3
    if easing == "in_out":
        return np.where(u < 0.5, 4.0 * u**3, 1.0 - 4.0 * (1.0 - u) ** 3)
    raise ValueError(f"easing must be one of {', '.join(EASINGS)}; got {easing!r}")


def _catmull_rom_tangents(times: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Per-keyframe velocity (units per frame): centred differences inside, one-sided at the ends."""
    tangents = np.empty_like(xy)  # (K, 2)
    tangents[1:-1] = (xy[2:] - xy[:-2]) / (times[2:] - times[:-2])[:, None]
    tangents[0] = (xy[1] - xy[0]) / (times[1] - times[0])
    tangents[-1] = (xy[-1] - xy[-2]) / (times[-1] - times[-2])
    return tangents


def interpolate_keyframes(
    times: np.ndarray,
    xy: np.ndarray,
    num_frames: int,
    interpolation: str = "linear",
    easing: str = "none",
) -> np.ndarray:
    """Positions at frames ``0..num_frames-1`` of a path through ``xy`` (K, 2) at ``times`` (K,).

    ``times`` must be strictly increasing (checked by the callers that parse files). Returns
    (num_frames, 2) float64.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    times = np.asarray(times, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    frames = np.arange(num_frames, dtype=np.float64)  # (F,)
    # Segment i spans [times[i], times[i+1]); a frame exactly on a keyframe starts that keyframe's segment.
    segment = np.clip(np.searchsorted(times, frames, side="right") - 1, 0, len(times) - 2)  # (F,)
    t0, t1 = times[segment], times[segment + 1]
    u = np.clip((frames - t0) / (t1 - t0), 0.0, 1.0)  # (F,) local time, held outside the keyframe range
    u = ease(u, easing)[:, None]  # (F, 1)
    p0, p1 = xy[segment], xy[segment + 1]  # (F, 2)
    if interpolation == "hold":
        return np.where(u >= 1.0, p1, p0)
    if interpolation == "linear":
        return p0 + u * (p1 - p0)
    # Cubic Hermite with Catmull-Rom tangents, scaled by the segment duration (non-uniform knots).
    tangents = _catmull_rom_tangents(times, xy)
    dt = (t1 - t0)[:, None]
    m0, m1 = tangents[segment] * dt, tangents[segment + 1] * dt
    u2, u3 = u * u, u * u * u
    return (
        (2 * u3 - 3 * u2 + 1) * p0
        + (u3 - 2 * u2 + u) * m0
        + (-2 * u3 + 3 * u2) * p1
        + (u3 - u2) * m1
    )


def interpolate_visibility(times: np.ndarray, visible: np.ndarray, num_frames: int) -> np.ndarray:
    """Visibility per frame: the value of the last keyframe at or before the frame (step function)."""
    times = np.asarray(times, dtype=np.float64)
    frames = np.arange(num_frames, dtype=np.float64)
    index = np.clip(np.searchsorted(times, frames, side="right") - 1, 0, len(times) - 1)
    return np.asarray(visible, dtype=bool)[index]


def resample_points(
    points: np.ndarray,
    num_frames: int,
    interpolation: str = "linear",
    easing: str = "none",
) -> np.ndarray:
    """Per-frame points of any length N ≥ 2 → ``num_frames`` points, evenly spread in time.

    The first and last points land on frames 0 and ``num_frames-1``; when ``N == num_frames`` (and
    no easing) the points come back unchanged.
    """
    points = np.asarray(points, dtype=np.float64)
    if len(points) == num_frames and easing == "none":
        return points.copy()
    return interpolate_keyframes(evenly_spaced_times(len(points), num_frames), points, num_frames, interpolation, easing)


def evenly_spaced_times(num_points: int, num_frames: int) -> np.ndarray:
    """Times (in frames) of ``num_points`` samples spread evenly over ``0..num_frames-1``."""
    if num_points == num_frames:
        return np.arange(num_frames, dtype=np.float64)
    return np.linspace(0.0, num_frames - 1, num_points)
