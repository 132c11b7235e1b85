"""Load and validate entity photos: path, PIL image or array → RGB array + optional alpha."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tora2.errors import InputError

# Larger photos are legal but slow every step after; GrabCut and SAM work on a downscaled copy anyway.
MAX_SIDE = 8192


@dataclass
class LoadedImage:
    """rgb: (H, W, 3) uint8. alpha: (H, W) uint8 or None when the image has no alpha channel."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    source: str


def _from_array(array: np.ndarray, source: str) -> LoadedImage:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"{source}: expected an (H, W), (H, W, 3) or (H, W, 4) image array; got shape {array.shape}")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.size and 0.0 <= array.min() and array.max() <= 1.0:
            array = np.round(array * 255.0).astype(np.uint8)
        else:
            raise InputError(f"{source}: image array must be uint8 (or float in [0, 1]); got {array.dtype}")
    h, w = array.shape[:2]
    if h == 0 or w == 0:
        raise InputError(f"{source}: image has zero size ({w}x{h}); pass a non-empty image")
    if max(h, w) > MAX_SIDE:
        raise InputError(f"{source}: image is {w}x{h}, larger than {MAX_SIDE} px on a side; downscale it first")
    if array.shape[2] == 1:
        return LoadedImage(np.repeat(array, 3, axis=2), None, source)
    if array.shape[2] == 3:
        return LoadedImage(np.ascontiguousarray(array), None, source)
    return LoadedImage(np.ascontiguousarray(array[..., :3]), np.ascontiguousarray(array[..., 3]), source)


def _from_pil(image: Image.Image, source: str) -> LoadedImage:
    image = ImageOps.exif_transpose(image)  # phone photos store rotation in EXIF
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    return _from_array(np.asarray(image), source)


def load_image(image) -> LoadedImage:
    """``image``: a path, a PIL image or an (H, W[, 3|4]) array. Raises InputError for unreadable input."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise InputError(f"image {path} not found; check the path")
        if path.is_dir():
            raise InputError(f"image {path} is a directory; pass an image file (PNG, JPEG, WebP)")
        try:
            with Image.open(path) as pil:
                pil.load()
                return _from_pil(pil, str(path))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(f"cannot read image {path} ({reason}); pass a valid PNG, JPEG or WebP file") from None
    if isinstance(image, Image.Image):
        return _from_pil(image, "<PIL image>")
    if isinstance(image, np.ndarray):
        return _from_array(image, "<array>")
    raise InputError(f"image must be a path, PIL image or numpy array; got {type(image).__name__}")
