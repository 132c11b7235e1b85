"""Crop an entity to its mask's box, composite it onto white and pad it square."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tora2.errors import InputError
from tora2.models.encoders import WHITE, resize_square, white_square  # noqa: F401  (re-exported)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels, x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise InputError("the entity mask is empty; pass a box or point on the entity")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def crop_entity(rgb: np.ndarray, mask: np.ndarray) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """(H, W, 3) uint8 + (H, W) bool → square RGBA crop and the mask box.

    RGB of the crop = the entity on white; alpha = the mask (0 in the square padding). The crop is
    the mask's box exactly, centred in a square of side max(width, height).
    """
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask must be {rgb.shape[:2]}; got {mask.shape}")
    x0, y0, x1, y1 = mask_box(mask)
    patch = rgb[y0:y1, x0:x1]  # (h, w, 3)
    m = mask[y0:y1, x0:x1]  # (h, w)
    h, w = m.shape
    side = max(h, w)
    out = np.zeros((side, side, 4), np.uint8)
    out[..., :3] = WHITE
    top, left = (side - h) // 2, (side - w) // 2
    region = out[top : top + h, left : left + w]
    region[..., :3] = np.where(m[..., None], patch, WHITE)
    region[..., 3] = np.where(m, 255, 0)
    return Image.fromarray(out, "RGBA"), (x0, y0, x1, y1)
