"""Pasting an RGBA sprite into a frame: the one compositing rule of the synthetic renders
(``tora2.synthetic.clips``), the encoders' pretraining crops and the placement video the pipeline
builds for models with ``entity_placement_channels`` (``tora2.pipelines.conditioning``).

Model-free: numpy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np


def paste_sprite(frame: np.ndarray, sprite: np.ndarray, centre, size: float, angle: float) -> None:
    """Alpha-composite an RGBA sprite into ``frame`` (H, W, 3 float32 in [0, 255], in place): its
    alpha-box centre lands exactly on ``centre`` (x, y), longer side ``size`` pixels, rotated by
    ``angle`` degrees. A frame with a 4th channel also gets the coverage there (in [0, 1], "over")."""
    h, w = sprite.shape[:2]
    rgba = sprite.astype(np.float32)
    premultiplied = np.concatenate([rgba[..., :3] * (rgba[..., 3:] / 255.0), rgba[..., 3:] / 255.0], axis=2)  # (h, w, 4)
    src_centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(src_centre, angle, size / max(h, w))  # (2, 3) about the sprite centre
    matrix[:, 2] += np.asarray(centre, dtype=np.float64) - src_centre
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64) @ matrix.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    matrix[:, 2] -= (x0, y0)  # warp only the region the sprite covers
    warped = cv2.warpAffine(premultiplied, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # (h', w', 4)
    region = frame[y0:y1, x0:x1]
    coverage = warped[..., 3:]  # (h', w', 1)
    region[..., :3] *= 1.0 - coverage
    region[..., :3] += warped[..., :3]
    if frame.shape[2] == 4:
        region[..., 3:] = coverage + region[..., 3:] * (1.0 - coverage)
