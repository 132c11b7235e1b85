"""Metrics computed from (video frames, requested tracks, reference sprites) alone — no model needed.

* TrajError: mean over visible frames of the L1 distance |dx| + |dy| in pixels between the
  requested point and the tracked one; also reported as % of the frame width.
* Binding accuracy: an entity is bound correctly when its tracked path is closer (mean L1) to its
  own request than to any other entity's request in the same video. Undefined for one entity.
* Appearance similarity: cosine between embeddings of the reference (sprite on white, padded
  square) and of the square crop of the video at the tracked position and size, averaged over
  sampled frames. The embedding is a pretrained semantic encoder's pooled token when the model has
  one, else a colour histogram (:class:`ColorHistogram`): a randomly initialised tiny encoder maps
  every 64-px crop to nearly the same vector (cosine ≈ 0.95 for any pair), which measures nothing.
  The shuffled-reference baseline compares the same crops with another entity's reference.
"""

from __future__ import annotations

import numpy as np

from tora2.errors import InputError

CROP_MARGIN = 1.15  # crop side = tracked sprite size × this


def trajectory_error(tracked: np.ndarray, requested: np.ndarray, visible: np.ndarray | None = None) -> float:
    """Mean L1 pixel distance over visible frames; tracked and requested are (F, 2)."""
    tracked, requested = np.asarray(tracked, dtype=np.float64), np.asarray(requested, dtype=np.float64)
    if tracked.shape != requested.shape or tracked.ndim != 2 or tracked.shape[1] != 2:
        raise InputError(f"tracked {tracked.shape} and requested {requested.shape} paths must both be (F, 2)")
    keep = np.ones(len(tracked), bool) if visible is None else np.asarray(visible, bool)
    if not keep.any():
        return float("nan")
    return float(np.abs(tracked[keep] - requested[keep]).sum(axis=1).mean())


def binding_correct(tracked: list[np.ndarray], requested: list[np.ndarray]) -> list[bool] | None:
    """Per entity, whether its tracked path is strictly closest to its own request; None for one entity."""
    if len(tracked) != len(requested):
        raise InputError(f"{len(tracked)} tracked paths for {len(requested)} requests; give one per entity")
    if len(tracked) < 2:
        return None
    out = []
    for i, path in enumerate(tracked):
        errors = [trajectory_error(path, r) for r in requested]
        own = errors[i]
        out.append(bool(all(own < e for j, e in enumerate(errors) if j != i)))
    return out


def crop_square(frame: np.ndarray, centre, size: float) -> np.ndarray:
    """A square crop of side ``size`` centred on ``centre`` (x, y); outside the frame is white."""
    side = max(2, int(round(size)))
    x0 = int(round(centre[0] - (side - 1) / 2))
    y0 = int(round(centre[1] - (side - 1) / 2))
    out = np.full((side, side, 3), 255, dtype=np.uint8)
    h, w = frame.shape[:2]
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return out


class ColorHistogram:
    """A model-free appearance embedding: the square root of the normalised HSV histogram of the
    non-white pixels (``bins`` per channel), so the cosine of two embeddings is their Bhattacharyya
    coefficient (1 = same colour distribution, 0 = no colour in common)."""

    name = "hsv-histogram"

    def __init__(self, bins: tuple[int, int, int] = (12, 4, 4), white_saturation: float = 0.08, white_value: float = 0.92):
        self.bins = bins
        self.white_saturation, self.white_value = white_saturation, white_value

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """images: (h, w, 3) uint8 RGB each → (E, prod(bins)) L2-normalised."""
        import cv2

        out = []
        for image in images:
            hsv = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float64)
            h, sat, val = hsv[:, 0] / 180.0, hsv[:, 1] / 255.0, hsv[:, 2] / 255.0  # OpenCV hue is 0..179
            keep = ~((sat < self.white_saturation) & (val > self.white_value))
            keep = keep if keep.any() else np.ones_like(keep)
            hist, _ = np.histogramdd(np.stack([h, sat, val], 1)[keep], bins=self.bins, range=[(0, 1)] * 3)
            vector = np.sqrt(hist.ravel() / hist.sum())
            out.append(vector / max(np.linalg.norm(vector), 1e-12))
        return np.stack(out)


def pretrained_semantic_encoder(encoder) -> bool:
    """Whether a SemanticImageEncoder is a real pretrained tower (from_open_clip / DINOv2), not a tiny
    randomly initialised one ("tiny", "custom"), whose embeddings are not worth comparing."""
    return encoder is not None and getattr(encoder.config, "model_name", "custom") not in ("tiny", "custom")


def appearance_embedding_name(encoder) -> str:
    return getattr(encoder, "name", None) or getattr(encoder.config, "model_name", "?")


def embed(encoder, images: list[np.ndarray]) -> np.ndarray:
    """L2-normalised appearance embeddings → (E, C): ``encoder.embed`` when it has one (ColorHistogram),
    else a SemanticImageEncoder's pooled token."""
    if hasattr(encoder, "embed"):
        return encoder.embed(images)
    import torch

    with torch.no_grad():
        tokens = encoder.encode(encoder.preprocess(images))  # (E, 1 + G*G, C)
    pooled = tokens[:, 0].float().cpu().numpy()
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-8)
