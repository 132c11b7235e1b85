"""Entity positions at the latent frames of the video VAE (for sampling motion tokens)."""

from __future__ import annotations

import numpy as np

from tora2.errors import InputError


def latent_positions(
    points: np.ndarray,
    visible: np.ndarray,
    num_latent_frames: int,
    temporal_compression: int = 4,
    *,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per latent frame ``t``, the position at pixel frame ``min(t * temporal_compression, F − 1)``.

    points: (F, 2) pixel (x, y); visible: (F,) bool. Returns positions normalised to [0, 1]
    (``x / width``, ``y / height``) as (num_latent_frames, 2) float32, and (num_latent_frames,) bool.
    """
    points = np.asarray(points, dtype=np.float64)
    visible = np.asarray(visible, dtype=bool)
    if points.ndim != 2 or points.shape[1] != 2:
        raise InputError(f"points must be (F, 2); got {points.shape}")
    if visible.shape != (len(points),):
        raise InputError(f"visible must be ({len(points)},) like points; got {visible.shape}")
    if num_latent_frames < 1 or temporal_compression < 1:
        raise InputError(
            f"num_latent_frames {num_latent_frames} and temporal_compression {temporal_compression} must be ≥ 1"
        )
    frames = np.minimum(np.arange(num_latent_frames) * temporal_compression, len(points) - 1)  # (T,)
    positions = points[frames] / np.array([width, height], dtype=np.float64)  # (T, 2)
    return positions.astype(np.float32), visible[frames].copy()
